//! Writing samples: raw rows, 1-minute rollups, each node's newest sample
//! and the per-agent high-water marks, in one group commit.

use std::collections::HashMap;

use nodewarden_proto::v1::Sample;
use prost::Message;
use redb::{Durability, ReadableTable};

use super::{
    Agg, HIGH_WATER, LATEST, METRIC_IDS, NODE_IDS, NODE_METRICS, RAW, ROLLUP, ROLLUP_MS, Store,
    StoreError, codec,
};
use crate::series;

/// New rows for one node's minute chunk: (unix ms, encoded row).
type ChunkRows = Vec<(i64, Vec<u8>)>;

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

impl Store {
    /// Stores the samples of many nodes in ONE durable transaction (group
    /// commit): series rows, 1-minute rollups, each node's newest sample and
    /// the per-(node, instance) high-water seq. Samples at or below the
    /// high-water are duplicates and are skipped.
    pub fn append(&self, batch: &[NodeBatch]) -> Result<(), StoreError> {
        self.append_with(Durability::Immediate, batch)
    }

    /// [`Self::append`] without a sync: visible to `history` at once, on
    /// disk with the next durable commit ([`Self::sync`]); a crash before
    /// that takes back every lazy append since (whole, with its high-water
    /// marks), so the caller must not ack them until then. Costs next to
    /// no disk writes: redb writes the pages once, at the durable commit.
    pub fn append_lazily(&self, batch: &[NodeBatch]) -> Result<(), StoreError> {
        self.append_with(Durability::None, batch)
    }

    fn append_with(&self, durability: Durability, batch: &[NodeBatch]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write_with(durability, |txn, names, pending| {
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
                    let before = stored.unwrap_or(0);
                    pending.moved_marks.push(((node, nb.instance_id), before));
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

    /// The highest seq of this agent instance that is stored durably (0 if
    /// none): what its agent may drop. Samples past it in lazy commits are
    /// visible to `history` but are sent again, and skipped as duplicates.
    pub fn high_water(&self, node: &str, instance_id: u64) -> Result<u64, StoreError> {
        let id = {
            let names = self.lock_names();
            let Some(id) = names.nodes.get(node).copied() else {
                return Ok(0);
            };
            if let Some(&durable) = names.durable_marks.get(&(id, instance_id)) {
                return Ok(durable);
            }
            id
        };
        self.read(|txn| {
            Ok(txn
                .open_table(HIGH_WATER)?
                .get((id, instance_id))?
                .map_or(0, |g| g.value()))
        })
    }
}
