//! The collector's embedded store: series history with 1-minute rollups, the
//! per-agent high-water marks that make delivery exactly-once across a
//! collector restart, the node registry, the events log and UPS status.
//!
//! The engine is redb (one file, copy-on-write B-trees, ACID commits); see
//! docs/storage.md for the measurement that chose it over sled. Nothing
//! outside this module names the engine.

mod buckets;
pub mod codec;
mod error;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

use nodewarden_proto::v1::{Event, NodeInfo, Sample, UpsInfo, UpsStatus};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

pub use buckets::{Point, bucket_width};
pub use codec::Agg;
pub use error::StoreError;

use crate::series;

/// Name of the database file inside the data dir.
pub const DB_FILE: &str = "nodewarden.redb";

/// Engine page cache. Bounded so a collector with 5,000 agents stays well
/// under 512 MB; the working set (the tails of the trees) is far smaller.
pub const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// New rows for one node's minute chunk: (unix ms, encoded row).
type ChunkRows = Vec<(i64, Vec<u8>)>;

/// A row key as redb range bounds take it.
type RowKey<'a> = &'a [u8; codec::KEY_LEN];

const ROLLUP_MS: i64 = 60_000;
const RAW_STEP_MS: i64 = 1_000;
const DEFAULT_EVENT_LIMIT: u32 = 1000;
const RESTART_REASON: &str = "collector restarted";

const NODE_IDS: TableDefinition<'_, &str, u32> = TableDefinition::new("node_ids");
const METRIC_IDS: TableDefinition<'_, &str, u32> = TableDefinition::new("metric_ids");
const NODE_METRICS: TableDefinition<'_, (u32, u32), ()> = TableDefinition::new("node_metrics");
/// (node, minute) -> the minute's rows of that node (codec::chunk_add).
const RAW: TableDefinition<'_, &[u8; codec::KEY_LEN], &[u8]> = TableDefinition::new("raw_chunks");
const ROLLUP: TableDefinition<'_, &[u8; codec::KEY_LEN], &[u8]> = TableDefinition::new("rollup_1m");
const HIGH_WATER: TableDefinition<'_, (u32, u64), u64> = TableDefinition::new("high_water");
const NODES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("nodes");
const LATEST: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("latest_sample");
const EVENTS: TableDefinition<'_, (i64, u32), &[u8]> = TableDefinition::new("events");
const UPS: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("ups");
/// Power domain -> its persisted state machine (opaque bytes from power::).
const POWER: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("power_state");

/// How long data is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Raw samples (default 48 h).
    pub raw: Duration,
    /// 1-minute rollups and events (default 30 days).
    pub rollup: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw: Duration::from_secs(48 * 3600),
            rollup: Duration::from_secs(30 * 86400),
        }
    }
}

/// Samples of one agent instance, as received since the last commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeBatch {
    /// Node name (from the agent's Hello).
    pub node: String,
    /// The agent process instance the sequence numbers belong to.
    pub instance_id: u64,
    /// Samples in increasing seq order.
    pub samples: Vec<Sample>,
    /// Seqs first..=last the agent dropped; the high-water moves past them.
    pub gap: Option<(u64, u64)>,
}

/// One metric of one node over a time range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Unit of the values ("celsius", "percent", ...).
    pub unit: &'static str,
    /// 0 for raw samples, else the width of each point's bucket in ms.
    pub resolution_ms: i64,
    /// (unix ms, mean, min, max), oldest first.
    pub points: Vec<Point>,
    /// Metrics this node has, filled when it has no series by the name asked.
    pub available_metrics: Vec<String>,
}

/// What the collector remembers about a node across restarts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeRecord {
    /// Node name.
    pub name: String,
    /// "server", "worker" or "".
    pub role: String,
    /// Board model from the agent.
    pub board_model: String,
    /// CPU architecture.
    pub arch: String,
    /// Kernel release.
    pub kernel_version: String,
    /// PRETTY_NAME of the OS.
    pub os_name: String,
    /// nodewarden-agent version.
    pub agent_version: String,
    /// First contact, unix ms.
    pub first_seen_ms: i64,
    /// Last message, unix ms.
    pub last_seen_ms: i64,
    /// Whether a stream is open now.
    pub online: bool,
    /// Why it is offline; empty when online.
    pub offline_reason: String,
    /// The agent's sampling interval.
    pub sample_interval_ms: u32,
    /// The newest stored sample.
    pub latest: Option<Sample>,
}

/// One small write: a node's record, a UPS's latest status or an event.
#[derive(Debug, Clone)]
pub enum Record {
    /// Creates or replaces the node's record.
    Node(NodeRecord),
    /// Replaces the latest status of one UPS read by `node`'s agent.
    Ups {
        node: String,
        status: UpsStatus,
        last_change_ms: i64,
    },
    /// Appends to the events log.
    Event(Event),
}

impl Record {
    /// What a newer record replaces: the same node's record or the same
    /// UPS's status. Events replace nothing.
    pub fn replaces(&self) -> Option<(u8, &str, &str)> {
        match self {
            Record::Node(r) => Some((0, r.name.as_str(), "")),
            Record::Ups { node, status, .. } => Some((1, node.as_str(), status.ups_name.as_str())),
            Record::Event(_) => None,
        }
    }
}

/// A record encoded outside the write transaction.
enum Encoded {
    Node {
        name: String,
        bytes: Vec<u8>,
    },
    Ups {
        node: String,
        ups_name: String,
        bytes: Vec<u8>,
    },
    Event {
        ts: i64,
        bytes: Vec<u8>,
    },
}

impl Encoded {
    fn of(record: &Record) -> Encoded {
        match record {
            Record::Node(r) => {
                let info = NodeInfo::from(r.clone());
                Encoded::Node {
                    name: info.name.clone(),
                    bytes: info.encode_to_vec(),
                }
            }
            Record::Ups {
                node,
                status,
                last_change_ms,
            } => Encoded::Ups {
                node: node.clone(),
                ups_name: status.ups_name.clone(),
                bytes: UpsInfo {
                    node: node.clone(),
                    status: Some(status.clone()),
                    last_change_ms: *last_change_ms,
                }
                .encode_to_vec(),
            },
            Record::Event(e) => Encoded::Event {
                ts: e.timestamp_ms,
                bytes: e.encode_to_vec(),
            },
        }
    }
}

impl From<NodeRecord> for NodeInfo {
    fn from(r: NodeRecord) -> NodeInfo {
        NodeInfo {
            name: r.name,
            role: r.role,
            board_model: r.board_model,
            arch: r.arch,
            kernel_version: r.kernel_version,
            os_name: r.os_name,
            agent_version: r.agent_version,
            first_seen_ms: r.first_seen_ms,
            last_seen_ms: r.last_seen_ms,
            online: r.online,
            offline_reason: r.offline_reason,
            latest: r.latest,
            peer_address: String::new(),
            sample_interval_ms: r.sample_interval_ms,
        }
    }
}

impl From<NodeInfo> for NodeRecord {
    fn from(i: NodeInfo) -> NodeRecord {
        NodeRecord {
            name: i.name,
            role: i.role,
            board_model: i.board_model,
            arch: i.arch,
            kernel_version: i.kernel_version,
            os_name: i.os_name,
            agent_version: i.agent_version,
            first_seen_ms: i.first_seen_ms,
            last_seen_ms: i.last_seen_ms,
            online: i.online,
            offline_reason: i.offline_reason,
            sample_interval_ms: i.sample_interval_ms,
            latest: i.latest,
        }
    }
}

/// Name <-> id dictionaries, mirrored in memory; ids are never reused.
#[derive(Default)]
struct Names {
    nodes: HashMap<String, u32>,
    metrics: HashMap<String, u32>,
    metric_names: HashMap<u32, String>,
    node_metrics: HashSet<(u32, u32)>,
    /// Minute of the newest sample persisted in LATEST, per node.
    latest_minute: HashMap<u32, i64>,
}

/// Ids handed out inside a transaction; merged into `Names` only once it commits.
#[derive(Default)]
struct PendingNames {
    nodes: HashMap<String, u32>,
    metrics: Vec<(String, u32)>,
    /// A set: the first commit after thousands of agents join holds tens of
    /// thousands of new pairs, and a list made every lookup a scan.
    node_metrics: HashSet<(u32, u32)>,
    latest_minute: Vec<(u32, i64)>,
}

impl Names {
    fn node_id(&self, pending: &mut PendingNames, name: &str) -> u32 {
        if let Some(&id) = self.nodes.get(name) {
            return id;
        }
        if let Some(&id) = pending.nodes.get(name) {
            return id;
        }
        let id = (self.nodes.len() + pending.nodes.len()) as u32;
        pending.nodes.insert(name.to_string(), id);
        id
    }

    fn metric_id(&self, pending: &mut PendingNames, node: u32, name: &str) -> u32 {
        let id = if let Some(&id) = self.metrics.get(name) {
            id
        } else if let Some((_, id)) = pending.metrics.iter().find(|(n, _)| n == name) {
            *id
        } else {
            let id = (self.metrics.len() + pending.metrics.len()) as u32;
            pending.metrics.push((name.to_string(), id));
            id
        };
        if !self.node_metrics.contains(&(node, id)) && !pending.node_metrics.contains(&(node, id)) {
            pending.node_metrics.insert((node, id));
        }
        id
    }

    fn absorb(&mut self, pending: PendingNames) {
        for (name, id) in pending.nodes {
            self.nodes.insert(name, id);
        }
        for (name, id) in pending.metrics {
            self.metric_names.insert(id, name.clone());
            self.metrics.insert(name, id);
        }
        self.node_metrics.extend(pending.node_metrics);
        self.latest_minute.extend(pending.latest_minute);
    }
}

/// The collector's store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Store {
    file: PathBuf,
    retention: Retention,
    /// `None` only between a failed write that needs a reopen and the reopen.
    db: RwLock<Option<Database>>,
    names: Mutex<Names>,
}

impl Store {
    /// Opens (or creates) the store in `dir`; nodes are marked offline
    /// ("collector restarted") until their agents reconnect.
    pub fn open(dir: &Path, retention: Retention) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let file = dir.join(DB_FILE);
        let db = open_db(&file)?;
        let store = Store {
            file,
            retention,
            db: RwLock::new(Some(db)),
            names: Mutex::new(Names::default()),
        };
        store.init()?;
        Ok(store)
    }

    /// Path of the database file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The retention this store prunes to.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    fn init(&self) -> Result<(), StoreError> {
        let restarted = self.write(|txn, _, _| {
            // Opening every table creates it, so readers never meet a missing one.
            txn.open_table(NODE_IDS)?;
            txn.open_table(METRIC_IDS)?;
            txn.open_table(NODE_METRICS)?;
            txn.open_table(RAW)?;
            txn.open_table(ROLLUP)?;
            txn.open_table(HIGH_WATER)?;
            txn.open_table(LATEST)?;
            txn.open_table(EVENTS)?;
            txn.open_table(UPS)?;
            txn.open_table(POWER)?;
            let mut nodes = txn.open_table(NODES)?;
            let mut updates = Vec::new();
            for entry in nodes.iter()? {
                let (name, bytes) = entry?;
                if let Ok(mut info) = NodeInfo::decode(bytes.value())
                    && info.online
                {
                    info.online = false;
                    info.offline_reason = RESTART_REASON.to_string();
                    updates.push((name.value().to_string(), info.encode_to_vec()));
                }
            }
            for (name, bytes) in &updates {
                nodes.insert(name.as_str(), bytes.as_slice())?;
            }
            Ok(())
        });
        restarted?;
        self.load_names()
    }

    fn load_names(&self) -> Result<(), StoreError> {
        let mut names = Names::default();
        self.read(|txn| {
            for entry in txn.open_table(NODE_IDS)?.iter()? {
                let (k, v) = entry?;
                names.nodes.insert(k.value().to_string(), v.value());
            }
            for entry in txn.open_table(METRIC_IDS)?.iter()? {
                let (k, v) = entry?;
                names.metrics.insert(k.value().to_string(), v.value());
                names.metric_names.insert(v.value(), k.value().to_string());
            }
            for entry in txn.open_table(NODE_METRICS)?.iter()? {
                let (k, _) = entry?;
                names.node_metrics.insert(k.value());
            }
            Ok(())
        })?;
        *self.lock_names() = names;
        Ok(())
    }

    fn lock_names(&self) -> MutexGuard<'_, Names> {
        // The dictionaries are only extended after a commit; a panic elsewhere
        // cannot leave them half-updated, so a poisoned lock is still sound.
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one write transaction and commits it durably.
    fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction, &Names, &mut PendingNames) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        self.reopen_if_needed()?;
        let mut names = self.lock_names();
        let mut pending = PendingNames::default();
        let result = {
            let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
            let db = guard.as_ref().ok_or_else(|| self.closed())?;
            let run = || -> Result<T, redb::Error> {
                let txn = db.begin_write()?;
                let value = f(&txn, &names, &mut pending)?;
                txn.commit()?;
                Ok(value)
            };
            run().map_err(|e| StoreError::from_engine(e, "write to", &self.file))
        };
        match result {
            Ok(value) => {
                names.absorb(pending);
                Ok(value)
            }
            Err(err) => {
                if err.needs_reopen() {
                    // redb refuses further writes after an I/O error until it is
                    // reopened; the last durable commit is what it reopens to.
                    let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
                    *guard = None;
                }
                Err(err)
            }
        }
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        self.reopen_if_needed()?;
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        let db = guard.as_ref().ok_or_else(|| self.closed())?;
        let run = || -> Result<T, redb::Error> { f(&db.begin_read()?) };
        run().map_err(|e| StoreError::from_engine(e, "read", &self.file))
    }

    fn reopen_if_needed(&self) -> Result<(), StoreError> {
        if self.db.read().unwrap_or_else(|p| p.into_inner()).is_some() {
            return Ok(());
        }
        let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(open_db(&self.file)?);
        }
        Ok(())
    }

    fn closed(&self) -> StoreError {
        StoreError::Io {
            action: "use",
            file: self.file.clone(),
            detail: "the database is closed after an earlier failure".into(),
        }
    }

    /// Stores the samples of many nodes in ONE durable transaction (group
    /// commit): series rows, 1-minute rollups, each node's newest sample and
    /// the per-(node, instance) high-water seq. Samples at or below the
    /// high-water are duplicates and are skipped.
    pub fn append(&self, batch: &[NodeBatch]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write(|txn, names, pending| {
            let mut raw = txn.open_table(RAW)?;
            let mut rollup = txn.open_table(ROLLUP)?;
            let mut high_water = txn.open_table(HIGH_WATER)?;
            let mut latest = txn.open_table(LATEST)?;
            let mut node_ids = txn.open_table(NODE_IDS)?;
            let mut metric_ids = txn.open_table(METRIC_IDS)?;
            let mut node_metrics = txn.open_table(NODE_METRICS)?;
            // (node, minute) -> per-metric aggregates, merged into the table once.
            let mut minutes: HashMap<(u32, i64), Vec<(u32, Agg)>> = HashMap::new();
            // (node, minute) -> new rows, added to the minute's chunk once.
            let mut chunks: HashMap<(u32, i64), ChunkRows> = HashMap::new();

            for nb in batch {
                let node = names.node_id(pending, &nb.node);
                let stored = high_water.get((node, nb.instance_id))?.map(|g| g.value());
                let mut mark = stored.unwrap_or(0);
                let mut newest: Option<&Sample> = None;
                for sample in &nb.samples {
                    if sample.seq <= mark {
                        continue;
                    }
                    mark = sample.seq;
                    let mut points = Vec::with_capacity(32);
                    for (name, value) in series::series_of(sample) {
                        points.push((names.metric_id(pending, node, &name), value));
                    }
                    let minute = sample.timestamp_ms.div_euclid(ROLLUP_MS) * ROLLUP_MS;
                    chunks
                        .entry((node, minute))
                        .or_default()
                        .push((sample.timestamp_ms, codec::encode_row(&points)));
                    let aggs = minutes.entry((node, minute)).or_default();
                    for (metric, value) in points {
                        match aggs.iter_mut().find(|(m, _)| *m == metric) {
                            Some((_, a)) => a.merge(&Agg::of(value)),
                            None => aggs.push((metric, Agg::of(value))),
                        }
                    }
                    if newest.is_none_or(|n| n.timestamp_ms <= sample.timestamp_ms) {
                        newest = Some(sample);
                    }
                }
                if let Some((_, last)) = nb.gap {
                    mark = mark.max(last);
                }
                if Some(mark) != stored && mark > 0 {
                    high_water.insert((node, nb.instance_id), mark)?;
                }
                // The newest sample matters after a restart only, when the node
                // is offline anyway: once a minute is enough and spares a page
                // write per commit.
                if let Some(sample) = newest {
                    let minute = sample.timestamp_ms.div_euclid(ROLLUP_MS);
                    if names.latest_minute.get(&node).is_none_or(|m| *m < minute) {
                        latest.insert(nb.node.as_str(), sample.encode_to_vec().as_slice())?;
                        pending.latest_minute.push((node, minute));
                    }
                }
            }
            for ((node, minute), rows) in chunks {
                let k = codec::key(node, minute);
                let chunk = {
                    let existing = raw.get(&k)?;
                    codec::chunk_add(existing.as_ref().map(|g| g.value()), minute, &rows)
                };
                raw.insert(&k, chunk.as_slice())?;
            }
            for ((node, minute), aggs) in minutes {
                let k = codec::minute_key(minute, node);
                let merged = {
                    let existing = rollup.get(&k)?;
                    codec::merge_rollup(existing.as_ref().map(|g| g.value()), &aggs)
                };
                rollup.insert(&k, merged.as_slice())?;
            }
            for (name, id) in &pending.nodes {
                node_ids.insert(name.as_str(), *id)?;
            }
            for (name, id) in &pending.metrics {
                metric_ids.insert(name.as_str(), *id)?;
            }
            for pair in &pending.node_metrics {
                node_metrics.insert(*pair, ())?;
            }
            Ok(())
        })
    }

    /// The highest seq of this agent instance that is stored (0 if none).
    pub fn high_water(&self, node: &str, instance_id: u64) -> Result<u64, StoreError> {
        let Some(id) = self.lock_names().nodes.get(node).copied() else {
            return Ok(0);
        };
        self.read(|txn| {
            Ok(txn
                .open_table(HIGH_WATER)?
                .get((id, instance_id))?
                .map_or(0, |g| g.value()))
        })
    }

    /// One metric of one node over since..=until (until <= 0: now). With
    /// `max_points` > 0 the points are merged into at most that many buckets,
    /// from 1-minute rollups when the buckets are a minute or wider; raw
    /// points are used where they are retained, rollups before that.
    pub fn history(
        &self,
        node: &str,
        metric: &str,
        since_ms: i64,
        until_ms: i64,
        max_points: u32,
    ) -> Result<History, StoreError> {
        let until_ms = if until_ms <= 0 { now_ms() } else { until_ms };
        let (node_id, metric_id, available) = {
            let names = self.lock_names();
            let node_id = *names
                .nodes
                .get(node)
                .ok_or_else(|| StoreError::UnknownNode {
                    node: node.to_string(),
                })?;
            let metric_id = names
                .metrics
                .get(metric)
                .copied()
                .filter(|m| names.node_metrics.contains(&(node_id, *m)));
            let available = if metric_id.is_none() {
                let mut all: Vec<String> = names
                    .node_metrics
                    .iter()
                    .filter(|(n, _)| *n == node_id)
                    .filter_map(|(_, m)| names.metric_names.get(m).cloned())
                    .collect();
                all.sort_unstable();
                all
            } else {
                Vec::new()
            };
            (node_id, metric_id, available)
        };
        let mut history = History {
            unit: series::unit_of(metric),
            resolution_ms: 0,
            points: Vec::new(),
            available_metrics: available,
        };
        let Some(metric_id) = metric_id else {
            return Ok(history);
        };
        if until_ms < since_ms {
            return Ok(history);
        }
        let node_start = codec::key(node_id, 0);
        let node_end = codec::key(node_id, i64::MAX);

        self.read(|txn| {
            let raw = txn.open_table(RAW)?;
            let rollup = txn.open_table(ROLLUP)?;
            let first_raw = raw
                .range::<RowKey<'_>>(&node_start..=&node_end)?
                .next()
                .transpose()?
                .and_then(|(k, v)| {
                    let minute = codec::split_key(k.value()).1;
                    codec::decode_chunk(v.value(), minute)
                        .next()
                        .map(|(ts, _)| ts)
                });
            // Rollups reach further back than raw once raw has been pruned:
            // then there is one for the minute before the oldest raw row.
            let raw_pruned = match first_raw {
                Some(r) => {
                    let before = (r.div_euclid(ROLLUP_MS) - 1) * ROLLUP_MS;
                    rollup.get(&codec::minute_key(before, node_id))?.is_some()
                }
                None => true,
            };
            let before_raw = first_raw.is_none_or(|r| since_ms < r);
            let wide = max_points > 0
                && bucket_width(since_ms, until_ms, max_points, RAW_STEP_MS) >= ROLLUP_MS;
            if wide || (raw_pruned && before_raw) {
                let from = since_ms.div_euclid(ROLLUP_MS) * ROLLUP_MS;
                // Rows are minute-major, so one node's are found by one lookup
                // per minute, within the minutes the table holds at all.
                let oldest = rollup.first()?.map(|(k, _)| codec::minute_of(k.value()));
                let newest = rollup.last()?.map(|(k, _)| codec::minute_of(k.value()));
                let mut items = Vec::new();
                if let (Some(oldest), Some(newest)) = (oldest, newest) {
                    let mut minute = from.max(oldest);
                    let last = until_ms.min(newest);
                    while minute <= last {
                        if let Some(row) = rollup.get(&codec::minute_key(minute, node_id))?
                            && let Some((_, agg)) =
                                codec::decode_rollup(row.value()).find(|(m, _)| *m == metric_id)
                        {
                            items.push((minute, agg));
                        }
                        minute += ROLLUP_MS;
                    }
                }
                if max_points > 0 && items.len() > max_points as usize {
                    let width = bucket_width(from, until_ms, max_points, ROLLUP_MS);
                    history.points = buckets::merge(items, from, width);
                    history.resolution_ms = width;
                } else {
                    history.points = items
                        .into_iter()
                        .map(|(ts, a)| (ts, a.mean(), a.min, a.max))
                        .collect();
                    history.resolution_ms = ROLLUP_MS;
                }
                return Ok(());
            }
            let mut values: Vec<(i64, f64)> = Vec::new();
            let lo = codec::key(node_id, since_ms.div_euclid(ROLLUP_MS) * ROLLUP_MS);
            let hi = codec::key(node_id, until_ms);
            for entry in raw.range::<RowKey<'_>>(&lo..=&hi)? {
                let (k, v) = entry?;
                let minute = codec::split_key(k.value()).1;
                for (ts, row) in codec::decode_chunk(v.value(), minute) {
                    if ts < since_ms || ts > until_ms {
                        continue;
                    }
                    if let Some(value) = codec::find_in_row(row, metric_id) {
                        values.push((ts, value));
                    }
                }
            }
            if max_points > 0 && values.len() > max_points as usize {
                let width = bucket_width(since_ms, until_ms, max_points, RAW_STEP_MS);
                history.points = buckets::merge(
                    values.into_iter().map(|(ts, v)| (ts, Agg::of(v))),
                    since_ms,
                    width,
                );
                history.resolution_ms = width;
            } else {
                history.points = values.into_iter().map(|(ts, v)| (ts, v, v, v)).collect();
            }
            Ok(())
        })?;
        Ok(history)
    }

    /// Creates or replaces a node's record.
    pub fn put_node(&self, record: NodeRecord) -> Result<(), StoreError> {
        self.apply(&[Record::Node(record)])
    }

    /// Writes node records, UPS statuses and events in one durable
    /// transaction, in the order given.
    pub fn apply(&self, records: &[Record]) -> Result<(), StoreError> {
        let encoded: Vec<Encoded> = records.iter().map(Encoded::of).collect();
        self.write(|txn, _, _| {
            let mut nodes = txn.open_table(NODES)?;
            let mut ups = txn.open_table(UPS)?;
            let mut events = txn.open_table(EVENTS)?;
            for e in &encoded {
                match e {
                    Encoded::Node { name, bytes } => {
                        nodes.insert(name.as_str(), bytes.as_slice())?;
                    }
                    Encoded::Ups {
                        node,
                        ups_name,
                        bytes,
                    } => {
                        ups.insert((node.as_str(), ups_name.as_str()), bytes.as_slice())?;
                    }
                    Encoded::Event { ts, bytes } => {
                        // Several events in one millisecond keep their order.
                        let next = events
                            .range((*ts, 0)..=(*ts, u32::MAX))?
                            .next_back()
                            .transpose()?
                            .map_or(0, |(k, _)| k.value().1.saturating_add(1));
                        events.insert((*ts, next), bytes.as_slice())?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Every node ever recorded, by name, each with its newest stored sample.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let file = self.file.clone();
        let decoded = self.read(|txn| {
            let latest = txn.open_table(LATEST)?;
            let mut out = Vec::new();
            for entry in txn.open_table(NODES)?.iter()? {
                let (name, bytes) = entry?;
                let info = NodeInfo::decode(bytes.value());
                let newest = latest.get(name.value())?.map(|g| Sample::decode(g.value()));
                out.push((info, newest));
            }
            Ok(out)
        })?;
        let decode_err = |what: &'static str, e: prost::DecodeError| StoreError::Decode {
            what,
            file: file.clone(),
            detail: e.to_string(),
        };
        let mut nodes = Vec::with_capacity(decoded.len());
        for (info, newest) in decoded {
            let mut record = NodeRecord::from(info.map_err(|e| decode_err("node record", e))?);
            if let Some(sample) = newest.transpose().map_err(|e| decode_err("sample", e))?
                && record
                    .latest
                    .as_ref()
                    .is_none_or(|l| l.timestamp_ms <= sample.timestamp_ms)
            {
                record.latest = Some(sample);
            }
            nodes.push(record);
        }
        Ok(nodes)
    }

    /// Appends one event to the log.
    pub fn append_event(&self, event: Event) -> Result<(), StoreError> {
        self.apply(&[Record::Event(event)])
    }

    /// The newest `limit` events (0: 1000) at or after `since_ms`, oldest
    /// first, only `node`'s when given.
    pub fn events(
        &self,
        since_ms: i64,
        node: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let limit = if limit == 0 {
            DEFAULT_EVENT_LIMIT
        } else {
            limit
        } as usize;
        let mut out = Vec::new();
        let mut bad = None;
        self.read(|txn| {
            let events = txn.open_table(EVENTS)?;
            for entry in events.range((since_ms, 0)..)?.rev() {
                let (_, bytes) = entry?;
                match Event::decode(bytes.value()) {
                    Ok(e) if node.is_none_or(|n| n == e.subject) => out.push(e),
                    Ok(_) => {}
                    Err(e) => bad = Some(e),
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(())
        })?;
        if let Some(e) = bad {
            return Err(StoreError::Decode {
                what: "event",
                file: self.file.clone(),
                detail: e.to_string(),
            });
        }
        out.reverse();
        Ok(out)
    }

    /// Records the latest status of one UPS, read by `node`'s agent.
    pub fn put_ups(
        &self,
        node: &str,
        status: UpsStatus,
        last_change_ms: i64,
    ) -> Result<(), StoreError> {
        self.apply(&[Record::Ups {
            node: node.to_string(),
            status,
            last_change_ms,
        }])
    }

    /// The latest status of every UPS, by node then UPS name.
    pub fn ups(&self) -> Result<Vec<UpsInfo>, StoreError> {
        let raw = self.read(|txn| {
            let mut out = Vec::new();
            for entry in txn.open_table(UPS)?.iter()? {
                out.push(UpsInfo::decode(entry?.1.value()));
            }
            Ok(out)
        })?;
        raw.into_iter()
            .map(|r| {
                r.map_err(|e| StoreError::Decode {
                    what: "UPS status",
                    file: self.file.clone(),
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    /// Saves the state of one power domain (durably: a restart resumes from it).
    pub fn put_power_state(&self, domain: &str, state: &[u8]) -> Result<(), StoreError> {
        self.write(|txn, _, _| {
            txn.open_table(POWER)?.insert(domain, state)?;
            Ok(())
        })
    }

    /// Every saved power domain state, by domain name.
    pub fn power_states(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(|txn| {
            let mut out = Vec::new();
            for entry in txn.open_table(POWER)?.iter()? {
                let (k, v) = entry?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Forgets a power domain that is no longer configured.
    pub fn delete_power_state(&self, domain: &str) -> Result<(), StoreError> {
        self.write(|txn, _, _| {
            txn.open_table(POWER)?.remove(domain)?;
            Ok(())
        })
    }

    /// Deletes raw samples older than the raw retention and rollups and
    /// events older than the rollup retention, as of `now_ms`.
    pub fn prune(&self, now_ms: i64) -> Result<(), StoreError> {
        let raw_cutoff = now_ms.saturating_sub(self.retention.raw.as_millis() as i64);
        let rollup_cutoff = now_ms.saturating_sub(self.retention.rollup.as_millis() as i64);
        let node_ids: Vec<u32> = self.lock_names().nodes.values().copied().collect();
        self.write(|txn, _, _| {
            let mut raw = txn.open_table(RAW)?;
            let mut rollup = txn.open_table(ROLLUP)?;
            for &node in &node_ids {
                let start = codec::key(node, 0);
                // Whole minutes go: a chunk is kept while any of its rows is young.
                let end = codec::key(node, raw_cutoff.div_euclid(ROLLUP_MS) * ROLLUP_MS);
                raw.retain_in::<RowKey<'_>, _>(&start..&end, |_, _| false)?;
            }
            rollup.retain_in::<RowKey<'_>, _>(
                &codec::minute_key(0, 0)..&codec::minute_key(rollup_cutoff, 0),
                |_, _| false,
            )?;
            txn.open_table(EVENTS)?
                .retain_in((i64::MIN, 0)..(rollup_cutoff, 0), |_, _| false)?;
            Ok(())
        })
    }
}

fn open_db(file: &Path) -> Result<Database, StoreError> {
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    builder
        .create(file)
        .map_err(|e| StoreError::from_engine(e, "open", file))
}

use nodewarden_common::clock::now_ms;
