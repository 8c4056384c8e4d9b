//! `nodewarden node NAME`: one node in full.

use std::fmt::Write as _;
use std::time::Duration;

use nodewarden_common::units::format_duration;
use nodewarden_proto::throttle;
use nodewarden_proto::v1::{NodeInfo, PressureLine, Sample, TemperatureSource};

use super::{MEMORY_WARNING_RATIO, format_uptime, or_dash, temperature_level, throttle_level};
use crate::cli::format::{
    format_ago, format_bytes, format_bytes_of, format_hertz, format_timestamp,
};
use crate::cli::readings::{flag_meaning, meaningful_flags, memory_used_bytes, memory_used_ratio};
use crate::cli::style::{Align, Level, Style, Table};
use crate::cli::ups::render_ups_summary;

/// Appends a section heading.
fn heading(out: &mut String, style: Style, title: &str) {
    let _ = writeln!(out, "{}", style.bold(title));
}

/// Appends "  key          value".
fn field(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "  {key:<14} {value}");
}

/// `node NAME`: everything the collector knows about one node.
pub fn render_node(node: &NodeInfo, now_ms: i64, style: Style) -> String {
    let mut out = String::new();
    let state = if node.online {
        "online".to_owned()
    } else if node.offline_reason.is_empty() {
        style.paint(Level::Critical, "offline")
    } else {
        style.paint(
            Level::Critical,
            &format!("offline: {}", node.offline_reason),
        )
    };
    let _ = writeln!(out, "{} ({state})", style.bold(&node.name));

    heading(&mut out, style, "Identity");
    field(&mut out, "role", &or_dash(&node.role));
    field(&mut out, "model", &or_dash(&node.board_model));
    field(&mut out, "arch", &or_dash(&node.arch));
    field(&mut out, "os", &or_dash(&node.os_name));
    field(&mut out, "kernel", &or_dash(&node.kernel_version));
    field(&mut out, "agent", &or_dash(&node.agent_version));
    if node.first_seen_ms > 0 {
        field(
            &mut out,
            "first seen",
            &format_timestamp(node.first_seen_ms),
        );
    }
    let last_seen = if node.last_seen_ms > 0 {
        format!(
            "{} ({})",
            format_ago(node.last_seen_ms, now_ms),
            format_timestamp(node.last_seen_ms)
        )
    } else {
        "never".to_owned()
    };
    field(&mut out, "last seen", &last_seen);
    if node.online {
        field(&mut out, "stream peer", &or_dash(&node.peer_address));
    }
    if node.sample_interval_ms > 0 {
        field(
            &mut out,
            "sample every",
            &format_duration(Duration::from_millis(u64::from(node.sample_interval_ms))),
        );
    }

    kubernetes_section(&mut out, node, now_ms, style);
    let Some(sample) = node.latest.as_ref() else {
        out.push_str("\nno sample received yet\n");
        return out;
    };
    if !node.online {
        let _ = writeln!(
            out,
            "\nLast sample, taken {} (the node is offline; these values are not current)",
            format_ago(sample.timestamp_ms, now_ms)
        );
    }
    render_sample(&mut out, sample, now_ms, style);
    out
}

/// What nodewarden set on the Kubernetes node: its conditions and labels.
fn kubernetes_section(out: &mut String, node: &NodeInfo, now_ms: i64, style: Style) {
    if node.kube_conditions.is_empty() && node.kube_labels.is_empty() && node.kube_taints.is_empty()
    {
        return;
    }
    heading(out, style, "Kubernetes (set by nodewarden)");
    for c in &node.kube_conditions {
        let level = match c.status.as_str() {
            "True" => Level::Critical,
            "False" => Level::Normal,
            _ => Level::Warning,
        };
        let since = format_ago(c.last_transition_ms, now_ms);
        field(
            out,
            &c.r#type,
            &format!(
                "{} {} (since {since}): {}",
                style.paint(level, &c.status),
                c.reason,
                c.message
            ),
        );
    }
    let mut labels: Vec<_> = node.kube_labels.iter().collect();
    labels.sort();
    for (k, v) in labels {
        field(out, "label", &format!("{k}={v}"));
    }
    for t in &node.kube_taints {
        field(out, "taint", &style.paint(Level::Warning, t));
    }
}

/// The latest sample, section by section.
fn render_sample(out: &mut String, sample: &Sample, now_ms: i64, style: Style) {
    temperatures_section(out, sample, style);
    throttling_section(out, sample, style);
    cpu_section(out, sample, style);
    memory_section(out, sample, style);
    load_section(out, sample, style);
    pressure_section(out, sample, style);
    filesystem_section(out, sample, style);
    uptime_section(out, sample, now_ms, style);
    ups_section(out, sample, style);
}

/// Every sensor, the CPU's marked and coloured.
fn temperatures_section(out: &mut String, sample: &Sample, style: Style) {
    heading(out, style, "Temperatures");
    if sample.temperatures.is_empty() {
        field(out, "none", "no sensor could be read");
    }
    let mut table = Table::new(&[
        ("  SENSOR", Align::Left),
        ("SOURCE", Align::Left),
        ("TEMP", Align::Right),
        ("", Align::Left),
    ]);
    for t in &sample.temperatures {
        let celsius = f64::from(t.millicelsius) / 1000.0;
        let (name, source) = match t.source() {
            TemperatureSource::ThermalZone => {
                (t.chip_name.clone(), format!("thermal_zone{}", t.device))
            }
            _ => {
                let label = if t.label.is_empty() {
                    t.sensor.clone()
                } else {
                    t.label.clone()
                };
                (
                    format!("{} {label}", t.chip_name),
                    format!("hwmon {} {}", t.device, t.sensor),
                )
            }
        };
        let (temp, role) = if t.is_cpu {
            (
                style.paint(temperature_level(celsius), &format!("{celsius:.1} °C")),
                "CPU",
            )
        } else {
            (format!("{celsius:.1} °C"), "")
        };
        table.row(vec![format!("  {name}"), source, temp, role.to_owned()]);
    }
    if !sample.temperatures.is_empty() {
        // The table's header line is bold already; indent it like a field.
        out.push_str(&table.render(style));
    }
}

/// The firmware's throttle flags, now and since boot, in words.
fn throttling_section(out: &mut String, sample: &Sample, style: Style) {
    if let Some(t) = &sample.throttling {
        let _ = writeln!(
            out,
            "{} (firmware get_throttled 0x{:x})",
            style.bold("Throttling"),
            t.get_throttled
        );
        let flags = meaningful_flags(t);
        let word = t.get_throttled;
        let now: Vec<&str> = flags
            .iter()
            .filter(|f| word & f.bit != 0)
            .map(|f| flag_meaning(*f))
            .collect();
        let past: Vec<&str> = flags
            .iter()
            .filter(|f| word & (f.bit << throttle::OCCURRED_SHIFT) != 0)
            .map(|f| flag_meaning(*f))
            .collect();
        let level = throttle_level(word);
        let now_text = if now.is_empty() {
            "none".to_owned()
        } else {
            now.join(", ")
        };
        field(out, "now", &style.paint(level, &now_text));
        let past_text = if past.is_empty() {
            "none".to_owned()
        } else {
            past.join(", ")
        };
        field(out, "since boot", &past_text);
        if flags.len() == 1 {
            field(
                out,
                "note",
                "only the rpi_volt under-voltage alarm is readable (add the agent to group video for the rest)",
            );
        }
    }
}

/// Usage, per core with its frequency.
fn cpu_section(out: &mut String, sample: &Sample, style: Style) {
    if let Some(cpu) = &sample.cpu {
        heading(out, style, "CPU");
        let mut usage = format!("{:.1} % of {} CPUs", cpu.usage_percent, cpu.logical_cpus);
        if cpu.measured_arm_clock_hertz > 0 {
            let _ = write!(
                usage,
                ", ARM clock {} (measured by firmware)",
                format_hertz(cpu.measured_arm_clock_hertz as f64)
            );
        }
        field(out, "usage", &usage);
        for core in &cpu.cores {
            let mut line = format!("{:5.1} %", core.usage_percent);
            if core.frequency_hertz > 0 {
                let _ = write!(line, "  {}", format_hertz(core.frequency_hertz as f64));
            }
            field(out, &format!("cpu{}", core.id), &line);
        }
    }
}

/// Used, available and swap.
fn memory_section(out: &mut String, sample: &Sample, style: Style) {
    if let Some(m) = &sample.memory {
        heading(out, style, "Memory");
        let ratio = memory_used_ratio(m).unwrap_or(0.0);
        let level = if ratio >= MEMORY_WARNING_RATIO {
            Level::Warning
        } else {
            Level::Normal
        };
        field(
            out,
            "used",
            &style.paint(
                level,
                &format!(
                    "{} ({:.0} %; total minus available)",
                    format_bytes_of(memory_used_bytes(m), m.total_bytes),
                    ratio * 100.0
                ),
            ),
        );
        field(
            out,
            "available",
            &format!(
                "{}, free {}, buffers {}, cached {}",
                format_bytes(m.available_bytes as f64),
                format_bytes(m.free_bytes as f64),
                format_bytes(m.buffers_bytes as f64),
                format_bytes(m.cached_bytes as f64)
            ),
        );
        let swap = if m.swap_total_bytes == 0 {
            "none".to_owned()
        } else {
            format!(
                "{} used",
                format_bytes_of(
                    m.swap_total_bytes.saturating_sub(m.swap_free_bytes),
                    m.swap_total_bytes
                )
            )
        };
        field(out, "swap", &swap);
    }
}

/// Load averages.
fn load_section(out: &mut String, sample: &Sample, style: Style) {
    if let Some(load) = &sample.load {
        heading(out, style, "Load");
        field(
            out,
            "1/5/15 min",
            &format!("{:.2} {:.2} {:.2}", load.load1, load.load5, load.load15),
        );
    }
}

/// Pressure stall averages, where the kernel has PSI.
fn pressure_section(out: &mut String, sample: &Sample, style: Style) {
    if let Some(p) = &sample.pressure {
        heading(
            out,
            style,
            "Pressure (share of time stalled, avg 10s/60s/300s)",
        );
        let lines: [(&str, &Option<PressureLine>); 5] = [
            ("cpu some", &p.cpu_some),
            ("memory some", &p.memory_some),
            ("memory full", &p.memory_full),
            ("io some", &p.io_some),
            ("io full", &p.io_full),
        ];
        for (name, line) in lines {
            if let Some(l) = line {
                field(
                    out,
                    name,
                    &format!(
                        "{:.2} % {:.2} % {:.2} %",
                        l.avg10_percent, l.avg60_percent, l.avg300_percent
                    ),
                );
            }
        }
    }
}

/// The root filesystem's use.
fn filesystem_section(out: &mut String, sample: &Sample, style: Style) {
    if let Some(fs) = &sample.root_filesystem {
        heading(out, style, &format!("Filesystem {}", fs.mountpoint));
        let used = fs.size_bytes.saturating_sub(fs.free_bytes);
        let share = if fs.size_bytes > 0 {
            used as f64 / fs.size_bytes as f64 * 100.0
        } else {
            0.0
        };
        field(
            out,
            "used",
            &format!("{} ({share:.0} %)", format_bytes_of(used, fs.size_bytes)),
        );
        field(
            out,
            "available",
            &format!("{} to users", format_bytes(fs.available_bytes as f64)),
        );
    }
}

/// Uptime, and the sample's age and sequence number.
fn uptime_section(out: &mut String, sample: &Sample, now_ms: i64, style: Style) {
    heading(out, style, "Uptime");
    field(out, "since boot", &format_uptime(sample.uptime_seconds));
    field(
        out,
        "sample taken",
        &format!(
            "{} (#{})",
            format_ago(sample.timestamp_ms, now_ms),
            sample.seq
        ),
    );
}

/// The UPS this node reads, if any.
fn ups_section(out: &mut String, sample: &Sample, style: Style) {
    if !sample.ups.is_empty() {
        heading(out, style, "UPS read by this node");
        for ups in &sample.ups {
            out.push_str(&render_ups_summary(ups, style));
        }
    }
}
