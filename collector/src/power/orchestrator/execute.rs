//! Carrying out a machine's actions: each one on its own task through the
//! ports, its result fed back to the machine as an input. Nothing here
//! waits for an answer, so the next UPS reading is decided on meanwhile.

use std::time::Duration;

use tokio::sync::mpsc;

use super::API_CALL_TIMEOUT;
use super::runner::{Key, Runner};
use crate::power::machine::{Action, Input, Notice};
use crate::power::notify::Notification;
use crate::power::ports::{
    AgentPort, AgentPortError, ClusterPort, CommandOutcome, LateAnswer, LivePort, StorePort,
};
use nodewarden_common::clock::{now_ms, steady_ms};

/// How much longer a command task waits than the machine's own deadline
/// (HubAgents already adds a second): the machine's deadline always fires
/// first, so a node's state reads the same every time, and a late answer
/// arrives at a machine that has moved on and changes nothing.
const TASK_BACKSTOP_MARGIN: Duration = Duration::from_secs(2);

/// What the Kubernetes API's silence reads as on the timeline.
const API_SILENT: &str = "the Kubernetes API did not answer";

/// Where an action's result goes back to.
type Results = mpsc::UnboundedSender<(Key, Input)>;

impl<C: ClusterPort, A: AgentPort, L: LivePort, S: StorePort> Runner<C, A, L, S> {
    /// Starts every action of one step of the machine `key`.
    pub(super) fn execute(&mut self, key: Key, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Cordon(nodes) => self.cordon(&key, nodes),
                Action::Drain { nodes, deadline_ms } => self.drain(&key, nodes, deadline_ms),
                Action::PowerOff {
                    node,
                    command_id,
                    reason,
                    dry_run,
                } => self.power_off(&key, node, command_id, reason, dry_run),
                Action::UpsShutdownReturn {
                    owner,
                    ups,
                    command_id,
                    off_delay_ms,
                    restore_delay_ms,
                    dry_run,
                } => {
                    let delays = (off_delay_ms, restore_delay_ms);
                    self.ups_shutdown_return(&key, owner, ups, command_id, delays, dry_run)
                }
                Action::UpsCancelShutdown {
                    owner,
                    ups,
                    command_id,
                } => self.ups_cancel_shutdown(&key, owner, ups, command_id),
                Action::Wake { node, mac } => self.wake(node, mac),
                Action::Uncordon(nodes) => self.uncordon(&key, nodes),
                Action::Notify(notice) => self.notify(&key, notice),
            }
        }
    }

    fn cordon(&self, key: &Key, nodes: Vec<String>) {
        for node in nodes {
            let cluster = self.cluster.clone();
            let (tx, k) = (self.results.clone(), key.clone());
            tokio::spawn(async move {
                let result = tokio::time::timeout(API_CALL_TIMEOUT, cluster.cordon(&node))
                    .await
                    .map_or_else(|_| Err(API_SILENT.into()), |r| r.map_err(|e| e.to_string()));
                let _ = tx.send((k, Input::Cordoned { node, result }));
            });
        }
    }

    fn drain(&mut self, key: &Key, nodes: Vec<String>, deadline_ms: i64) {
        let left = Duration::from_millis((deadline_ms - steady_ms()).max(0) as u64);
        let deadline = tokio::time::Instant::now() + left;
        for node in nodes {
            let cluster = self.cluster.clone();
            let (tx, k) = (self.results.clone(), key.clone());
            let h = tokio::spawn(async move {
                let result =
                    match tokio::time::timeout_at(deadline, cluster.drain(&node, deadline)).await {
                        Ok(Ok(s)) if s.remaining.is_empty() => Ok(s.line()),
                        Ok(Ok(s)) => Err(s.line()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("drain timeout".into()),
                    };
                let _ = tx.send((k, Input::Drained { node, result }));
            });
            self.drains.entry(key.clone()).or_default().push(h);
        }
    }

    fn power_off(&self, key: &Key, node: String, command_id: u64, reason: String, dry_run: bool) {
        let agents = self.agents.clone();
        let wait = self
            .config
            .agent_confirm_timeout
            .max(self.config.servers_timeout)
            + TASK_BACKSTOP_MARGIN;
        let (tx, k) = (self.results.clone(), key.clone());
        // A failure the agent reports after its confirm ends the node's wait
        // early, as the same kind of result.
        let late: LateAnswer = {
            let (tx, k, node) = (tx.clone(), k.clone(), node.clone());
            Box::new(move |answer: CommandOutcome| {
                command_result(&tx, k, node, command_id, Ok(Ok(answer)));
            })
        };
        tokio::spawn(async move {
            let r = tokio::time::timeout(wait, async {
                until_connected(&*agents, &node).await;
                agents
                    .power_off(&node, command_id, &reason, dry_run, late)
                    .await
            })
            .await;
            command_result(&tx, k, node, command_id, r);
        });
    }

    fn ups_shutdown_return(
        &self,
        key: &Key,
        owner: String,
        ups: String,
        command_id: u64,
        (off_delay_ms, restore_delay_ms): (i64, i64),
        dry_run: bool,
    ) {
        let agents = self.agents.clone();
        let wait = self.config.agent_confirm_timeout + TASK_BACKSTOP_MARGIN;
        let (tx, k) = (self.results.clone(), key.clone());
        tokio::spawn(async move {
            let off = Duration::from_millis(off_delay_ms.max(0) as u64);
            let restore = Duration::from_millis(restore_delay_ms.max(0) as u64);
            let r = tokio::time::timeout(wait, async {
                until_connected(&*agents, &owner).await;
                agents
                    .ups_shutdown_return(&owner, &ups, command_id, off, restore, dry_run)
                    .await
            })
            .await;
            command_result(&tx, k, owner, command_id, r);
        });
    }

    fn ups_cancel_shutdown(&self, key: &Key, owner: String, ups: String, command_id: u64) {
        let agents = self.agents.clone();
        let wait = self.config.agent_confirm_timeout + TASK_BACKSTOP_MARGIN;
        let (tx, k) = (self.results.clone(), key.clone());
        tokio::spawn(async move {
            let r =
                tokio::time::timeout(wait, agents.ups_cancel_shutdown(&owner, &ups, command_id))
                    .await;
            command_result(&tx, k, owner, command_id, r);
        });
    }

    /// Sends the node's Wake-on-LAN packet; a failure is only logged (the
    /// timeline already says the node was woken, and the next round tries
    /// again).
    fn wake(&self, node: String, mac: [u8; 6]) {
        let to = self.config.wake_broadcast.parse::<std::net::SocketAddr>();
        tokio::spawn(async move {
            let result = match to {
                Ok(to) => crate::power::wake::send(&mac, to).await,
                Err(e) => Err(std::io::Error::other(e)),
            };
            if let Err(e) = result {
                tracing::warn!(node, "cannot send the Wake-on-LAN packet: {e}");
            }
        });
    }

    fn uncordon(&self, key: &Key, nodes: Vec<String>) {
        for node in nodes {
            let cluster = self.cluster.clone();
            let (tx, k) = (self.results.clone(), key.clone());
            tokio::spawn(async move {
                let result = tokio::time::timeout(API_CALL_TIMEOUT, cluster.uncordon_ours(&node))
                    .await
                    .map_or_else(|_| Err(API_SILENT.into()), |r| r.map_err(|e| e.to_string()));
                let _ = tx.send((k, Input::Uncordoned { node, result }));
            });
        }
    }

    /// Records the notice as an event and hands it to the notifier.
    fn notify(&self, key: &Key, notice: Notice) {
        let drill = matches!(key, Key::Drill(_));
        let domain = match key {
            Key::Real(n) | Key::Drill(n) => n.clone(),
        };
        let ups = match &key {
            Key::Real(n) => self.machines.get(n).map(|m| m.spec.ups.clone()),
            Key::Drill(n) => self.drills.get(n).map(|d| d.machine.spec.ups.clone()),
        }
        .unwrap_or_default();
        let prefix = if drill { "drill_" } else { "" };
        let event = crate::state::events::event(
            now_ms(),
            &format!("power:{domain}"),
            &format!("power_{prefix}{}", notice.kind),
            notice.kind.severity(),
            notice.message.clone(),
        );
        self.record(event);
        self.notifier.send(Notification {
            event: notice.kind,
            domain: domain.clone(),
            ups,
            node: notice.node.unwrap_or_default(),
            message: notice.message,
            timestamp_ms: now_ms(),
            drill,
        });
    }
}

/// Feeds a command's answer back: accepted or not, and its words (or why
/// none came).
fn command_result(
    tx: &Results,
    key: Key,
    node: String,
    command_id: u64,
    answer: Result<Result<CommandOutcome, AgentPortError>, tokio::time::error::Elapsed>,
) {
    let o = match answer {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => CommandOutcome::new(false, e.to_string()),
        Err(_) => CommandOutcome::new(false, "no answer"),
    };
    let _ = tx.send((
        key,
        Input::CommandResult {
            node,
            command_id,
            ok: o.ok,
            message: o.message,
            applied: o.applied,
        },
    ));
}

/// Waits for `node`'s agent to be connected. A command resent after a
/// collector restart goes out before the agents have reconnected; without
/// this it would fail at once and the sequence would skip the node.
async fn until_connected<A: AgentPort + ?Sized>(agents: &A, node: &str) {
    while !agents.connected(node) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
