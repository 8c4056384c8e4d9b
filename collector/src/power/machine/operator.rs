//! What the operator decides over the sequence: whether it may start at all
//! (armed, or only observing what it would do), and holding a running one
//! before the point of no return (a generator kicked in, a planned outage)
//! until `resume`, mains, or the battery's reserve ends the hold.

use serde::{Deserialize, Serialize};

use super::{Action, Machine, NoticeKind, Phase, fmt_ms};

/// A hold on the sequence, as `nodewarden power hold` left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorHold {
    /// Who asked (user name from the admin socket).
    pub by: String,
    /// When (machine ms).
    pub since_ms: i64,
}

impl Machine {
    /// Starts the sequence for `reason` if the domain is armed and not held;
    /// an unarmed one says once per outage what it would do. True if it
    /// started.
    pub(super) fn try_start(&mut self, now_ms: i64, reason: String, out: &mut Vec<Action>) -> bool {
        if self.hold.is_some() {
            return false;
        }
        if !self.spec.settings.armed && !self.dry_run {
            if !self.observed {
                self.observed = true;
                self.notify(
                    now_ms,
                    out,
                    NoticeKind::WouldStart,
                    None,
                    format!(
                        "observing (not armed): would start the sequence now: {reason}; run `nodewarden power arm` to let it"
                    ),
                );
            }
            return false;
        }
        self.start(now_ms, reason, out);
        true
    }

    /// Why the sequence cannot be held now, if it cannot.
    pub fn hold_refusal(&self) -> Option<String> {
        if let Some(h) = &self.hold {
            return Some(format!("already held by {}", h.by));
        }
        if self.point_of_no_return {
            return Some(
                "past the point of no return: nodes are already powered off, and only the UPS cycle brings them back when mains returns, so the sequence must finish".into(),
            );
        }
        match self.phase {
            Phase::OnBattery | Phase::Cordoning | Phase::Draining => None,
            Phase::OnMains => Some("nothing to hold: the UPS is on mains".into()),
            Phase::PoweringOff | Phase::UpsCycle | Phase::AwaitingReturn => Some(
                "past the point of no return: the poweroffs have begun, so the sequence must finish".into(),
            ),
            Phase::Recovering | Phase::Cancelling => {
                Some("nothing to hold: the sequence is already being undone".into())
            }
        }
    }

    /// Holds the sequence where it is: drains stop (the orchestrator ends
    /// them), nothing more starts.
    pub(super) fn hold(&mut self, now_ms: i64, by: String, out: &mut Vec<Action>) {
        if self.hold_refusal().is_some() {
            return;
        }
        let reserve = fmt_ms(self.budget().reserve_ms);
        self.hold = Some(OperatorHold {
            by: by.clone(),
            since_ms: now_ms,
        });
        self.notify(
            now_ms,
            out,
            NoticeKind::Held,
            None,
            format!(
                "held by {by} during {}: no drain or poweroff until `nodewarden power resume`, mains returns, or the battery is down to the {reserve} the last stages need",
                self.phase.as_str()
            ),
        );
    }

    /// Ends a hold and carries on from where it stopped.
    pub(super) fn resume_hold(&mut self, now_ms: i64, why: String, out: &mut Vec<Action>) {
        if self.hold.take().is_none() {
            return;
        }
        self.notify(now_ms, out, NoticeKind::Resumed, None, why);
        if self.phase == Phase::Draining {
            // The drains were stopped: start them again with a new deadline.
            let nodes = self.still_draining();
            let deadline_ms = self.drain_deadline(now_ms);
            self.deadline_ms = Some(deadline_ms);
            if !nodes.is_empty() {
                self.note(
                    now_ms,
                    format!(
                        "draining {} again (at most {})",
                        nodes.join(", "),
                        fmt_ms(deadline_ms - now_ms)
                    ),
                );
                out.push(Action::Drain { nodes, deadline_ms });
            }
        }
    }

    /// While held: false (wait), unless the battery is down to what the
    /// stages after the drain need, which ends the hold. A hold must not
    /// outlast the battery: the nodes would then die mid-write.
    pub(super) fn advance_held(&mut self, now_ms: i64, out: &mut Vec<Action>) -> bool {
        let reserve_ms = self.budget().reserve_ms;
        let Some(obs) = self.ups.as_ref() else {
            return false;
        };
        let low = obs.low_battery || obs.runtime_ms.is_some_and(|r| r <= reserve_ms);
        if !low {
            return false;
        }
        let why = format!(
            "hold ended: the battery is down to the {} the last stages need; carrying on",
            fmt_ms(reserve_ms)
        );
        self.resume_hold(now_ms, why, out);
        true
    }
}
