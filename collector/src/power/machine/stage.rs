//! Poweroff stages as they run: the UPS command before the last stages,
//! sending one stage, deciding it is done, and giving up on it; and the
//! uncordon that ends every sequence.

use crate::state::nut_hosts::is_nut_host;

use super::{Action, Machine, NoticeKind, Phase, PowerState, TIMED_OUT, fmt_ms};

impl Machine {
    pub(super) fn uncordon_ours(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        let tries = self.spec.settings.uncordon_attempts.max(1);
        let nodes: Vec<String> = self
            .nodes
            .iter_mut()
            .filter(|(_, p)| p.ours_to_uncordon() && !p.uncordoning && p.uncordon_failures < tries)
            .map(|(n, p)| {
                p.uncordoning = true;
                n.clone()
            })
            .collect();
        self.retry_at_ms = None;
        if !nodes.is_empty() {
            self.note(now_ms, format!("uncordoning {}", nodes.join(", ")));
            out.push(Action::Uncordon(nodes));
        }
    }

    pub(super) fn begin_poweroff(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        self.stage = 0;
        self.start_stage(now_ms, out);
    }

    /// Sends the current stage (or the UPS command before the last stages).
    pub(super) fn start_stage(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        if self.stage == self.ups_stage() && self.ups_command == PowerState::Waiting {
            self.start_ups_cycle(now_ms, out);
            return;
        }
        let Some(stage) = self.stages.get(self.stage).cloned() else {
            if self.dry_run {
                // Nothing went down: undo the drill's cordons and end.
                self.note(now_ms, "drill complete: every node would now be down");
                self.enter(Phase::Recovering, now_ms);
                self.uncordon_ours(now_ms, out);
            } else {
                self.enter(Phase::AwaitingReturn, now_ms);
                self.note(
                    now_ms,
                    "every node is told to power off; waiting for mains and the nodes",
                );
            }
            return;
        };
        self.enter(
            if self.stage >= self.ups_stage() {
                Phase::UpsCycle
            } else {
                Phase::PoweringOff
            },
            now_ms,
        );
        self.deadline_ms = Some(now_ms + stage.timeout_ms);
        let mut sent = Vec::new();
        for node in &stage.nodes {
            let up = self.connected.get(node).copied().unwrap_or(false);
            let Some(p) = self.nodes.get_mut(node) else {
                continue;
            };
            if p.power != PowerState::Waiting {
                continue;
            }
            if up {
                p.power = PowerState::Sent { at_ms: now_ms };
                sent.push(node.clone());
            } else {
                p.power = PowerState::NotConnected;
                let why = if is_nut_host(node) {
                    "NUT client logged out before its step: counted as down"
                } else {
                    "agent not connected, cannot power it off"
                };
                self.note(now_ms, format!("{node}: {why}; carrying on"));
            }
        }
        if !sent.is_empty() {
            // Only a poweroff really sent makes a cancel impossible.
            self.point_of_no_return = true;
            let verb = if self.dry_run {
                "drill: asking to report poweroff of"
            } else {
                "powering off"
            };
            self.notify(
                now_ms,
                out,
                NoticeKind::PoweroffSent,
                None,
                format!("{verb} {}: {}", stage.label, sent.join(", ")),
            );
        }
        for node in sent {
            out.push(self.power_off_action(&node));
        }
        // The collector's own node is last: after it, nothing more runs here.
        let collector_stage = self
            .spec
            .collector_node
            .as_ref()
            .is_some_and(|c| stage.nodes.contains(c));
        if collector_stage && !self.dry_run {
            self.stage += 1;
            self.enter(Phase::AwaitingReturn, now_ms);
            self.note(
                now_ms,
                "the collector's own node is going down; waiting for mains and the nodes",
            );
        }
    }

    pub(super) fn stage_done(&self, now_ms: i64) -> bool {
        if self.deadline_ms.is_some_and(|d| now_ms >= d) {
            return true;
        }
        let Some(stage) = self.stages.get(self.stage) else {
            return true;
        };
        stage.nodes.iter().all(|n| {
            self.nodes.get(n).is_none_or(|p| match &p.power {
                // Seen gone: done. Not heard of since a restart: it may still
                // connect within the stage's wait.
                // Skipped (offline at the start): never waited for.
                PowerState::NotConnected => p.skipped || self.connected.get(n) == Some(&false),
                PowerState::Gone | PowerState::Failed(_) => true,
                // A drill's agents stay up: their report is the confirmation.
                PowerState::Confirmed => self.dry_run,
                _ => false,
            })
        })
    }

    pub(super) fn time_out_stage(&mut self, now_ms: i64) {
        let Some(stage) = self.stages.get(self.stage).cloned() else {
            return;
        };
        for n in &stage.nodes {
            if let Some(p) = self.nodes.get_mut(n)
                && matches!(p.power, PowerState::Sent { .. } | PowerState::Confirmed)
            {
                let confirmed = p.power == PowerState::Confirmed;
                p.power = PowerState::Failed(TIMED_OUT.into());
                let what = if confirmed {
                    "confirmed but did not disconnect"
                } else {
                    "did not confirm"
                };
                self.note(
                    now_ms,
                    format!(
                        "{n} {what} within {}; carrying on",
                        fmt_ms(stage.timeout_ms)
                    ),
                );
            }
        }
    }
}
