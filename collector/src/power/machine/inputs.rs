//! What each input changes: a UPS reading, an agent coming or going, a
//! command's answer, a cordon, drain or uncordon result, and the start.

use crate::state::nut_hosts::is_nut_host;
use nodewarden_common::ups::{BatteryState, Trigger};

use super::types::{Answer, ms};
use super::{
    Action, CORDON_TIMEOUT_MS, CordonState, Machine, NoticeKind, Phase, PowerState,
    UNCORDON_RETRY_MS, UpsObservation, fmt_ms,
};

impl Machine {
    pub(super) fn on_ups(&mut self, now_ms: i64, obs: UpsObservation, out: &mut Vec<Action>) {
        self.count_doubtful(now_ms, &obs);
        let prev = self.ups.replace(obs.clone());
        if self.phase == Phase::Draining {
            self.recheck_drain(now_ms, prev.as_ref());
        }
        let was_on_battery = prev.as_ref().is_some_and(|p| p.on_battery);
        let comm_was_ok = prev.as_ref().is_none_or(|p| p.comm_ok);
        if obs.comm_ok && obs.on_battery && !was_on_battery {
            self.mains_since_ms = None;
            if self.on_battery_since_ms.is_none() {
                self.on_battery_since_ms = Some(now_ms);
            }
            let ups = self.spec.ups.clone();
            self.notify(
                now_ms,
                out,
                NoticeKind::OnBattery,
                None,
                format!("UPS {ups} is on battery"),
            );
            if self.phase == Phase::OnMains {
                self.enter(Phase::OnBattery, now_ms);
            }
        }
        if !obs.comm_ok && comm_was_ok {
            let ups = self.spec.ups.clone();
            self.notify(
                now_ms,
                out,
                NoticeKind::UpsCommLost,
                None,
                format!("lost communication with UPS {ups}"),
            );
        }
        if obs.on_mains() && self.mains_since_ms.is_none() {
            self.mains_since_ms = Some(now_ms);
            if was_on_battery || self.on_battery_since_ms.is_some() {
                let outage = self.on_battery_since_ms.map(|s| now_ms - s).unwrap_or(0);
                let ups = self.spec.ups.clone();
                self.notify(
                    now_ms,
                    out,
                    NoticeKind::MainsReturned,
                    None,
                    format!("mains returned to UPS {ups} after {}", fmt_ms(outage)),
                );
            }
            self.on_battery_since_ms = None;
            if self.hold.take().is_some() {
                self.note(now_ms, "mains returned: the hold ends");
            }
            self.on_mains_again(now_ms, out);
        }
        if !matches!(self.phase, Phase::OnMains | Phase::OnBattery) {
            return;
        }
        if let Some(reason) = self.trigger(now_ms) {
            self.try_start(now_ms, reason.to_string(), out);
        }
    }

    /// Why the sequence must start now, if it must: the shared battery rule
    /// read against the latest reading and the time on battery. An estimated
    /// charge or runtime below its floor, or a lost UPS, counts only once
    /// believed (`Debounce`); until then the grace still runs.
    pub(super) fn trigger(&self, now_ms: i64) -> Option<Trigger> {
        let obs = self.ups.as_ref()?;
        let s = &self.spec.settings;
        let n = s.estimated_confirmations;
        let lost = !obs.comm_ok
            && self
                .comm_lost
                .believed(now_ms, n, Some(s.comm_lost_window_ms));
        // A UPS pushes a level only when it changes: a low estimate that
        // holds still must be believed after a while too, not only after N
        // readings that may never come.
        let trusted = self
            .estimated_low
            .believed(now_ms, n, Some(s.comm_lost_window_ms));
        let doubtful_loss = !obs.comm_ok && !lost;
        let state = BatteryState {
            comm_ok: obs.comm_ok || doubtful_loss,
            on_battery: obs.on_battery,
            low_battery: obs.low_battery && !doubtful_loss,
            charge_percent: obs
                .charge_percent
                .filter(|_| !doubtful_loss && (trusted || !obs.charge_estimated)),
            runtime: obs
                .runtime_ms
                .filter(|_| !doubtful_loss && (trusted || !obs.runtime_estimated))
                .map(ms),
            // Before the outage began (a clock step back) counts as not yet.
            on_battery_for: self
                .on_battery_since_ms
                .filter(|since| now_ms >= *since)
                .map(|since| ms(now_ms - since)),
        };
        s.thresholds().trigger(&state)
    }

    /// Counts the readings that need confirming before they are believed.
    fn count_doubtful(&mut self, now_ms: i64, obs: &UpsObservation) {
        let s = &self.spec.settings;
        let low_estimate = obs.comm_ok
            && obs.on_battery
            && ((obs.charge_estimated
                && obs
                    .charge_percent
                    .is_some_and(|c| c <= s.min_charge_percent))
                || (obs.runtime_estimated
                    && obs.runtime_ms.is_some_and(|r| r <= s.min_runtime_ms)));
        self.estimated_low.observe(now_ms, low_estimate);
        self.comm_lost.observe(now_ms, !obs.comm_ok);
    }

    /// During the drain the battery is still read: a runtime that no longer
    /// covers what comes after the drain shortens it (to now, if it is
    /// below), and the UPS's low-battery flag or the charge floor newly
    /// reached ends it now.
    fn recheck_drain(&mut self, now_ms: i64, prev: Option<&UpsObservation>) {
        let Some(deadline) = self.deadline_ms else {
            return;
        };
        let Some(obs) = self.ups.clone() else {
            return;
        };
        if !obs.comm_ok || !obs.on_battery {
            return;
        }
        let s = &self.spec.settings;
        let trusted = self.estimated_low.believed(
            now_ms,
            s.estimated_confirmations,
            Some(s.comm_lost_window_ms),
        );
        let newly_low = obs.low_battery && !prev.is_some_and(|p| p.low_battery);
        let floor = s.min_charge_percent;
        let newly_charge = (trusted || !obs.charge_estimated)
            && obs.charge_percent.is_some_and(|c| c <= floor)
            && !prev
                .and_then(|p| p.charge_percent)
                .is_some_and(|c| c <= floor);
        let by_runtime = if trusted || !obs.runtime_estimated {
            self.drain_deadline(now_ms)
        } else {
            deadline
        };
        let (new, why) = if newly_low {
            (now_ms, "the UPS reports low battery".to_string())
        } else if newly_charge {
            (now_ms, format!("battery charge fell to {floor:.0}%"))
        } else if by_runtime < deadline {
            let left = obs.runtime_ms.unwrap_or(0);
            (
                by_runtime,
                format!("battery runtime fell to {}", fmt_ms(left)),
            )
        } else {
            return;
        };
        if new >= deadline {
            return;
        }
        self.deadline_ms = Some(new);
        let text = if new <= now_ms {
            format!("{why}: ending the drain now")
        } else {
            format!("{why}: the drain ends in {}", fmt_ms(new - now_ms))
        };
        self.note(now_ms, text);
    }

    pub(super) fn on_mains_again(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        match self.phase {
            Phase::OnBattery => {
                self.notify(
                    now_ms,
                    out,
                    NoticeKind::BriefOutage,
                    None,
                    "brief outage within the grace: nothing done".into(),
                );
                self.finish(now_ms);
            }
            // Nothing sent yet (a stage of offline nodes sends nothing): undo.
            Phase::Cordoning | Phase::Draining | Phase::PoweringOff | Phase::UpsCycle
                if !self.point_of_no_return =>
            {
                self.notify(
                    now_ms,
                    out,
                    NoticeKind::Cancelled,
                    None,
                    "mains returned before any node was powered off: cancelling, uncordoning what we cordoned".into(),
                );
                self.enter(Phase::Cancelling, now_ms);
                self.ups_retry_at_ms = None;
                for p in self.nodes.values_mut() {
                    p.draining = false;
                }
                self.uncordon_ours(now_ms, out);
            }
            Phase::PoweringOff | Phase::UpsCycle => {
                self.note(
                    now_ms,
                    "mains returned after poweroffs began: carrying on (the UPS cycle brings everything back)",
                );
            }
            _ => {}
        }
    }

    pub(super) fn start(&mut self, now_ms: i64, reason: String, out: &mut Vec<Action>) {
        // A new outage cutting an event short: what we cordoned and did not
        // uncordon yet stays ours to uncordon at the end of this one.
        let carried: Vec<String> = if self.active() {
            self.nodes
                .iter()
                .filter(|(_, p)| p.ours_to_uncordon())
                .map(|(n, _)| n.clone())
                .collect()
        } else {
            Vec::new()
        };
        self.event_outage_ms = self.on_battery_since_ms;
        self.event_id = now_ms.max(1);
        self.reason = reason.clone();
        self.timeline.retain(|_| false);
        self.point_of_no_return = false;
        self.stage = 0;
        self.ups_command = PowerState::Waiting;
        self.ups_attempts = 0;
        self.ups_retry_at_ms = None;
        self.held = false;
        self.ups_delay_too_short = false;
        self.ups_cancel_until_ms = None;
        self.next_wake_ms = None;
        self.retry_at_ms = None;
        self.nodes = self.fresh_nodes();
        for n in &carried {
            if let Some(p) = self.nodes.get_mut(n) {
                p.ours_before = true;
            }
        }
        let offline = self.mark_offline(now_ms);
        self.stages = self.plan_stages();
        let what = if self.dry_run { "drill" } else { "shutdown" };
        let summary = self
            .stages
            .iter()
            .map(|s| format!("{} [{}]", s.label, s.nodes.join(", ")))
            .collect::<Vec<_>>()
            .join(" -> ");
        self.notify(
            now_ms,
            out,
            NoticeKind::ShutdownStarted,
            None,
            format!("{what} started: {reason}; order: {summary}"),
        );
        for n in &offline {
            // Its pods cannot terminate and its agent cannot confirm.
            self.note(
                now_ms,
                if is_nut_host(n) {
                    format!(
                        "{n} skipped: offline (NUT client not logged in when the sequence started)"
                    )
                } else {
                    format!("{n} skipped: offline (agent not connected when the sequence started)")
                },
            );
        }
        if !carried.is_empty() {
            self.note(
                now_ms,
                format!(
                    "still ours to uncordon from the event this one cut short: {}",
                    carried.join(", ")
                ),
            );
        }
        let cluster: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, p)| p.role.in_cluster() && !p.skipped)
            .map(|(n, _)| n.clone())
            .collect();
        if cluster.is_empty() || (self.dry_run && !self.drill_cordon) {
            if !cluster.is_empty() {
                self.note(
                    now_ms,
                    format!("drill: would cordon and drain {}", cluster.join(", ")),
                );
            }
            self.begin_poweroff(now_ms, out);
            return;
        }
        self.enter(Phase::Cordoning, now_ms);
        self.deadline_ms = Some(now_ms + CORDON_TIMEOUT_MS);
        for n in &cluster {
            if let Some(p) = self.nodes.get_mut(n) {
                p.cordon = Some(CordonState::Pending);
            }
        }
        self.note(now_ms, format!("cordoning {}", cluster.join(", ")));
        out.push(Action::Cordon(cluster));
    }

    pub(super) fn on_cordoned(
        &mut self,
        now_ms: i64,
        node: String,
        result: Result<bool, String>,
        out: &mut Vec<Action>,
    ) {
        let phase = self.phase;
        let Some(p) = self.nodes.get_mut(&node) else {
            return;
        };
        // The first answer stands: a repeated cordon after a restart sees our own.
        if !matches!(p.cordon, Some(CordonState::Pending)) {
            return;
        }
        let text = match &result {
            Ok(false) => format!("cordoned {node}"),
            Ok(true) if p.ours_before => {
                format!("{node} is still cordoned from the event this one cut short")
            }
            Ok(true) => format!("{node} was already cordoned; it stays cordoned after recovery"),
            Err(e) => format!("cordon {node} failed: {e}; carrying on"),
        };
        p.cordon = Some(match result {
            Ok(was_cordoned) => CordonState::Done { was_cordoned },
            Err(e) => CordonState::Failed(e),
        });
        self.note(now_ms, text);
        // A cordon that lands after a cancel is undone at once.
        if phase == Phase::Cancelling
            && let Some(p) = self.nodes.get_mut(&node)
            && p.ours_to_uncordon()
            && !p.uncordoning
        {
            p.uncordoning = true;
            out.push(Action::Uncordon(vec![node]));
        }
    }

    pub(super) fn on_drained(&mut self, now_ms: i64, node: String, result: Result<String, String>) {
        let Some(p) = self.nodes.get_mut(&node) else {
            return;
        };
        if !p.draining {
            return;
        }
        p.draining = false;
        let text = match &result {
            Ok(s) => format!("drained {node}: {s}"),
            Err(e) => format!("drain {node} did not finish: {e}; carrying on"),
        };
        p.drain = Some(result);
        self.note(now_ms, text);
    }

    pub(super) fn on_uncordoned(&mut self, now_ms: i64, node: String, result: Result<(), String>) {
        let Some(p) = self.nodes.get_mut(&node) else {
            return;
        };
        if !p.uncordoning {
            return;
        }
        p.uncordoning = false;
        match result {
            Ok(()) => {
                p.uncordoned = true;
                self.note(now_ms, format!("uncordoned {node}"));
            }
            Err(e) => {
                p.uncordon_failures += 1;
                let tries = self.spec.settings.uncordon_attempts.max(1);
                let text = if p.uncordon_failures < tries {
                    self.retry_at_ms = Some(now_ms + UNCORDON_RETRY_MS);
                    format!(
                        "uncordon {node} failed: {e}; retrying in {}",
                        fmt_ms(UNCORDON_RETRY_MS)
                    )
                } else {
                    format!("uncordon {node} failed: {e}; giving up after {tries} tries")
                };
                self.note(now_ms, text);
            }
        }
    }

    pub(super) fn on_connected(&mut self, now_ms: i64, node: String, out: &mut Vec<Action>) {
        self.connected.insert(node.clone(), true);
        self.offline_since_ms.remove(&node);
        // An agent of the current stage that was not connected when the stage
        // began (a collector restart, a reconnect) still gets its command.
        let in_stage = matches!(self.phase, Phase::PoweringOff | Phase::UpsCycle)
            && self
                .stages
                .get(self.stage)
                .is_some_and(|s| s.nodes.contains(&node));
        if let Some(p) = self.nodes.get_mut(&node)
            && in_stage
            && p.power == PowerState::NotConnected
        {
            p.power = PowerState::Sent { at_ms: now_ms };
            self.point_of_no_return = true;
            self.note(
                now_ms,
                format!("{node} connected: sending its poweroff now"),
            );
            out.push(self.power_off_action(&node));
        }
    }

    pub(super) fn on_disconnected(&mut self, now_ms: i64, node: String, out: &mut Vec<Action>) {
        self.connected.insert(node.clone(), false);
        self.offline_since_ms.entry(node.clone()).or_insert(now_ms);
        if let Some(p) = self.nodes.get_mut(&node)
            && matches!(p.power, PowerState::Sent { .. } | PowerState::Confirmed)
        {
            p.power = PowerState::Gone;
            // Down by our poweroff: offline at once, not a reconnect to wait for.
            self.offline_since_ms.insert(node.clone(), i64::MIN);
            // The agent stops after k3s and the remote filesystems, so this
            // is the machine going down, not just its agent.
            let halted = p
                .halting_since_ms
                .map(|t| format!(" ({} after it began to halt)", fmt_ms(now_ms - t)))
                .unwrap_or_default();
            self.notify(
                now_ms,
                out,
                NoticeKind::NodeDown,
                Some(&node),
                format!("{node} disconnected after its poweroff command: going down{halted}"),
            );
        }
    }

    /// A node began to halt without our command (by hand, or its agent's
    /// standalone mode): noted, and its halt timed like one we ordered.
    pub(super) fn on_halting(&mut self, now_ms: i64, node: String, reason: String) {
        let active = self.active();
        let Some(p) = self.nodes.get_mut(&node) else {
            return;
        };
        if !active || p.halting_since_ms.is_some() {
            return;
        }
        p.halting_since_ms = Some(now_ms);
        self.note(now_ms, format!("{node} is halting: {reason}"));
    }

    pub(super) fn on_command_result(
        &mut self,
        now_ms: i64,
        node: String,
        command_id: u64,
        answer: Answer,
        out: &mut Vec<Action>,
    ) {
        if node == self.spec.owner && self.on_ups_answer(now_ms, command_id, &answer, out) {
            return;
        }
        let Answer { ok, message, .. } = answer;
        let expected = command_id == self.poweroff_id(&node);
        let Some(p) = self.nodes.get_mut(&node) else {
            return;
        };
        // A failure after the confirm still counts: the agent accepted, then
        // logind refused (polkit, an inhibitor lock). Without it the node
        // would hold its stage until the timeout.
        let failed_after_confirm = !ok && p.power == PowerState::Confirmed;
        if !expected || !(matches!(p.power, PowerState::Sent { .. }) || failed_after_confirm) {
            return;
        }
        if ok {
            p.power = PowerState::Confirmed;
            if !self.dry_run {
                p.halting_since_ms.get_or_insert(now_ms);
            }
            let verb = if self.dry_run {
                "would power off (dry run)"
            } else {
                "confirmed poweroff"
            };
            self.note(now_ms, format!("{node} {verb}: {message}"));
        } else {
            p.power = PowerState::Failed(message.clone());
            let what = if failed_after_confirm {
                "accepted the poweroff, then it failed"
            } else {
                "did not take the poweroff"
            };
            self.notify(
                now_ms,
                out,
                NoticeKind::PoweroffFailed,
                Some(&node),
                format!("{node} {what}: {message}; carrying on"),
            );
        }
    }
}
