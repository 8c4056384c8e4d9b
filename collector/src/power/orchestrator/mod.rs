//! The I/O shell around the power state machines: one task per collector
//! that feeds every domain's machine from the live state (UPS statuses,
//! agent connections, as they happen), from the results of the actions it
//! started, and from the clock; persists each machine after every step, then
//! carries out the actions through its ports without waiting for them (a
//! drain runs while the next UPS reading is already decided on).
//!
//! It talks to the world only through [`Ports`]: `runner` is the task and
//! its loop, `execute` carries out one action each, `drill` runs rehearsals
//! and `plan` answers "what would happen now".

mod drill;
mod execute;
mod operator;
mod plan;
mod runner;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::config::PowerConfig;
use super::machine::{Budget, Machine, Member, Phase, Stage, TimelineEntry};
use super::notify::Notifier;
use super::ports::{AgentPort, ClusterPort, LivePort, NodeDrainPlan, StorePort};
pub use operator::{ActionReply, ArmState};
use runner::Runner;

/// Name of the domain when `[[power.domain]]` is not configured.
pub const DEFAULT_DOMAIN: &str = "main";
/// How often the Kubernetes node list (roles) is refreshed.
const MEMBERS_REFRESH: Duration = Duration::from_secs(30);
/// Connection news is saved at the latest this long after it came.
const SETTLE_AT_LEAST_EVERY: Duration = Duration::from_secs(1);
/// A cordon or uncordon call that takes longer has failed.
const API_CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// One domain as `nodewarden power` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DomainView {
    /// The persisted machine (phase, nodes, timeline).
    pub machine: Machine,
    /// What is going on, in one line.
    pub now: String,
}

/// The plan of one domain: what would happen if power failed now.
#[derive(Debug, Clone, Serialize)]
pub struct DomainPlan {
    /// Domain name.
    pub domain: String,
    /// UPS and owner.
    pub ups: String,
    /// Node reading the UPS.
    pub owner: String,
    /// Remaining runtime now, ms, if the UPS reports it.
    pub runtime_ms: Option<i64>,
    /// The nodes and their roles.
    pub members: Vec<Member>,
    /// Poweroff stages in order.
    pub stages: Vec<Stage>,
    /// Per Kubernetes node: pods a drain would evict.
    pub drain: Vec<NodeDrainPlan>,
    /// Why the drain plan is missing, if it is.
    pub drain_error: Option<String>,
    /// Estimated drain time, ms (longest pod grace, capped by the drain timeout).
    pub drain_estimate_ms: i64,
    /// Estimated total until the last node halts, ms (worst case of the waits).
    pub total_estimate_ms: i64,
    /// Warnings for this domain.
    pub warnings: Vec<String>,
    /// The time budget: what is held back from the drain for the stages.
    pub budget: Budget,
    /// The UPS's delays, configured and as the UPS will apply them.
    pub ups_delays: UpsDelaysPlan,
    /// The warnings that refuse `power arm`.
    pub errors: Vec<String>,
}

/// The UPS's off and restore delays in a plan (ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpsDelaysPlan {
    /// `power.ups_off_delay`.
    pub configured_off_ms: i64,
    /// `power.ups_restore_delay`.
    pub configured_restore_ms: i64,
    /// What the UPS will apply, by its driver's rules; None when only the
    /// cycle tells (a NUT driver may keep its own).
    pub effective_off_ms: Option<i64>,
    /// The same for the restore delay.
    pub effective_restore_ms: Option<i64>,
    /// The owner's driver for it.
    pub driver: String,
    /// What the stages after the UPS command need of the off delay.
    pub off_need_ms: i64,
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    /// Per domain.
    pub domains: Vec<DomainPlan>,
    /// Config warnings.
    pub warnings: Vec<String>,
}

/// What a drill reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DrillUpdate {
    /// A timeline line of domain `.0`.
    Step(String, TimelineEntry),
    /// The drill of every domain is over.
    Done,
}

/// Options of `nodewarden drill`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrillOptions {
    /// Only this domain (default all).
    pub domain: Option<String>,
    /// Really cordon (and uncordon after).
    pub cordon: bool,
    /// Rehearse the decision too: a simulated UPS goes on battery and the
    /// grace runs; otherwise the sequence starts at once.
    pub simulated_ups: bool,
}

/// What the Admin API asks of the running orchestrator.
enum Control {
    Plan(oneshot::Sender<PlanReport>),
    Drill(DrillOptions, mpsc::Sender<DrillUpdate>),
    Arm {
        armed: bool,
        by: String,
        reply: oneshot::Sender<ActionReply>,
    },
    Hold {
        domain: Option<String>,
        hold: bool,
        by: String,
        reply: oneshot::Sender<ActionReply>,
    },
}

/// Why the orchestrator could not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PowerError {
    /// Its task is gone (or never started).
    #[error("the power orchestrator is not running")]
    NotRunning,
    /// It stopped before answering.
    #[error("the power orchestrator stopped")]
    Stopped,
}

/// Talks to the running orchestrator (the Admin API holds one).
#[derive(Clone)]
pub struct PowerHandle {
    control: mpsc::Sender<Control>,
    views: Arc<Mutex<Vec<DomainView>>>,
    arm: Arc<Mutex<ArmState>>,
}

impl std::fmt::Debug for PowerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerHandle").finish_non_exhaustive()
    }
}

impl PowerHandle {
    /// Every domain's state now.
    pub fn domains(&self) -> Vec<DomainView> {
        self.views.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What would happen if power failed now.
    /// Whether the sequence may start, and who said so.
    pub fn arm_state(&self) -> ArmState {
        self.arm.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `power arm` (`armed`) or `power disarm`, by `by`.
    pub async fn arm(&self, armed: bool, by: String) -> Result<ActionReply, PowerError> {
        let (reply, rx) = oneshot::channel();
        self.control
            .send(Control::Arm { armed, by, reply })
            .await
            .map_err(|_| PowerError::NotRunning)?;
        rx.await.map_err(|_| PowerError::Stopped)
    }

    /// `power hold` (`hold`) or `power resume` of `domain` (None: all), by `by`.
    pub async fn hold(
        &self,
        domain: Option<String>,
        hold: bool,
        by: String,
    ) -> Result<ActionReply, PowerError> {
        let (reply, rx) = oneshot::channel();
        self.control
            .send(Control::Hold {
                domain,
                hold,
                by,
                reply,
            })
            .await
            .map_err(|_| PowerError::NotRunning)?;
        rx.await.map_err(|_| PowerError::Stopped)
    }

    pub async fn plan(&self) -> Result<PlanReport, PowerError> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Plan(tx))
            .await
            .map_err(|_| PowerError::NotRunning)?;
        rx.await.map_err(|_| PowerError::Stopped)
    }

    /// Starts a drill; its timeline arrives on the returned channel.
    pub async fn drill(
        &self,
        options: DrillOptions,
    ) -> Result<mpsc::Receiver<DrillUpdate>, PowerError> {
        let (tx, rx) = mpsc::channel(256);
        self.control
            .send(Control::Drill(options, tx))
            .await
            .map_err(|_| PowerError::NotRunning)?;
        Ok(rx)
    }
}

/// Everything the orchestrator talks to: the Kubernetes API, the agents'
/// command channel, the live state it follows and the store it saves to.
pub struct Ports<C, A, L, S> {
    /// The Kubernetes API.
    pub cluster: Arc<C>,
    /// The agents' command channel.
    pub agents: Arc<A>,
    /// Connections and UPS statuses (the hub).
    pub live: Arc<L>,
    /// Power states and events (the store).
    pub store: Arc<S>,
}

/// Starts the orchestrator for `config` and returns the handle the Admin API
/// uses. Domains resume from the store where a previous run left them.
pub fn spawn<C: ClusterPort, A: AgentPort, L: LivePort, S: StorePort>(
    config: PowerConfig,
    ports: Ports<C, A, L, S>,
    shutdown: watch::Receiver<bool>,
) -> PowerHandle {
    let (control_tx, control_rx) = mpsc::channel(16);
    let views = Arc::new(Mutex::new(Vec::new()));
    let arm = Arc::new(Mutex::new(ArmState::default()));
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    // Subscribe before anything else, so no event falls between the
    // snapshot taken at start and the stream.
    let events = ports.live.subscribe();
    let collector_node = if config.collector_node.is_empty() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default()
    } else {
        config.collector_node.clone()
    };
    let runner = Runner {
        notifier: Notifier::spawn(config.notify.clone()),
        config,
        cluster: ports.cluster,
        agents: ports.agents,
        live: ports.live,
        store: ports.store,
        collector_node,
        machines: BTreeMap::new(),
        drills: BTreeMap::new(),
        results: results_tx,
        drains: HashMap::new(),
        cluster_nodes: None,
        persisted: HashMap::new(),
        views: views.clone(),
        unsaved: BTreeSet::new(),
        members_stale: false,
        collector_node_problem: None,
        arm: arm.clone(),
    };
    tokio::spawn(runner.run(events, results_rx, control_rx, shutdown));
    PowerHandle {
        control: control_tx,
        views,
        arm,
    }
}

/// One line: what the domain is doing now.
pub fn describe(m: &Machine) -> String {
    let stage = m
        .stages
        .get(m.stage)
        .map(|s| s.label.as_str())
        .unwrap_or("");
    match m.phase {
        Phase::OnMains => "on mains; nothing to do".into(),
        Phase::OnBattery if m.hold.is_some() => {
            "on battery; held: the sequence does not start".into()
        }
        Phase::OnBattery if m.observed => {
            "observing (not armed): would start the sequence now".into()
        }
        Phase::OnBattery if !m.spec.settings.armed => {
            "on battery; observing (not armed): nothing will be done".into()
        }
        Phase::OnBattery => "on battery; within the grace".into(),
        Phase::Cordoning => "cordoning the domain's Kubernetes nodes".into(),
        Phase::Draining => "evicting pods".into(),
        Phase::PoweringOff => format!("powering off {stage}"),
        Phase::UpsCycle => format!("cycling the UPS, then powering off {stage}"),
        Phase::AwaitingReturn => "waiting for mains and the nodes to return".into(),
        Phase::Recovering => "uncordoning the nodes we cordoned".into(),
        Phase::Cancelling => "mains returned: uncordoning the nodes we cordoned".into(),
    }
}

#[cfg(test)]
mod tests;
