//! The UPS cycle: shutdown-with-return sent to the owner, tried again while
//! it fails, and the gate after the last try. With mains present a UPS that
//! did not cycle never drops its output, so every halted node would stay off:
//! the stages from the UPS command on are held running and a person is told,
//! and the cycle is tried again while the event waits for mains.

use super::{
    Action, Answer, AppliedDelays, HELD_RETRY_MAX_MS, Machine, NoticeKind, Phase, PowerState,
    TIMED_OUT, UpsObservation, fmt_ms,
};

impl Machine {
    /// Tells the UPS owner to cycle the UPS before the last stages go down.
    pub(super) fn start_ups_cycle(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        self.enter(Phase::UpsCycle, now_ms);
        if self.owner_connected() {
            self.send_ups_attempt(now_ms, out);
            return;
        }
        let text = format!(
            "UPS owner {} is not connected: cannot cycle UPS {}; its agent's standalone mode must",
            self.spec.owner, self.spec.ups
        );
        self.ups_command = PowerState::Failed("owner not connected".into());
        self.ups_gave_up(now_ms, text, out);
    }

    pub(super) fn owner_connected(&self) -> bool {
        self.connected
            .get(&self.spec.owner)
            .copied()
            .unwrap_or(false)
    }

    /// The latest UPS reading says mains is present.
    pub(super) fn mains_present(&self) -> bool {
        self.ups.as_ref().is_some_and(UpsObservation::on_mains)
    }

    /// Sends the next try at the UPS command, with an id of its own.
    pub(super) fn send_ups_attempt(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        self.ups_attempts += 1;
        self.ups_retry_at_ms = None;
        self.ups_command = PowerState::Sent { at_ms: now_ms };
        self.deadline_ms = Some(now_ms + self.spec.settings.agent_confirm_timeout_ms);
        self.point_of_no_return = true;
        let s = &self.spec.settings;
        let mut text = format!(
            "telling {} to cycle UPS {} (off in {}, back {} after mains returns)",
            self.spec.owner,
            self.spec.ups,
            fmt_ms(s.ups_off_delay_ms),
            fmt_ms(s.ups_restore_delay_ms)
        );
        if self.ups_attempts > 1 {
            text.push_str(&format!("; try {}", self.ups_attempts));
        }
        self.note(now_ms, text);
        out.push(self.ups_action());
    }

    /// An answer from the owner to one of this event's tries, if it is one.
    /// A late yes to an earlier try still counts: the UPS took it.
    pub(super) fn on_ups_answer(
        &mut self,
        now_ms: i64,
        command_id: u64,
        answer: &Answer,
        out: &mut Vec<Action>,
    ) -> bool {
        if (1..=self.ups_attempts).any(|a| self.ups_cancel_id(a) == command_id) {
            self.ups_cancel_until_ms = None;
            let verb = if answer.ok {
                "cancelled"
            } else {
                "could not cancel"
            };
            let text = format!(
                "UPS {}: {verb} the shutdown: {}",
                self.spec.ups, answer.message
            );
            self.note(now_ms, text);
            return true;
        }
        let Some(attempt) = (1..=self.ups_attempts).find(|a| self.ups_attempt_id(*a) == command_id)
        else {
            return false;
        };
        let ups = self.spec.ups.clone();
        let owner = self.spec.owner.clone();
        let message = answer.message.clone();
        let ok = answer.ok;
        if ok
            && self.ups_command != PowerState::Confirmed
            && let Some(off_s) = self.off_delay_too_short(&answer.applied)
        {
            self.cancel_short_cycle(now_ms, attempt, off_s, out);
            return true;
        }
        if ok && self.ups_command != PowerState::Confirmed {
            self.ups_command = PowerState::Confirmed;
            self.ups_retry_at_ms = None;
            self.notify(
                now_ms,
                out,
                NoticeKind::UpsCycle,
                Some(&owner),
                format!("UPS {ups} accepted shutdown-with-return: {message}"),
            );
        } else if !ok
            && attempt == self.ups_attempts
            && matches!(self.ups_command, PowerState::Sent { .. })
        {
            let what = format!("UPS {ups} shutdown-with-return failed: {message}");
            self.ups_attempt_failed(now_ms, message, what, out);
        }
        true
    }

    /// The off delay the UPS took, when it is shorter than what the stages
    /// after the UPS command need (a drill's dry run takes nothing).
    fn off_delay_too_short(&self, applied: &AppliedDelays) -> Option<u32> {
        let off_s = applied.off_delay_s?;
        (!self.dry_run && i64::from(off_s) * 1000 < self.ups_off_need_ms()).then_some(off_s)
    }

    /// The UPS took the cycle with an off delay that would cut the last
    /// nodes mid-halt (a NUT driver that kept its own, a unit that counts
    /// differently): cancel it and fall back as for a refused cycle. Trying
    /// again would get the same delay.
    fn cancel_short_cycle(&mut self, now_ms: i64, attempt: u32, off_s: u32, out: &mut Vec<Action>) {
        out.push(Action::UpsCancelShutdown {
            owner: self.spec.owner.clone(),
            ups: self.spec.ups.clone(),
            command_id: self.ups_cancel_id(attempt),
        });
        self.ups_delay_too_short = true;
        self.ups_cancel_until_ms = Some(now_ms + self.spec.settings.agent_confirm_timeout_ms);
        self.ups_command = PowerState::Failed(format!("off delay {off_s} s too short"));
        self.deadline_ms = None;
        let what = format!(
            "UPS {} took shutdown-with-return but will cut its output after {off_s} s, and the nodes still to go down need {} ({}): cancelling it; set the UPS's own delay (ups.delay.shutdown) or shorten the last stages",
            self.spec.ups,
            fmt_ms(self.ups_off_need_ms()),
            self.ups_off_need_text()
        );
        self.ups_gave_up(now_ms, what, out);
    }

    /// One try failed (`why` for the state, `what` for people): try again if
    /// tries, the owner and the battery allow, else give up.
    pub(super) fn ups_attempt_failed(
        &mut self,
        now_ms: i64,
        why: String,
        what: String,
        out: &mut Vec<Action>,
    ) {
        self.ups_command = PowerState::Failed(why);
        self.deadline_ms = None;
        if self.phase == Phase::AwaitingReturn {
            let wait = self.held_retry_wait();
            self.ups_retry_at_ms = Some(now_ms + wait);
            self.note(now_ms, format!("{what}; trying again in {}", fmt_ms(wait)));
            return;
        }
        let s = &self.spec.settings;
        let tries = s.ups_command_attempts.max(1);
        let retry = s.ups_command_retry_ms;
        if self.ups_attempts < tries && self.owner_connected() && self.battery_allows(retry) {
            self.ups_retry_at_ms = Some(now_ms + retry);
            let text = format!(
                "{what} (try {} of {tries}); trying again in {}",
                self.ups_attempts,
                fmt_ms(retry)
            );
            self.note(now_ms, text);
            return;
        }
        self.ups_gave_up(now_ms, what, out);
    }

    /// Whether the battery lasts `extra_ms` more on top of what the stages
    /// still to come need; with mains present or no runtime known, yes.
    pub(super) fn battery_allows(&self, extra_ms: i64) -> bool {
        if self.mains_present() {
            return true;
        }
        let Some(runtime) = self.ups.as_ref().and_then(|u| u.runtime_ms) else {
            return true;
        };
        runtime >= extra_ms + self.remaining_need_ms()
    }

    /// No more tries. On battery (or in a drill) the sequence carries on: the
    /// battery will cut the output. With mains present the last stages are
    /// held and a person is told which nodes need a power cycle.
    fn ups_gave_up(&mut self, now_ms: i64, what: String, out: &mut Vec<Action>) {
        self.ups_retry_at_ms = None;
        let owner = self.spec.owner.clone();
        if self.dry_run || !self.mains_present() {
            self.notify(
                now_ms,
                out,
                NoticeKind::UpsCycleFailed,
                Some(&owner),
                format!("{what}; carrying on"),
            );
            return;
        }
        let held: Vec<String> = self
            .stages
            .iter()
            .skip(self.ups_stage())
            .flat_map(|s| s.nodes.iter().cloned())
            .collect();
        let keep = if held.is_empty() {
            String::new()
        } else {
            format!(": keeping {} running", held.join(", "))
        };
        self.notify(
            now_ms,
            out,
            NoticeKind::UpsCycleFailed,
            Some(&owner),
            format!("{what}; mains is present, so the UPS output will not drop{keep}"),
        );
        let off = self.powered_off();
        let text = format!(
            "manual power cycle needed: {} (powered off, and the UPS did not cycle its output; they stay off until someone power-cycles them)",
            if off.is_empty() {
                "no node yet".to_string()
            } else {
                off.join(", ")
            }
        );
        self.notify(now_ms, out, NoticeKind::ManualPowerCycleNeeded, None, text);
        self.held = true;
        self.enter(Phase::AwaitingReturn, now_ms);
        self.ups_retry_at_ms = Some(now_ms + self.held_retry_wait());
    }

    /// Nodes told to power off that took it (or were not heard of again).
    pub(super) fn powered_off(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, p)| match &p.power {
                PowerState::Sent { .. } | PowerState::Confirmed | PowerState::Gone => true,
                PowerState::Failed(why) => why == TIMED_OUT,
                PowerState::Waiting | PowerState::NotConnected => false,
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Waits between tries at a held cycle double from the retry interval,
    /// up to a bound.
    fn held_retry_wait(&self) -> i64 {
        let s = &self.spec.settings;
        let extra = self
            .ups_attempts
            .saturating_sub(s.ups_command_attempts)
            .min(16);
        (s.ups_command_retry_ms.max(1000) << extra).min(HELD_RETRY_MAX_MS)
    }

    /// The UPS command is still the current step of `UpsCycle`: the stage
    /// it comes before has not been sent.
    pub(super) fn awaiting_ups(&self) -> bool {
        self.stage == self.ups_stage()
            && self.stages.get(self.stage).is_none_or(|s| {
                s.nodes.iter().all(|n| {
                    self.nodes
                        .get(n)
                        .is_some_and(|p| p.power == PowerState::Waiting)
                })
            })
    }

    /// `UpsCycle` before the last stages: the answer, a retry, or on.
    pub(super) fn advance_ups_command(&mut self, now_ms: i64, out: &mut Vec<Action>) -> bool {
        // The owner waits for the cancel of a too-short cycle to land.
        if let Some(until) = self.ups_cancel_until_ms {
            if now_ms < until {
                return false;
            }
            self.ups_cancel_until_ms = None;
        }
        match &self.ups_command {
            PowerState::Sent { .. } => {
                if !self.timed_out(now_ms) {
                    return false;
                }
                let what = format!(
                    "UPS owner {} did not answer the UPS command",
                    self.spec.owner
                );
                self.ups_attempt_failed(now_ms, "no answer".into(), what, out);
                true
            }
            PowerState::Failed(_) if self.ups_retry_at_ms.is_some() => {
                if self.ups_retry_at_ms.is_some_and(|r| now_ms < r) {
                    return false;
                }
                if self.owner_connected() {
                    self.send_ups_attempt(now_ms, out);
                } else {
                    let what = format!(
                        "UPS owner {} left before the next try at the UPS command",
                        self.spec.owner
                    );
                    self.ups_gave_up(now_ms, what, out);
                }
                true
            }
            _ => {
                // Answered (or given up on battery): now the last nodes.
                self.start_stage(now_ms, out);
                true
            }
        }
    }

    /// `AwaitingReturn` while the cycle is owed: the UPS never confirmed and
    /// its owner was kept running. Tries again while mains is present; once
    /// the UPS takes it, the held nodes go down and it brings everything back.
    /// True when the phase moved on.
    pub(super) fn advance_held_cycle(&mut self, now_ms: i64, out: &mut Vec<Action>) -> bool {
        if !self.cycle_owed() {
            return false;
        }
        if self.ups_command == PowerState::Confirmed {
            self.held = false;
            self.note(
                now_ms,
                "the UPS took the cycle: powering off the nodes kept running",
            );
            self.stage = self.ups_stage();
            self.start_stage(now_ms, out);
            return true;
        }
        if matches!(self.ups_command, PowerState::Sent { .. }) {
            if self.timed_out(now_ms) {
                let what = format!(
                    "UPS owner {} did not answer the UPS command",
                    self.spec.owner
                );
                self.ups_attempt_failed(now_ms, "no answer".into(), what, out);
            }
            return false;
        }
        let due = self.ups_retry_at_ms.is_none_or(|r| now_ms >= r);
        if due && self.mains_present() && self.owner_connected() && !self.ups_delay_too_short {
            self.send_ups_attempt(now_ms, out);
        }
        false
    }

    /// The cycle is still owed: the last stages are held for it. (An owner
    /// that was told to go down and did not is not cycled: the UPS would cut
    /// it mid-run.)
    fn cycle_owed(&self) -> bool {
        self.phase == Phase::AwaitingReturn && self.held && !self.dry_run && self.event_id != 0
    }

    /// The UPS owner's agent reports what its standalone mode did while the
    /// collector could not reach it. If it cycled the UPS, the output will
    /// be cut: the sequence starts (or hurries) and the UPS is not told
    /// again; the owner is already going down.
    pub(super) fn on_standalone(
        &mut self,
        now_ms: i64,
        node: String,
        ups_cycled: bool,
        message: String,
        out: &mut Vec<Action>,
    ) {
        if node != self.spec.owner {
            return;
        }
        let text = format!(
            "UPS host {node} acted alone while the collector could not reach it: {message}"
        );
        self.notify(now_ms, out, NoticeKind::StandaloneActed, Some(&node), text);
        if !ups_cycled || self.dry_run {
            return;
        }
        if matches!(self.phase, Phase::OnMains | Phase::OnBattery) {
            // Standalone mode acts only on battery: this is the outage, even
            // if its reading (pushed on the same reconnect) is not here yet.
            self.on_battery_since_ms.get_or_insert(now_ms);
            let reason = format!(
                "UPS host {node} cycled UPS {} in standalone mode: its output will be cut",
                self.spec.ups
            );
            self.start(now_ms, reason, out);
        }
        // A second command would only restart the UPS's countdown, or fail.
        self.ups_command = PowerState::Confirmed;
        self.ups_retry_at_ms = None;
        self.point_of_no_return = true;
        self.note(
            now_ms,
            format!(
                "UPS {} is already cycling (its host did it in standalone mode): it will not be told again",
                self.spec.ups
            ),
        );
        if self.phase == Phase::Draining && self.deadline_ms.is_none_or(|d| d > now_ms) {
            self.deadline_ms = Some(now_ms);
            self.note(now_ms, "the UPS will cut its output: ending the drain now");
        }
    }
}
