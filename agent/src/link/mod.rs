//! The outbound stream to the collector: hello, buffered samples, pushed UPS
//! changes, acks, reconnect with backoff, and commands coming back.
//!
//! Exactly-once delivery: samples carry per-instance sequence numbers; the
//! collector stores them and the per-instance high-water mark in one
//! transaction, tells the agent that mark in Welcome on every (re)connect and
//! acks as it commits. The agent keeps everything unacked and resends what
//! the collector does not have.

pub mod buffer;
pub mod halting;
pub mod pacing;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodewarden_proto::MAX_MESSAGE_BYTES;
use nodewarden_proto::v1::agent_link_client::AgentLinkClient;
use nodewarden_proto::v1::{
    AgentMessage, CollectorMessage, Command, CommandResult, CommandState, Hello, UpsStatus,
    Welcome, agent_message, collector_message,
};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use self::buffer::{Outgoing, SampleBuffer};
use crate::command::Reply;
use crate::trust::Identity;
use nodewarden_common::backoff::Backoff;

/// Most samples per SampleBatch message (a reconnect after hours sends many).
const MAX_BATCH: usize = 500;
/// How long the collector may take to answer Hello.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared between the sampler (producer) and the link (consumer).
#[derive(Debug, Clone)]
pub struct Outbox {
    pub buffer: Arc<Mutex<SampleBuffer>>,
    pub wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Outbox {
            buffer: Arc::new(Mutex::new(SampleBuffer::new(capacity))),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Queues a sample for the collector; with `send_now` it goes at once,
    /// with every sample held before it, else it waits for the next send
    /// (see [`pacing`]).
    pub fn push(&self, sample: nodewarden_proto::v1::Sample, send_now: bool) {
        let mut buffer = lock(&self.buffer);
        buffer.push(sample);
        if send_now {
            buffer.release();
            drop(buffer);
            self.wake.notify_one();
        }
    }
}

fn lock(buffer: &Mutex<SampleBuffer>) -> std::sync::MutexGuard<'_, SampleBuffer> {
    // A panic while holding the lock cannot leave the buffer inconsistent in
    // a way worse than losing the link, so keep going.
    buffer.lock().unwrap_or_else(|e| e.into_inner())
}

/// The link's ends of the command channel: commands go to the executor,
/// its replies come back to be sent. Replies made while the link is down
/// wait in the channel and go out after the reconnect.
#[derive(Debug)]
pub struct CommandLink {
    /// Commands received, for the executor.
    pub to_executor: mpsc::Sender<Command>,
    /// The executor's answers, to send.
    pub replies: mpsc::Receiver<Reply>,
}

/// Whether the link is up: the backoff it resets and the watchers it tells
/// (standalone mode).
struct Health {
    backoff: Backoff,
    connected: watch::Sender<bool>,
}

impl Health {
    fn up(&mut self) {
        self.backoff.connected();
        self.connected.send_replace(true);
    }

    fn down(&self) {
        self.connected.send_replace(false);
    }
}

/// Why a session ended.
#[derive(Debug)]
enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// The collector this agent joined, and the identity it proves itself with.
#[derive(Debug, Clone)]
pub struct CollectorPeer {
    /// `https://host:port`.
    pub address: String,
    /// This node's key and certificate, and the CA it trusts.
    pub identity: Identity,
}

/// Runs the link until `shutdown` turns true. Never returns early on errors:
/// it reconnects forever.
pub async fn run(
    peer: CollectorPeer,
    hello: Hello,
    outbox: Outbox,
    mut ups_changes: mpsc::Receiver<UpsStatus>,
    mut commands: CommandLink,
    connected: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut health = Health {
        backoff: Backoff::new(),
        connected,
    };
    let mut last_problem: Option<String> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let end = session(
            &peer,
            &hello,
            &outbox,
            &mut ups_changes,
            &mut commands,
            &mut shutdown,
            &mut health,
        )
        .await;
        health.down();
        let reason = match end {
            SessionEnd::Shutdown => return,
            SessionEnd::Lost(reason) => reason,
        };
        let delay = health.backoff.next_delay();
        // One line per change of state, not one per retry.
        if last_problem.as_deref() != Some(reason.as_str()) {
            tracing::warn!(collector = %peer.address, "collector link down: {reason}; retrying with backoff");
            last_problem = Some(reason);
        } else {
            tracing::debug!("still cannot reach the collector; next try in {delay:?}");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Mutual TLS only: the identity is read on every connect, so a renewed
/// certificate is used from the next connection on.
async fn connect(
    collector: &str,
    identity: &Identity,
    verdict: crate::trust::TlsVerdict,
) -> Result<Channel, crate::trust::TrustError> {
    let config = identity.client_config()?;
    crate::trust::connect_watched(collector, config, verdict).await
}

/// A message queued to go out, with a note to fire once it is on the stream.
type Queued = (AgentMessage, Option<oneshot::Sender<()>>);

/// One connection: handshake, then the exchange until the stream ends or
/// shutdown.
async fn session(
    peer: &CollectorPeer,
    hello: &Hello,
    outbox: &Outbox,
    ups_changes: &mut mpsc::Receiver<UpsStatus>,
    commands: &mut CommandLink,
    shutdown: &mut watch::Receiver<bool>,
    health: &mut Health,
) -> SessionEnd {
    let (tx, mut inbound, welcome) = match handshake(peer, hello, outbox, shutdown).await {
        Ok(open) => open,
        Err(end) => return end,
    };
    lock(&outbox.buffer).restart_stream(welcome.stored_through_seq);
    health.up();
    tracing::info!(
        collector = %peer.address,
        collector_version = %welcome.collector_version,
        stored_through = welcome.stored_through_seq,
        "connected to collector"
    );
    exchange(tx, &mut inbound, outbox, ups_changes, commands, shutdown).await
}

/// Connects, sends Hello and waits for the collector's Welcome.
async fn handshake(
    peer: &CollectorPeer,
    hello: &Hello,
    outbox: &Outbox,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<
    (
        mpsc::Sender<AgentMessage>,
        tonic::Streaming<CollectorMessage>,
        Welcome,
    ),
    SessionEnd,
> {
    let verdict = crate::trust::TlsVerdict::default();
    let channel = tokio::select! {
        c = connect(&peer.address, &peer.identity, verdict.clone()) => match c {
            Ok(c) => c,
            Err(e) => return Err(SessionEnd::Lost(e.to_string())),
        },
        _ = shutdown.changed() => return Err(SessionEnd::Shutdown),
    };
    let mut client = AgentLinkClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let (tx, rx) = mpsc::channel::<AgentMessage>(16);
    let mut hello = hello.clone();
    hello.oldest_buffered_seq = lock(&outbox.buffer).oldest_seq();
    let hello_msg = AgentMessage {
        body: Some(agent_message::Body::Hello(hello)),
    };
    if tx.send(hello_msg).await.is_err() {
        return Err(SessionEnd::Lost("stream closed before hello".into()));
    }
    let mut inbound = match client.session(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            return Err(SessionEnd::Lost(format!(
                "collector refused the stream: {}",
                verdict
                    .lock()
                    .ok()
                    .and_then(|v| v.clone())
                    .unwrap_or_else(|| crate::trust::explain_status(&status, &peer.address))
            )));
        }
    };

    let welcome = match tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(CollectorMessage {
            body: Some(collector_message::Body::Welcome(w)),
        }))) => w,
        Ok(Ok(other)) => return Err(SessionEnd::Lost(format!("expected Welcome, got {other:?}"))),
        Ok(Err(status)) => {
            return Err(SessionEnd::Lost(format!(
                "collector closed the stream: {}",
                status.message()
            )));
        }
        Err(_) => {
            return Err(SessionEnd::Lost(
                "collector did not answer hello within 10 s".into(),
            ));
        }
    };
    Ok((tx, inbound, welcome))
}

/// The connected stream: sends samples, UPS changes and command results,
/// takes acks and commands, until the stream ends or shutdown (then hands
/// over what is queued).
async fn exchange(
    tx: mpsc::Sender<AgentMessage>,
    inbound: &mut tonic::Streaming<CollectorMessage>,
    outbox: &Outbox,
    ups_changes: &mut mpsc::Receiver<UpsStatus>,
    commands: &mut CommandLink,
    shutdown: &mut watch::Receiver<bool>,
) -> SessionEnd {
    // Control messages (UPS changes, command results) go before samples; a
    // command result may carry a note to fire once it is on the stream.
    let mut urgent: std::collections::VecDeque<Queued> = Default::default();
    let mut pending: Option<Queued> = None;
    // A closed channel (no UPS configured, or every monitor gone) is ready at
    // once forever; polling it would spin this task at 100% CPU.
    let mut ups_open = true;
    let mut replies_open = true;
    loop {
        if pending.is_none() {
            pending = urgent.pop_front().or_else(|| {
                lock(&outbox.buffer)
                    .next_outgoing(MAX_BATCH)
                    .map(|o| (outgoing_message(o), None))
            });
        }
        tokio::select! {
            permit = tx.reserve(), if pending.is_some() => match (permit, pending.take()) {
                (Ok(permit), Some((msg, sent))) => {
                    permit.send(msg);
                    if let Some(sent) = sent {
                        let _ = sent.send(());
                    }
                }
                _ => return SessionEnd::Lost("stream closed while sending".into()),
            },
            _ = outbox.wake.notified(), if pending.is_none() => {}
            change = ups_changes.recv(), if ups_open => match change {
                Some(status) => urgent.push_back((AgentMessage { body: Some(agent_message::Body::UpsStatus(status)) }, None)),
                None => ups_open = false,
            },
            reply = commands.replies.recv(), if replies_open => match reply {
                Some(Reply { result, sent }) => urgent.push_back((AgentMessage { body: Some(agent_message::Body::CommandResult(result)) }, sent)),
                None => replies_open = false,
            },
            msg = inbound.message() => match msg {
                Ok(Some(CollectorMessage { body: Some(body) })) => {
                    if let Err(end) = take_inbound(body, outbox, commands, &mut urgent) {
                        return end;
                    }
                }
                Ok(Some(CollectorMessage { body: None })) => {}
                Ok(None) => return SessionEnd::Lost("collector closed the stream".into()),
                Err(status) => return SessionEnd::Lost(format!("stream error: {}", status.message())),
            },
            _ = shutdown.changed() => break,
        }
    }
    if let Some(halting) = halting::if_system_stopping().await {
        urgent.push_front((halting, None));
    }
    hand_over(tx, pending, urgent, outbox, inbound).await;
    SessionEnd::Shutdown
}

/// One message from the collector: an ack frees buffered samples, a command
/// goes to the executor (or is answered at once when it cannot take it), a
/// second Welcome ends the session.
fn take_inbound(
    body: collector_message::Body,
    outbox: &Outbox,
    commands: &CommandLink,
    urgent: &mut std::collections::VecDeque<Queued>,
) -> Result<(), SessionEnd> {
    match body {
        collector_message::Body::Ack(ack) => lock(&outbox.buffer).ack(ack.acked_through_seq),
        collector_message::Body::Command(cmd) => {
            let id = cmd.command_id;
            if let Err(e) = commands.to_executor.try_send(cmd) {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "too many commands at once; try again",
                    mpsc::error::TrySendError::Closed(_) => "this agent is stopping",
                };
                let result = CommandResult {
                    command_id: id,
                    state: CommandState::Failed as i32,
                    message: why.into(),
                    ..CommandResult::default()
                };
                urgent.push_back((
                    AgentMessage {
                        body: Some(agent_message::Body::CommandResult(result)),
                    },
                    None,
                ));
            }
        }
        collector_message::Body::Welcome(_) => {
            return Err(SessionEnd::Lost("protocol error: second Welcome".into()));
        }
    }
    Ok(())
}

/// How long a stopping agent waits for the collector to take its last
/// messages. The bytes leave in microseconds; waiting for the acks would
/// mean waiting for the collector's next commit (seconds).
const HAND_OVER_WAIT: Duration = Duration::from_millis(300);

/// On the way out: sends what is queued, held samples included, ends the
/// stream, and reads acks until the collector closes or [`HAND_OVER_WAIT`]
/// passes. The collector stores what reached it; samples held for the next
/// batch would otherwise die with this process.
async fn hand_over(
    tx: mpsc::Sender<AgentMessage>,
    pending: Option<Queued>,
    urgent: std::collections::VecDeque<Queued>,
    outbox: &Outbox,
    inbound: &mut tonic::Streaming<CollectorMessage>,
) {
    let deadline = tokio::time::Instant::now() + HAND_OVER_WAIT;
    lock(&outbox.buffer).release();
    let mut queue: Vec<AgentMessage> = pending
        .into_iter()
        .chain(urgent)
        .map(|(message, _)| message)
        .collect();
    while let Some(next) = lock(&outbox.buffer).next_outgoing(MAX_BATCH) {
        queue.push(outgoing_message(next));
    }
    for message in queue {
        if tokio::time::timeout_at(deadline, tx.send(message))
            .await
            .map_or(true, |sent| sent.is_err())
        {
            return;
        }
    }
    drop(tx);
    while let Ok(Ok(Some(message))) = tokio::time::timeout_at(deadline, inbound.message()).await {
        if let Some(collector_message::Body::Ack(ack)) = message.body {
            lock(&outbox.buffer).ack(ack.acked_through_seq);
        }
    }
}

fn outgoing_message(next: Outgoing) -> AgentMessage {
    let body = match next {
        Outgoing::Gap(g) => agent_message::Body::Gap(g),
        Outgoing::Samples(samples) => {
            agent_message::Body::Samples(nodewarden_proto::v1::SampleBatch { samples })
        }
    };
    AgentMessage { body: Some(body) }
}
