//! The collector's embedded store: series history with 1-minute rollups, the
//! per-agent high-water marks that make delivery exactly-once across a
//! collector restart, the node registry, the events log and UPS status.
//!
//! The engine is redb (one file, copy-on-write B-trees, ACID commits); see
//! docs/storage.md for the measurement that chose it over sled. Nothing
//! outside this module names the engine.

mod buckets;
pub mod codec;
mod counters;
mod error;
mod events;
mod history;
mod names;
mod records;
mod samples;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

use nodewarden_proto::v1::NodeInfo;
use prost::Message;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

pub use buckets::{Point, bucket_width};
pub use codec::Agg;
use counters::Counters;
pub use counters::{EventCount, StoreCounters};
pub use error::StoreError;
pub use history::History;
use names::{Names, PendingNames};
pub use records::{NodeRecord, Record};
pub use samples::NodeBatch;

/// Name of the database file inside the data dir.
pub const DB_FILE: &str = "nodewarden.redb";

/// Engine page cache. Bounded so a collector with 5,000 agents stays well
/// under 512 MB; the working set (the tails of the trees) is far smaller.
pub const CACHE_BYTES: usize = 64 * 1024 * 1024;

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
/// The operator's arming of the sequence (one key, opaque bytes from power::).
const POWER_ARM: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("power_arm");

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

/// The collector's store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Store {
    file: PathBuf,
    retention: Retention,
    /// `None` only between a failed write that needs a reopen and the reopen.
    db: RwLock<Option<Database>>,
    names: Mutex<Names>,
    counters: Counters,
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
        if !file.exists() {
            create_whole(&file)?;
        }
        let db = open_db(&file)?;
        Store::with_db(file, db, retention)
    }

    /// Opens (or creates) a store on `backend` instead of a file: the
    /// power-cut tests' simulated disk.
    #[cfg(test)]
    fn open_on(
        backend: impl redb::StorageBackend,
        retention: Retention,
    ) -> Result<Store, StoreError> {
        let file = PathBuf::from("simulated-disk");
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(backend)
            .map_err(|e| StoreError::from_engine(e, "open", &file))?;
        Store::with_db(file, db, retention)
    }

    fn with_db(file: PathBuf, db: Database, retention: Retention) -> Result<Store, StoreError> {
        let store = Store {
            file,
            retention,
            db: RwLock::new(Some(db)),
            names: Mutex::new(Names::default()),
            counters: Counters::default(),
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

    /// Failed writes and recorded events since the collector started.
    pub fn counters(&self) -> StoreCounters {
        self.counters.snapshot()
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
            txn.open_table(POWER_ARM)?;
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
        self.write_with(Durability::Immediate, f)
    }

    /// Commits durably everything committed lazily before (a no-op
    /// transaction with a sync): for a clean shutdown.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.write(|_, _, _| Ok(()))
    }

    /// Runs `f` in one write transaction. `Durability::None` commits without
    /// a sync: visible at once, on disk with the next durable commit, lost
    /// (whole, never half) if the power goes first.
    fn write_with<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&WriteTransaction, &Names, &mut PendingNames) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        self.reopen_if_needed()?;
        let mut names = self.lock_names();
        let mut pending = PendingNames::default();
        let result = {
            let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
            let db = guard.as_ref().ok_or_else(|| self.closed())?;
            let run = || -> Result<T, redb::Error> {
                let mut txn = db.begin_write()?;
                txn.set_durability(durability)?;
                let value = f(&txn, &names, &mut pending)?;
                txn.commit()?;
                Ok(value)
            };
            run().map_err(|e| StoreError::from_engine(e, "write to", &self.file))
        };
        self.counters.wrote(result.is_ok());
        match result {
            Ok(value) => {
                names.absorb(pending, matches!(durability, Durability::Immediate));
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
        {
            let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
            if guard.is_some() {
                return Ok(());
            }
            *guard = Some(open_db(&self.file)?);
        }
        // The reopened file ends at its last durable commit: names given out
        // by lazy commits after it are gone from the tables, so from memory too.
        self.load_names()
    }

    fn closed(&self) -> StoreError {
        StoreError::Io {
            action: "use",
            file: self.file.clone(),
            detail: "the database is closed after an earlier failure".into(),
        }
    }

    /// Deletes raw samples older than the raw retention and rollups and
    /// events older than the rollup retention, as of `now_ms`. Committed
    /// without a sync of its own (the next durable commit makes it so):
    /// a prune lost to a power cut is simply done again.
    pub fn prune(&self, now_ms: i64) -> Result<(), StoreError> {
        let raw_cutoff = now_ms.saturating_sub(self.retention.raw.as_millis() as i64);
        let rollup_cutoff = now_ms.saturating_sub(self.retention.rollup.as_millis() as i64);
        let node_ids: Vec<u32> = self.lock_names().nodes.values().copied().collect();
        self.write_with(Durability::None, |txn, _, _| {
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

/// Creates an empty database at `file` under another name and renames it
/// into place once it is whole and synced. A power cut while redb writes a
/// new file's first pages leaves a file it refuses to open ("not a redb
/// database"), and the collector would never start again; cut here, it
/// leaves only a `.new` file, which the next start overwrites.
fn create_whole(file: &Path) -> Result<(), StoreError> {
    let fresh = file.with_extension("redb.new");
    let io = |action: &'static str, e: std::io::Error| StoreError::Io {
        action,
        file: fresh.clone(),
        detail: e.to_string(),
    };
    match std::fs::remove_file(&fresh) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("remove", e)),
        _ => {}
    }
    // Dropped at once: closing writes the clean-shutdown header.
    drop(open_db(&fresh)?);
    std::fs::File::open(&fresh)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("sync", e))?;
    std::fs::rename(&fresh, file).map_err(|e| io("rename", e))?;
    // The rename itself is durable once the directory is.
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync the directory of", e))?;
    }
    Ok(())
}

fn open_db(file: &Path) -> Result<Database, StoreError> {
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    builder
        .create(file)
        .map_err(|e| StoreError::from_engine(e, "open", file))
}
