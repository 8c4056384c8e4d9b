//! `nodewarden power`, `plan` and `drill`: the power sequence as text.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use nodewarden_common::units::format_duration;
use nodewarden_proto::v1::power_client::PowerClient;
use nodewarden_proto::v1::{
    ArmRequest, DrillRequest, GetPowerRequest, GetPowerResponse, HoldRequest, PlanRequest,
    PlanResponse, PowerArm, PowerDomain, PowerNode, PowerTimelineEntry,
};
use tonic::transport::Channel;

use super::format::{format_ago, format_timestamp};
use super::nodes::kube_summary;
use super::style::{Align, Level, Style, Table};
use super::{CliError, PowerAction, View, write_json};

fn dur(ms: i64) -> String {
    format_duration(Duration::from_millis(ms.max(0) as u64))
}

/// How worrying a power phase is.
pub fn phase_level(phase: &str) -> Level {
    match phase {
        "on_mains" => Level::Normal,
        "on_battery" | "recovering" | "cancelling" | "awaiting_return" => Level::Warning,
        _ => Level::Critical,
    }
}

/// `nodewarden power`: one block per domain.
pub fn render_power(r: &GetPowerResponse, now_ms: i64, style: Style) -> String {
    let mut s = String::new();
    if !r.enabled {
        s.push_str(
            "power sequence disabled ([power] enabled = false): UPS events are only recorded\n",
        );
    }
    if let Some(a) = &r.arm {
        s.push_str(&arm_line(a));
        s.push('\n');
    }
    if r.domains.is_empty() {
        s.push_str("no power domain yet\n");
    }
    for d in &r.domains {
        render_domain(&mut s, d, now_ms, style);
    }
    s
}

/// Whether the sequence may start, and who said so.
fn arm_line(a: &PowerArm) -> String {
    if a.by_config {
        return "armed by the config file (power.armed = true)".into();
    }
    if a.armed {
        return format!(
            "armed by {} at {} (`nodewarden power disarm` to only observe)",
            a.by,
            format_timestamp(a.at_ms)
        );
    }
    let since = if a.by.is_empty() {
        String::new()
    } else {
        format!(" (disarmed by {} at {})", a.by, format_timestamp(a.at_ms))
    };
    format!(
        "observing, not armed{since}: a power cut is recorded with what the sequence would do; `nodewarden power arm` lets it run"
    )
}

/// The UPS line of a domain: "on battery, charge 80%, runtime 12m".
pub fn ups_line(d: &PowerDomain) -> String {
    let Some(u) = d.ups_state.as_ref().filter(|u| u.known) else {
        return "no reading yet".into();
    };
    let mut parts = Vec::new();
    if !u.communication_ok {
        parts.push("COMMUNICATION LOST".to_string());
    }
    parts.push(if u.on_battery {
        "on battery".into()
    } else {
        "on mains".into()
    });
    if u.low_battery {
        parts.push("LOW BATTERY".into());
    }
    if let Some(c) = u.battery_charge_percent {
        parts.push(format!("charge {c:.0}%"));
    }
    if let Some(r) = u.battery_runtime_ms {
        parts.push(format!("runtime {}", dur(r)));
    }
    parts.join(", ")
}

fn render_domain(s: &mut String, d: &PowerDomain, now_ms: i64, style: Style) {
    let ups = if d.ups.is_empty() {
        "(no UPS reported yet)".to_string()
    } else {
        format!("{} on {}", d.ups, d.owner)
    };
    let _ = writeln!(
        s,
        "{} — UPS {ups}",
        style.bold(&format!("domain {}", d.name))
    );
    let _ = writeln!(s, "  UPS:    {}", ups_line(d));
    let _ = writeln!(
        s,
        "  phase:  {} (for {})",
        style.paint(phase_level(&d.phase), &d.phase),
        format_ago(d.phase_since_ms, now_ms).trim_end_matches(" ago")
    );
    let _ = writeln!(s, "  now:    {}", d.now);
    if !d.held_by.is_empty() {
        let _ = writeln!(
            s,
            "  {}",
            style.paint(
                Level::Warning,
                &format!(
                    "held by {} for {}: `nodewarden power resume` carries on",
                    d.held_by,
                    format_ago(d.held_since_ms, now_ms).trim_end_matches(" ago")
                )
            )
        );
    }
    if d.deadline_ms > 0 {
        let _ = writeln!(s, "  gives up in {}", dur(d.deadline_ms - now_ms));
    }
    if !d.reason.is_empty() {
        let _ = writeln!(s, "  why:    {}", d.reason);
    }
    if !d.nodes.is_empty() {
        // Only with node health on: without it the column would be all dashes.
        let kube = d
            .nodes
            .iter()
            .any(|n| !n.kube_conditions.is_empty() || !n.kube_taints.is_empty());
        let mut columns = vec![
            ("NODE", Align::Left),
            ("ROLE", Align::Left),
            ("AGENT", Align::Left),
            ("CORDON", Align::Left),
            ("DRAIN", Align::Left),
            ("POWER", Align::Left),
        ];
        if kube {
            columns.push(("KUBERNETES", Align::Left));
        }
        let mut t = Table::new(&columns);
        for n in &d.nodes {
            let role = if n.role == "external" {
                format!("external #{}", n.external_order)
            } else {
                n.role.clone()
            };
            let mut row = vec![
                n.name.clone(),
                role,
                if n.connected {
                    "connected".into()
                } else {
                    "offline".into()
                },
                or_dash(&n.cordon),
                or_dash(&n.drain),
                or_dash(&n.power),
            ];
            if kube {
                let (text, level) = kube_summary(&n.kube_conditions, &n.kube_taints);
                row.push(style.paint(level, &text));
            }
            t.row(row);
        }
        for line in t.render(style).lines() {
            let _ = writeln!(s, "  {line}");
        }
    }
    if !d.timeline.is_empty() {
        let _ = writeln!(s, "  timeline:");
        render_timeline(s, &d.timeline);
    }
    s.push('\n');
}

fn or_dash(v: &str) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.to_string()
    }
}

/// One line per member that nodewarden has told Kubernetes is in trouble
/// (a condition not False, or a taint): the nodes to look at before a
/// sequence asks them to drain and halt.
fn render_kube_trouble(s: &mut String, members: &[PowerNode], style: Style) {
    for n in members {
        let (summary, level) = kube_summary(&n.kube_conditions, &n.kube_taints);
        if level == Level::Normal {
            continue;
        }
        let mut line = format!("in Kubernetes: {} {summary}", n.name);
        if !n.kube_taints.is_empty() {
            let _ = write!(line, " (taints {})", n.kube_taints.join(", "));
        }
        let _ = writeln!(s, "  {}", style.paint(level, &line));
    }
}

fn render_timeline(s: &mut String, entries: &[PowerTimelineEntry]) {
    let start = entries.first().map_or(0, |e| e.at_ms);
    for e in entries {
        let _ = writeln!(
            s,
            "    {}  +{:>7}  {}",
            format_timestamp(e.at_ms),
            dur(e.at_ms - start),
            e.text
        );
    }
}

/// `nodewarden plan`.
pub fn render_plan(r: &PlanResponse, style: Style) -> String {
    let mut s = String::new();
    for d in &r.domains {
        let _ = writeln!(
            s,
            "{} — UPS {} on {}",
            style.bold(&format!("domain {}", d.domain)),
            if d.ups.is_empty() { "?" } else { &d.ups },
            if d.owner.is_empty() { "?" } else { &d.owner }
        );
        let _ = writeln!(s, "  if power failed now:");
        let k8s: Vec<&str> = d
            .members
            .iter()
            .filter(|m| m.role != "external")
            .map(|m| m.name.as_str())
            .collect();
        let mut step = 1;
        if !k8s.is_empty() {
            let _ = writeln!(s, "  {step}. cordon {}", k8s.join(", "));
            step += 1;
            let _ = writeln!(
                s,
                "  {step}. drain them (about {})",
                dur(d.drain_estimate_ms)
            );
            step += 1;
        }
        let mut ups_done = false;
        for st in &d.stages {
            if !ups_done && st.nodes.contains(&d.owner) {
                let _ = writeln!(
                    s,
                    "  {step}. tell {} to cycle UPS {} (shutdown with return)",
                    d.owner, d.ups
                );
                step += 1;
                ups_done = true;
            }
            let _ = writeln!(
                s,
                "  {step}. power off {}: {} (wait at most {})",
                st.label,
                st.nodes.join(", "),
                dur(st.timeout_ms)
            );
            if !st.skipped.is_empty() {
                let _ = writeln!(s, "     skipped: offline: {}", st.skipped.join(", "));
            }
            step += 1;
        }
        if !ups_done {
            let _ = writeln!(
                s,
                "  {step}. tell {} to cycle UPS {} (shutdown with return)",
                d.owner, d.ups
            );
        }
        let runtime = d.battery_runtime_ms.map_or("unknown".to_string(), dur);
        let _ = writeln!(
            s,
            "  estimated: {} until the last node halts; battery runtime now: {runtime}",
            dur(d.total_estimate_ms)
        );
        if let Some(b) = &d.budget {
            let _ = writeln!(
                s,
                "  budget: drain {} (runtime less {} kept back: cordon {}, stages, UPS command {}, halt {})",
                dur(b.drain_ms),
                dur(b.reserve_ms),
                dur(b.cordon_ms),
                dur(b.ups_command_ms),
                dur(b.halt_ms)
            );
        }
        if let Some(u) = &d.ups_delays {
            let effective = |e: Option<i64>| match e {
                Some(ms) => format!(" (the UPS applies {})", dur(ms)),
                None if u.driver == "nut" => {
                    " (the NUT driver may keep its own: read back at the cycle)".into()
                }
                None => String::new(),
            };
            let _ = writeln!(
                s,
                "  UPS delays: off {}{} — the stages after the cycle need {}; back on {} after mains returns{}",
                dur(u.configured_off_ms),
                effective(u.effective_off_ms),
                dur(u.off_need_ms),
                dur(u.configured_restore_ms),
                effective(u.effective_restore_ms)
            );
        }
        render_kube_trouble(&mut s, &d.members, style);
        if !d.drain_error.is_empty() {
            let _ = writeln!(s, "  pods: unknown ({})", d.drain_error);
        }
        for n in &d.drain {
            let _ = writeln!(
                s,
                "  {}: {} pods to evict, {} DaemonSet/mirror pods stay",
                n.node,
                n.pods.len(),
                n.skipped
            );
            for p in &n.pods {
                let block = if p.blocked_by.is_empty() {
                    String::new()
                } else {
                    format!("  BLOCKED by PDB {}", p.blocked_by)
                };
                let _ = writeln!(
                    s,
                    "    {}/{} (grace {}s){}",
                    p.namespace, p.name, p.grace_seconds, block
                );
            }
        }
        for w in &d.warnings {
            // The errors refuse `power arm`: said as such.
            let (level, word) = if d.errors.contains(w) {
                (Level::Critical, "error")
            } else {
                (Level::Warning, "warning")
            };
            let _ = writeln!(s, "  {}", style.paint(level, &format!("{word}: {w}")));
        }
        s.push('\n');
    }
    for w in &r.warnings {
        let _ = writeln!(
            s,
            "{}",
            style.paint(Level::Warning, &format!("warning: {w}"))
        );
    }
    s
}

/// Runs `power`, `plan` or `drill` against the collector.
pub async fn execute(
    client: &mut PowerClient<Channel>,
    cmd: &super::QueryCommand,
    view: &View,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match cmd {
        super::QueryCommand::Power {
            action: Some(action),
        } => {
            let r = match action {
                PowerAction::Arm => client.arm(ArmRequest { armed: true }).await?,
                PowerAction::Disarm => client.arm(ArmRequest { armed: false }).await?,
                PowerAction::Hold { domain } | PowerAction::Resume { domain } => {
                    let hold = matches!(action, PowerAction::Hold { .. });
                    let domain = domain.clone().unwrap_or_default();
                    client.hold(HoldRequest { domain, hold }).await?
                }
            }
            .into_inner();
            if view.json {
                let v = serde_json::to_value(&r).map_err(std::io::Error::from)?;
                write_json(out, &v)?;
            } else {
                writeln!(out, "{}", r.message)?;
                for p in &r.problems {
                    writeln!(out, "  {p}")?;
                }
            }
            if !r.ok {
                return Err(CliError::Refused(r.message));
            }
        }
        super::QueryCommand::Plan => {
            let r = client.plan(PlanRequest {}).await?.into_inner();
            if view.json {
                return write_json(
                    out,
                    &serde_json::to_value(&r).map_err(std::io::Error::from)?,
                );
            }
            out.write_all(render_plan(&r, view.style).as_bytes())?;
        }
        super::QueryCommand::Drill {
            cordon,
            simulated_ups,
            domain,
        } => {
            let mut stream = client
                .drill(DrillRequest {
                    domain: domain.clone().unwrap_or_default(),
                    cordon: *cordon,
                    simulated_ups: *simulated_ups,
                })
                .await?
                .into_inner();
            let mut start = None;
            while let Some(ev) = stream.message().await? {
                if view.json {
                    // One JSON object per line, as it happens.
                    serde_json::to_writer(&mut *out, &ev).map_err(std::io::Error::from)?;
                    writeln!(out)?;
                } else if let Some(e) = &ev.entry {
                    let t0 = *start.get_or_insert(e.at_ms);
                    writeln!(
                        out,
                        "{}  +{:>7}  {}{}",
                        format_timestamp(e.at_ms),
                        dur(e.at_ms - t0),
                        if ev.domain.is_empty() {
                            String::new()
                        } else {
                            format!("[{}] ", ev.domain)
                        },
                        e.text
                    )?;
                }
                out.flush()?;
                if ev.done {
                    break;
                }
            }
        }
        _ => {
            let r = client.get_power(GetPowerRequest {}).await?.into_inner();
            if view.json {
                return write_json(
                    out,
                    &serde_json::to_value(&r).map_err(std::io::Error::from)?,
                );
            }
            out.write_all(render_power(&r, view.now_ms, view.style).as_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "power_tests.rs"]
mod tests;
