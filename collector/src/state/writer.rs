//! Group commit: every stream hands its samples to one writer, which gathers
//! them for `commit_interval`, stores them in one durable transaction, and
//! only then acks each stream. An ack therefore always means "on disk".
//!
//! When a commit fails (disk full), the writer keeps the batch and retries
//! with backoff; meanwhile the bounded queue fills and pushes back on the
//! streams, so agents keep buffering instead of anything being dropped.

use std::sync::Arc;
use std::time::Duration;

use nodewarden_common::backoff::Backoff;
use nodewarden_proto::v1::Sample;
use tokio::sync::{mpsc, watch};

use crate::store::{NodeBatch, Store};

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

/// Runs until every sender is dropped, or until shutdown, when it commits
/// what is queued and returns.
pub async fn run(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<WriteItem>,
    commit_interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failing_since: Option<std::time::Instant> = None;
    let mut stopping = false;
    while !stopping {
        let first = tokio::select! {
            item = rx.recv() => match item {
                Some(item) => item,
                None => return,
            },
            _ = shutdown.changed() => {
                stopping = true;
                match rx.try_recv() {
                    Ok(item) => item,
                    Err(_) => return,
                }
            }
        };
        let mut items = vec![first];
        let deadline = tokio::time::Instant::now() + commit_interval;
        while items.len() < MAX_ITEMS_PER_COMMIT {
            if stopping {
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
                _ = shutdown.changed() => stopping = true,
            }
        }
        // The samples move into the batch (no copy: at thousands of agents a
        // commit holds tens of thousands); only what the acks need stays.
        let mut acks = Vec::with_capacity(items.len());
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
        let batches = Arc::new(batches);
        let mut backoff = Backoff::exact(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            let store = store.clone();
            let b = batches.clone();
            let result = tokio::task::spawn_blocking(move || store.append(&b)).await;
            match result {
                Ok(Ok(())) => {
                    if failing_since.take().is_some() {
                        tracing::info!("store writes work again");
                    }
                    break;
                }
                Ok(Err(e)) => {
                    if failing_since.is_none() {
                        tracing::error!(
                            "cannot store samples: {e}; holding them and retrying (agents keep theirs too)"
                        );
                        failing_since = Some(std::time::Instant::now());
                    }
                }
                Err(e) => tracing::error!("store writer task failed: {e}"),
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
        drop(batches);
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
}
