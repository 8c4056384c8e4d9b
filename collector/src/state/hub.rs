//! Live state of every node: which stream it is on, when it was last heard
//! from, its latest sample and UPS statuses, and what its events remember.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nodewarden_proto::v1::{
    Command, CommandResult, Event, NodeInfo, Sample, Severity, UpsInfo, UpsStatus,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::commands::{CommandError, CommandIds, PendingCommand, Waiters};
use super::events::EventThresholds;
use super::events::{self, NodeEventState};
use super::journal::Journal;
use super::nut_hosts::NutHosts;
use crate::store::{NodeRecord, Record, Store};

#[derive(Debug)]
struct LiveNode {
    record: NodeRecord,
    stream_id: Option<u64>,
    peer: String,
    events: NodeEventState,
    /// Tells the current stream to close when a newer one replaces it.
    replaced: Option<oneshot::Sender<()>>,
    /// Commands for the current stream's outbound side.
    /// Boxed, like the stream's outbound queue: slots come in blocks of 32.
    commands: Option<mpsc::Sender<Box<Command>>>,
    ups: HashMap<String, (UpsStatus, i64)>,
    /// logind's CanPowerOff as the agent reported it in its Hello.
    can_power_off: String,
    /// The node's k3s role as its agent found it.
    k3s_role: String,
}

/// What the power orchestrator hears from the hub, as it happens.
#[derive(Debug, Clone)]
pub enum HubEvent {
    /// An agent stream opened.
    Connected(String),
    /// An agent stream closed or went silent.
    Disconnected(String),
    /// A UPS status pushed by the agent on `node`.
    Ups {
        /// The agent that reads the UPS.
        node: String,
        /// Its status (boxed: it is far larger than the other variants).
        status: Box<UpsStatus>,
    },
    /// The agent on `node` acted in standalone mode while the link was
    /// down (cycled its UPS, powered its node off).
    Standalone {
        /// The node.
        node: String,
        /// Its report (command id 0).
        result: CommandResult,
    },
    /// The agent on `node` says the node has begun to halt.
    Halting {
        /// The node.
        node: String,
        /// Why: "system shutdown".
        reason: String,
    },
}

/// Events a slow subscriber may fall behind by before it must resync.
const EVENT_BACKLOG: usize = 1024;

/// Commands a stream's outbound side holds before `send_command` refuses
/// more (a few power commands at most are ever in flight per node).
const COMMAND_QUEUE: usize = 16;

/// A UPS as its agent last reported it (for the NUT server).
#[derive(Debug, Clone)]
pub struct LiveUps {
    /// The agent that reads it.
    pub node: String,
    /// That agent has a live stream.
    pub online: bool,
    /// The newer of the last pushed change and the last sample's reading.
    pub status: UpsStatus,
}

/// Shared by the agent link, the admin API and the watchers.
pub struct Hub {
    nodes: Mutex<HashMap<String, LiveNode>>,
    store: Arc<Store>,
    /// Node records, UPS statuses and events on their way to the store.
    journal: Journal,
    thresholds: EventThresholds,
    events: broadcast::Sender<HubEvent>,
    waiters: Waiters,
    ids: CommandIds,
    /// Bumped on every connect and disconnect, for `wait_disconnected`.
    connections: watch::Sender<u64>,
    /// Some UPS is on battery: the power may go at any moment, so the
    /// writer makes every commit durable until mains is back.
    on_battery: watch::Sender<bool>,
    /// The hosts that follow a UPS through the NUT server.
    nut_hosts: NutHosts,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("nodes", &self.lock().len())
            .finish()
    }
}

/// What the link needs to know after registering a stream.
#[derive(Debug)]
pub struct Registration {
    pub stream_id: u64,
    /// Fires when a newer stream for the same node takes over.
    pub replaced: oneshot::Receiver<()>,
    /// Commands to write on this stream.
    pub commands: mpsc::Receiver<Box<Command>>,
}

impl Hub {
    /// Loads the node registry; every node starts offline until it connects.
    pub fn new(store: Arc<Store>, thresholds: EventThresholds) -> Self {
        let mut nodes = HashMap::new();
        match store.nodes() {
            Ok(records) => {
                for mut record in records {
                    if record.online {
                        record.online = false;
                        record.offline_reason = "collector restarted".into();
                    }
                    let live = LiveNode {
                        record,
                        stream_id: None,
                        peer: String::new(),
                        events: NodeEventState::default(),
                        replaced: None,
                        commands: None,
                        ups: HashMap::new(),
                        can_power_off: String::new(),
                        k3s_role: String::new(),
                    };
                    nodes.insert(live.record.name.clone(), live);
                }
            }
            Err(e) => tracing::error!("cannot load the node registry: {e}"),
        }
        if let Ok(ups) = store.ups() {
            for info in ups {
                if let (Some(node), Some(status)) = (nodes.get_mut(&info.node), info.status) {
                    node.ups
                        .insert(status.ups_name.clone(), (status, info.last_change_ms));
                }
            }
        }
        let events = broadcast::channel(EVENT_BACKLOG).0;
        Hub {
            nut_hosts: NutHosts::new(events.clone()),
            events,
            nodes: Mutex::new(nodes),
            journal: Journal::start(store.clone()),
            store,
            thresholds,
            waiters: Waiters::default(),
            ids: CommandIds::new(nodewarden_common::clock::now_ms()),
            connections: watch::Sender::new(0),
            on_battery: watch::Sender::new(false),
        }
    }

    /// True while some UPS the agents read is on battery.
    pub fn on_battery(&self) -> watch::Receiver<bool> {
        self.on_battery.subscribe()
    }

    /// The hosts that follow a UPS through the NUT server; their logins
    /// and logouts are news like agents' connections.
    pub fn nut_hosts(&self) -> &NutHosts {
        &self.nut_hosts
    }

    /// Connections and UPS statuses from now on (the power orchestrator).
    pub fn subscribe(&self) -> broadcast::Receiver<HubEvent> {
        self.events.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, LiveNode>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn record_events(&self, events: Vec<Event>) {
        for e in events {
            tracing::info!(subject = %e.subject, kind = %e.kind, "{}", e.message);
            self.journal.write(Record::Event(e));
        }
    }

    /// Waits (up to `timeout`) until every node record, UPS status and
    /// event recorded so far is committed (events on disk at once, the rest
    /// with the next durable commit); false if it was not in time.
    pub fn flush_records(&self, timeout: Duration) -> bool {
        self.journal.flush(timeout)
    }

    /// Records a new stream for `record.name`, replacing any older one.
    pub fn connected(
        &self,
        mut record: NodeRecord,
        stream_id: u64,
        peer: String,
        now_ms: i64,
    ) -> Registration {
        let (tx, rx) = oneshot::channel();
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        // Online is decided below, so a first connection raises node_online.
        record.online = false;
        let name = record.name.clone();
        let mut evs = Vec::new();
        {
            let mut nodes = self.lock();
            match nodes.get_mut(&name) {
                Some(live) => {
                    if let Some(old) = live.replaced.take() {
                        let _ = old.send(());
                    }
                    record.first_seen_ms = live.record.first_seen_ms;
                    record.latest = live.record.latest.take();
                    record.role = std::mem::take(&mut live.record.role);
                    live.record = record;
                    live.stream_id = Some(stream_id);
                    live.peer = peer.clone();
                    live.replaced = Some(tx);
                    live.commands = Some(cmd_tx);
                }
                None => {
                    record.first_seen_ms = now_ms;
                    nodes.insert(
                        name.clone(),
                        LiveNode {
                            record,
                            stream_id: Some(stream_id),
                            peer: peer.clone(),
                            events: NodeEventState::default(),
                            replaced: Some(tx),
                            commands: Some(cmd_tx),
                            ups: HashMap::new(),
                            can_power_off: String::new(),
                            k3s_role: String::new(),
                        },
                    );
                }
            }
            if let Some(live) = nodes.get_mut(&name) {
                let was_online = live.record.online;
                live.record.online = true;
                live.record.offline_reason.clear();
                live.record.last_seen_ms = now_ms;
                if !was_online {
                    evs.push(events::event(
                        now_ms,
                        &name,
                        "node_online",
                        Severity::Info,
                        format!(
                            "{name} connected from {peer} (agent {})",
                            live.record.agent_version
                        ),
                    ));
                }
                self.persist(&live.record);
            }
        }
        self.record_events(evs);
        let _ = self.events.send(HubEvent::Connected(name));
        self.connections.send_modify(|n| *n += 1);
        Registration {
            stream_id,
            replaced: rx,
            commands: cmd_rx,
        }
    }

    fn persist(&self, record: &NodeRecord) {
        self.journal.write(Record::Node(record.clone()));
    }

    /// The stream `stream_id` of `node` ended (or went silent).
    pub fn disconnected(&self, node: &str, stream_id: Option<u64>, reason: &str, now_ms: i64) {
        let mut evs = Vec::new();
        {
            let mut nodes = self.lock();
            let Some(live) = nodes.get_mut(node) else {
                return;
            };
            // A newer stream already took over: its state stands.
            if stream_id.is_some() && live.stream_id != stream_id {
                return;
            }
            if stream_id.is_some() {
                live.stream_id = None;
                live.replaced = None;
                live.commands = None;
            }
            if live.record.online || stream_id.is_some() {
                let _ = self.events.send(HubEvent::Disconnected(node.to_string()));
            }
            if live.record.online {
                live.record.online = false;
                live.record.offline_reason = reason.to_string();
                evs.push(events::event(
                    now_ms,
                    node,
                    "node_offline",
                    Severity::Warning,
                    format!("{node} offline: {reason}"),
                ));
                self.persist(&live.record);
            }
        }
        self.record_events(evs);
        self.connections.send_modify(|n| *n += 1);
    }

    /// A fresh command id, unique for this collector (also across restarts).
    pub fn new_command_id(&self) -> u64 {
        self.ids.next()
    }

    /// True while `node` has a live stream.
    pub fn is_connected(&self, node: &str) -> bool {
        self.lock()
            .get(node)
            .is_some_and(|n| n.stream_id.is_some() && n.record.online)
    }

    /// Waits until `node` has no live stream; false if it still has one
    /// after `timeout`. Like NUT's HOSTSYNC: a node that confirmed a
    /// poweroff and then disconnected is going down.
    pub async fn wait_disconnected(&self, node: &str, timeout: Duration) -> bool {
        let mut changes = self.connections.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if !self.is_connected(node) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // The hub is going away with the collector, or time is up.
                Ok(Err(_)) | Err(_) => return !self.is_connected(node),
            }
        }
    }

    /// Sends `command` on `node`'s stream and returns a handle on its
    /// results. The command id is the caller's: resending a persisted id
    /// after a collector restart is how a step stays idempotent (the agent
    /// runs each id at most once).
    pub fn start_command(
        &self,
        node: &str,
        command: Command,
    ) -> Result<PendingCommand, CommandError> {
        let sender = self
            .lock()
            .get(node)
            .filter(|n| n.stream_id.is_some())
            .and_then(|n| n.commands.clone())
            .ok_or_else(|| CommandError::NotConnected(node.to_string()))?;
        let id = command.command_id;
        // Registered before sending: an agent can answer before we return.
        let results = self.waiters.register(node, id);
        sender
            .try_send(Box::new(command))
            .map_err(|e| CommandError::Refused {
                node: node.to_string(),
                message: match e {
                    mpsc::error::TrySendError::Full(_) => "its command queue is full".into(),
                    mpsc::error::TrySendError::Closed(_) => "its stream is closing".into(),
                },
            })?;
        tracing::info!(node, command_id = id, "command sent");
        Ok(PendingCommand::new(node.to_string(), id, results))
    }

    /// Sends `command` and waits for its final result (DONE, FAILED or
    /// UNSUPPORTED; FAILED and UNSUPPORTED are answers, not errors).
    pub async fn send_command(
        &self,
        node: &str,
        command: Command,
        timeout: Duration,
    ) -> Result<CommandResult, CommandError> {
        self.start_command(node, command)?.finished(timeout).await
    }

    /// Sends `command` and returns once the agent confirms it (ACCEPTED) or
    /// answers finally, whichever comes first: a poweroff confirms and then
    /// the node halts, so DONE may never come. Pair with `wait_disconnected`.
    pub async fn send_command_confirmed(
        &self,
        node: &str,
        command: Command,
        timeout: Duration,
    ) -> Result<CommandResult, CommandError> {
        self.start_command(node, command)?.confirmed(timeout).await
    }

    /// A command result arrived on `node`'s stream.
    pub fn command_result(&self, node: &str, result: CommandResult) {
        if !self.waiters.deliver(node, &result) {
            tracing::info!(
                node,
                command_id = result.command_id,
                state = result.state,
                "result of a command nobody waits for (dropped): {}",
                result.message
            );
        }
    }

    /// A message arrived on the node's stream.
    pub fn heard(&self, node: &str, now_ms: i64) {
        let mut evs = Vec::new();
        if let Some(live) = self.lock().get_mut(node) {
            live.record.last_seen_ms = now_ms;
            if !live.record.online && live.stream_id.is_some() {
                live.record.online = true;
                live.record.offline_reason.clear();
                evs.push(events::event(
                    now_ms,
                    node,
                    "node_online",
                    Severity::Info,
                    format!("{node} is sending again"),
                ));
            }
        }
        self.record_events(evs);
    }

    /// New samples for `node` (in seq order).
    pub fn samples(&self, node: &str, samples: &[Sample]) {
        let mut evs = Vec::new();
        if let Some(live) = self.lock().get_mut(node) {
            for s in samples {
                evs.extend(events::sample_events(
                    node,
                    &mut live.events,
                    s,
                    &self.thresholds,
                ));
                for u in &s.ups {
                    // Sampled UPS state only matters if no pushed change came first.
                    if !live.ups.contains_key(&u.ups_name) {
                        live.ups
                            .insert(u.ups_name.clone(), (u.clone(), s.timestamp_ms));
                    }
                }
            }
            if let Some(last) = samples.last() {
                live.record.latest = Some(last.clone());
            }
        }
        self.record_events(evs);
    }

    /// A UPS status pushed by the agent that reads it.
    pub fn ups_status(&self, node: &str, status: UpsStatus) {
        let mut evs = Vec::new();
        let mut save = None;
        if let Some(live) = self.lock().get_mut(node) {
            let prev = live.ups.get(&status.ups_name).map(|(s, _)| s.clone());
            evs = events::ups_events(node, prev.as_ref(), &status);
            let changed = prev.as_ref().is_none_or(|p| {
                p.status != status.status || p.communication_ok != status.communication_ok
            });
            let last_change = if changed {
                status.timestamp_ms
            } else {
                live.ups
                    .get(&status.ups_name)
                    .map_or(status.timestamp_ms, |(_, t)| *t)
            };
            live.ups
                .insert(status.ups_name.clone(), (status.clone(), last_change));
            save = Some((status, last_change));
        }
        let any_on_battery = self.lock().values().any(|n| {
            n.ups
                .values()
                .any(|(s, _)| s.status.iter().any(|t| t == "OB"))
        });
        self.on_battery.send_if_modified(|was| {
            let changed = *was != any_on_battery;
            *was = any_on_battery;
            changed
        });
        if let Some((status, _)) = &save {
            let _ = self.events.send(HubEvent::Ups {
                node: node.to_string(),
                status: Box::new(status.clone()),
            });
        }
        if let Some((status, last_change_ms)) = save {
            self.journal.write(Record::Ups {
                node: node.to_string(),
                status,
                last_change_ms,
            });
        }
        self.record_events(evs);
    }

    /// What the node's agent said of itself when it connected: logind's
    /// CanPowerOff and its k3s role.
    pub fn set_agent_facts(&self, node: &str, can_power_off: &str, k3s_role: &str) {
        if let Some(live) = self.lock().get_mut(node) {
            live.can_power_off = can_power_off.to_string();
            live.k3s_role = k3s_role.to_string();
        }
    }

    /// The node's agent reports what its standalone mode did.
    pub fn standalone_report(&self, node: &str, result: &CommandResult, now_ms: i64) {
        self.record_events(vec![events::event(
            now_ms,
            node,
            "standalone_acted",
            Severity::Critical,
            result.message.clone(),
        )]);
        let _ = self.events.send(HubEvent::Standalone {
            node: node.to_string(),
            result: result.clone(),
        });
    }

    /// The node's agent says systemd has begun to stop the node.
    pub fn halting(&self, node: &str, reason: &str, now_ms: i64) {
        self.record_events(vec![events::event(
            now_ms,
            node,
            "node_halting",
            Severity::Info,
            format!("{node} is halting: {reason}"),
        )]);
        let _ = self.events.send(HubEvent::Halting {
            node: node.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Samples lost on the agent side.
    pub fn samples_lost(
        &self,
        node: &str,
        first_seq: u64,
        last_seq: u64,
        span: Option<(i64, i64)>,
        reason: &str,
        now_ms: i64,
    ) {
        let count = last_seq - first_seq + 1;
        let when = span
            .map(|(a, b)| {
                format!(
                    " covering {}",
                    nodewarden_common::units::format_duration(std::time::Duration::from_millis(
                        (b - a).max(0) as u64
                    ))
                )
            })
            .unwrap_or_default();
        let ts = span.map_or(now_ms, |(a, _)| a);
        self.record_events(vec![events::event(
            ts,
            node,
            "samples_lost",
            Severity::Warning,
            format!("{count} samples (seq {first_seq}-{last_seq}){when} lost: {reason}"),
        )]);
    }

    /// Marks nodes that have been silent longer than `offline_after_ms`.
    pub fn mark_silent(&self, now_ms: i64, offline_after_ms: i64) {
        let silent: Vec<String> = self
            .lock()
            .values()
            .filter(|n| n.record.online && now_ms - n.record.last_seen_ms > offline_after_ms)
            .map(|n| n.record.name.clone())
            .collect();
        for name in silent {
            let secs = offline_after_ms / 1000;
            self.disconnected(&name, None, &format!("no message for {secs}s"), now_ms);
        }
    }

    /// Saves every node's latest sample (the registry survives restarts).
    pub fn checkpoint(&self) {
        // Through the journal: it replaces any older record it still holds
        // and writes them all in one transaction.
        let records: Vec<NodeRecord> = self.lock().values().map(|n| n.record.clone()).collect();
        for r in &records {
            self.persist(r);
        }
        if !self.flush_records(Duration::from_secs(5)) {
            tracing::warn!("node records and events not all saved within 5 s");
        }
    }

    /// Snapshot for the admin API and /metrics.
    pub fn node_infos(&self) -> Vec<NodeInfo> {
        let mut v: Vec<NodeInfo> = self.lock().values().map(info).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn node_info(&self, name: &str) -> Option<NodeInfo> {
        self.lock().get(name).map(info)
    }

    /// Every UPS with its freshest reading: a pushed status only comes on a
    /// change, so the readings in between arrive in samples.
    pub fn ups_live(&self) -> Vec<LiveUps> {
        let nodes = self.lock();
        let mut v = Vec::new();
        for n in nodes.values() {
            let online = n.stream_id.is_some() && n.record.online;
            let sampled = n.record.latest.as_ref().map_or(&[][..], |s| &s.ups[..]);
            for (pushed, _) in n.ups.values() {
                let newer = sampled.iter().find(|s| {
                    s.ups_name == pushed.ups_name && s.timestamp_ms > pushed.timestamp_ms
                });
                v.push(LiveUps {
                    node: n.record.name.clone(),
                    online,
                    status: newer.unwrap_or(pushed).clone(),
                });
            }
        }
        v
    }

    pub fn ups_infos(&self) -> Vec<UpsInfo> {
        let mut v: Vec<UpsInfo> = self
            .lock()
            .values()
            .flat_map(|n| {
                n.ups.values().map(|(s, t)| UpsInfo {
                    node: n.record.name.clone(),
                    status: Some(s.clone()),
                    last_change_ms: *t,
                })
            })
            .collect();
        v.sort_by(|a, b| {
            let an = a.status.as_ref().map(|s| s.ups_name.as_str());
            let bn = b.status.as_ref().map(|s| s.ups_name.as_str());
            an.cmp(&bn)
        });
        v
    }
}

fn info(n: &LiveNode) -> NodeInfo {
    let r = &n.record;
    NodeInfo {
        name: r.name.clone(),
        role: r.role.clone(),
        board_model: r.board_model.clone(),
        arch: r.arch.clone(),
        kernel_version: r.kernel_version.clone(),
        os_name: r.os_name.clone(),
        agent_version: r.agent_version.clone(),
        first_seen_ms: r.first_seen_ms,
        last_seen_ms: r.last_seen_ms,
        online: r.online,
        offline_reason: r.offline_reason.clone(),
        latest: r.latest.clone(),
        peer_address: n.peer.clone(),
        sample_interval_ms: r.sample_interval_ms,
        can_power_off: n.can_power_off.clone(),
        k3s_role: n.k3s_role.clone(),
        // Filled in by the admin API from the node-health loop.
        kube_conditions: Vec::new(),
        kube_labels: Default::default(),
        kube_taints: Vec::new(),
    }
}
