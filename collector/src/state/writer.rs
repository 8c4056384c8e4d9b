//! Group commit in two cadences. Every stream hands its samples to one
//! writer, which gathers them for `commit_interval` and stores them in one
//! transaction without a sync: `history` sees them at once, and the SD card
//! sees nothing yet. Every `sync_interval` one durable commit puts all of
//! them on disk, and only then are the streams acked. An ack therefore
//! always means "on disk"; what was not acked, the agents still hold.
//!
//! The sync interval sets the disk writes: redb writes each page once per
//! durable commit however many lazy commits changed it (docs/storage.md).
//!
//! When a commit fails (disk full), the writer keeps every batch not yet
//! synced and stores them again, durably, with backoff (a failed write
//! reopens the store at its last durable commit, which drops the lazy ones;
//! the high-water marks make the second store exact). Meanwhile the bounded
//! queue fills and pushes back on the streams, so agents keep buffering
//! instead of anything being dropped.

use std::sync::Arc;
use std::time::Duration;

use nodewarden_common::backoff::Backoff;
use nodewarden_proto::v1::Sample;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::store::{NodeBatch, Store, StoreError};

/// Samples (or a gap) from one stream.
#[derive(Debug)]
pub struct WriteItem {
    pub node: Arc<str>,
    pub instance_id: u64,
    pub samples: Vec<Sample>,
    pub gap: Option<(u64, u64)>,
    /// Highest seq in this item; sent on `ack` once committed.
    pub through_seq: u64,
    pub ack: Arc<watch::Sender<u64>>,
}

/// Items queued at most; beyond this streams wait (backpressure).
pub const QUEUE_DEPTH: usize = 8192;
/// Items per transaction at most.
const MAX_ITEMS_PER_COMMIT: usize = 20_000;
/// Samples held for a retry between durable commits at most: beyond this
/// the writer syncs early. What 5,000 agents at 1 Hz send in 2 s: redb
/// keeps the pages of lazy commits in memory until the durable one, and at
/// 25,000 (5 s) the 5,000-agent ingest run reached 555 MiB, over its 512 MiB
/// budget; at 10,000 it stays at 509 MiB. 10 nodes at defaults send 1,800
/// in 15 minutes; 100 at 1 Hz reach it in under 2.
const MAX_UNSYNCED_SAMPLES: usize = 10_000;

/// How often to commit, and how often to commit durably and ack.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// Lazy commits: how long samples wait to be seen by `history`.
    pub commit: Duration,
    /// Durable commits and acks.
    pub sync: Duration,
}

/// What is committed but not yet durable, kept for the acks and for a retry.
#[derive(Default)]
struct Unsynced {
    batches: Vec<Arc<Vec<NodeBatch>>>,
    samples: usize,
    acks: Vec<(Arc<watch::Sender<u64>>, u64)>,
}

/// Runs until every sender is dropped, or until shutdown, when it commits
/// what is queued durably and returns.
pub async fn run(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<WriteItem>,
    cadence: Cadence,
    on_battery: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut unsynced = Unsynced::default();
    let mut last_sync = Instant::now();
    let mut stopping = false;
    while !stopping {
        // On battery every commit is durable: a power cut may come at any
        // moment, and the agents' buffers die with their nodes.
        let sync_every = if *on_battery.borrow() {
            cadence.commit
        } else {
            cadence.sync
        };
        // Unsynced commits fall due even when nothing more arrives.
        let sync_at = last_sync + sync_every;
        let wake = (!unsynced.acks.is_empty()).then_some(sync_at);
        let items = gather(
            &mut rx,
            &mut shutdown,
            &mut stopping,
            wake,
            cadence.commit,
            sync_at,
        )
        .await;
        let mut acks = Vec::with_capacity(items.len());
        // The samples move into the batch (no copy: at thousands of agents a
        // commit holds tens of thousands); only what the acks need stays.
        let batches: Vec<NodeBatch> = items
            .into_iter()
            .map(|i| {
                acks.push((i.ack, i.through_seq));
                NodeBatch {
                    node: i.node.to_string(),
                    instance_id: i.instance_id,
                    samples: i.samples,
                    gap: i.gap,
                }
            })
            .collect();
        unsynced.samples += batches.iter().map(|b| b.samples.len()).sum::<usize>();
        unsynced.acks.append(&mut acks);
        let batches = Arc::new(batches);
        if !batches.is_empty() {
            unsynced.batches.push(batches.clone());
        }
        let due = stopping
            || last_sync.elapsed() >= sync_every
            || unsynced.samples >= MAX_UNSYNCED_SAMPLES;
        let result = blocking(&store, move |s| {
            s.append_lazily(&batches)?;
            if due { s.sync() } else { Ok(()) }
        })
        .await;
        if let Err(e) = result {
            tracing::error!(
                "cannot store samples: {e}; holding them and retrying (agents keep theirs too)"
            );
            store_again(&store, &unsynced.batches).await;
        } else if !due {
            continue;
        }
        last_sync = Instant::now();
        let Unsynced { acks, .. } = std::mem::take(&mut unsynced);
        send_acks(acks);
    }
}

/// Waits for the first item (or shutdown; then takes what is queued; or
/// `wake`: then returns none), then gathers more for `commit`, cut short
/// at `sync_at`.
async fn gather(
    rx: &mut mpsc::Receiver<WriteItem>,
    shutdown: &mut watch::Receiver<bool>,
    stopping: &mut bool,
    wake: Option<Instant>,
    commit: Duration,
    sync_at: Instant,
) -> Vec<WriteItem> {
    let mut items = Vec::new();
    let woken = async {
        match wake {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let first = tokio::select! {
        item = rx.recv() => match item {
            Some(item) => item,
            None => {
                *stopping = true;
                return items;
            }
        },
        _ = shutdown.changed() => {
            *stopping = true;
            match rx.try_recv() {
                Ok(item) => item,
                Err(_) => return items,
            }
        }
        () = woken => return items,
    };
    items.push(first);
    let deadline = (Instant::now() + commit).min(sync_at);
    while items.len() < MAX_ITEMS_PER_COMMIT {
        if *stopping {
            match rx.try_recv() {
                Ok(item) => items.push(item),
                Err(_) => break,
            }
            continue;
        }
        tokio::select! {
            r = tokio::time::timeout_at(deadline, rx.recv()) => match r {
                Ok(Some(item)) => items.push(item),
                Ok(None) | Err(_) => break,
            },
            _ = shutdown.changed() => *stopping = true,
        }
    }
    items
}

/// Stores every batch since the last durable commit again, durably, until
/// it works.
async fn store_again(store: &Arc<Store>, batches: &[Arc<Vec<NodeBatch>>]) {
    let mut backoff = Backoff::exact(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        tokio::time::sleep(backoff.next_delay()).await;
        let batches = batches.to_vec();
        let result = blocking(store, move |s| {
            for b in &batches {
                s.append_lazily(b)?;
            }
            s.sync()
        })
        .await;
        if result.is_ok() {
            tracing::info!("store writes work again");
            return;
        }
    }
}

/// Runs `f` on the store off the async workers (a commit waits on the disk).
async fn blocking(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<(), StoreError> + Send + 'static,
) -> Result<(), StoreError> {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::Io {
            action: "write to",
            file: store.file().to_path_buf(),
            detail: format!("the writer task failed: {e}"),
        }),
    }
}

fn send_acks(acks: Vec<(Arc<watch::Sender<u64>>, u64)>) {
    for (ack, through_seq) in acks {
        ack.send_if_modified(|acked| {
            let changed = through_seq > *acked;
            if changed {
                *acked = through_seq;
            }
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Retention;
    use nodewarden_common::clock::now_ms;

    fn item(seq: u64, ts: i64, ack: &Arc<watch::Sender<u64>>) -> WriteItem {
        WriteItem {
            node: "pi1".into(),
            instance_id: 1,
            samples: vec![Sample {
                seq,
                timestamp_ms: ts,
                uptime_seconds: 100.0 + seq as f64,
                ..Default::default()
            }],
            gap: None,
            through_seq: seq,
            ack: ack.clone(),
        }
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn samples_show_at_the_commit_are_acked_at_the_sync_and_synced_at_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), Retention::default()).expect("open"));
        let (tx, rx) = mpsc::channel(16);
        let (stop, stop_rx) = watch::channel(false);
        let cadence = Cadence {
            commit: Duration::from_millis(50),
            sync: Duration::from_secs(4),
        };
        let (_mains, on_battery) = watch::channel(false);
        let writer = tokio::spawn(run(store.clone(), rx, cadence, on_battery, stop_rx));
        let (ack, acked) = watch::channel(0u64);
        let ack = Arc::new(ack);
        let t0 = now_ms();
        let points = |s: &Store| {
            s.history("pi1", "uptime", t0 - 1000, t0 + 60_000, 0)
                .map_or(0, |h| h.points.len())
        };

        tx.send(item(1, t0, &ack)).await.expect("send");
        until("the sample in history", || points(&store) == 1).await;
        assert_eq!(*acked.borrow(), 0, "acked before the durable commit");
        until("the ack at the sync", || *acked.borrow() == 1).await;

        tx.send(item(2, t0 + 1000, &ack)).await.expect("send");
        until("the second sample in history", || points(&store) == 2).await;
        assert_eq!(*acked.borrow(), 1);
        stop.send(true).expect("stop");
        writer.await.expect("writer");
        assert_eq!(*acked.borrow(), 2, "shutdown syncs and acks what it holds");
        drop(store);
        let reopened = Store::open(dir.path(), Retention::default()).expect("reopen");
        assert_eq!(reopened.high_water("pi1", 1).expect("high water"), 2);
    }

    #[tokio::test]
    async fn on_battery_every_commit_is_durable_and_acked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), Retention::default()).expect("open"));
        let (tx, rx) = mpsc::channel(16);
        let (_stop, stop_rx) = watch::channel(false);
        let (battery, on_battery) = watch::channel(false);
        let cadence = Cadence {
            commit: Duration::from_millis(50),
            sync: Duration::from_secs(3600),
        };
        let _writer = tokio::spawn(run(store.clone(), rx, cadence, on_battery, stop_rx));
        let (ack, acked) = watch::channel(0u64);
        let ack = Arc::new(ack);
        let t0 = now_ms();
        tx.send(item(1, t0, &ack)).await.expect("send");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            *acked.borrow(),
            0,
            "on mains the ack waits for the hourly sync"
        );
        battery.send(true).expect("on battery");
        tx.send(item(2, t0 + 1000, &ack)).await.expect("send");
        until("both acked at the next commit", || *acked.borrow() == 2).await;
        tx.send(item(3, t0 + 2000, &ack)).await.expect("send");
        until("the next one too", || *acked.borrow() == 3).await;
    }
}
