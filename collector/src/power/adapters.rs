//! The real ports: the Kubernetes API through `cluster::KubeCluster`, and the
//! agents through the hub's command channel.

use std::sync::Arc;
use std::time::Duration;

use nodewarden_proto::v1::{
    Command, CommandResult, CommandState, PowerOff, ShutdownReturn, UpsCommand, command,
    ups_command,
};

use super::ports::{
    AgentPort, ClusterNode, ClusterPort, CommandOutcome, DrainSummary, NodeDrainPlan, PodPlan,
};
use crate::cluster::{KubeCluster, NodeRole};
use crate::server::hub::Hub;

/// The Kubernetes API, or why there is none (every call then fails with that
/// reason and the sequence carries on without cordon and drain).
#[derive(Clone)]
pub struct KubePort {
    cluster: Result<KubeCluster, String>,
}

impl KubePort {
    /// Wraps a connected cluster, or the reason it could not be connected.
    pub fn new(cluster: Result<KubeCluster, String>) -> Self {
        KubePort { cluster }
    }

    fn get(&self) -> Result<&KubeCluster, String> {
        self.cluster.as_ref().map_err(Clone::clone)
    }
}

impl ClusterPort for KubePort {
    async fn nodes(&self) -> Result<Vec<ClusterNode>, String> {
        let nodes = self.get()?.nodes().await.map_err(|e| e.to_string())?;
        Ok(nodes
            .into_iter()
            .map(|n| ClusterNode {
                name: n.name,
                server: n.role == NodeRole::Server,
                unschedulable: n.unschedulable,
            })
            .collect())
    }

    async fn cordon(&self, node: &str) -> Result<bool, String> {
        let record = self.get()?.cordon(node).await.map_err(|e| e.to_string())?;
        Ok(record.was_unschedulable)
    }

    async fn drain(
        &self,
        node: &str,
        deadline: tokio::time::Instant,
    ) -> Result<DrainSummary, String> {
        let report = self
            .get()?
            .drain(node, deadline)
            .await
            .map_err(|e| e.to_string())?;
        let name = |p: &crate::cluster::PodRef| format!("{}/{}", p.namespace, p.name);
        let mut remaining: Vec<String> = report.stuck.iter().map(name).collect();
        remaining.extend(report.blocked.iter().map(|b| name(&b.pod)));
        remaining.extend(report.failed.iter().map(|f| name(&f.pod)));
        Ok(DrainSummary {
            evicted: report.evicted.len() as u32,
            skipped: report.skipped.len() as u32,
            remaining,
        })
    }

    async fn uncordon_ours(&self, node: &str) -> Result<(), String> {
        let outcome = self
            .get()?
            .uncordon_ours(node)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(node, ?outcome, "uncordon");
        Ok(())
    }

    async fn drain_plan(&self, nodes: &[String]) -> Result<Vec<NodeDrainPlan>, String> {
        let cluster = self.get()?;
        let mut plans = Vec::with_capacity(nodes.len());
        for node in nodes {
            let plan = cluster.drain_plan(node).await.map_err(|e| e.to_string())?;
            plans.push(NodeDrainPlan {
                node: plan.node,
                pods: plan
                    .evict
                    .into_iter()
                    .map(|e| PodPlan {
                        namespace: e.pod.namespace,
                        name: e.pod.name,
                        grace_seconds: e.grace_seconds.clamp(0, u32::MAX as i64) as u32,
                        blocked_by: e.pdb.filter(|_| e.pdb_blocks),
                    })
                    .collect(),
                skipped: plan.skipped.len() as u32,
            });
        }
        Ok(plans)
    }
}

/// The agents, through the hub: a poweroff counts once the agent confirms it
/// (the orchestrator then waits for the disconnect, like NUT's HOSTSYNC).
pub struct HubAgents {
    hub: Arc<Hub>,
    confirm_timeout: Duration,
}

impl HubAgents {
    /// `confirm_timeout` is the sequence's own deadline for an agent's
    /// answer (agent_confirm_timeout). Each wait here lasts a second longer,
    /// so that deadline always decides first and the node's state reads the
    /// same "timed out" every time; a late answer then finds the node no
    /// longer waiting and changes nothing.
    pub fn new(hub: Arc<Hub>, confirm_timeout: Duration) -> Self {
        HubAgents {
            hub,
            confirm_timeout: confirm_timeout + Duration::from_secs(1),
        }
    }

    async fn send(&self, node: &str, command: Command) -> Result<CommandOutcome, String> {
        let result = self
            .hub
            .send_command_confirmed(node, command, self.confirm_timeout)
            .await
            .map_err(|e| e.to_string())?;
        Ok(outcome(&result))
    }
}

fn outcome(result: &CommandResult) -> CommandOutcome {
    let ok = matches!(
        CommandState::try_from(result.state),
        Ok(CommandState::Accepted | CommandState::Done)
    );
    CommandOutcome {
        ok,
        message: result.message.clone(),
    }
}

impl AgentPort for HubAgents {
    async fn power_off(
        &self,
        node: &str,
        command_id: u64,
        reason: &str,
        dry_run: bool,
    ) -> Result<CommandOutcome, String> {
        let command = Command {
            command_id,
            dry_run,
            action: Some(command::Action::PowerOff(PowerOff {
                reason: reason.to_string(),
            })),
        };
        self.send(node, command).await
    }

    async fn ups_shutdown_return(
        &self,
        owner: &str,
        ups: &str,
        command_id: u64,
        off_delay: Duration,
        restore_delay: Duration,
        dry_run: bool,
    ) -> Result<CommandOutcome, String> {
        let command = Command {
            command_id,
            dry_run,
            action: Some(command::Action::Ups(UpsCommand {
                ups_name: ups.to_string(),
                action: Some(ups_command::Action::ShutdownReturn(ShutdownReturn {
                    off_delay_seconds: off_delay.as_secs() as u32,
                    restore_delay_seconds: restore_delay.as_secs() as u32,
                })),
            })),
        };
        // A UPS command finishes quickly: wait for its real answer, so a UPS
        // that refused it is reported as such.
        let result = self
            .hub
            .send_command(owner, command, self.confirm_timeout)
            .await
            .map_err(|e| e.to_string())?;
        Ok(outcome(&result))
    }

    fn connected(&self, node: &str) -> bool {
        self.hub.is_connected(node)
    }
}
