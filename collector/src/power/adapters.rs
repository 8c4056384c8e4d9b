//! The real ports: the Kubernetes API through `cluster::KubeCluster`, the
//! agents through the hub's command channel, the live state from the hub and
//! the power states and events in the store.

use std::sync::Arc;
use std::time::Duration;

use nodewarden_common::ups::delays::AppliedDelays;
use nodewarden_proto::v1::{
    Command, CommandResult, CommandState, Empty, Event, NodeInfo, PowerOff, ShutdownReturn,
    UpsCommand, UpsInfo, command, ups_command,
};
use tokio::sync::broadcast;

use super::ports::{
    AgentPort, AgentPortError, ClusterNode, ClusterPort, ClusterPortError, CommandOutcome,
    DrainSummary, LateAnswer, LivePort, NodeDrainPlan, PodPlan, StorePort,
};
use crate::cluster::health::{NodeEvent, PowerStep};
use crate::cluster::{ClusterError, KubeCluster, NodeRole};
use crate::state::hub::{Hub, HubEvent};
use crate::state::nut_hosts::{NutHost, is_nut_host};
use crate::store::{Store, StoreError};

/// The Kubernetes API, or why there is none (every call then fails with that
/// reason and the sequence carries on without cordon and drain).
#[derive(Clone)]
pub struct KubePort {
    cluster: Result<KubeCluster, Arc<ClusterError>>,
    events: bool,
}

impl KubePort {
    /// Wraps a connected cluster, or the reason it could not be connected.
    pub fn new(cluster: Result<KubeCluster, ClusterError>) -> Self {
        KubePort {
            cluster: cluster.map_err(Arc::new),
            events: false,
        }
    }

    /// Also posts an Event on the node for each step (`[node_health] events`).
    pub fn with_events(mut self, events: bool) -> Self {
        self.events = events;
        self
    }

    /// Posts a step's Event in the background (never holds up the sequence).
    fn announce(&self, node: &str, step: PowerStep, detail: &str) {
        if let (true, Ok(c)) = (self.events, &self.cluster) {
            c.announce(NodeEvent::power(node, step, detail));
        }
    }

    fn get(&self) -> Result<&KubeCluster, ClusterPortError> {
        self.cluster
            .as_ref()
            .map_err(|source| ClusterPortError::Unavailable {
                source: source.clone(),
            })
    }
}

/// A failed call keeps its cause; the timeline shows its text.
fn api(source: ClusterError) -> ClusterPortError {
    ClusterPortError::Api { source }
}

impl ClusterPort for KubePort {
    async fn nodes(&self) -> Result<Vec<ClusterNode>, ClusterPortError> {
        let nodes = self.get()?.nodes().await.map_err(api)?;
        Ok(nodes
            .into_iter()
            .map(|n| ClusterNode {
                name: n.name,
                server: n.role == NodeRole::Server,
                unschedulable: n.unschedulable,
            })
            .collect())
    }

    async fn cordon(&self, node: &str) -> Result<bool, ClusterPortError> {
        let record = self.get()?.cordon(node).await.map_err(api)?;
        if record.newly_recorded {
            let detail = if record.was_unschedulable {
                "power cut; it was already cordoned and will stay so"
            } else {
                "power cut; nodewarden uncordons it when mains is back"
            };
            self.announce(node, PowerStep::Cordoned, detail);
        }
        Ok(record.was_unschedulable)
    }

    async fn drain(
        &self,
        node: &str,
        deadline: tokio::time::Instant,
    ) -> Result<DrainSummary, ClusterPortError> {
        let report = self.get()?.drain(node, deadline).await.map_err(api)?;
        let name = |p: &crate::cluster::PodRef| format!("{}/{}", p.namespace, p.name);
        let mut remaining: Vec<String> = report.stuck.iter().map(name).collect();
        remaining.extend(report.blocked.iter().map(|b| name(&b.pod)));
        remaining.extend(report.failed.iter().map(|f| name(&f.pod)));
        let detail = format!(
            "{} pods evicted, {} skipped, {} remaining",
            report.evicted.len(),
            report.skipped.len(),
            remaining.len()
        );
        self.announce(node, PowerStep::Drained, &detail);
        Ok(DrainSummary {
            evicted: report.evicted.len() as u32,
            skipped: report.skipped.len() as u32,
            remaining,
            left_behind: report.left_behind.iter().map(name).collect(),
        })
    }

    async fn uncordon_ours(&self, node: &str) -> Result<(), ClusterPortError> {
        let outcome = self.get()?.uncordon_ours(node).await.map_err(api)?;
        tracing::info!(node, ?outcome, "uncordon");
        if outcome == crate::cluster::UncordonOutcome::Uncordoned {
            self.announce(node, PowerStep::Uncordoned, "the power sequence is over");
        }
        Ok(())
    }

    async fn drain_plan(&self, nodes: &[String]) -> Result<Vec<NodeDrainPlan>, ClusterPortError> {
        let cluster = self.get()?;
        let mut plans = Vec::with_capacity(nodes.len());
        for node in nodes {
            let plan = cluster.drain_plan(node).await.map_err(api)?;
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
    late_wait: Duration,
    events: Option<KubeCluster>,
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
            late_wait: confirm_timeout + Duration::from_secs(1),
            events: None,
        }
    }

    /// Posts a `PoweredOffByNodewarden` Event on each node that confirms.
    pub fn with_events(mut self, cluster: Option<KubeCluster>) -> Self {
        self.events = cluster;
        self
    }

    /// How long to keep listening after a poweroff's confirm for a failure
    /// (the longest stage wait: a later one finds the stage over anyway).
    pub fn with_late_wait(mut self, wait: Duration) -> Self {
        self.late_wait = wait + Duration::from_secs(1);
        self
    }
}

impl HubAgents {
    /// A NUT host's poweroff: FSD in every status it reads, as upsmon
    /// primary raises it; its upsmon then runs its SHUTDOWNCMD and logs
    /// out, which the sequence waits for like an agent's disconnect. A
    /// drill only says what would happen.
    fn raise_fsd(&self, node: &str, dry_run: bool) -> CommandOutcome {
        let hosts = self.hub.nut_hosts();
        let users = hosts
            .get(node)
            .map(|h| h.users.into_iter().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        if dry_run {
            let verb = if hosts.online(node) {
                "would raise"
            } else {
                "is not logged in: could not raise"
            };
            return CommandOutcome::new(
                true,
                format!("NUT client ({users}) {verb} FSD for it; FSD not raised in a drill"),
            );
        }
        match hosts.raise_fsd(node) {
            Ok(()) => {
                tracing::warn!(node, "power: FSD raised for the NUT client");
                CommandOutcome::new(
                    true,
                    format!("FSD raised for the NUT client ({users}); waiting for it to log out"),
                )
            }
            Err(e) => CommandOutcome::new(false, e.to_string()),
        }
    }
}

/// An agent's answer as the power sequence reads it.
pub(crate) fn outcome(result: &CommandResult) -> CommandOutcome {
    let ok = matches!(
        CommandState::try_from(result.state),
        Ok(CommandState::Accepted | CommandState::Done)
    );
    CommandOutcome {
        ok,
        message: result.message.clone(),
        applied: AppliedDelays {
            off_delay_s: result.effective_off_delay_seconds,
            restore_delay_s: result.effective_restore_delay_seconds,
        },
    }
}

impl AgentPort for HubAgents {
    async fn power_off(
        &self,
        node: &str,
        command_id: u64,
        reason: &str,
        dry_run: bool,
        late: LateAnswer,
    ) -> Result<CommandOutcome, AgentPortError> {
        if is_nut_host(node) {
            return Ok(self.raise_fsd(node, dry_run));
        }
        let command = Command {
            command_id,
            dry_run,
            action: Some(command::Action::PowerOff(PowerOff {
                reason: reason.to_string(),
            })),
        };
        let mut pending = self
            .hub
            .start_command(node, command)
            .map_err(|source| AgentPortError::Command { source })?;
        let first = pending
            .confirmed(self.confirm_timeout)
            .await
            .map_err(|source| AgentPortError::Command { source })?;
        if first.state == CommandState::Accepted as i32 {
            // Keep listening: the agent runs the poweroff after it confirms,
            // and a refusal then (polkit, logind, an inhibitor) is the only
            // word the sequence gets before the stage times out. A halting
            // node never answers DONE; the wait is bounded.
            let wait = self.late_wait;
            tokio::spawn(async move {
                if let Ok(last) = pending.finished(wait).await
                    && last.state != CommandState::Done as i32
                {
                    late(outcome(&last));
                }
            });
        }
        let answer = outcome(&first);
        if let (Some(c), true, false) = (&self.events, answer.ok, dry_run) {
            c.announce(NodeEvent::power(node, PowerStep::PoweredOff, reason));
        }
        Ok(answer)
    }

    async fn ups_shutdown_return(
        &self,
        owner: &str,
        ups: &str,
        command_id: u64,
        off_delay: Duration,
        restore_delay: Duration,
        dry_run: bool,
    ) -> Result<CommandOutcome, AgentPortError> {
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
            .map_err(|source| AgentPortError::Command { source })?;
        Ok(outcome(&result))
    }

    async fn ups_cancel_shutdown(
        &self,
        owner: &str,
        ups: &str,
        command_id: u64,
    ) -> Result<CommandOutcome, AgentPortError> {
        let command = Command {
            command_id,
            dry_run: false,
            action: Some(command::Action::Ups(UpsCommand {
                ups_name: ups.to_string(),
                action: Some(ups_command::Action::CancelShutdown(Empty {})),
            })),
        };
        let result = self
            .hub
            .send_command(owner, command, self.confirm_timeout)
            .await
            .map_err(|source| AgentPortError::Command { source })?;
        Ok(outcome(&result))
    }

    fn connected(&self, node: &str) -> bool {
        if is_nut_host(node) {
            return self.hub.nut_hosts().online(node);
        }
        self.hub.is_connected(node)
    }
}

impl LivePort for Hub {
    fn subscribe(&self) -> broadcast::Receiver<HubEvent> {
        Hub::subscribe(self)
    }
    fn node_infos(&self) -> Vec<NodeInfo> {
        Hub::node_infos(self)
    }
    fn ups_infos(&self) -> Vec<UpsInfo> {
        Hub::ups_infos(self)
    }
    fn nut_hosts(&self) -> Vec<NutHost> {
        self.nut_hosts().hosts()
    }
}

impl StorePort for Store {
    fn power_states(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Store::power_states(self)
    }
    fn put_power_state(&self, domain: &str, state: &[u8]) -> Result<(), StoreError> {
        Store::put_power_state(self, domain, state)
    }
    fn delete_power_state(&self, domain: &str) -> Result<(), StoreError> {
        Store::delete_power_state(self, domain)
    }
    fn append_event(&self, event: Event) -> Result<(), StoreError> {
        Store::append_event(self, event)
    }
    fn power_arm(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Store::power_arm(self)
    }
    fn put_power_arm(&self, record: &[u8]) -> Result<(), StoreError> {
        Store::put_power_arm(self, record)
    }
}
