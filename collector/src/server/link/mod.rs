//! The AgentLink service: one long-lived stream per agent.
//!
//! A stream must open with Hello; anything else, a malformed or oversized
//! message, closes that stream with a log line and touches no other agent.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nodewarden_proto::MAX_MESSAGE_BYTES;
use nodewarden_proto::v1::agent_link_server::{self, AgentLink};
use nodewarden_proto::v1::{
    Ack, AgentMessage, CollectorMessage, Command, Hello, Sample, Welcome, agent_message,
    collector_message,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::server::{NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::{ProstDecoder, ProstEncoder};

use self::sequence::{Gap, Samples, Sequence};
use crate::pki::{Authority, tls};
use crate::state::hub::Hub;
use crate::state::writer::WriteItem;
use crate::store::NodeRecord;
use nodewarden_common::clock::now_ms;

mod sequence;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct LinkService {
    hub: Arc<Hub>,
    writer: mpsc::Sender<WriteItem>,
    next_stream: AtomicU64,
    /// Streams live as long as agents do; shutdown has to end them.
    shutdown: watch::Receiver<bool>,
    /// Who the peer is (its certificate), and removals that end streams.
    auth: Arc<Authority>,
}

impl LinkService {
    pub fn new(
        hub: Arc<Hub>,
        writer: mpsc::Sender<WriteItem>,
        shutdown: watch::Receiver<bool>,
        auth: Arc<Authority>,
    ) -> Self {
        LinkService {
            hub,
            writer,
            next_stream: AtomicU64::new(1),
            shutdown,
            auth,
        }
    }
}

/// Kubernetes node names are DNS subdomains: lower-case alphanumerics, '-' and '.'.
pub(crate) fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.'])
}

fn record_of(hello: &Hello, now: i64) -> NodeRecord {
    NodeRecord {
        name: hello.node_name.clone(),
        role: String::new(),
        board_model: hello.board_model.clone(),
        arch: hello.arch.clone(),
        kernel_version: hello.kernel_version.clone(),
        os_name: hello.os_name.clone(),
        agent_version: hello.agent_version.clone(),
        first_seen_ms: now,
        last_seen_ms: now,
        online: true,
        offline_reason: String::new(),
        sample_interval_ms: hello.sample_interval_ms,
        latest: None,
    }
}

type OutStream = Pin<Box<dyn Stream<Item = Result<CollectorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentLink for LinkService {
    type SessionStream = OutStream;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let opened = self.handshake(request).await?;
        let node: Arc<str> = Arc::from(opened.hello.node_name.as_str());
        let instance_id = opened.hello.instance_id;
        let store = self.hub.store().clone();
        let n = node.clone();
        let stored_through = tokio::task::spawn_blocking(move || store.high_water(&n, instance_id))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::unavailable(format!("collector store: {e}")))?;

        let now = now_ms();
        let stream_id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let peer = opened.peer;
        let registration =
            self.hub
                .connected(record_of(&opened.hello, now), stream_id, peer.clone(), now);
        self.hub
            .set_agent_facts(&node, &opened.hello.can_power_off, &opened.hello.k3s_role);
        tracing::info!(node = %node, %peer, instance_id, stored_through, "agent connected");

        // Boxed: a channel allocates its slots in blocks of 32 up front, and
        // with thousands of streams 32 pointers are cheaper than 32 messages.
        let (out_tx, out_rx) = mpsc::channel::<Box<Result<CollectorMessage, Status>>>(8);
        let welcome = Welcome {
            stored_through_seq: stored_through,
            collector_version: env!("CARGO_PKG_VERSION").into(),
        };
        let _ = out_tx
            .send(Box::new(Ok(CollectorMessage {
                body: Some(collector_message::Body::Welcome(welcome)),
            })))
            .await;
        let (ack_tx, ack_rx) = watch::channel(stored_through);

        tokio::spawn(outbound(
            node.clone(),
            out_tx.clone(),
            Outbound {
                removals: opened.removals,
                replaced: registration.replaced,
                commands: registration.commands,
                acks: ack_rx,
                shutdown: self.shutdown.clone(),
            },
        ));
        let inbound = Inbound {
            hub: self.hub.clone(),
            writer: self.writer.clone(),
            node,
            instance_id,
            ack: Arc::new(ack_tx),
            sequence: Sequence::after(stored_through),
        };
        tokio::spawn(inbound.run(opened.inbound, peer, stream_id, out_tx));

        Ok(Response::new(Box::pin(
            ReceiverStream::new(out_rx).map(|message| *message),
        )))
    }
}

/// A stream past its handshake: who it is and what it said first.
struct Opened {
    peer: String,
    hello: Hello,
    inbound: Streaming<AgentMessage>,
    removals: broadcast::Receiver<String>,
}

impl LinkService {
    /// Checks the peer's certificate and its Hello (first, in time, naming a
    /// valid node, the one the certificate names).
    async fn handshake(&self, request: Request<Streaming<AgentMessage>>) -> Result<Opened, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "local".to_string(), |a| a.to_string());
        let certified = match tls::require_node(&self.auth, &request) {
            Ok(n) => n,
            Err(status) => {
                tracing::warn!(%peer, "refusing stream: {}", status.message());
                return Err(status);
            }
        };
        let removals = self.auth.removals();
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(AgentMessage {
                body: Some(agent_message::Body::Hello(h)),
            }))) => h,
            Ok(Ok(_)) => {
                tracing::warn!(%peer, "closing stream: the first message was not Hello");
                return Err(Status::invalid_argument(
                    "the first message on the stream must be Hello",
                ));
            }
            Ok(Err(status)) => {
                tracing::warn!(%peer, "closing stream before Hello: {}", status.message());
                return Err(status);
            }
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 s")),
        };
        if !valid_node_name(&hello.node_name) {
            tracing::warn!(%peer, node = %hello.node_name, "refusing stream: invalid node name");
            return Err(Status::invalid_argument(format!(
                "node name `{}` is not a valid Kubernetes node name (lower-case letters, digits, '-' and '.')",
                hello.node_name
            )));
        }
        if hello.node_name != certified {
            tracing::warn!(%peer, certificate = %certified, hello = %hello.node_name, "refusing stream: Hello names another node than the certificate");
            return Err(Status::permission_denied(format!(
                "this certificate belongs to node `{certified}`, not `{}`",
                hello.node_name
            )));
        }
        Ok(Opened {
            peer,
            hello,
            inbound,
            removals,
        })
    }
}

/// What the outbound side of a stream waits on.
struct Outbound {
    removals: broadcast::Receiver<String>,
    replaced: oneshot::Receiver<()>,
    commands: mpsc::Receiver<Box<Command>>,
    acks: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
}

type OutSender = mpsc::Sender<Box<Result<CollectorMessage, Status>>>;

/// Outbound: acks (coalesced: the writer never waits on a slow agent),
/// commands, and a close when the node is removed, the collector stops or a
/// newer stream from the same node takes over.
async fn outbound(this_node: Arc<str>, out: OutSender, w: Outbound) {
    let Outbound {
        mut removals,
        mut replaced,
        mut commands,
        mut acks,
        mut shutdown,
    } = w;
    let mut removals_open = true;
    loop {
        tokio::select! {
            removed = removals.recv(), if removals_open => match removed {
                Ok(name) if *name == *this_node => {
                    tracing::warn!(node = %this_node, "closing stream: node removed, certificate revoked");
                    let _ = out.send(Box::new(Err(Status::permission_denied("this node was removed (`nodewarden nodes remove`); its certificate is revoked")))).await;
                    break;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => removals_open = false,
            },
            _ = shutdown.changed() => {
                let _ = out.send(Box::new(Err(Status::unavailable("collector shutting down")))).await;
                break;
            }
            changed = acks.changed() => {
                if changed.is_err() { break; }
                let seq = *acks.borrow_and_update();
                let msg = CollectorMessage { body: Some(collector_message::Body::Ack(Ack { acked_through_seq: seq })) };
                if out.send(Box::new(Ok(msg))).await.is_err() { break; }
            }
            Some(cmd) = commands.recv() => {
                let msg = CollectorMessage { body: Some(collector_message::Body::Command(*cmd)) };
                if out.send(Box::new(Ok(msg))).await.is_err() { break; }
            }
            r = &mut replaced => {
                if r.is_ok() {
                    let _ = out.send(Box::new(Err(Status::aborted("replaced by a newer stream from the same node")))).await;
                }
                break;
            }
            _ = out.closed() => break,
        }
    }
}

/// The inbound side of one stream: what it hands the hub and the writer.
struct Inbound {
    hub: Arc<Hub>,
    writer: mpsc::Sender<WriteItem>,
    node: Arc<str>,
    instance_id: u64,
    ack: Arc<watch::Sender<u64>>,
    sequence: Sequence,
}

impl Inbound {
    /// Reads the stream until it ends, then tells the hub why.
    async fn run(
        mut self,
        mut inbound: Streaming<AgentMessage>,
        peer: String,
        stream_id: u64,
        out_tx: OutSender,
    ) {
        let node = self.node.clone();
        let reason = loop {
            let msg = match inbound.message().await {
                Ok(Some(m)) => m,
                Ok(None) => break "stream closed by agent".to_string(),
                Err(status) => {
                    let why = format!("stream error: {}", status.message());
                    tracing::warn!(node = %node, %peer, "closing stream: {}", status.message());
                    break why;
                }
            };
            let now = now_ms();
            self.hub.heard(&node, now);
            if let Err(why) = self.handle(msg.body, now).await {
                break why;
            }
        };
        self.hub
            .disconnected(&node, Some(stream_id), &reason, now_ms());
        drop(out_tx);
    }

    /// One message; `Err` closes the stream with that reason.
    async fn handle(&mut self, body: Option<agent_message::Body>, now: i64) -> Result<(), String> {
        let node = &self.node;
        match body {
            Some(agent_message::Body::Samples(batch)) => match self.sequence.samples(batch.samples)
            {
                Samples::Duplicate => Ok(()),
                Samples::NotIncreasing => {
                    tracing::warn!(node = %node, "closing stream: sample seqs not increasing");
                    Err("protocol error: sample seqs not increasing".into())
                }
                Samples::Store {
                    samples,
                    lost,
                    through,
                } => {
                    if let Some((first, last)) = lost {
                        self.hub.samples_lost(
                            node,
                            first,
                            last,
                            None,
                            "agent sent no reason (agent restarted mid-batch?)",
                            now,
                        );
                    }
                    self.hub.samples(node, &samples);
                    self.write(samples, None, through).await
                }
            },
            Some(agent_message::Body::Gap(gap)) => {
                let Gap::Record { first, last } = self.sequence.gap(gap.first_seq, gap.last_seq)
                else {
                    return Ok(());
                };
                self.hub.samples_lost(
                    node,
                    first,
                    last,
                    Some((gap.first_timestamp_ms, gap.last_timestamp_ms)),
                    &gap.reason,
                    now,
                );
                self.write(Vec::new(), Some((first, last)), last).await
            }
            Some(agent_message::Body::UpsStatus(status)) => {
                self.hub.ups_status(node, status);
                Ok(())
            }
            Some(agent_message::Body::Halting(h)) => {
                tracing::info!(node = %node, "halting: {}", h.reason);
                self.hub.halting(node, &h.reason, now);
                Ok(())
            }
            // Id 0 is no command of ours: what the agent's standalone mode
            // did while the link was down.
            Some(agent_message::Body::CommandResult(result)) if result.command_id == 0 => {
                tracing::warn!(node = %node, "standalone mode acted: {}", result.message);
                self.hub.standalone_report(node, &result, now);
                Ok(())
            }
            Some(agent_message::Body::CommandResult(result)) => {
                tracing::info!(node = %node, command_id = result.command_id, state = result.state, "command result: {}", result.message);
                self.hub.command_result(node, result);
                Ok(())
            }
            Some(agent_message::Body::Hello(_)) => {
                tracing::warn!(node = %node, "closing stream: second Hello");
                Err("protocol error: second Hello".into())
            }
            None => Ok(()),
        }
    }

    /// Hands samples (or a gap) to the writer, which acks through `through`
    /// once they are on disk.
    async fn write(
        &self,
        samples: Vec<Sample>,
        gap: Option<(u64, u64)>,
        through: u64,
    ) -> Result<(), String> {
        let item = WriteItem {
            node: self.node.clone(),
            instance_id: self.instance_id,
            samples,
            gap,
            through_seq: through,
            ack: self.ack.clone(),
        };
        self.writer
            .send(item)
            .await
            .map_err(|_| "collector shutting down".to_string())
    }
}

/// Initial size of each stream's gRPC encode and decode buffers (tonic's
/// default is 8 KiB each). An agent's messages are about 1 KiB and the
/// collector's acks a few bytes, so the defaults were 16 KiB of every
/// connected agent's footprint; a buffer still grows when a message needs it.
const CODEC_BUFFER_BYTES: usize = 1024;
/// Encoded bytes gathered before a response is flushed (tonic's default).
const CODEC_YIELD_BYTES: usize = 32 * 1024;

fn codec_buffers() -> BufferSettings {
    BufferSettings::new(CODEC_BUFFER_BYTES, CODEC_YIELD_BYTES)
}

/// prost, as the generated server uses, with [`CODEC_BUFFER_BYTES`] buffers.
#[derive(Debug, Clone, Copy, Default)]
struct LinkCodec;

impl Codec for LinkCodec {
    type Encode = CollectorMessage;
    type Decode = AgentMessage;
    type Encoder = ProstEncoder<CollectorMessage>;
    type Decoder = ProstDecoder<AgentMessage>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(codec_buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(codec_buffers())
    }
}

/// The AgentLink gRPC service: what the generated `AgentLinkServer` does,
/// with [`LinkCodec`] in place of its fixed 8 KiB buffers.
#[derive(Clone)]
pub struct AgentLinkRoute {
    inner: Arc<LinkService>,
}

impl AgentLinkRoute {
    /// Serves `link` on the AgentLink path.
    pub fn new(link: LinkService) -> Self {
        AgentLinkRoute {
            inner: Arc::new(link),
        }
    }
}

impl NamedService for AgentLinkRoute {
    const NAME: &'static str = agent_link_server::SERVICE_NAME;
}

/// One call of AgentLink/Session.
struct SessionCall(Arc<LinkService>);

impl StreamingService<AgentMessage> for SessionCall {
    type Response = CollectorMessage;
    type ResponseStream = OutStream;
    type Future = BoxFuture<Response<OutStream>, Status>;

    fn call(&mut self, request: Request<Streaming<AgentMessage>>) -> Self::Future {
        let link = self.0.clone();
        Box::pin(async move { link.session(request).await })
    }
}

impl<B> Service<http::Request<B>> for AgentLinkRoute
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != SESSION_PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let call = SessionCall(self.inner.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(LinkCodec)
                .apply_max_message_size_config(Some(MAX_MESSAGE_BYTES), Some(MAX_MESSAGE_BYTES));
            Ok(grpc.streaming(call, req).await)
        })
    }
}

const SESSION_PATH: &str = "/nodewarden.v1.AgentLink/Session";

#[cfg(test)]
mod tests {
    use super::valid_node_name;

    #[test]
    fn node_names_follow_kubernetes_rules() {
        assert!(valid_node_name("pi-4.lan"));
        assert!(!valid_node_name(""));
        assert!(!valid_node_name("Pi4"));
        assert!(!valid_node_name("-pi"));
        assert!(!valid_node_name("pi_4"));
    }
}
