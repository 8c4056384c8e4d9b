//! Commands from the collector: power this node off, UPS commands, and dry
//! runs of both.
//!
//! Commands arrive only over the collector link (`link`), and execution is
//! reachable from nowhere else: the agent listens on no port. Whether the
//! link is authenticated is the link's business (mutual TLS, see
//! docs/security.md); this module trusts whatever the link hands it.
//!
//! Every command is answered on the link: a poweroff or UPS command first
//! ACCEPTED (the collector's confirm, sent before anything runs), then DONE
//! or FAILED with what happened; a dry run DONE with exactly what would have
//! run; anything this agent does not know UNSUPPORTED.

pub mod poweroff;
pub mod ups;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodewarden_proto::v1::{Command, CommandResult, CommandState, command};
use tokio::sync::{mpsc, oneshot};

use self::poweroff::{Begin, PowerOff};
use self::ups::UpsUnit;

/// A result on its way to the collector; `sent` fires once the link has
/// written it to the stream.
#[derive(Debug)]
pub struct Reply {
    /// The answer.
    pub result: CommandResult,
    /// Fired once the link has written it.
    pub sent: Option<oneshot::Sender<()>>,
}

/// How long a poweroff waits for its ACCEPTED to reach the stream before
/// running anyway (the collector asked; a dead link must not keep the node
/// up on a dying battery).
const CONFIRM_WAIT: Duration = Duration::from_secs(3);

/// Final results of recent UPS commands, so a resent id gets the same answer
/// instead of a second command to the UPS.
const REMEMBERED: usize = 64;

/// Carries out commands. Shared by the link's command queue and standalone
/// mode (which powers off through the same `PowerOff`).
#[derive(Debug)]
pub struct Executor {
    poweroff: Arc<PowerOff>,
    ups: Vec<UpsUnit>,
    replies: mpsc::Sender<Reply>,
    answered: Mutex<VecDeque<CommandResult>>,
}

fn result(id: u64, state: CommandState, message: impl Into<String>) -> CommandResult {
    CommandResult {
        command_id: id,
        state: state as i32,
        message: message.into(),
        ..CommandResult::default()
    }
}

impl Executor {
    /// Executes with `poweroff`, on `ups`, answering into `replies`.
    pub fn new(poweroff: Arc<PowerOff>, ups: Vec<UpsUnit>, replies: mpsc::Sender<Reply>) -> Self {
        Executor {
            poweroff,
            ups,
            replies,
            answered: Mutex::new(VecDeque::new()),
        }
    }

    /// Queues a result for the link; never blocks the caller on a dead link
    /// for longer than the channel is full.
    async fn reply(&self, r: CommandResult) {
        tracing::info!(
            command_id = r.command_id,
            state = r.state,
            "command result: {}",
            r.message
        );
        let _ = self
            .replies
            .send(Reply {
                result: r,
                sent: None,
            })
            .await;
    }

    /// Handles one command to the end.
    pub async fn handle(&self, cmd: Command) {
        let id = cmd.command_id;
        match &cmd.action {
            None => {
                self.reply(result(
                    id,
                    CommandState::Unsupported,
                    "empty command: no action set (is the collector newer than this agent?)",
                ))
                .await;
            }
            Some(command::Action::PowerOff(p)) => self.power_off(id, cmd.dry_run, &p.reason).await,
            Some(command::Action::Ups(u)) => self.ups_command(id, cmd.dry_run, u).await,
        }
    }

    async fn power_off(&self, id: u64, dry_run: bool, reason: &str) {
        if dry_run {
            self.reply(result(
                id,
                CommandState::Done,
                format!("dry run: would run: {}", self.poweroff.command_line()),
            ))
            .await;
            return;
        }
        match self.poweroff.begin(id) {
            Begin::Run => {}
            Begin::InProgress { id: running } => {
                self.reply(result(
                    id,
                    CommandState::Accepted,
                    format!(
                        "poweroff already in progress (command {running}); not running it again"
                    ),
                ))
                .await;
                return;
            }
            Begin::Issued { id: ran, message } => {
                self.reply(result(
                    id,
                    CommandState::Done,
                    format!(
                        "poweroff already issued by command {ran}; not running it again ({message})"
                    ),
                ))
                .await;
                return;
            }
            Begin::RanBefore => {
                self.reply(result(
                    id,
                    CommandState::Done,
                    "this poweroff already ran (before this agent restarted); not running it again",
                ))
                .await;
                return;
            }
        }
        // Confirm first: once the action runs, the node may be gone before
        // it can say anything.
        let (sent_tx, sent_rx) = oneshot::channel();
        let accepted = result(
            id,
            CommandState::Accepted,
            format!("powering off: {}", self.poweroff.command_line()),
        );
        if self
            .replies
            .send(Reply {
                result: accepted,
                sent: Some(sent_tx),
            })
            .await
            .is_ok()
            && tokio::time::timeout(CONFIRM_WAIT, sent_rx).await.is_err()
        {
            tracing::warn!(
                command_id = id,
                "the collector link did not take the confirm within 3 s; powering off anyway"
            );
        }
        let why = if reason.is_empty() {
            "ordered by the collector"
        } else {
            reason
        };
        match self.poweroff.run(id, why).await {
            Ok(m) => self.reply(result(id, CommandState::Done, m)).await,
            Err(m) => self.reply(result(id, CommandState::Failed, m)).await,
        }
    }

    async fn ups_command(&self, id: u64, dry_run: bool, cmd: &nodewarden_proto::v1::UpsCommand) {
        if let Some(previous) = self.remembered(id) {
            self.reply(previous).await;
            return;
        }
        let Some(kind) = ups::kind_of(cmd) else {
            self.reply(result(
                id,
                CommandState::Unsupported,
                "UPS command with no action set (is the collector newer than this agent?)",
            ))
            .await;
            return;
        };
        let unit = match ups::find(&self.ups, &cmd.ups_name) {
            Ok(u) => u,
            Err(m) => {
                self.reply(result(id, CommandState::Failed, m)).await;
                return;
            }
        };
        if dry_run {
            let r = match ups::describe(&unit.config, &unit.handle.latest(), kind) {
                Ok(m) => result(id, CommandState::Done, format!("dry run: {m}")),
                Err(m) => result(id, CommandState::Failed, format!("dry run: {m}")),
            };
            self.reply(r).await;
            return;
        }
        self.reply(result(
            id,
            CommandState::Accepted,
            format!("sending {} to UPS `{}`", kind.nut_name(), unit.config.name),
        ))
        .await;
        let r = match unit.handle.command_async(kind).await {
            Ok(done) => CommandResult {
                effective_off_delay_seconds: done.delays.off_delay_s,
                effective_restore_delay_seconds: done.delays.restore_delay_s,
                ..result(
                    id,
                    CommandState::Done,
                    format!("UPS `{}`: {}", unit.config.name, done.message),
                )
            },
            Err(e) => result(
                id,
                CommandState::Failed,
                format!("UPS `{}`: {e}", unit.config.name),
            ),
        };
        self.remember(r.clone());
        self.reply(r).await;
    }

    fn remembered(&self, id: u64) -> Option<CommandResult> {
        let answered = self.answered.lock().unwrap_or_else(|e| e.into_inner());
        answered.iter().find(|r| r.command_id == id).cloned()
    }

    fn remember(&self, r: CommandResult) {
        let mut answered = self.answered.lock().unwrap_or_else(|e| e.into_inner());
        if answered.len() == REMEMBERED {
            answered.pop_front();
        }
        answered.push_back(r);
    }
}

/// Runs commands from the link until it closes its queue. Each command runs
/// in its own task: a UPS command waiting on a slow serial line must not
/// hold up a poweroff.
pub async fn run(executor: Arc<Executor>, mut commands: mpsc::Receiver<Command>) {
    while let Some(cmd) = commands.recv().await {
        let e = executor.clone();
        tokio::spawn(async move { e.handle(cmd).await });
    }
}

#[cfg(test)]
mod tests;
