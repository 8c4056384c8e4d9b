//! The on-disk encoding of series rows and rollups. Public so the storage
//! benchmark can write exactly the same bytes through another engine.
//!
//! One row holds every series point of one sample of one node, and one raw
//! entry, keyed (node id, minute), holds a minute of a node's rows (a chunk).
//! A group commit then rewrites one small value per node instead of touching
//! one B-tree leaf per series; a day of one node is 1,440 entries to scan
//! instead of 86,400; and finished chunks are dense on disk, where row-per-key
//! inserts into the middle of a B-tree leave half-empty leaves behind.
//! Values are written in the smallest exact form (integer, thousandths, f32
//! or f64), so a typical row is ~100 bytes rather than 25 x 16.

/// Width of a row key: node id (u32 BE) then unix ms (u64 BE).
pub const KEY_LEN: usize = 12;

/// A (node, time) key whose byte order is time order within a node.
pub fn key(node_id: u32, ts_ms: i64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..4].copy_from_slice(&node_id.to_be_bytes());
    k[4..].copy_from_slice(&(ts_ms.max(0) as u64).to_be_bytes());
    k
}

/// A rollup key, minute first: the rows one commit updates (every node's
/// current minute) sit side by side in one leaf instead of one leaf per node.
pub fn minute_key(minute_ms: i64, node_id: u32) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..8].copy_from_slice(&(minute_ms.max(0) as u64).to_be_bytes());
    k[8..].copy_from_slice(&node_id.to_be_bytes());
    k
}

/// The minute (unix ms) of a rollup key.
pub fn minute_of(k: &[u8; KEY_LEN]) -> i64 {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&k[..8]);
    i64::try_from(u64::from_be_bytes(ts)).unwrap_or(i64::MAX)
}

/// Splits a key back into (node id, unix ms).
pub fn split_key(k: &[u8; KEY_LEN]) -> (u32, i64) {
    let mut node = [0u8; 4];
    node.copy_from_slice(&k[..4]);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&k[4..]);
    (
        u32::from_be_bytes(node),
        i64::try_from(u64::from_be_bytes(ts)).unwrap_or(i64::MAX),
    )
}

const TAG_INT: u64 = 0;
const TAG_MILLI: u64 = 1;
const TAG_F32: u64 = 2;
const TAG_F64: u64 = 3;
const EXACT_INT_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Picks the smallest exact form of `v`: (tag, payload bits).
fn classify(v: f64) -> (u64, u64) {
    if v.fract() == 0.0 && v.abs() < EXACT_INT_LIMIT {
        return (TAG_INT, zigzag(v as i64));
    }
    let milli = (v * 1000.0).round();
    if milli.abs() < EXACT_INT_LIMIT && milli / 1000.0 == v {
        return (TAG_MILLI, zigzag(milli as i64));
    }
    if f64::from(v as f32) == v {
        return (TAG_F32, u64::from((v as f32).to_bits()));
    }
    (TAG_F64, v.to_bits())
}

fn put_payload(buf: &mut Vec<u8>, tag: u64, bits: u64) {
    match tag {
        TAG_INT | TAG_MILLI => put_varint(buf, bits),
        TAG_F32 => buf.extend_from_slice(&(bits as u32).to_le_bytes()),
        _ => buf.extend_from_slice(&bits.to_le_bytes()),
    }
}

fn get_payload(buf: &[u8], pos: &mut usize, tag: u64) -> Option<f64> {
    match tag {
        TAG_INT => Some(unzigzag(get_varint(buf, pos)?) as f64),
        TAG_MILLI => Some(unzigzag(get_varint(buf, pos)?) as f64 / 1000.0),
        TAG_F32 => {
            let bytes: [u8; 4] = buf.get(*pos..*pos + 4)?.try_into().ok()?;
            *pos += 4;
            Some(f64::from(f32::from_le_bytes(bytes)))
        }
        _ => {
            let bytes: [u8; 8] = buf.get(*pos..*pos + 8)?.try_into().ok()?;
            *pos += 8;
            Some(f64::from_le_bytes(bytes))
        }
    }
}

/// Encodes one sample's points: per point varint(metric id << 2 | form), value.
pub fn encode_row(points: &[(u32, f64)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(points.len() * 5);
    for &(metric, v) in points {
        let (tag, bits) = classify(v);
        put_varint(&mut buf, (u64::from(metric) << 2) | tag);
        put_payload(&mut buf, tag, bits);
    }
    buf
}

/// Decodes a raw row; stops quietly at a malformed tail.
pub fn decode_row(row: &[u8]) -> impl Iterator<Item = (u32, f64)> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let head = get_varint(row, &mut pos)?;
        let v = get_payload(row, &mut pos, head & 3)?;
        Some((u32::try_from(head >> 2).ok()?, v))
    })
}

/// The value of one metric in a raw row.
pub fn find_in_row(row: &[u8], metric: u32) -> Option<f64> {
    decode_row(row).find(|&(m, _)| m == metric).map(|(_, v)| v)
}

/// Adds rows (unix ms, encoded row) to a minute's chunk, keeping it in time
/// order; a row with a timestamp already present replaces it.
pub fn chunk_add(existing: Option<&[u8]>, minute_ms: i64, rows: &[(i64, Vec<u8>)]) -> Vec<u8> {
    let mut all: Vec<(i64, &[u8])> = existing
        .map(|c| decode_chunk(c, minute_ms).collect())
        .unwrap_or_default();
    let appending = all
        .last()
        .is_none_or(|(last, _)| rows.iter().all(|(ts, _)| ts > last));
    for (ts, row) in rows {
        if !appending && let Some(slot) = all.iter_mut().find(|(t, _)| t == ts) {
            slot.1 = row;
            continue;
        }
        all.push((*ts, row));
    }
    if !appending {
        all.sort_by_key(|(ts, _)| *ts);
    }
    let mut buf = Vec::with_capacity(all.iter().map(|(_, r)| r.len() + 4).sum());
    for (ts, row) in all {
        put_varint(&mut buf, (ts - minute_ms).max(0) as u64);
        put_varint(&mut buf, row.len() as u64);
        buf.extend_from_slice(row);
    }
    buf
}

/// The rows of a chunk: (unix ms, encoded row); stops quietly at a malformed tail.
pub fn decode_chunk(chunk: &[u8], minute_ms: i64) -> impl Iterator<Item = (i64, &[u8])> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let offset = i64::try_from(get_varint(chunk, &mut pos)?).ok()?;
        let len = usize::try_from(get_varint(chunk, &mut pos)?).ok()?;
        let row = chunk.get(pos..pos.checked_add(len)?)?;
        pos += len;
        Some((minute_ms + offset, row))
    })
}

/// Min, max, sum and count of one metric over one rollup interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    /// Smallest value seen.
    pub min: f64,
    /// Largest value seen.
    pub max: f64,
    /// Sum of values (mean = sum / count).
    pub sum: f64,
    /// Number of values.
    pub count: u64,
}

impl Agg {
    /// An aggregate of one value.
    pub fn of(v: f64) -> Agg {
        Agg {
            min: v,
            max: v,
            sum: v,
            count: 1,
        }
    }

    /// Folds another aggregate into this one.
    pub fn merge(&mut self, other: &Agg) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.count += other.count;
    }

    /// The mean of the values.
    pub fn mean(&self) -> f64 {
        self.sum / self.count.max(1) as f64
    }
}

/// Encodes a rollup row: per metric varint(id), varint(count), one byte of
/// three 2-bit forms, then min, max, sum.
pub fn encode_rollup(aggs: &[(u32, Agg)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(aggs.len() * 10);
    for (metric, a) in aggs {
        put_varint(&mut buf, u64::from(*metric));
        put_varint(&mut buf, a.count);
        let parts = [classify(a.min), classify(a.max), classify(a.sum)];
        buf.push((parts[0].0 | parts[1].0 << 2 | parts[2].0 << 4) as u8);
        for (tag, bits) in parts {
            put_payload(&mut buf, tag, bits);
        }
    }
    buf
}

/// Decodes a rollup row; stops quietly at a malformed tail.
pub fn decode_rollup(row: &[u8]) -> impl Iterator<Item = (u32, Agg)> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let metric = u32::try_from(get_varint(row, &mut pos)?).ok()?;
        let count = get_varint(row, &mut pos)?;
        let tags = u64::from(*row.get(pos)?);
        pos += 1;
        let min = get_payload(row, &mut pos, tags & 3)?;
        let max = get_payload(row, &mut pos, (tags >> 2) & 3)?;
        let sum = get_payload(row, &mut pos, (tags >> 4) & 3)?;
        Some((
            metric,
            Agg {
                min,
                max,
                sum,
                count,
            },
        ))
    })
}

/// Merges new aggregates into an existing rollup row (or none) and re-encodes it.
pub fn merge_rollup(existing: Option<&[u8]>, add: &[(u32, Agg)]) -> Vec<u8> {
    let mut all: Vec<(u32, Agg)> = existing
        .map(|r| decode_rollup(r).collect())
        .unwrap_or_default();
    for (metric, a) in add {
        match all.iter_mut().find(|(m, _)| m == metric) {
            Some((_, have)) => have.merge(a),
            None => all.push((*metric, *a)),
        }
    }
    encode_rollup(&all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_exactly_in_their_smallest_form() {
        let points = [
            (0, 51.121),
            (1, 12.5),
            (2, 1_500_000_000.0),
            (3, 0.52),
            (4, 7_999_999_488.0),
            (5, f64::from(12.345_678_f32)),
            (6, std::f64::consts::PI),
            (7, -3.0),
            (300, 0.0),
        ];
        let row = encode_row(&points);
        let back: Vec<(u32, f64)> = decode_row(&row).collect();
        assert_eq!(back, points);
        // 51.121 as thousandths is a 3-byte varint: id byte + 3.
        assert!(row.len() < 50, "row is {} bytes", row.len());
        assert_eq!(find_in_row(&row, 6), Some(std::f64::consts::PI));
        assert_eq!(find_in_row(&row, 8), None);
    }

    #[test]
    fn truncated_rows_decode_what_is_whole() {
        let row = encode_row(&[(1, 2.0), (2, std::f64::consts::E)]);
        let cut = &row[..row.len() - 1];
        assert_eq!(decode_row(cut).collect::<Vec<_>>(), vec![(1, 2.0)]);
    }

    #[test]
    fn chunks_keep_rows_in_time_order_and_replace_same_timestamps() {
        let m = 120_000;
        let row = |v: f64| encode_row(&[(0, v)]);
        let c = chunk_add(None, m, &[(m + 1000, row(1.0)), (m + 2000, row(2.0))]);
        let c = chunk_add(Some(&c), m, &[(m + 3000, row(3.0))]);
        // Out of order and a repeat of 2000: sorted in, replaced.
        let c = chunk_add(Some(&c), m, &[(m + 500, row(0.5)), (m + 2000, row(2.5))]);
        let got: Vec<(i64, Option<f64>)> = decode_chunk(&c, m)
            .map(|(ts, r)| (ts, find_in_row(r, 0)))
            .collect();
        assert_eq!(
            got,
            vec![
                (m + 500, Some(0.5)),
                (m + 1000, Some(1.0)),
                (m + 2000, Some(2.5)),
                (m + 3000, Some(3.0))
            ]
        );
        assert_eq!(decode_chunk(&c[..c.len() - 1], m).count(), 3);
    }

    #[test]
    fn keys_sort_by_node_then_time() {
        assert!(key(1, 5_000) < key(1, 6_000));
        assert!(key(1, i64::MAX) < key(2, 0));
        assert_eq!(
            split_key(&key(7, 1_700_000_000_123)),
            (7, 1_700_000_000_123)
        );
        assert!(minute_key(60_000, 9) < minute_key(120_000, 0));
        assert!(minute_key(60_000, 1) < minute_key(60_000, 2));
        assert_eq!(minute_of(&minute_key(120_000, 3)), 120_000);
    }

    #[test]
    fn rollups_merge_min_max_sum_count() {
        let first = merge_rollup(None, &[(1, Agg::of(40.0)), (2, Agg::of(1.5))]);
        let second = merge_rollup(Some(&first), &[(1, Agg::of(44.5)), (3, Agg::of(7.0))]);
        let all: Vec<(u32, Agg)> = decode_rollup(&second).collect();
        assert_eq!(
            all,
            vec![
                (
                    1,
                    Agg {
                        min: 40.0,
                        max: 44.5,
                        sum: 84.5,
                        count: 2
                    }
                ),
                (2, Agg::of(1.5)),
                (3, Agg::of(7.0)),
            ]
        );
        assert_eq!(all[0].1.mean(), 42.25);
    }
}
