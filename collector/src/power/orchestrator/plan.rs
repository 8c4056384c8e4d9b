//! `nodewarden plan`: what would happen if power failed now, with the pods a
//! drain would evict and what stands in the way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nodewarden_common::units::format_duration;
use nodewarden_common::ups::delays;

use super::runner::Runner;
use super::{API_CALL_TIMEOUT, DomainPlan, PlanReport, UpsDelaysPlan};
use crate::power::config::PowerConfig;
use crate::power::machine::Machine;
use crate::power::ports::{AgentPort, ClusterPort, LivePort, StorePort};
use crate::state::nut_hosts::is_nut_host;

impl<C: ClusterPort, A: AgentPort, L: LivePort, S: StorePort> Runner<C, A, L, S> {
    /// The machines a plan is made from.
    pub(super) fn plan_base(&self) -> Vec<Machine> {
        self.machines.values().cloned().collect()
    }
}

/// Completes the plan of `machines` with the cluster's drain plan;
/// `can_power_off` is logind's answer per node, as its agent reported it.
pub(super) async fn finish_plan<C: ClusterPort>(
    machines: Vec<Machine>,
    cluster: Arc<C>,
    config: PowerConfig,
    can_power_off: BTreeMap<String, String>,
) -> PlanReport {
    let mut domains = Vec::new();
    for m in machines {
        let stages = m.preview_stages();
        let budget = m.budget();
        let k8s: Vec<String> = m
            .members
            .iter()
            .filter(|x| x.role.in_cluster())
            .map(|x| x.name.clone())
            .collect();
        let (drain, drain_error) = if k8s.is_empty() {
            (Vec::new(), None)
        } else {
            match tokio::time::timeout(API_CALL_TIMEOUT, cluster.drain_plan(&k8s)).await {
                Ok(Ok(p)) => (p, None),
                Ok(Err(e)) => (Vec::new(), Some(e.to_string())),
                Err(_) => (Vec::new(), Some("the Kubernetes API did not answer".into())),
            }
        };
        let s = &m.spec.settings;
        let longest_grace = drain
            .iter()
            .flat_map(|n| n.pods.iter().map(|p| i64::from(p.grace_seconds) * 1000))
            .max()
            .unwrap_or(0);
        let drain_estimate_ms = if drain_error.is_some() {
            s.drain_timeout_ms
        } else {
            longest_grace.min(s.drain_timeout_ms)
        };
        // Everything after the drain, as the sequence itself counts it.
        let total_estimate_ms = drain_estimate_ms + budget.reserve_ms;
        let runtime_ms = m.ups.as_ref().and_then(|u| u.runtime_ms);
        let mut warnings = Vec::new();
        if m.spec.owner.is_empty() {
            warnings.push(NO_UPS.to_string());
        }
        if let Some(r) = runtime_ms
            && r < total_estimate_ms
        {
            warnings.push(format!(
                "runtime left {} is less than the estimated sequence {}",
                nodewarden_common::units::format_duration(Duration::from_millis(r.max(0) as u64)),
                nodewarden_common::units::format_duration(Duration::from_millis(
                    total_estimate_ms as u64
                ))
            ));
        }
        for n in &drain {
            for p in n.pods.iter().filter(|p| p.blocked_by.is_some()) {
                warnings.push(format!(
                    "{}/{} on {} is blocked by PodDisruptionBudget {}: the drain will wait for it until its timeout",
                    p.namespace,
                    p.name,
                    n.node,
                    p.blocked_by.as_deref().unwrap_or("")
                ));
            }
        }
        for x in &m.members {
            if !m.connected.get(&x.name).copied().unwrap_or(false) && is_nut_host(&x.name) {
                warnings.push(format!(
                    "{}: NUT client logged out; skipped: offline (no FSD is raised for it)",
                    x.name
                ));
            } else if !m.connected.get(&x.name).copied().unwrap_or(false) {
                warnings.push(format!(
                    "{}: agent not connected; skipped: offline (not cordoned, drained or waited for, and it cannot be powered off)",
                    x.name
                ));
            }
        }
        for x in &m.members {
            if let Some(answer) = can_power_off.get(&x.name)
                && !matches!(answer.as_str(), "yes" | "custom" | "")
            {
                warnings.push(format!(
                    "{}: logind's CanPowerOff is \"{answer}\": its agent cannot power it off; install the polkit rule the agent package ships (see docs/install.md)",
                    x.name
                ));
            }
        }
        let ups_delays = ups_delays(&m);
        warnings.extend(off_delay_error(&m.spec.ups, &ups_delays));
        warnings.extend(restore_delay_warning(&m.spec.ups, &ups_delays));
        if let Err(e) = m.spec.validate(&m.members) {
            warnings.push(e.to_string());
        }
        if drain_error.is_some() && !k8s.is_empty() {
            warnings.push(
                "roles are the last known ones (the Kubernetes API did not answer): check them above"
                    .to_string(),
            );
        }

        let errors = arm_errors(&m);
        domains.push(DomainPlan {
            domain: m.spec.name.clone(),
            ups: m.spec.ups.clone(),
            owner: m.spec.owner.clone(),
            runtime_ms,
            members: m.members.clone(),
            stages,
            drain,
            drain_error,
            drain_estimate_ms,
            total_estimate_ms,
            warnings,
            budget,
            ups_delays,
            errors,
        });
    }
    PlanReport {
        domains,
        warnings: config.warnings(),
    }
}

/// The domain's UPS delays: configured, and as its driver applies them.
fn ups_delays(m: &Machine) -> UpsDelaysPlan {
    let s = &m.spec.settings;
    let driver = m.ups.as_ref().map(|u| u.driver.clone()).unwrap_or_default();
    let secs = |ms: i64| u32::try_from(ms.max(0) / 1000).unwrap_or(u32::MAX);
    let effective = delays::effective(
        &driver,
        secs(s.ups_off_delay_ms),
        secs(s.ups_restore_delay_ms),
    );
    UpsDelaysPlan {
        configured_off_ms: s.ups_off_delay_ms,
        configured_restore_ms: s.ups_restore_delay_ms,
        effective_off_ms: effective.map(|d| i64::from(d.off_s) * 1000),
        effective_restore_ms: effective.map(|d| i64::from(d.restore_s) * 1000),
        driver,
        off_need_ms: m.ups_off_need_ms(),
    }
}

const NO_UPS: &str = "no UPS reported yet: no agent reads a UPS for this domain";

fn fmt(ms: i64) -> String {
    format_duration(Duration::from_millis(ms.max(0) as u64))
}

/// The plan's problems that refuse `nodewarden power arm` (each is also
/// among the warnings): a domain with no UPS, one that does not hold
/// together (the collector's node unknown), and a UPS cycle too short for
/// the stages after it. The rest are warnings an operator may accept.
pub(super) fn arm_errors(m: &Machine) -> Vec<String> {
    let mut errors = Vec::new();
    if m.spec.owner.is_empty() {
        errors.push(NO_UPS.to_string());
    }
    errors.extend(off_delay_error(&m.spec.ups, &ups_delays(m)));
    if let Err(e) = m.spec.validate(&m.members) {
        errors.push(e.to_string());
    }
    errors
}

/// The UPS would cut its output before the stages after the cycle are
/// down, judged by what it will really apply where that is known.
fn off_delay_error(ups: &str, d: &UpsDelaysPlan) -> Option<String> {
    let off = d.effective_off_ms.unwrap_or(d.configured_off_ms);
    (off < d.off_need_ms).then(|| format!(
        "UPS {ups} would cut its output {} after the cycle command, but the stages after it need {}: raise power.ups_off_delay, or the cycle is cancelled and the last nodes are kept up",
        fmt(off),
        fmt(d.off_need_ms)
    ))
}

/// A Megatec restore delay some firmware does not come back from.
fn restore_delay_warning(ups: &str, d: &UpsDelaysPlan) -> Option<String> {
    if d.driver == "megatec"
        && let Some(restore) = d.effective_restore_ms
        && restore < i64::from(delays::MEGATEC_RESTORE_SAFE_S) * 1000
    {
        return Some(format!(
            "UPS {ups}: a restore delay of {} is under 3 minutes, after which some Megatec firmware stays off (NUT's nutdrv_qx documentation warns of it); set power.ups_restore_delay to 3m or more",
            fmt(restore)
        ));
    }
    None
}
