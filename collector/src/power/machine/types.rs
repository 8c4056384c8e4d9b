//! The machine's vocabulary: what a domain is made of, what goes in, what
//! comes out, and the progress it keeps per node.

use std::collections::BTreeMap;
use std::time::Duration;

pub use nodewarden_common::ups::delays::AppliedDelays;
use nodewarden_common::ups::{Thresholds, UpsFlags};
use serde::{Deserialize, Serialize};

/// Why a node got no poweroff command, as the CLI and the saved state show it.
const NOT_CONNECTED: &str = "agent not connected";

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
    /// Tries at the UPS command before it counts as failed.
    #[serde(default = "default_ups_command_attempts")]
    pub ups_command_attempts: u32,
    /// Wait between two tries at the UPS command.
    #[serde(default = "default_ups_command_retry_ms")]
    pub ups_command_retry_ms: i64,
    /// How long a node takes from its poweroff command to halted.
    #[serde(default = "default_halt_time_ms")]
    pub halt_time_ms: i64,
    /// Consecutive readings an estimated charge or runtime below its floor,
    /// or a lost UPS, must last before it starts the sequence.
    #[serde(default = "default_estimated_confirmations")]
    pub estimated_confirmations: u32,
    /// A lost UPS also counts once lost this long (the agent pushes changes,
    /// so a UPS that stays silent may send one reading only).
    #[serde(default = "default_comm_lost_window_ms")]
    pub comm_lost_window_ms: i64,
    /// Tries at uncordoning a node before it is left to a person.
    #[serde(default = "default_uncordon_attempts")]
    pub uncordon_attempts: u32,
    /// An agent gone this long (or not heard from this long since the
    /// collector started) when an outage starts is offline: skipped, not
    /// waited for. Shorter absences are reconnects.
    #[serde(default = "default_offline_after_ms")]
    pub offline_after_ms: i64,
    /// Wake-on-LAN MACs of the nodes that can be woken, by node name.
    #[serde(default)]
    pub wake_macs: BTreeMap<String, [u8; 6]>,
    /// The operator armed the sequence (`nodewarden power arm`, or
    /// `power.armed` in the config); else it only observes. States saved
    /// before arming existed were armed.
    #[serde(default = "armed_before_arming_existed")]
    pub armed: bool,
}

fn armed_before_arming_existed() -> bool {
    true
}

/// Three tries: a serial glitch or a busy driver passes, a refusal stays.
pub const DEFAULT_UPS_COMMAND_ATTEMPTS: u32 = 3;
/// Ten seconds between tries at the UPS command.
pub const DEFAULT_UPS_COMMAND_RETRY_MS: i64 = 10_000;
/// What `halt_time` defaults to in the config.
pub const DEFAULT_HALT_TIME_MS: i64 = 45_000;
/// Three readings in a row: a voltage sag or one failed poll does not count.
pub const DEFAULT_ESTIMATED_CONFIRMATIONS: u32 = 3;
/// Ten seconds: a lost UPS counts after this even without more readings.
pub const DEFAULT_COMM_LOST_WINDOW_MS: i64 = 10_000;
/// Ten tries, 30 s apart: five minutes for an API to come back.
pub const DEFAULT_UNCORDON_ATTEMPTS: u32 = 10;

fn default_ups_command_attempts() -> u32 {
    DEFAULT_UPS_COMMAND_ATTEMPTS
}
fn default_ups_command_retry_ms() -> i64 {
    DEFAULT_UPS_COMMAND_RETRY_MS
}
fn default_halt_time_ms() -> i64 {
    DEFAULT_HALT_TIME_MS
}
fn default_estimated_confirmations() -> u32 {
    DEFAULT_ESTIMATED_CONFIRMATIONS
}
fn default_comm_lost_window_ms() -> i64 {
    DEFAULT_COMM_LOST_WINDOW_MS
}
fn default_offline_after_ms() -> i64 {
    super::DEFAULT_OFFLINE_AFTER_MS
}

fn default_uncordon_attempts() -> u32 {
    DEFAULT_UNCORDON_ATTEMPTS
}

/// Milliseconds as a `Duration` (negative ones as zero).
pub(super) fn ms(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

impl Settings {
    /// The shared battery rule with these settings; the machine has always
    /// acted on the UPS's LB flag, so it has no switch for it.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            grace: ms(self.grace_ms),
            min_charge_percent: self.min_charge_percent,
            min_runtime: ms(self.min_runtime_ms),
            on_low_battery: true,
            on_comm_lost: self.on_comm_lost,
        }
    }
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
    /// The charge is estimated from battery voltage (Megatec), not reported.
    #[serde(default)]
    pub charge_estimated: bool,
    /// The runtime is estimated from charge and load, not reported.
    #[serde(default)]
    pub runtime_estimated: bool,
    /// The driver the owner reads it with ("megatec", "gpser", "nut"): it
    /// decides which delays the UPS really applies.
    #[serde(default)]
    pub driver: String,
}

impl UpsObservation {
    /// From the status the owner agent pushed.
    pub fn from_status(s: &nodewarden_proto::v1::UpsStatus) -> Self {
        let flags = UpsFlags::from_tokens(&s.status);
        UpsObservation {
            comm_ok: s.communication_ok,
            online: flags.online,
            on_battery: flags.on_battery,
            low_battery: flags.low_battery,
            charge_percent: s.battery_charge_percent,
            runtime_ms: s
                .battery_runtime_seconds
                .filter(|r| r.is_finite() && *r >= 0.0)
                .map(|r| (r * 1000.0) as i64),
            charge_estimated: s.battery_charge_estimated,
            runtime_estimated: s.battery_runtime_estimated,
            driver: s
                .identity
                .as_ref()
                .map(|i| i.driver.clone())
                .unwrap_or_default(),
        }
    }

    pub(super) fn on_mains(&self) -> bool {
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
        /// For a UPS shutdown: the delays the UPS will really use.
        applied: AppliedDelays,
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
    /// An operator holds the sequence (see `Machine::hold_refusal`).
    Hold {
        /// Who.
        by: String,
    },
    /// An operator ends the hold.
    Resume {
        /// Who.
        by: String,
    },
    /// Time passed (see `Machine::wake_at`).
    Tick,
    /// The UPS owner's agent acted on its own while the link was down: it
    /// told the UPS to cycle (or tried) and is powering its node off.
    StandaloneActed {
        /// Node.
        node: String,
        /// The UPS took shutdown-with-return.
        ups_cycled: bool,
        /// The agent's words.
        message: String,
        /// The delays the UPS took.
        applied: AppliedDelays,
    },
    /// A node's agent says the node has begun to halt (systemd is stopping
    /// it for a reason other than our poweroff command).
    Halting {
        /// Node.
        node: String,
        /// Its words: "system shutdown".
        reason: String,
    },
    /// Start the sequence now (a drill, or `force`).
    Start {
        /// Why.
        reason: String,
    },
}

/// An agent's answer to a command, as the machine reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// It accepted (and will run) the command.
    pub ok: bool,
    /// Its words.
    pub message: String,
    /// For a UPS shutdown: the delays the UPS will really use.
    pub applied: AppliedDelays,
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
    /// Tell the owner agent to cancel a UPS shutdown it took (its off delay
    /// is too short for the nodes still to halt).
    UpsCancelShutdown {
        /// Node whose agent owns the UPS.
        owner: String,
        /// UPS name.
        ups: String,
        /// Stable command id.
        command_id: u64,
    },
    /// Send a Wake-on-LAN magic packet to a node that is not back.
    Wake {
        /// Node.
        node: String,
        /// Its MAC address.
        mac: [u8; 6],
    },
    /// Uncordon these nodes (only ones we cordoned).
    Uncordon(Vec<String>),
    /// Record and announce an event.
    Notify(Notice),
}

/// An event worth recording and notifying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// What happened.
    pub kind: NoticeKind,
    /// The node concerned, if one.
    pub node: Option<String>,
    /// For people.
    pub message: String,
}

/// What a [`Notice`] is about; serialized as the snake_case word events and
/// hooks have always carried (`on_battery`, `shutdown_started`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// The UPS went on battery.
    OnBattery,
    /// The UPS stopped answering.
    UpsCommLost,
    /// Mains came back.
    MainsReturned,
    /// Mains came back within the grace.
    BriefOutage,
    /// Mains came back before any poweroff: the sequence is undone.
    Cancelled,
    /// The sequence (or a drill) started.
    ShutdownStarted,
    /// Poweroff commands went out to a stage.
    PoweroffSent,
    /// A node did not take its poweroff.
    PoweroffFailed,
    /// The UPS accepted shutdown-with-return.
    UpsCycle,
    /// The UPS command failed or could not be sent.
    UpsCycleFailed,
    /// A node disconnected after its poweroff command.
    NodeDown,
    /// A cancel finished uncordoning.
    CancelDone,
    /// A drill finished uncordoning.
    DrillDone,
    /// Recovery finished uncordoning.
    Recovered,
    /// The UPS could not cycle with mains present: powered-off nodes stay
    /// off until someone power-cycles them.
    ManualPowerCycleNeeded,
    /// The UPS host's agent acted on its own while the link was down.
    StandaloneActed,
    /// Nodes we cordoned could not be uncordoned within the retries.
    UncordonFailed,
    /// Not armed: the sequence would have started now.
    WouldStart,
    /// An operator held the sequence.
    Held,
    /// The hold ended (resume, or the battery's reserve).
    Resumed,
}

impl NoticeKind {
    /// The word events and hooks carry.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::OnBattery => "on_battery",
            NoticeKind::UpsCommLost => "ups_comm_lost",
            NoticeKind::MainsReturned => "mains_returned",
            NoticeKind::BriefOutage => "brief_outage",
            NoticeKind::Cancelled => "cancelled",
            NoticeKind::ShutdownStarted => "shutdown_started",
            NoticeKind::PoweroffSent => "poweroff_sent",
            NoticeKind::PoweroffFailed => "poweroff_failed",
            NoticeKind::UpsCycle => "ups_cycle",
            NoticeKind::UpsCycleFailed => "ups_cycle_failed",
            NoticeKind::NodeDown => "node_down",
            NoticeKind::CancelDone => "cancel_done",
            NoticeKind::DrillDone => "drill_done",
            NoticeKind::Recovered => "recovered",
            NoticeKind::ManualPowerCycleNeeded => "manual_power_cycle_needed",
            NoticeKind::StandaloneActed => "standalone_acted",
            NoticeKind::UncordonFailed => "uncordon_failed",
            NoticeKind::WouldStart => "would_start",
            NoticeKind::Held => "held",
            NoticeKind::Resumed => "resumed",
        }
    }

    /// How loud the recorded event is: critical once nodes are being (or
    /// failing to be) powered off, a warning for what a person should watch.
    pub fn severity(self) -> nodewarden_proto::v1::Severity {
        use nodewarden_proto::v1::Severity;
        match self {
            NoticeKind::ShutdownStarted
            | NoticeKind::PoweroffSent
            | NoticeKind::PoweroffFailed
            | NoticeKind::UpsCycleFailed
            | NoticeKind::ManualPowerCycleNeeded
            | NoticeKind::StandaloneActed => Severity::Critical,
            NoticeKind::OnBattery
            | NoticeKind::UncordonFailed
            | NoticeKind::WouldStart
            | NoticeKind::Held
            | NoticeKind::Resumed
            | NoticeKind::NodeDown
            | NoticeKind::UpsCycle
            | NoticeKind::Cancelled
            | NoticeKind::UpsCommLost => Severity::Warning,
            NoticeKind::MainsReturned
            | NoticeKind::BriefOutage
            | NoticeKind::CancelDone
            | NoticeKind::DrillDone
            | NoticeKind::Recovered => Severity::Info,
        }
    }
}

impl std::fmt::Display for NoticeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
///
/// Saved and shown as before `NotConnected` existed: `NotConnected` is
/// written as `{"failed": "agent not connected"}`, and that reads back as
/// `NotConnected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PowerStateRepr", into = "PowerStateRepr")]
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
    /// Its agent was not connected when its stage began; it may still
    /// connect within the stage's wait and get its command then.
    NotConnected,
    /// Refused, failed or timed out: we carried on without it.
    Failed(String),
}

/// The serialized form of [`PowerState`] (the one saved before
/// `NotConnected` was a variant of its own).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PowerStateRepr {
    Waiting,
    Sent { at_ms: i64 },
    Confirmed,
    Gone,
    Failed(String),
}

impl From<PowerStateRepr> for PowerState {
    fn from(r: PowerStateRepr) -> Self {
        match r {
            PowerStateRepr::Waiting => PowerState::Waiting,
            PowerStateRepr::Sent { at_ms } => PowerState::Sent { at_ms },
            PowerStateRepr::Confirmed => PowerState::Confirmed,
            PowerStateRepr::Gone => PowerState::Gone,
            PowerStateRepr::Failed(why) if why == NOT_CONNECTED => PowerState::NotConnected,
            PowerStateRepr::Failed(why) => PowerState::Failed(why),
        }
    }
}

impl From<PowerState> for PowerStateRepr {
    fn from(s: PowerState) -> Self {
        match s {
            PowerState::Waiting => PowerStateRepr::Waiting,
            PowerState::Sent { at_ms } => PowerStateRepr::Sent { at_ms },
            PowerState::Confirmed => PowerStateRepr::Confirmed,
            PowerState::Gone => PowerStateRepr::Gone,
            PowerState::NotConnected => PowerStateRepr::Failed(NOT_CONNECTED.into()),
            PowerState::Failed(why) => PowerStateRepr::Failed(why),
        }
    }
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
    /// We cordoned it in an earlier event cut short by this one (a new
    /// outage) and had not uncordoned it: ours whatever the new cordon says.
    #[serde(default)]
    pub ours_before: bool,
    /// Uncordon tries that failed in this event.
    #[serde(default)]
    pub uncordon_failures: u32,
    /// Its agent was not connected when the sequence started: not cordoned,
    /// drained or waited for.
    #[serde(default)]
    pub skipped: bool,
    /// When it began to halt (its poweroff confirmed, or its agent said so):
    /// the disconnect that follows gives its real halt time.
    #[serde(default)]
    pub halting_since_ms: Option<i64>,
    /// Wake-on-LAN packets sent to it in this event.
    #[serde(default)]
    pub wakes_sent: u32,
}

impl NodeProgress {
    /// We cordoned it (now or in the event this one cut short) and an admin
    /// had not: ours to uncordon.
    pub fn ours_to_uncordon(&self) -> bool {
        let now = matches!(
            self.cordon,
            Some(CordonState::Done {
                was_cordoned: false
            })
        );
        (now || self.ours_before) && !self.uncordoned
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
    /// Its nodes whose agents were offline when the sequence started: not
    /// cordoned, drained or waited for ("skipped: offline").
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// A doubtful condition (an estimated floor, a lost UPS) counted until it
/// is believed: consecutive readings, and since when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Debounce {
    /// Consecutive readings with the condition.
    pub readings: u32,
    /// When the first of them came.
    pub since_ms: Option<i64>,
}

impl Debounce {
    /// One more reading: with the condition or without (which resets).
    pub fn observe(&mut self, now_ms: i64, on: bool) {
        if on {
            self.readings += 1;
            self.since_ms.get_or_insert(now_ms);
        } else {
            *self = Debounce::default();
        }
    }

    /// `readings` in a row, or (with a window) the condition lasting it.
    pub fn believed(&self, now_ms: i64, readings: u32, window_ms: Option<i64>) -> bool {
        self.readings >= readings.max(1)
            || window_ms.is_some_and(|w| self.since_ms.is_some_and(|s| now_ms - s >= w))
    }
}

/// One line of the event's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Unix ms.
    pub at_ms: i64,
    /// What happened.
    pub text: String,
}
