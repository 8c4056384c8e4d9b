//! The power-loss sequence of one power domain as a pure state machine.
//!
//! `Machine::step` takes one input (a UPS observation, an agent event, a
//! Kubernetes result or a tick of the clock) and the time, changes the state
//! and returns the actions to carry out. It does no I/O and never reads the
//! clock, so every path through the sequence is a unit test; the orchestrator
//! executes the actions and persists the state after every step, so a
//! collector restart resumes where it stopped (`Machine::resume`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest timeline kept per event (a flapping UPS must not grow it forever).
const TIMELINE_MAX: usize = 300;
/// How long cordoning may take before draining starts anyway.
const CORDON_TIMEOUT_MS: i64 = 15_000;
/// Why a node got no poweroff command (it may still connect in time).
const NOT_CONNECTED: &str = "agent not connected";
/// Wait between uncordon attempts while the API is not back yet.
const UNCORDON_RETRY_MS: i64 = 30_000;

/// What a node is in the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A k3s agent node: drained, then powered off first.
    Worker,
    /// A k3s server (etcd member): powered off together with the other servers.
    Server,
    /// A host outside Kubernetes (datastore, load balancer, NAS): powered off
    /// after the servers, lowest `order` first.
    External {
        /// Position among the external hosts.
        order: u32,
    },
}

impl Role {
    /// Whether the node is a Kubernetes node (cordoned and drained).
    pub fn in_cluster(self) -> bool {
        !matches!(self, Role::External { .. })
    }
}

/// A node of the domain, as known when the sequence starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Node name (the agent's and the Kubernetes node's).
    pub name: String,
    /// Its place in the order.
    pub role: Role,
}

/// Thresholds and timeouts the machine decides with, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Time on battery before the sequence starts.
    pub grace_ms: i64,
    /// Start at or below this charge.
    pub min_charge_percent: f64,
    /// Start at or below this runtime.
    pub min_runtime_ms: i64,
    /// Start when the UPS stops answering while on battery.
    pub on_comm_lost: bool,
    /// Longest drain.
    pub drain_timeout_ms: i64,
    /// Runtime kept back from the drain for the poweroffs.
    pub poweroff_reserve_ms: i64,
    /// Bounded wait for a worker / external host to confirm and disconnect.
    pub agent_confirm_timeout_ms: i64,
    /// Bounded wait for the servers.
    pub servers_timeout_ms: i64,
    /// UPS output off delay (shutdown-with-return).
    pub ups_off_delay_ms: i64,
    /// UPS output restore delay after mains returns.
    pub ups_restore_delay_ms: i64,
    /// Mains must be stable this long before uncordoning.
    pub mains_stable_ms: i64,
    /// After mains is stable, uncordon even if some nodes are still missing.
    pub return_timeout_ms: i64,
}

/// What the domain is: its UPS, its owner, its nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainSpec {
    /// Domain name.
    pub name: String,
    /// UPS name as the owner agent calls it.
    pub ups: String,
    /// Node whose agent reads the UPS.
    pub owner: String,
    /// The node the collector runs on (powered off last), if known.
    pub collector_node: Option<String>,
    /// Decision thresholds and timeouts.
    pub settings: Settings,
}

/// One reading of the domain's UPS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpsObservation {
    /// The UPS answers.
    pub comm_ok: bool,
    /// NUT OL.
    pub online: bool,
    /// NUT OB.
    pub on_battery: bool,
    /// NUT LB (the UPS's own low-battery flag).
    pub low_battery: bool,
    /// Battery charge, percent.
    pub charge_percent: Option<f64>,
    /// Remaining runtime, ms.
    pub runtime_ms: Option<i64>,
}

impl UpsObservation {
    /// From the status the owner agent pushed.
    pub fn from_status(s: &nodewarden_proto::v1::UpsStatus) -> Self {
        let has = |t: &str| s.status.iter().any(|x| x == t);
        UpsObservation {
            comm_ok: s.communication_ok,
            online: has("OL"),
            on_battery: has("OB"),
            low_battery: has("LB"),
            charge_percent: s.battery_charge_percent,
            runtime_ms: s
                .battery_runtime_seconds
                .filter(|r| r.is_finite() && *r >= 0.0)
                .map(|r| (r * 1000.0) as i64),
        }
    }

    fn on_mains(&self) -> bool {
        self.comm_ok && !self.on_battery
    }
}

/// An input to the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// The domain's nodes and roles (ignored once a sequence runs).
    Members(Vec<Member>),
    /// A new reading of the domain's UPS.
    Ups(UpsObservation),
    /// An agent stream opened.
    AgentConnected(String),
    /// An agent stream closed.
    AgentDisconnected(String),
    /// An agent answered a command (the poweroff or UPS command).
    CommandResult {
        /// Node that answered.
        node: String,
        /// The command's id.
        command_id: u64,
        /// It accepted (and will run) the command.
        ok: bool,
        /// Its words.
        message: String,
    },
    /// Cordon of a node finished.
    Cordoned {
        /// Node.
        node: String,
        /// `Ok(was_cordoned_before)` or why it failed.
        result: Result<bool, String>,
    },
    /// Drain of a node finished.
    Drained {
        /// Node.
        node: String,
        /// A one-line summary, or why it failed / timed out.
        result: Result<String, String>,
    },
    /// Uncordon of a node finished.
    Uncordoned {
        /// Node.
        node: String,
        /// Done, or why not.
        result: Result<(), String>,
    },
    /// Time passed (see `Machine::wake_at`).
    Tick,
    /// Start the sequence now (a drill, or `force`).
    Start {
        /// Why.
        reason: String,
    },
}

/// Something the orchestrator must do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Cordon these nodes (record whether each was cordoned before).
    Cordon(Vec<String>),
    /// Drain these nodes, giving up at `deadline_ms`.
    Drain {
        /// Nodes to drain.
        nodes: Vec<String>,
        /// Unix ms.
        deadline_ms: i64,
    },
    /// Tell a node's agent to power off.
    PowerOff {
        /// Node.
        node: String,
        /// Stable across restarts: the agent runs a command id once.
        command_id: u64,
        /// For the agent's log.
        reason: String,
        /// Report instead of doing.
        dry_run: bool,
    },
    /// Tell the owner agent to cycle the UPS output.
    UpsShutdownReturn {
        /// Node whose agent owns the UPS.
        owner: String,
        /// UPS name.
        ups: String,
        /// Stable command id.
        command_id: u64,
        /// Output off after this long.
        off_delay_ms: i64,
        /// Output back on this long after mains returns.
        restore_delay_ms: i64,
        /// Report instead of doing.
        dry_run: bool,
    },
    /// Uncordon these nodes (only ones we cordoned).
    Uncordon(Vec<String>),
    /// Record and announce an event.
    Notify(Notice),
}

/// An event worth recording and notifying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Machine-readable kind (`on_battery`, `shutdown_started`, ...).
    pub kind: String,
    /// The node concerned, if one.
    pub node: Option<String>,
    /// For people.
    pub message: String,
}

/// Where the domain is in the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Mains present, nothing to do.
    OnMains,
    /// On battery, within the grace.
    OnBattery,
    /// Cordoning every Kubernetes node of the domain.
    Cordoning,
    /// Evicting pods.
    Draining,
    /// Powering off one stage of nodes (workers, servers, external hosts).
    PoweringOff,
    /// Telling the UPS to cycle, then powering off the last nodes.
    UpsCycle,
    /// Everything is told to go down; waiting for mains and the nodes.
    AwaitingReturn,
    /// Mains back and stable: uncordoning what we cordoned.
    Recovering,
    /// Mains came back before any poweroff: uncordoning what we cordoned.
    Cancelling,
}

impl Phase {
    /// The word the CLI shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::OnMains => "on_mains",
            Phase::OnBattery => "on_battery",
            Phase::Cordoning => "cordoning",
            Phase::Draining => "draining",
            Phase::PoweringOff => "powering_off",
            Phase::UpsCycle => "ups_cycle",
            Phase::AwaitingReturn => "awaiting_return",
            Phase::Recovering => "recovering",
            Phase::Cancelling => "cancelling",
        }
    }
}

/// Cordon progress of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CordonState {
    /// Asked, no answer yet.
    Pending,
    /// Done; `was_cordoned`: an admin had cordoned it before us.
    Done {
        /// Cordoned before we came.
        was_cordoned: bool,
    },
    /// The API said no or did not answer.
    Failed(String),
}

/// Poweroff progress of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    /// Not this node's turn yet.
    Waiting,
    /// Command sent at this time, no answer yet.
    Sent {
        /// Unix ms.
        at_ms: i64,
    },
    /// The agent accepted it.
    Confirmed,
    /// Its agent disconnected after the command: going down.
    Gone,
    /// Refused, failed or unreachable: we carried on without it.
    Failed(String),
}

/// Per node state of this event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeProgress {
    /// Its role, frozen at the start.
    pub role: Role,
    /// Cordon progress (Kubernetes nodes only).
    pub cordon: Option<CordonState>,
    /// Drain result: None not asked or pending; Some(Ok/Err) finished.
    pub drain: Option<Result<String, String>>,
    /// Drain asked and not finished.
    pub draining: bool,
    /// Poweroff progress.
    pub power: PowerState,
    /// The uncordon is asked and not answered.
    pub uncordoning: bool,
    /// We uncordoned it.
    pub uncordoned: bool,
}

impl NodeProgress {
    /// We cordoned it and an admin had not: ours to uncordon.
    pub fn ours_to_uncordon(&self) -> bool {
        matches!(
            self.cordon,
            Some(CordonState::Done {
                was_cordoned: false
            })
        ) && !self.uncordoned
    }
}

/// One stage of poweroffs: nodes sent together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// What it is ("workers", "servers", "external hosts (order 1)", ...).
    pub label: String,
    /// Nodes in it.
    pub nodes: Vec<String>,
    /// The bounded wait.
    pub timeout_ms: i64,
}

/// One line of the event's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Unix ms.
    pub at_ms: i64,
    /// What happened.
    pub text: String,
}

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
        if self.phase == Phase::OnBattery
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
        if self.phase == Phase::AwaitingReturn
            && let Some(m) = self.mains_since_ms
        {
            at(m + s.mains_stable_ms);
            at(m + s.mains_stable_ms + s.return_timeout_ms);
        }
        t
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
        kind: &str,
        node: Option<&str>,
        message: String,
    ) {
        self.note(now_ms, message.clone());
        out.push(Action::Notify(Notice {
            kind: kind.into(),
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
            let nodes: Vec<String> = self
                .nodes
                .iter()
                .filter(|(_, p)| p.draining)
                .map(|(n, _)| n.clone())
                .collect();
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
            } => self.on_command_result(now_ms, node, command_id, ok, message, &mut out),
            Input::Cordoned { node, result } => self.on_cordoned(now_ms, node, result, &mut out),
            Input::Drained { node, result } => self.on_drained(now_ms, node, result),
            Input::Uncordoned { node, result } => self.on_uncordoned(now_ms, node, result),
            Input::Tick => {}
            Input::Start { reason } => {
                if matches!(self.phase, Phase::OnMains | Phase::OnBattery) {
                    self.start(now_ms, reason, &mut out);
                }
            }
        }
        self.advance(now_ms, &mut out);
        out
    }

    fn on_ups(&mut self, now_ms: i64, obs: UpsObservation, out: &mut Vec<Action>) {
        let prev = self.ups.replace(obs.clone());
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
                "on_battery",
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
                "ups_comm_lost",
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
                    "mains_returned",
                    None,
                    format!("mains returned to UPS {ups} after {}", fmt_ms(outage)),
                );
            }
            self.on_battery_since_ms = None;
            self.on_mains_again(now_ms, out);
        }
        if !matches!(self.phase, Phase::OnMains | Phase::OnBattery) {
            return;
        }
        if let Some(reason) = self.trigger(now_ms) {
            self.start(now_ms, reason, out);
        }
    }

    /// Why the sequence must start now, if it must.
    fn trigger(&self, now_ms: i64) -> Option<String> {
        let s = &self.spec.settings;
        let obs = self.ups.as_ref()?;
        if !obs.comm_ok {
            // The last good reading said on battery: assume the worst.
            return (s.on_comm_lost && obs.on_battery)
                .then(|| "UPS communication lost while on battery".to_string());
        }
        if !obs.on_battery {
            return None;
        }
        if obs.low_battery {
            return Some("the UPS reports low battery".into());
        }
        if let Some(c) = obs.charge_percent
            && c <= s.min_charge_percent
        {
            return Some(format!(
                "battery charge {c:.0}% is at or below {:.0}%",
                s.min_charge_percent
            ));
        }
        if let Some(r) = obs.runtime_ms
            && r <= s.min_runtime_ms
        {
            return Some(format!(
                "battery runtime {} is at or below {}",
                fmt_ms(r),
                fmt_ms(s.min_runtime_ms)
            ));
        }
        let since = self.on_battery_since_ms?;
        (now_ms - since >= s.grace_ms).then(|| {
            format!(
                "on battery for {} (grace {})",
                fmt_ms(now_ms - since),
                fmt_ms(s.grace_ms)
            )
        })
    }

    fn on_mains_again(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        match self.phase {
            Phase::OnBattery => {
                self.notify(
                    now_ms,
                    out,
                    "brief_outage",
                    None,
                    "brief outage within the grace: nothing done".into(),
                );
                self.finish(now_ms);
            }
            Phase::Cordoning | Phase::Draining if !self.point_of_no_return => {
                self.notify(
                    now_ms,
                    out,
                    "cancelled",
                    None,
                    "mains returned before any node was powered off: cancelling, uncordoning what we cordoned".into(),
                );
                self.enter(Phase::Cancelling, now_ms);
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

    fn start(&mut self, now_ms: i64, reason: String, out: &mut Vec<Action>) {
        self.event_id = now_ms.max(1);
        self.reason = reason.clone();
        self.timeline.retain(|_| false);
        self.point_of_no_return = false;
        self.stage = 0;
        self.ups_command = PowerState::Waiting;
        self.retry_at_ms = None;
        self.nodes = self.fresh_nodes();
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
            "shutdown_started",
            None,
            format!("{what} started: {reason}; order: {summary}"),
        );
        let cluster: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, p)| p.role.in_cluster())
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

    fn fresh_nodes(&self) -> BTreeMap<String, NodeProgress> {
        self.members
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    NodeProgress {
                        role: m.role,
                        cordon: None,
                        drain: None,
                        draining: false,
                        power: PowerState::Waiting,
                        uncordoning: false,
                        uncordoned: false,
                    },
                )
            })
            .collect()
    }

    /// The poweroff stages a sequence starting now would use.
    pub fn preview_stages(&self) -> Vec<Stage> {
        let mut m = self.clone();
        m.nodes = m.fresh_nodes();
        m.plan_stages()
    }

    /// Workers, then servers together, then external hosts by order; the UPS
    /// owner and the collector's own node are kept for the end.
    fn plan_stages(&self) -> Vec<Stage> {
        let s = &self.spec.settings;
        let last = |n: &str| n == self.spec.owner || Some(n) == self.spec.collector_node.as_deref();
        let pick = |f: &dyn Fn(Role) -> bool| -> Vec<String> {
            self.nodes
                .iter()
                .filter(|(n, p)| f(p.role) && !last(n))
                .map(|(n, _)| n.clone())
                .collect()
        };
        let mut stages = Vec::new();
        let workers = pick(&|r| r == Role::Worker);
        if !workers.is_empty() {
            stages.push(Stage {
                label: "workers".into(),
                nodes: workers,
                timeout_ms: s.agent_confirm_timeout_ms,
            });
        }
        let servers = pick(&|r| r == Role::Server);
        if !servers.is_empty() {
            stages.push(Stage {
                label: "servers".into(),
                nodes: servers,
                timeout_ms: s.servers_timeout_ms,
            });
        }
        let mut orders: Vec<u32> = self
            .nodes
            .values()
            .filter_map(|p| match p.role {
                Role::External { order } => Some(order),
                _ => None,
            })
            .collect();
        orders.sort_unstable();
        orders.dedup();
        for o in orders {
            let nodes = pick(&|r| r == Role::External { order: o });
            if !nodes.is_empty() {
                stages.push(Stage {
                    label: format!("external hosts (order {o})"),
                    nodes,
                    timeout_ms: s.agent_confirm_timeout_ms,
                });
            }
        }
        // The owner goes down after it has told the UPS, the collector last.
        let owner = &self.spec.owner;
        let collector = self.spec.collector_node.as_deref();
        if self.nodes.contains_key(owner) && Some(owner.as_str()) != collector {
            stages.push(Stage {
                label: "UPS host".into(),
                nodes: vec![owner.clone()],
                timeout_ms: s.agent_confirm_timeout_ms,
            });
        }
        if let Some(c) = collector
            && self.nodes.contains_key(c)
        {
            stages.push(Stage {
                label: if c == owner {
                    "UPS host and collector".into()
                } else {
                    "collector".into()
                },
                nodes: vec![c.to_string()],
                timeout_ms: s.agent_confirm_timeout_ms,
            });
        }
        stages
    }

    /// Index of the first stage that must wait for the UPS command.
    fn ups_stage(&self) -> usize {
        let s = &self.spec;
        self.stages
            .iter()
            .position(|st| {
                st.nodes
                    .iter()
                    .any(|n| *n == s.owner || Some(n.as_str()) == s.collector_node.as_deref())
            })
            .unwrap_or(self.stages.len())
    }

    fn drain_deadline(&self, now_ms: i64) -> i64 {
        let s = &self.spec.settings;
        let by_battery = self
            .ups
            .as_ref()
            .and_then(|u| u.runtime_ms)
            .map(|r| r - s.poweroff_reserve_ms);
        let budget = by_battery.map_or(s.drain_timeout_ms, |b| b.min(s.drain_timeout_ms));
        now_ms + budget.max(0)
    }

    fn on_cordoned(
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

    fn on_drained(&mut self, now_ms: i64, node: String, result: Result<String, String>) {
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

    fn on_uncordoned(&mut self, now_ms: i64, node: String, result: Result<(), String>) {
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
                self.retry_at_ms = Some(now_ms + UNCORDON_RETRY_MS);
                self.note(
                    now_ms,
                    format!(
                        "uncordon {node} failed: {e}; retrying in {}",
                        fmt_ms(UNCORDON_RETRY_MS)
                    ),
                );
            }
        }
    }

    fn on_connected(&mut self, now_ms: i64, node: String, out: &mut Vec<Action>) {
        self.connected.insert(node.clone(), true);
        // An agent of the current stage that was not connected when the stage
        // began (a collector restart, a reconnect) still gets its command.
        let in_stage = matches!(self.phase, Phase::PoweringOff | Phase::UpsCycle)
            && self
                .stages
                .get(self.stage)
                .is_some_and(|s| s.nodes.contains(&node));
        if let Some(p) = self.nodes.get_mut(&node)
            && in_stage
            && p.power == PowerState::Failed(NOT_CONNECTED.into())
        {
            p.power = PowerState::Sent { at_ms: now_ms };
            self.note(
                now_ms,
                format!("{node} connected: sending its poweroff now"),
            );
            out.push(self.power_off_action(&node));
        }
    }

    fn on_disconnected(&mut self, now_ms: i64, node: String, out: &mut Vec<Action>) {
        self.connected.insert(node.clone(), false);
        if let Some(p) = self.nodes.get_mut(&node)
            && matches!(p.power, PowerState::Sent { .. } | PowerState::Confirmed)
        {
            p.power = PowerState::Gone;
            self.notify(
                now_ms,
                out,
                "node_down",
                Some(&node),
                format!("{node} disconnected after its poweroff command: going down"),
            );
        }
    }

    fn on_command_result(
        &mut self,
        now_ms: i64,
        node: String,
        command_id: u64,
        ok: bool,
        message: String,
        out: &mut Vec<Action>,
    ) {
        if command_id == self.ups_command_id() && node == self.spec.owner {
            if matches!(self.ups_command, PowerState::Sent { .. }) {
                let ups = self.spec.ups.clone();
                if ok {
                    self.ups_command = PowerState::Confirmed;
                    self.notify(
                        now_ms,
                        out,
                        "ups_cycle",
                        Some(&node),
                        format!("UPS {ups} accepted shutdown-with-return: {message}"),
                    );
                } else {
                    self.ups_command = PowerState::Failed(message.clone());
                    self.notify(
                        now_ms,
                        out,
                        "ups_cycle_failed",
                        Some(&node),
                        format!("UPS {ups} shutdown-with-return failed: {message}; carrying on"),
                    );
                }
            }
            return;
        }
        let expected = command_id == self.poweroff_id(&node);
        let Some(p) = self.nodes.get_mut(&node) else {
            return;
        };
        if !expected || !matches!(p.power, PowerState::Sent { .. }) {
            return;
        }
        if ok {
            p.power = PowerState::Confirmed;
            let verb = if self.dry_run {
                "would power off (dry run)"
            } else {
                "confirmed poweroff"
            };
            self.note(now_ms, format!("{node} {verb}: {message}"));
        } else {
            p.power = PowerState::Failed(message.clone());
            self.notify(
                now_ms,
                out,
                "poweroff_failed",
                Some(&node),
                format!("{node} did not take the poweroff: {message}; carrying on"),
            );
        }
    }

    /// The poweroff command id of `node` in this event.
    pub fn poweroff_id(&self, node: &str) -> u64 {
        command_id(&self.spec.name, self.event_id, node, "poweroff")
    }

    /// The UPS command id of this event.
    pub fn ups_command_id(&self) -> u64 {
        command_id(&self.spec.name, self.event_id, &self.spec.owner, "ups")
    }

    fn power_off_action(&self, node: &str) -> Action {
        Action::PowerOff {
            node: node.to_string(),
            command_id: self.poweroff_id(node),
            reason: self.reason.clone(),
            dry_run: self.dry_run,
        }
    }

    fn ups_action(&self) -> Action {
        let s = &self.spec.settings;
        Action::UpsShutdownReturn {
            owner: self.spec.owner.clone(),
            ups: self.spec.ups.clone(),
            command_id: self.ups_command_id(),
            off_delay_ms: s.ups_off_delay_ms,
            restore_delay_ms: s.ups_restore_delay_ms,
            dry_run: self.dry_run,
        }
    }

    fn uncordon_ours(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        let nodes: Vec<String> = self
            .nodes
            .iter_mut()
            .filter(|(_, p)| p.ours_to_uncordon() && !p.uncordoning)
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

    fn begin_poweroff(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        self.stage = 0;
        self.start_stage(now_ms, out);
    }

    /// Sends the current stage (or the UPS command before the last stages).
    fn start_stage(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        if self.stage == self.ups_stage() && self.ups_command == PowerState::Waiting {
            self.enter(Phase::UpsCycle, now_ms);
            self.deadline_ms = Some(now_ms + self.spec.settings.agent_confirm_timeout_ms);
            let owner_up = self
                .connected
                .get(&self.spec.owner)
                .copied()
                .unwrap_or(false);
            self.point_of_no_return = true;
            if owner_up {
                self.ups_command = PowerState::Sent { at_ms: now_ms };
                let s = &self.spec.settings;
                let text = format!(
                    "telling {} to cycle UPS {} (off in {}, back {} after mains returns)",
                    self.spec.owner,
                    self.spec.ups,
                    fmt_ms(s.ups_off_delay_ms),
                    fmt_ms(s.ups_restore_delay_ms)
                );
                self.note(now_ms, text);
                out.push(self.ups_action());
            } else {
                let text = format!(
                    "UPS owner {} is not connected: cannot cycle UPS {}; its agent's standalone mode must",
                    self.spec.owner, self.spec.ups
                );
                self.ups_command = PowerState::Failed("owner not connected".into());
                self.notify(
                    now_ms,
                    out,
                    "ups_cycle_failed",
                    Some(&self.spec.owner.clone()),
                    text,
                );
            }
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
        self.point_of_no_return = true;
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
                p.power = PowerState::Failed(NOT_CONNECTED.into());
                self.note(
                    now_ms,
                    format!("{node}: agent not connected, cannot power it off; carrying on"),
                );
            }
        }
        if !sent.is_empty() {
            let verb = if self.dry_run {
                "drill: asking to report poweroff of"
            } else {
                "powering off"
            };
            self.notify(
                now_ms,
                out,
                "poweroff_sent",
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

    fn stage_done(&self, now_ms: i64) -> bool {
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
                PowerState::Failed(why) if why == NOT_CONNECTED => {
                    self.connected.get(n) == Some(&false)
                }
                PowerState::Gone | PowerState::Failed(_) => true,
                // A drill's agents stay up: their report is the confirmation.
                PowerState::Confirmed => self.dry_run,
                _ => false,
            })
        })
    }

    fn time_out_stage(&mut self, now_ms: i64) {
        let Some(stage) = self.stages.get(self.stage).cloned() else {
            return;
        };
        for n in &stage.nodes {
            if let Some(p) = self.nodes.get_mut(n)
                && matches!(p.power, PowerState::Sent { .. } | PowerState::Confirmed)
            {
                let confirmed = p.power == PowerState::Confirmed;
                p.power = PowerState::Failed("timed out".into());
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

    /// Moves on when the current phase is complete or timed out.
    fn advance(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        // Bounded: each pass either moves to a later phase/stage or stops.
        for _ in 0..64 {
            if !self.advance_once(now_ms, out) {
                return;
            }
        }
    }

    fn advance_once(&mut self, now_ms: i64, out: &mut Vec<Action>) -> bool {
        let timed_out = self.deadline_ms.is_some_and(|d| now_ms >= d);
        match self.phase {
            Phase::OnMains => false,
            Phase::OnBattery => {
                if let Some(reason) = self.trigger(now_ms) {
                    self.start(now_ms, reason, out);
                    return true;
                }
                false
            }
            Phase::Cordoning => {
                let pending = self
                    .nodes
                    .values()
                    .any(|p| p.cordon == Some(CordonState::Pending));
                if pending && !timed_out {
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
                    self.note(now_ms, "nothing could be cordoned (is the Kubernetes API down?): skipping the drain");
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
            Phase::Draining => {
                let pending = self.nodes.values().any(|p| p.draining);
                if pending && !timed_out {
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
            Phase::PoweringOff | Phase::UpsCycle => {
                if self.phase == Phase::UpsCycle
                    && matches!(self.ups_command, PowerState::Sent { .. })
                {
                    if !timed_out {
                        return false;
                    }
                    self.ups_command = PowerState::Failed("no answer".into());
                    let text = format!(
                        "UPS owner {} did not answer the UPS command; carrying on",
                        self.spec.owner
                    );
                    self.notify(now_ms, out, "ups_cycle_failed", None, text);
                    self.start_stage(now_ms, out);
                    return true;
                }
                if self.phase == Phase::UpsCycle
                    && self.stage == self.ups_stage()
                    && self.stages.get(self.stage).is_none_or(|s| {
                        s.nodes.iter().all(|n| {
                            self.nodes
                                .get(n)
                                .is_some_and(|p| p.power == PowerState::Waiting)
                        })
                    })
                {
                    // UPS command answered: now the last nodes.
                    self.start_stage(now_ms, out);
                    return true;
                }
                if !self.stage_done(now_ms) {
                    return false;
                }
                if self.deadline_ms.is_some_and(|d| now_ms >= d) {
                    self.time_out_stage(now_ms);
                }
                self.stage += 1;
                self.start_stage(now_ms, out);
                true
            }
            Phase::AwaitingReturn => {
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
                let all_back = self.nodes.iter().all(|(n, p)| {
                    !p.ours_to_uncordon() || self.connected.get(n).copied().unwrap_or(false)
                });
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
                self.uncordon_ours(now_ms, out);
                true
            }
            Phase::Recovering | Phase::Cancelling => {
                if self.retry_at_ms.is_some_and(|r| now_ms >= r) {
                    self.uncordon_ours(now_ms, out);
                }
                let left = self
                    .nodes
                    .values()
                    .any(|p| p.uncordoning || (p.ours_to_uncordon() && self.retry_at_ms.is_some()));
                let cordon_pending = self
                    .nodes
                    .values()
                    .any(|p| p.cordon == Some(CordonState::Pending));
                if left || (cordon_pending && !timed_out_cordon(self, now_ms)) {
                    return false;
                }
                let (kind, text) = if self.phase == Phase::Cancelling {
                    (
                        "cancel_done",
                        "cancelled: every node we cordoned is uncordoned",
                    )
                } else if self.dry_run {
                    (
                        "drill_done",
                        "drill over: every node it cordoned is uncordoned",
                    )
                } else {
                    (
                        "recovered",
                        "recovered: every node we cordoned is uncordoned",
                    )
                };
                self.notify(now_ms, out, kind, None, text.into());
                self.finish(now_ms);
                if self.ups.as_ref().is_some_and(|u| u.comm_ok && u.on_battery) {
                    // Power went again while we were undoing: a new outage.
                    self.on_battery_since_ms.get_or_insert(now_ms);
                    self.enter(Phase::OnBattery, now_ms);
                }
                true
            }
        }
    }

    fn finish(&mut self, now_ms: i64) {
        self.enter(Phase::OnMains, now_ms);
        self.event_id = 0;
        self.retry_at_ms = None;
        self.point_of_no_return = false;
    }
}

/// A cordon answer that never comes does not hold the cancel forever.
fn timed_out_cordon(m: &Machine, now_ms: i64) -> bool {
    now_ms - m.phase_since_ms >= CORDON_TIMEOUT_MS
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
