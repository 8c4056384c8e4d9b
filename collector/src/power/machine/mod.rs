//! The power-loss sequence of one power domain as a pure state machine.
//!
//! `Machine::step` takes one input (a UPS observation, an agent event, a
//! Kubernetes result or a tick of the clock) and the time, changes the state
//! and returns the actions to carry out. It does no I/O and never reads the
//! clock, so every path through the sequence is a unit test; the orchestrator
//! executes the actions and persists the state after every step, so a
//! collector restart resumes where it stopped (`Machine::resume`).
//!
//! `types` holds the vocabulary (inputs, actions, phases, per node progress),
//! `inputs` what each input changes, `advance` one method per phase that
//! moves the sequence on, `stage` how a poweroff stage is sent and ended,
//! `cycle` the UPS command with its retries and the hold when it fails,
//! `operator` arming (or only observing) and an operator's hold and resume,
//! `plan` the order of the poweroffs and the drain's budget, `check` the
//! checks a caller runs on a domain's description, and `persist` the
//! versioned saved form.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod advance;
mod check;
mod cycle;
mod inputs;
mod operator;
mod persist;
mod plan;
mod stage;
mod types;

pub use check::{SpecError, validate_collector_node};
pub use operator::OperatorHold;
pub use persist::{PERSISTED_VERSION, RestoreError};
pub use plan::{Budget, StageBudget};
pub use types::*;

/// Longest timeline kept per event (a flapping UPS must not grow it forever).
const TIMELINE_MAX: usize = 300;
/// How long cordoning may take before draining starts anyway.
const CORDON_TIMEOUT_MS: i64 = 15_000;
/// Wait between uncordon attempts while the API is not back yet.
const UNCORDON_RETRY_MS: i64 = 30_000;
/// Longest wait between two tries at a held UPS cycle (the waits double).
const HELD_RETRY_MAX_MS: i64 = 300_000;
/// Why a stage gave up on a node that took its poweroff and did not leave.
const TIMED_OUT: &str = "timed out";
/// `offline_after` unless configured.
pub const DEFAULT_OFFLINE_AFTER_MS: i64 = 10_000;
/// Wake-on-LAN rounds per node and event, and the wait between them.
const WAKE_ROUNDS: u32 = 3;
const WAKE_INTERVAL_MS: i64 = 60_000;

/// The whole persisted state of one domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// The domain.
    pub spec: DomainSpec,
    /// Drill: report instead of powering off; `drill_cordon` allows real cordons.
    pub dry_run: bool,
    /// In a drill, whether cordon/uncordon are real (else skipped).
    pub drill_cordon: bool,
    /// Where we are.
    pub phase: Phase,
    /// Since when (unix ms).
    pub phase_since_ms: i64,
    /// The latest UPS reading.
    pub ups: Option<UpsObservation>,
    /// When the UPS went on battery (this outage).
    pub on_battery_since_ms: Option<i64>,
    /// When mains came back (and stayed).
    pub mains_since_ms: Option<i64>,
    /// Identifies this event; seeds the command ids. 0 between events.
    pub event_id: i64,
    /// Why the sequence started.
    pub reason: String,
    /// The domain's nodes as last told (used when a sequence starts).
    pub members: Vec<Member>,
    /// Agents with an open stream.
    pub connected: BTreeMap<String, bool>,
    /// Per node progress of this event.
    pub nodes: BTreeMap<String, NodeProgress>,
    /// Poweroff stages, frozen at the start.
    pub stages: Vec<Stage>,
    /// Index of the current stage.
    pub stage: usize,
    /// The current phase gives up at this time.
    pub deadline_ms: Option<i64>,
    /// UPS command progress.
    pub ups_command: PowerState,
    /// Next uncordon retry.
    pub retry_at_ms: Option<i64>,
    /// Any poweroff was sent: cancel is no longer possible.
    pub point_of_no_return: bool,
    /// What happened in this event.
    pub timeline: Vec<TimelineEntry>,
    /// Tries at the UPS command in this event (the first uses `ups_command_id`).
    #[serde(default)]
    pub ups_attempts: u32,
    /// When the next try at the UPS command is due.
    #[serde(default)]
    pub ups_retry_at_ms: Option<i64>,
    /// The UPS could not cycle with mains present: the stages from the UPS
    /// command on are kept running until it can.
    #[serde(default)]
    pub held: bool,
    /// When the outage this event started in began (`on_battery_since_ms`
    /// then): an outage that begins later is a new one. A state saved before
    /// this field reads as `UNKNOWN_OUTAGE` until `resume` settles it.
    #[serde(default = "unknown_outage")]
    pub event_outage_ms: Option<i64>,
    /// Readings with an estimated charge or runtime below its floor.
    #[serde(default)]
    pub estimated_low: Debounce,
    /// Readings with the UPS not answering.
    #[serde(default)]
    pub comm_lost: Debounce,
    /// The UPS took the cycle with an off delay too short for the last
    /// stages (and it was cancelled): trying again would get the same one.
    #[serde(default)]
    pub ups_delay_too_short: bool,
    /// A cancel of that cycle is out: the owner is not powered off before
    /// its answer (or this time), or the UPS would cut it mid-halt.
    #[serde(default)]
    pub ups_cancel_until_ms: Option<i64>,
    /// When the next Wake-on-LAN round is due, while nodes are not back.
    #[serde(default)]
    pub next_wake_ms: Option<i64>,
    /// Since when each disconnected agent has been gone.
    #[serde(default)]
    pub offline_since_ms: BTreeMap<String, i64>,
    /// Since when this machine has been hearing the agents (its creation, or
    /// the collector's restart): an agent not heard from since is offline
    /// only once a reconnect had time to happen.
    #[serde(default)]
    pub listening_since_ms: i64,
    /// An operator's hold on the running sequence.
    #[serde(default)]
    pub hold: Option<OperatorHold>,
    /// Not armed, and this outage's "would start" already said.
    #[serde(default)]
    pub observed: bool,
}

/// `event_outage_ms` of a state saved before it existed.
const UNKNOWN_OUTAGE: i64 = i64::MIN;

fn unknown_outage() -> Option<i64> {
    Some(UNKNOWN_OUTAGE)
}

/// A command id stable for (domain, event, node, what): FNV-1a, never 0.
pub fn command_id(domain: &str, event_id: i64, node: &str, what: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        domain.as_bytes(),
        &event_id.to_le_bytes(),
        node.as_bytes(),
        what.as_bytes(),
    ] {
        for &b in part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

fn fmt_ms(ms: i64) -> String {
    nodewarden_common::units::format_duration(std::time::Duration::from_millis(ms.max(0) as u64))
}

impl Machine {
    /// A domain on mains with no event.
    pub fn new(spec: DomainSpec, now_ms: i64) -> Self {
        Machine {
            spec,
            dry_run: false,
            drill_cordon: false,
            phase: Phase::OnMains,
            phase_since_ms: now_ms,
            ups: None,
            on_battery_since_ms: None,
            mains_since_ms: None,
            event_id: 0,
            reason: String::new(),
            members: Vec::new(),
            connected: BTreeMap::new(),
            nodes: BTreeMap::new(),
            stages: Vec::new(),
            stage: 0,
            deadline_ms: None,
            ups_command: PowerState::Waiting,
            retry_at_ms: None,
            point_of_no_return: false,
            timeline: Vec::new(),
            ups_attempts: 0,
            ups_retry_at_ms: None,
            held: false,
            event_outage_ms: None,
            estimated_low: Debounce::default(),
            comm_lost: Debounce::default(),
            ups_delay_too_short: false,
            ups_cancel_until_ms: None,
            next_wake_ms: None,
            offline_since_ms: BTreeMap::new(),
            hold: None,
            observed: false,
            listening_since_ms: now_ms,
        }
    }

    /// A rehearsal: every poweroff and UPS command is a dry run; cordons are
    /// skipped unless `cordon`.
    pub fn drill(spec: DomainSpec, now_ms: i64, cordon: bool) -> Self {
        let mut m = Machine::new(spec, now_ms);
        m.dry_run = true;
        m.drill_cordon = cordon;
        m
    }

    /// Replaces the thresholds (config reload or restart with a new config)
    /// without touching progress.
    pub fn set_spec(&mut self, spec: DomainSpec) {
        self.spec = spec;
    }

    /// The next time `Tick` must be fed, if any.
    pub fn wake_at(&self) -> Option<i64> {
        let s = &self.spec.settings;
        let mut t: Option<i64> = None;
        let mut at = |x: i64| t = Some(t.map_or(x, |t| t.min(x)));
        if (self.phase == Phase::OnBattery || self.new_outage())
            && let Some(since) = self.on_battery_since_ms
        {
            at(since + s.grace_ms);
        }
        if let Some(d) = self.deadline_ms {
            at(d);
        }
        if let Some(r) = self.retry_at_ms {
            at(r);
        }
        if let Some(r) = self.ups_retry_at_ms {
            at(r);
        }
        if let Some(w) = self.next_wake_ms {
            at(w);
        }
        if let Some(c) = self.ups_cancel_until_ms {
            at(c);
        }
        if self.phase == Phase::OnBattery || self.new_outage() {
            for since in [self.comm_lost.since_ms, self.estimated_low.since_ms]
                .into_iter()
                .flatten()
            {
                at(since + s.comm_lost_window_ms);
            }
        }
        if self.phase == Phase::AwaitingReturn
            && let Some(m) = self.mains_since_ms
        {
            at(m + s.mains_stable_ms);
            at(m + s.mains_stable_ms + s.return_timeout_ms);
        }
        t
    }

    /// On battery again in an outage that began after this event's own, while
    /// the event waits for mains or undoes its cordons: grids reclose, so this
    /// is a new outage, and the trigger may start a new event.
    pub fn new_outage(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitingReturn | Phase::Recovering | Phase::Cancelling
        ) && self.on_battery_since_ms.is_some()
            && self.on_battery_since_ms != self.event_outage_ms
    }

    /// Whether a sequence runs (cordoned or beyond).
    pub fn active(&self) -> bool {
        !matches!(self.phase, Phase::OnMains | Phase::OnBattery)
    }

    fn note(&mut self, now_ms: i64, text: impl Into<String>) {
        let text = text.into();
        tracing::info!(domain = %self.spec.name, "{text}");
        if self.timeline.len() >= TIMELINE_MAX {
            self.timeline.remove(0);
        }
        self.timeline.push(TimelineEntry {
            at_ms: now_ms,
            text,
        });
    }

    fn notify(
        &mut self,
        now_ms: i64,
        out: &mut Vec<Action>,
        kind: NoticeKind,
        node: Option<&str>,
        message: String,
    ) {
        self.note(now_ms, message.clone());
        out.push(Action::Notify(Notice {
            kind,
            node: node.map(str::to_string),
            message,
        }));
    }

    fn enter(&mut self, phase: Phase, now_ms: i64) {
        self.phase = phase;
        self.phase_since_ms = now_ms;
        self.deadline_ms = None;
    }

    /// Actions still owed after a restart: anything asked and not answered
    /// is asked again with the same ids (every action is idempotent).
    pub fn resume(&mut self, now_ms: i64) -> Vec<Action> {
        // Who is connected is fed again by the orchestrator.
        self.connected.clear();
        self.offline_since_ms.clear();
        self.listening_since_ms = now_ms;
        // Saved before outages were told apart: the one on now is the
        // event's own (the old behaviour), not a new one.
        if self.event_outage_ms == Some(UNKNOWN_OUTAGE) {
            self.event_outage_ms = self.on_battery_since_ms;
        }
        let mut out = Vec::new();
        if self.active() {
            self.note(now_ms, "collector restarted; resuming");
        }
        let pending_cordon: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, p)| p.cordon == Some(CordonState::Pending))
            .map(|(n, _)| n.clone())
            .collect();
        if !pending_cordon.is_empty() && self.phase == Phase::Cordoning {
            out.push(Action::Cordon(pending_cordon));
        }
        if self.phase == Phase::Draining
            && let Some(deadline_ms) = self.deadline_ms
        {
            let nodes = self.still_draining();
            if !nodes.is_empty() {
                out.push(Action::Drain { nodes, deadline_ms });
            }
        }
        let sent: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, p)| matches!(p.power, PowerState::Sent { .. }))
            .map(|(n, _)| n.clone())
            .collect();
        for node in sent {
            out.push(self.power_off_action(&node));
        }
        if matches!(self.ups_command, PowerState::Sent { .. }) {
            out.push(self.ups_action());
        }
        let unc: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, p)| p.uncordoning)
            .map(|(n, _)| n.clone())
            .collect();
        if !unc.is_empty() {
            out.push(Action::Uncordon(unc));
        }
        out
    }

    /// Feeds one input at `now_ms`; returns what to do.
    pub fn step(&mut self, now_ms: i64, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Members(m) => self.members = m,
            Input::Ups(obs) => self.on_ups(now_ms, obs, &mut out),
            Input::AgentConnected(n) => self.on_connected(now_ms, n, &mut out),
            Input::AgentDisconnected(n) => self.on_disconnected(now_ms, n, &mut out),
            Input::CommandResult {
                node,
                command_id,
                ok,
                message,
                applied,
            } => {
                let answer = Answer {
                    ok,
                    message,
                    applied,
                };
                self.on_command_result(now_ms, node, command_id, answer, &mut out)
            }
            Input::Cordoned { node, result } => self.on_cordoned(now_ms, node, result, &mut out),
            Input::Drained { node, result } => self.on_drained(now_ms, node, result),
            Input::Uncordoned { node, result } => self.on_uncordoned(now_ms, node, result),
            Input::Halting { node, reason } => self.on_halting(now_ms, node, reason),
            Input::StandaloneActed {
                node,
                ups_cycled,
                message,
                applied: _,
            } => self.on_standalone(now_ms, node, ups_cycled, message, &mut out),
            Input::Tick => {}
            Input::Hold { by } => self.hold(now_ms, by, &mut out),
            Input::Resume { by } => self.resume_hold(now_ms, format!("resumed by {by}"), &mut out),
            Input::Start { reason } => {
                if matches!(self.phase, Phase::OnMains | Phase::OnBattery) {
                    self.start(now_ms, reason, &mut out);
                }
            }
        }
        self.advance(now_ms, &mut out);
        out
    }

    /// The nodes whose drain has not finished.
    fn still_draining(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, p)| p.draining)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The poweroff command id of `node` in this event.
    pub fn poweroff_id(&self, node: &str) -> u64 {
        command_id(&self.spec.name, self.event_id, node, "poweroff")
    }

    /// The UPS command id of this event (its first try).
    pub fn ups_command_id(&self) -> u64 {
        command_id(&self.spec.name, self.event_id, &self.spec.owner, "ups")
    }

    /// The id of try `attempt` (from 1) at the UPS command. The first keeps
    /// `ups_command_id`, so a command in flight across a restart is resent
    /// unchanged; a retry needs an id of its own, since an agent answers a
    /// resent id with its first result.
    pub fn ups_attempt_id(&self, attempt: u32) -> u64 {
        if attempt <= 1 {
            return self.ups_command_id();
        }
        let what = format!("ups#{attempt}");
        command_id(&self.spec.name, self.event_id, &self.spec.owner, &what)
    }

    fn power_off_action(&self, node: &str) -> Action {
        Action::PowerOff {
            node: node.to_string(),
            command_id: self.poweroff_id(node),
            reason: self.reason.clone(),
            dry_run: self.dry_run,
        }
    }

    /// Id of the cancel that follows try `attempt` at the UPS command.
    pub fn ups_cancel_id(&self, attempt: u32) -> u64 {
        command_id(
            &self.spec.name,
            self.event_id,
            &self.spec.owner,
            &format!("ups-cancel-{attempt}"),
        )
    }

    fn ups_action(&self) -> Action {
        let s = &self.spec.settings;
        Action::UpsShutdownReturn {
            owner: self.spec.owner.clone(),
            ups: self.spec.ups.clone(),
            command_id: self.ups_attempt_id(self.ups_attempts),
            off_delay_ms: s.ups_off_delay_ms,
            restore_delay_ms: s.ups_restore_delay_ms,
            dry_run: self.dry_run,
        }
    }

    fn finish(&mut self, now_ms: i64) {
        self.enter(Phase::OnMains, now_ms);
        self.event_id = 0;
        self.retry_at_ms = None;
        self.point_of_no_return = false;
        self.ups_retry_at_ms = None;
        self.held = false;
        self.ups_delay_too_short = false;
        self.ups_cancel_until_ms = None;
        self.next_wake_ms = None;
        self.hold = None;
        self.observed = false;
    }
}

#[cfg(test)]
mod tests;
