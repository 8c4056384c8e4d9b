//! Reading one metric of one node back, raw or from rollups.

use nodewarden_common::clock::now_ms;
use redb::ReadableTable;

use super::{
    Agg, Point, RAW, RAW_STEP_MS, ROLLUP, ROLLUP_MS, RowKey, Store, StoreError, bucket_width,
    buckets, codec,
};
use crate::series;

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

/// Which rows one `history` call reads.
#[derive(Debug, Clone, Copy)]
struct Window {
    node_id: u32,
    metric_id: u32,
    since_ms: i64,
    until_ms: i64,
    max_points: u32,
}

/// A table of (node, minute) or (minute, node) rows as a read transaction opens it.
type RowTable = redb::ReadOnlyTable<RowKey<'static>, &'static [u8]>;

/// Points and their resolution (0: raw samples).
type Points = (Vec<Point>, i64);

impl Store {
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
        let (node_id, metric_id, available) = self.resolve(node, metric)?;
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
        let window = Window {
            node_id,
            metric_id,
            since_ms,
            until_ms,
            max_points,
        };
        (history.points, history.resolution_ms) = self.read(|txn| {
            let raw = txn.open_table(RAW)?;
            let rollup = txn.open_table(ROLLUP)?;
            if from_rollups(&raw, &rollup, window)? {
                rollup_points(&rollup, window)
            } else {
                raw_points(&raw, window)
            }
        })?;
        Ok(history)
    }

    /// The node's id, the metric's id if this node has that series, and
    /// when it has not, every metric the node has (sorted).
    fn resolve(
        &self,
        node: &str,
        metric: &str,
    ) -> Result<(u32, Option<u32>, Vec<String>), StoreError> {
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
        Ok((node_id, metric_id, available))
    }
}

/// Rollups answer when the buckets are a minute or wider, or when the window
/// starts before the oldest raw row and raw has been pruned there.
fn from_rollups(raw: &RowTable, rollup: &RowTable, w: Window) -> Result<bool, redb::Error> {
    let node_start = codec::key(w.node_id, 0);
    let node_end = codec::key(w.node_id, i64::MAX);
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
            rollup.get(&codec::minute_key(before, w.node_id))?.is_some()
        }
        None => true,
    };
    let before_raw = first_raw.is_none_or(|r| w.since_ms < r);
    let wide = w.max_points > 0
        && bucket_width(w.since_ms, w.until_ms, w.max_points, RAW_STEP_MS) >= ROLLUP_MS;
    Ok(wide || (raw_pruned && before_raw))
}

/// The window from 1-minute rollups, merged into wider buckets when there
/// are more than `max_points`.
fn rollup_points(rollup: &RowTable, w: Window) -> Result<Points, redb::Error> {
    let from = w.since_ms.div_euclid(ROLLUP_MS) * ROLLUP_MS;
    // Rows are minute-major, so one node's are found by one lookup
    // per minute, within the minutes the table holds at all.
    let oldest = rollup.first()?.map(|(k, _)| codec::minute_of(k.value()));
    let newest = rollup.last()?.map(|(k, _)| codec::minute_of(k.value()));
    let mut items = Vec::new();
    if let (Some(oldest), Some(newest)) = (oldest, newest) {
        let mut minute = from.max(oldest);
        let last = w.until_ms.min(newest);
        while minute <= last {
            if let Some(row) = rollup.get(&codec::minute_key(minute, w.node_id))?
                && let Some((_, agg)) =
                    codec::decode_rollup(row.value()).find(|(m, _)| *m == w.metric_id)
            {
                items.push((minute, agg));
            }
            minute += ROLLUP_MS;
        }
    }
    if w.max_points > 0 && items.len() > w.max_points as usize {
        let width = bucket_width(from, w.until_ms, w.max_points, ROLLUP_MS);
        Ok((buckets::merge(items, from, width), width))
    } else {
        let points = items
            .into_iter()
            .map(|(ts, a)| (ts, a.mean(), a.min, a.max))
            .collect();
        Ok((points, ROLLUP_MS))
    }
}

/// The window from raw rows, merged into buckets when there are more than
/// `max_points`.
fn raw_points(raw: &RowTable, w: Window) -> Result<Points, redb::Error> {
    let mut values: Vec<(i64, f64)> = Vec::new();
    let lo = codec::key(w.node_id, w.since_ms.div_euclid(ROLLUP_MS) * ROLLUP_MS);
    let hi = codec::key(w.node_id, w.until_ms);
    for entry in raw.range::<RowKey<'_>>(&lo..=&hi)? {
        let (k, v) = entry?;
        let minute = codec::split_key(k.value()).1;
        for (ts, row) in codec::decode_chunk(v.value(), minute) {
            if ts < w.since_ms || ts > w.until_ms {
                continue;
            }
            if let Some(value) = codec::find_in_row(row, w.metric_id) {
                values.push((ts, value));
            }
        }
    }
    if w.max_points > 0 && values.len() > w.max_points as usize {
        let width = bucket_width(w.since_ms, w.until_ms, w.max_points, RAW_STEP_MS);
        let points = buckets::merge(
            values.into_iter().map(|(ts, v)| (ts, Agg::of(v))),
            w.since_ms,
            width,
        );
        Ok((points, width))
    } else {
        Ok((values.into_iter().map(|(ts, v)| (ts, v, v, v)).collect(), 0))
    }
}
