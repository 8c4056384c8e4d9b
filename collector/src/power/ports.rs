//! What the orchestrator needs from the outside world: the Kubernetes API
//! (`ClusterPort`, implemented over kube-rs in `cluster/`) and the agents'
//! command channel (`AgentPort`, implemented over the hub). Tests and the
//! benchmark use in-memory implementations.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
}

impl DrainSummary {
    /// One line for the timeline.
    pub fn line(&self) -> String {
        let mut s = format!("{} pods evicted, {} skipped", self.evicted, self.skipped);
        if !self.remaining.is_empty() {
            s.push_str(&format!(", still there: {}", self.remaining.join(", ")));
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
}

/// The Kubernetes API, as far as the sequence uses it.
pub trait ClusterPort: Send + Sync + 'static {
    /// Every node with its role label and cordon state.
    fn nodes(&self) -> impl Future<Output = Result<Vec<ClusterNode>, String>> + Send;
    /// Cordons `node`, recording that nodewarden did; `Ok(true)` when it was
    /// already cordoned by someone else (then it must stay cordoned).
    fn cordon(&self, node: &str) -> impl Future<Output = Result<bool, String>> + Send;
    /// Evicts the node's pods with kubectl-drain semantics until `deadline`.
    fn drain(
        &self,
        node: &str,
        deadline: tokio::time::Instant,
    ) -> impl Future<Output = Result<DrainSummary, String>> + Send;
    /// Uncordons `node` only if nodewarden cordoned it, and clears the record.
    fn uncordon_ours(&self, node: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// What draining `nodes` would evict now, and which PDBs would block.
    fn drain_plan(
        &self,
        nodes: &[String],
    ) -> impl Future<Output = Result<Vec<NodeDrainPlan>, String>> + Send;
}

/// The command channel to the agents.
pub trait AgentPort: Send + Sync + 'static {
    /// Asks `node`'s agent to power off (it confirms, then runs it once per id).
    fn power_off(
        &self,
        node: &str,
        command_id: u64,
        reason: &str,
        dry_run: bool,
    ) -> impl Future<Output = Result<CommandOutcome, String>> + Send;
    /// Asks the UPS owner's agent for shutdown-with-return.
    fn ups_shutdown_return(
        &self,
        owner: &str,
        ups: &str,
        command_id: u64,
        off_delay: Duration,
        restore_delay: Duration,
        dry_run: bool,
    ) -> impl Future<Output = Result<CommandOutcome, String>> + Send;
    /// Whether `node`'s agent has a stream open now.
    fn connected(&self, node: &str) -> bool;
}

/// A collector without a Kubernetes API: every call fails, the sequence
/// carries on without cordon and drain.
#[derive(Debug, Clone, Default)]
pub struct NoCluster;

const NO_CLUSTER: &str = "no Kubernetes API configured";

impl ClusterPort for NoCluster {
    async fn nodes(&self) -> Result<Vec<ClusterNode>, String> {
        Err(NO_CLUSTER.into())
    }
    async fn cordon(&self, _: &str) -> Result<bool, String> {
        Err(NO_CLUSTER.into())
    }
    async fn drain(&self, _: &str, _: tokio::time::Instant) -> Result<DrainSummary, String> {
        Err(NO_CLUSTER.into())
    }
    async fn uncordon_ours(&self, _: &str) -> Result<(), String> {
        Err(NO_CLUSTER.into())
    }
    async fn drain_plan(&self, _: &[String]) -> Result<Vec<NodeDrainPlan>, String> {
        Err(NO_CLUSTER.into())
    }
}
