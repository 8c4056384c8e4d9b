//! Commands to agents over their link streams: ids, the table of commands
//! waiting for results, and what can go wrong.
//!
//! A command is sent on the node's current stream; its results (ACCEPTED,
//! then DONE, FAILED or UNSUPPORTED) come back on whatever stream the agent
//! has then, possibly after a reconnect, so waiters are keyed by node and id,
//! not by stream. Results nobody waits for are logged and dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nodewarden_proto::v1::{CommandResult, CommandState};
use tokio::sync::mpsc;

/// Why a command got no final answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The node has no live stream now.
    #[error("{0} is not connected")]
    NotConnected(String),
    /// No final result within the time given; `accepted` says whether the
    /// agent had at least confirmed it.
    #[error(
        "no answer from {node} within {}{}",
        nodewarden_common::units::format_duration(*.after),
        if *.accepted { " (it had accepted the command)" } else { "" }
    )]
    Timeout {
        node: String,
        after: Duration,
        accepted: bool,
    },
    /// The stream would not take the command (closing, or its queue full).
    #[error("could not send the command to {node}: {message}")]
    Refused { node: String, message: String },
}

/// True for the states that end a command.
pub fn is_final(state: i32) -> bool {
    state == CommandState::Done as i32
        || state == CommandState::Failed as i32
        || state == CommandState::Unsupported as i32
}

/// Command ids unique per collector, across restarts: the agent runs each id
/// at most once, so a restarted collector must not reuse an old one by
/// accident (and resends a persisted one on purpose).
#[derive(Debug)]
pub struct CommandIds {
    next: AtomicU64,
}

impl CommandIds {
    /// Starts above anything an earlier run can have issued: unix
    /// milliseconds shifted left leaves 4096 ids per millisecond of uptime.
    pub fn new(now_ms: i64) -> Self {
        CommandIds {
            next: AtomicU64::new((now_ms.max(1) as u64) << 12),
        }
    }

    /// The next id.
    pub fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

type Key = (String, u64);

/// Who waits for which (node, command id).
#[derive(Debug, Default)]
pub struct Waiters {
    table: Mutex<HashMap<Key, Vec<mpsc::UnboundedSender<CommandResult>>>>,
}

impl Waiters {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<mpsc::UnboundedSender<CommandResult>>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers interest in every result for `id` from `node`.
    pub fn register(&self, node: &str, id: u64) -> mpsc::UnboundedReceiver<CommandResult> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut t = self.lock();
        // Sweep waiters that gave up (timed out, dropped): the table stays as
        // small as the commands really in flight.
        t.retain(|_, v| {
            v.retain(|s| !s.is_closed());
            !v.is_empty()
        });
        t.entry((node.to_string(), id)).or_default().push(tx);
        rx
    }

    /// Hands a result to whoever waits for it; false if nobody does.
    pub fn deliver(&self, node: &str, result: &CommandResult) -> bool {
        let key = (node.to_string(), result.command_id);
        let mut t = self.lock();
        let Some(list) = t.get_mut(&key) else {
            return false;
        };
        list.retain(|s| s.send(result.clone()).is_ok());
        let delivered = !list.is_empty();
        if list.is_empty() || is_final(result.state) {
            t.remove(&key);
        }
        delivered
    }
}

/// A command on its way: its results arrive here.
#[derive(Debug)]
pub struct PendingCommand {
    /// The node it went to.
    pub node: String,
    /// Its id, for the log and a later resend.
    pub command_id: u64,
    results: mpsc::UnboundedReceiver<CommandResult>,
    accepted: Option<CommandResult>,
}

impl PendingCommand {
    pub(crate) fn new(
        node: String,
        command_id: u64,
        results: mpsc::UnboundedReceiver<CommandResult>,
    ) -> Self {
        PendingCommand {
            node,
            command_id,
            results,
            accepted: None,
        }
    }

    /// Waits for the agent's confirm (ACCEPTED) or a final result, whichever
    /// comes first. A poweroff confirms and then the node halts: it may
    /// never report DONE.
    pub async fn confirmed(&mut self, timeout: Duration) -> Result<CommandResult, CommandError> {
        if let Some(a) = &self.accepted {
            return Ok(a.clone());
        }
        self.next_until(timeout, true).await
    }

    /// Waits for the final result (DONE, FAILED or UNSUPPORTED).
    pub async fn finished(&mut self, timeout: Duration) -> Result<CommandResult, CommandError> {
        self.next_until(timeout, false).await
    }

    async fn next_until(
        &mut self,
        timeout: Duration,
        accept_is_enough: bool,
    ) -> Result<CommandResult, CommandError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let r = match tokio::time::timeout_at(deadline, self.results.recv()).await {
                Ok(Some(r)) => r,
                // The sender lives in the hub's table until a final result.
                Ok(None) | Err(_) => {
                    return Err(CommandError::Timeout {
                        node: self.node.clone(),
                        after: timeout,
                        accepted: self.accepted.is_some(),
                    });
                }
            };
            if r.state == CommandState::Accepted as i32 {
                self.accepted = Some(r.clone());
                if accept_is_enough {
                    return Ok(r);
                }
            } else if is_final(r.state) {
                return Ok(r);
            } else {
                tracing::warn!(node = %self.node, command_id = r.command_id, state = r.state, "ignoring a command result in an unknown state: {}", r.message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: u64, state: CommandState) -> CommandResult {
        CommandResult {
            command_id: id,
            state: state as i32,
            message: format!("{state:?}"),
            ..CommandResult::default()
        }
    }

    #[tokio::test]
    async fn accepted_then_done_reach_the_waiter_and_the_entry_goes() {
        let w = Waiters::default();
        let rx = w.register("pi-1", 9);
        let mut p = PendingCommand::new("pi-1".into(), 9, rx);
        assert!(w.deliver("pi-1", &result(9, CommandState::Accepted)));
        let a = p.confirmed(Duration::from_secs(1)).await.unwrap();
        assert_eq!(a.state, CommandState::Accepted as i32);
        assert!(w.deliver("pi-1", &result(9, CommandState::Done)));
        let d = p.finished(Duration::from_secs(1)).await.unwrap();
        assert_eq!(d.state, CommandState::Done as i32);
        // Final: a late duplicate finds nobody.
        assert!(!w.deliver("pi-1", &result(9, CommandState::Done)));
    }

    #[tokio::test]
    async fn results_of_unknown_ids_or_other_nodes_are_not_delivered() {
        let w = Waiters::default();
        let rx = w.register("pi-1", 9);
        let mut p = PendingCommand::new("pi-1".into(), 9, rx);
        assert!(!w.deliver("pi-1", &result(10, CommandState::Done)));
        assert!(!w.deliver("pi-2", &result(9, CommandState::Done)));
        let e = p.finished(Duration::from_millis(50)).await.unwrap_err();
        assert!(
            matches!(
                e,
                CommandError::Timeout {
                    accepted: false,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_timeout_says_whether_the_agent_had_confirmed() {
        let w = Waiters::default();
        let rx = w.register("pi-1", 3);
        let mut p = PendingCommand::new("pi-1".into(), 3, rx);
        w.deliver("pi-1", &result(3, CommandState::Accepted));
        let e = p.finished(Duration::from_millis(50)).await.unwrap_err();
        assert!(
            matches!(e, CommandError::Timeout { accepted: true, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("had accepted"), "{e}");
    }

    #[test]
    fn ids_are_unique_and_above_an_earlier_runs() {
        let earlier = CommandIds::new(1_000_000);
        let a = earlier.next();
        let later = CommandIds::new(1_000_001);
        let b = later.next();
        assert!(b > a);
        assert_ne!(later.next(), b);
    }
}
