//! Moving the sequence on: one method per phase, each deciding whether its
//! phase is complete (or timed out) and, if so, what comes next.

use super::{
    Action, CORDON_TIMEOUT_MS, CordonState, Machine, NoticeKind, Phase, UpsObservation,
    WAKE_INTERVAL_MS, WAKE_ROUNDS, fmt_ms,
};
use crate::power::wake;

impl Machine {
    /// Moves on when the current phase is complete or timed out.
    pub(super) fn advance(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        // Bounded: each pass either moves to a later phase/stage or stops.
        for _ in 0..64 {
            if !self.advance_once(now_ms, out) {
                return;
            }
        }
    }

    /// One move; false when the current phase must wait.
    fn advance_once(&mut self, now_ms: i64, out: &mut Vec<Action>) -> bool {
        if self.hold.is_some() {
            return self.advance_held(now_ms, out);
        }
        if self.new_outage()
            && let Some(reason) = self.trigger(now_ms)
        {
            let during = self.phase.as_str();
            let reason = format!("{reason} (a new outage during {during})");
            return self.try_start(now_ms, reason, out);
        }
        match self.phase {
            Phase::OnMains => false,
            Phase::OnBattery => self.advance_on_battery(now_ms, out),
            Phase::Cordoning => self.advance_cordoning(now_ms, out),
            Phase::Draining => self.advance_draining(now_ms, out),
            Phase::PoweringOff | Phase::UpsCycle => self.advance_powering_off(now_ms, out),
            Phase::AwaitingReturn => self.advance_awaiting_return(now_ms, out),
            Phase::Recovering | Phase::Cancelling => self.advance_recovering(now_ms, out),
        }
    }

    pub(super) fn timed_out(&self, now_ms: i64) -> bool {
        self.deadline_ms.is_some_and(|d| now_ms >= d)
    }

    fn advance_on_battery(&mut self, now_ms: i64, out: &mut Vec<Action>) -> bool {
        if let Some(reason) = self.trigger(now_ms) {
            return self.try_start(now_ms, reason.to_string(), out);
        }
        false
    }

    fn advance_cordoning(&mut self, now_ms: i64, out: &mut Vec<Action>) -> bool {
        let pending = self
            .nodes
            .values()
            .any(|p| p.cordon == Some(CordonState::Pending));
        if pending && !self.timed_out(now_ms) {
            return false;
        }
        if pending {
            for p in self.nodes.values_mut() {
                if p.cordon == Some(CordonState::Pending) {
                    p.cordon = Some(CordonState::Failed(
                        "no answer from the Kubernetes API".into(),
                    ));
                }
            }
            self.note(now_ms, "cordon timed out; draining what we could cordon");
        }
        let nodes: Vec<String> = self
            .nodes
            .iter_mut()
            .filter(|(_, p)| matches!(p.cordon, Some(CordonState::Done { .. })))
            .map(|(n, p)| {
                p.draining = true;
                n.clone()
            })
            .collect();
        if self.dry_run {
            for p in self.nodes.values_mut() {
                p.draining = false;
            }
            if !nodes.is_empty() {
                self.note(now_ms, format!("drill: would drain {}", nodes.join(", ")));
            }
            self.begin_poweroff(now_ms, out);
            return true;
        }
        if nodes.is_empty() {
            self.note(
                now_ms,
                "nothing could be cordoned (is the Kubernetes API down?): skipping the drain",
            );
            self.begin_poweroff(now_ms, out);
            return true;
        }
        let deadline_ms = self.drain_deadline(now_ms);
        self.enter(Phase::Draining, now_ms);
        self.deadline_ms = Some(deadline_ms);
        self.note(
            now_ms,
            format!(
                "draining {} (at most {})",
                nodes.join(", "),
                fmt_ms(deadline_ms - now_ms)
            ),
        );
        out.push(Action::Drain { nodes, deadline_ms });
        true
    }

    fn advance_draining(&mut self, now_ms: i64, out: &mut Vec<Action>) -> bool {
        let pending = self.nodes.values().any(|p| p.draining);
        if pending && !self.timed_out(now_ms) {
            return false;
        }
        if pending {
            let left: Vec<String> = self
                .nodes
                .iter_mut()
                .filter(|(_, p)| p.draining)
                .map(|(n, p)| {
                    p.draining = false;
                    p.drain = Some(Err("drain timeout".into()));
                    n.clone()
                })
                .collect();
            self.note(
                now_ms,
                format!(
                    "drain timeout: powering off anyway ({} not drained)",
                    left.join(", ")
                ),
            );
        }
        self.begin_poweroff(now_ms, out);
        true
    }

    /// `PoweringOff` and `UpsCycle`: the UPS command's answer, then each stage.
    fn advance_powering_off(&mut self, now_ms: i64, out: &mut Vec<Action>) -> bool {
        if self.phase == Phase::UpsCycle && self.awaiting_ups() {
            return self.advance_ups_command(now_ms, out);
        }
        if !self.stage_done(now_ms) {
            return false;
        }
        if self.timed_out(now_ms) {
            self.time_out_stage(now_ms);
        }
        self.stage += 1;
        self.start_stage(now_ms, out);
        true
    }

    fn advance_awaiting_return(&mut self, now_ms: i64, out: &mut Vec<Action>) -> bool {
        if self.advance_held_cycle(now_ms, out) {
            return true;
        }
        let s = &self.spec.settings;
        let Some(since) = self.mains_since_ms else {
            return false;
        };
        if !self.ups.as_ref().is_some_and(UpsObservation::on_mains) {
            return false;
        }
        if now_ms - since < s.mains_stable_ms {
            return false;
        }
        self.wake_missing(now_ms, out);
        let s = &self.spec.settings;
        let all_back = self
            .nodes
            .iter()
            .all(|(n, p)| !p.ours_to_uncordon() || self.connected.get(n).copied().unwrap_or(false));
        if !all_back && now_ms - since < s.mains_stable_ms + s.return_timeout_ms {
            return false;
        }
        let missing: Vec<String> = self
            .nodes
            .iter()
            .filter(|(n, _)| !self.connected.get(*n).copied().unwrap_or(false))
            .map(|(n, _)| n.clone())
            .collect();
        let text = if missing.is_empty() {
            format!(
                "mains stable for {} and every node is back",
                fmt_ms(s.mains_stable_ms)
            )
        } else {
            format!(
                "mains stable for {}; still missing: {}",
                fmt_ms(s.mains_stable_ms),
                missing.join(", ")
            )
        };
        self.note(now_ms, text);
        self.enter(Phase::Recovering, now_ms);
        self.ups_retry_at_ms = None;
        self.uncordon_ours(now_ms, out);
        true
    }

    /// `Recovering` and `Cancelling`: done once every node we cordoned is
    /// uncordoned, or its tries ran out (then a person is told).
    fn advance_recovering(&mut self, now_ms: i64, out: &mut Vec<Action>) -> bool {
        if self.retry_at_ms.is_some_and(|r| now_ms >= r) {
            self.uncordon_ours(now_ms, out);
        }
        let tries = self.spec.settings.uncordon_attempts.max(1);
        let retrying = self.retry_at_ms.is_some();
        let left = self.nodes.values().any(|p| {
            p.uncordoning || (p.ours_to_uncordon() && retrying && p.uncordon_failures < tries)
        });
        let cordon_pending = self
            .nodes
            .values()
            .any(|p| p.cordon == Some(CordonState::Pending));
        if left || (cordon_pending && !timed_out_cordon(self, now_ms)) {
            return false;
        }
        let stuck: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, p)| p.ours_to_uncordon() && p.uncordon_failures >= tries)
            .map(|(n, _)| n.clone())
            .collect();
        if !stuck.is_empty() {
            let list = stuck.join(", ");
            let text = format!(
                "could not uncordon {list} after {tries} tries: they stay cordoned; run `kubectl uncordon {}` once the Kubernetes API answers",
                stuck.join(" ")
            );
            self.notify(now_ms, out, NoticeKind::UncordonFailed, None, text);
        }
        let (kind, text) = if self.phase == Phase::Cancelling {
            (
                NoticeKind::CancelDone,
                "cancelled: every node we cordoned is uncordoned",
            )
        } else if self.dry_run {
            (
                NoticeKind::DrillDone,
                "drill over: every node it cordoned is uncordoned",
            )
        } else {
            (
                NoticeKind::Recovered,
                "recovered: every node we cordoned is uncordoned",
            )
        };
        // After an uncordon_failed notice, "every node is uncordoned" would be false.
        let text = match (stuck.is_empty(), text.split_once(':')) {
            (false, Some((head, _))) => format!("{head}: still cordoned: {}", stuck.join(", ")),
            _ => text.to_string(),
        };
        self.notify(now_ms, out, kind, None, text);
        self.finish(now_ms);
        if self.ups.as_ref().is_some_and(|u| u.comm_ok && u.on_battery) {
            // Power went again while we were undoing: a new outage.
            self.on_battery_since_ms.get_or_insert(now_ms);
            self.enter(Phase::OnBattery, now_ms);
        }
        true
    }
}

/// A cordon answer that never comes does not hold the cancel forever.
fn timed_out_cordon(m: &Machine, now_ms: i64) -> bool {
    now_ms - m.phase_since_ms >= CORDON_TIMEOUT_MS
}

impl Machine {
    /// Mains is stable and nodes we powered off are not back: the ones that
    /// can be woken (a Wake-on-LAN MAC in the config) get a magic packet, a
    /// few rounds a minute apart, for boards whose firmware stays off after
    /// a power loss or that the UPS did not cycle.
    fn wake_missing(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        if self.dry_run || self.next_wake_ms.is_some_and(|t| now_ms < t) {
            return;
        }
        let off: Vec<String> = self.powered_off();
        let macs = &self.spec.settings.wake_macs;
        let mut woke = Vec::new();
        for node in off {
            let Some(mac) = macs.get(&node) else {
                continue;
            };
            let back = self.connected.get(&node).copied().unwrap_or(false);
            let Some(p) = self.nodes.get_mut(&node) else {
                continue;
            };
            if back || p.wakes_sent >= WAKE_ROUNDS {
                continue;
            }
            p.wakes_sent += 1;
            woke.push(format!("{node} ({})", wake::format_mac(mac)));
            out.push(Action::Wake { node, mac: *mac });
        }
        if woke.is_empty() {
            self.next_wake_ms = None;
            return;
        }
        self.next_wake_ms = Some(now_ms + WAKE_INTERVAL_MS);
        self.note(
            now_ms,
            format!(
                "not back with mains stable: waking {} (Wake-on-LAN)",
                woke.join(", ")
            ),
        );
    }
}
