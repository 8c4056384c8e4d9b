//! What the orchestrator needs from the outside world: the Kubernetes API
//! (`ClusterPort`, implemented over kube-rs in `cluster/`), the agents'
//! command channel (`AgentPort`), the live state it follows (`LivePort`) and
//! the store it keeps its machines and events in (`StorePort`), the last
//! three implemented over the hub and the store in `adapters`. Tests use
//! in-memory implementations of all four.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use nodewarden_common::ups::delays::AppliedDelays;
use nodewarden_proto::v1::{Event, NodeInfo, UpsInfo};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::state::commands::CommandError;
use crate::state::hub::HubEvent;
use crate::state::nut_hosts::NutHost;
use crate::store::StoreError;

/// Why a Kubernetes call of the sequence failed. Its text is what the
/// timeline and the log show.
#[derive(Debug, thiserror::Error)]
pub enum ClusterPortError {
    /// The collector runs without a Kubernetes API.
    #[error("no Kubernetes API configured")]
    NotConfigured,
    /// The Kubernetes API could not be reached when the collector started.
    #[error("{source}")]
    Unavailable {
        /// Why connecting failed.
        #[source]
        source: Arc<crate::cluster::ClusterError>,
    },
    /// The call itself failed.
    #[error("{source}")]
    Api {
        /// What the API said, or why it could not be asked.
        #[source]
        source: crate::cluster::ClusterError,
    },
}

/// Why a command to an agent got no answer. Its text is what the timeline
/// shows.
#[derive(Debug, thiserror::Error)]
pub enum AgentPortError {
    /// The command could not be sent, or its result did not come.
    #[error("{source}")]
    Command {
        /// What the command channel said.
        #[source]
        source: CommandError,
    },
}

/// A Kubernetes node as the sequence needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// metadata.name.
    pub name: String,
    /// Has node-role.kubernetes.io/control-plane or /master.
    pub server: bool,
    /// spec.unschedulable.
    pub unschedulable: bool,
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainSummary {
    /// Pods evicted and gone.
    pub evicted: u32,
    /// DaemonSet and mirror pods left alone.
    pub skipped: u32,
    /// Pods still there when the deadline came ("ns/name").
    pub remaining: Vec<String>,
    /// Pods no longer waited for: still terminating past their grace period
    /// and `skip_wait_for_delete_timeout` ("ns/name").
    #[serde(default)]
    pub left_behind: Vec<String>,
}

impl DrainSummary {
    /// One line for the timeline.
    pub fn line(&self) -> String {
        let mut s = format!("{} pods evicted, {} skipped", self.evicted, self.skipped);
        if !self.remaining.is_empty() {
            s.push_str(&format!(", still there: {}", self.remaining.join(", ")));
        }
        if !self.left_behind.is_empty() {
            s.push_str(&format!(
                ", left behind: stuck terminating: {}",
                self.left_behind.join(", ")
            ));
        }
        s
    }
}

/// A pod a drain would evict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPlan {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// terminationGracePeriodSeconds.
    pub grace_seconds: u32,
    /// The PodDisruptionBudget that would block its eviction now, if any.
    pub blocked_by: Option<String>,
}

/// What draining one node would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDrainPlan {
    /// Node.
    pub node: String,
    /// Pods that would be evicted.
    pub pods: Vec<PodPlan>,
    /// DaemonSet / mirror pods that would stay.
    pub skipped: u32,
}

/// The agent's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    /// Accepted (and, unless a dry run, about to be carried out).
    pub ok: bool,
    /// Its words.
    pub message: String,
    /// For a UPS shutdown: the delays the UPS will really use.
    #[serde(default)]
    pub applied: AppliedDelays,
}

impl CommandOutcome {
    /// An answer that sets no UPS delay.
    pub fn new(ok: bool, message: impl Into<String>) -> Self {
        CommandOutcome {
            ok,
            message: message.into(),
            applied: AppliedDelays::NONE,
        }
    }
}

/// The Kubernetes API, as far as the sequence uses it.
pub trait ClusterPort: Send + Sync + 'static {
    /// Every node with its role label and cordon state.
    fn nodes(&self) -> impl Future<Output = Result<Vec<ClusterNode>, ClusterPortError>> + Send;
    /// Cordons `node`, recording that nodewarden did; `Ok(true)` when it was
    /// already cordoned by someone else (then it must stay cordoned).
    fn cordon(&self, node: &str) -> impl Future<Output = Result<bool, ClusterPortError>> + Send;
    /// Evicts the node's pods with kubectl-drain semantics until `deadline`.
    fn drain(
        &self,
        node: &str,
        deadline: tokio::time::Instant,
    ) -> impl Future<Output = Result<DrainSummary, ClusterPortError>> + Send;
    /// Uncordons `node` only if nodewarden cordoned it, and clears the record.
    fn uncordon_ours(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<(), ClusterPortError>> + Send;
    /// What draining `nodes` would evict now, and which PDBs would block.
    fn drain_plan(
        &self,
        nodes: &[String],
    ) -> impl Future<Output = Result<Vec<NodeDrainPlan>, ClusterPortError>> + Send;
}

/// Where a poweroff's answer after the confirm goes: an agent that accepted
/// can still fail when it runs it (polkit denied, logind busy, an inhibitor
/// lock), and the sequence must hear that rather than wait out the stage.
pub type LateAnswer = Box<dyn FnOnce(CommandOutcome) + Send>;

/// The command channel to the agents.
pub trait AgentPort: Send + Sync + 'static {
    /// Asks `node`'s agent to power off (it confirms, then runs it once per
    /// id) and returns at the confirm; a failure reported after it goes to
    /// `late`.
    fn power_off(
        &self,
        node: &str,
        command_id: u64,
        reason: &str,
        dry_run: bool,
        late: LateAnswer,
    ) -> impl Future<Output = Result<CommandOutcome, AgentPortError>> + Send;
    /// Asks the UPS owner's agent for shutdown-with-return.
    fn ups_shutdown_return(
        &self,
        owner: &str,
        ups: &str,
        command_id: u64,
        off_delay: Duration,
        restore_delay: Duration,
        dry_run: bool,
    ) -> impl Future<Output = Result<CommandOutcome, AgentPortError>> + Send;
    /// Asks the UPS owner's agent to cancel a pending UPS shutdown.
    fn ups_cancel_shutdown(
        &self,
        owner: &str,
        ups: &str,
        command_id: u64,
    ) -> impl Future<Output = Result<CommandOutcome, AgentPortError>> + Send;
    /// Whether `node`'s agent has a stream open now.
    fn connected(&self, node: &str) -> bool;
}

/// A collector without a Kubernetes API: every call fails, the sequence
/// carries on without cordon and drain.
#[derive(Debug, Clone, Default)]
pub struct NoCluster;

impl ClusterPort for NoCluster {
    async fn nodes(&self) -> Result<Vec<ClusterNode>, ClusterPortError> {
        Err(ClusterPortError::NotConfigured)
    }
    async fn cordon(&self, _: &str) -> Result<bool, ClusterPortError> {
        Err(ClusterPortError::NotConfigured)
    }
    async fn drain(
        &self,
        _: &str,
        _: tokio::time::Instant,
    ) -> Result<DrainSummary, ClusterPortError> {
        Err(ClusterPortError::NotConfigured)
    }
    async fn uncordon_ours(&self, _: &str) -> Result<(), ClusterPortError> {
        Err(ClusterPortError::NotConfigured)
    }
    async fn drain_plan(&self, _: &[String]) -> Result<Vec<NodeDrainPlan>, ClusterPortError> {
        Err(ClusterPortError::NotConfigured)
    }
}

/// The live state the orchestrator follows: which agents are connected and
/// what the UPSes report, now and as it changes.
pub trait LivePort: Send + Sync + 'static {
    /// Connections and UPS statuses from now on.
    fn subscribe(&self) -> broadcast::Receiver<HubEvent>;
    /// Every known node now.
    fn node_infos(&self) -> Vec<NodeInfo>;
    /// Every UPS status known now.
    fn ups_infos(&self) -> Vec<UpsInfo>;
    /// The hosts that follow a UPS through the NUT server.
    fn nut_hosts(&self) -> Vec<NutHost>;
}

/// What the orchestrator keeps on disk: each domain's machine (opaque bytes
/// here; the orchestrator encodes them) and the events of its sequences.
/// Called from blocking tasks.
pub trait StorePort: Send + Sync + 'static {
    /// Every saved machine, by domain.
    fn power_states(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Saves `domain`'s machine.
    fn put_power_state(&self, domain: &str, state: &[u8]) -> Result<(), StoreError>;
    /// Forgets a domain that is no longer configured.
    fn delete_power_state(&self, domain: &str) -> Result<(), StoreError>;
    /// Records one event.
    fn append_event(&self, event: Event) -> Result<(), StoreError>;
    /// The operator's arming record (opaque bytes), if ever saved.
    fn power_arm(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Saves the operator's arming record.
    fn put_power_arm(&self, record: &[u8]) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::DrainSummary;

    #[test]
    fn the_drain_line_names_the_pods_left_behind() {
        let s = DrainSummary {
            evicted: 2,
            skipped: 1,
            remaining: vec![],
            left_behind: vec!["default/held-0".into(), "jobs/etl-1".into()],
        };
        assert_eq!(
            s.line(),
            "2 pods evicted, 1 skipped, left behind: stuck terminating: default/held-0, jobs/etl-1"
        );
    }
}
