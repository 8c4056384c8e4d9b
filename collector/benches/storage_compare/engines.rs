//! The two engines behind one interface. redb IS the collector's Store; sled
//! writes the same keys and values (store::codec) with the same transaction
//! boundaries, then flushes, which is what makes a sled commit durable.

use super::*;

pub(crate) trait Engine {
    fn append(&mut self, batch: &[NodeBatch]);
    fn prune(&mut self, now_ms: i64, retention: Retention);
    fn high_water(&self, node: &str) -> u64;
    /// Every stored cpu_temp point of `node`: (ts, value).
    fn cpu_temps(&self, node: &str) -> Vec<(i64, f64)>;
    /// cpu_temp aggregated over every rollup row of `node`.
    fn cpu_temp_rollup(&self, node: &str) -> Option<Agg>;
}

struct Redb(Store);

impl Redb {
    fn open(dir: &Path) -> Redb {
        Redb(Store::open(dir, Retention::default()).expect("open redb store"))
    }
}

impl Engine for Redb {
    fn append(&mut self, batch: &[NodeBatch]) {
        self.0.append(batch).expect("redb append");
    }
    fn prune(&mut self, now_ms: i64, _: Retention) {
        self.0.prune(now_ms).expect("redb prune");
    }
    fn high_water(&self, node: &str) -> u64 {
        self.0.high_water(node, INSTANCE).expect("redb high_water")
    }
    fn cpu_temps(&self, node: &str) -> Vec<(i64, f64)> {
        match self.0.history(node, "cpu_temp", 0, i64::MAX, 0) {
            Ok(h) => h.points.iter().map(|p| (p.0, p.1)).collect(),
            Err(_) => Vec::new(),
        }
    }
    fn cpu_temp_rollup(&self, node: &str) -> Option<Agg> {
        let h = self.0.history(node, "cpu_temp", 0, i64::MAX, 1).ok()?;
        let p = h.points.first()?;
        // One bucket over everything: mean/min/max of all rollup rows.
        Some(Agg {
            min: p.2,
            max: p.3,
            sum: p.1,
            count: 0,
        })
    }
}

/// One node's share of a sled commit: id, high-water, rows per minute, rollup
/// increments per minute, newest sample, name.
type NodeWrite = (
    u32,
    u64,
    BTreeMap<i64, Vec<(i64, Vec<u8>)>>,
    BTreeMap<i64, Vec<(u32, Agg)>>,
    Vec<u8>,
    String,
);

struct Sled {
    db: sled::Db,
    raw: sled::Tree,
    rollup: sled::Tree,
    high_water: sled::Tree,
    latest: sled::Tree,
    dict: sled::Tree,
    nodes: HashMap<String, u32>,
    metrics: HashMap<String, u32>,
    latest_minute: HashMap<u32, i64>,
}

impl Sled {
    fn open(dir: &Path) -> Sled {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            // Durability comes from the explicit flush after every commit.
            .flush_every_ms(None)
            .open()
            .expect("open sled");
        let tree = |name: &str| db.open_tree(name).expect("open sled tree");
        let (raw, rollup, high_water, latest, dict) = (
            tree("raw"),
            tree("rollup_1m"),
            tree("high_water"),
            tree("latest_sample"),
            tree("dict"),
        );
        let mut nodes = HashMap::new();
        let mut metrics = HashMap::new();
        for entry in dict.iter() {
            let (k, v) = entry.expect("read sled dict");
            let id = u32::from_be_bytes(v.as_ref().try_into().expect("4-byte id"));
            let name = String::from_utf8_lossy(&k[2..]).into_owned();
            match &k[..2] {
                b"n:" => nodes.insert(name, id),
                _ => metrics.insert(name, id),
            };
        }
        Sled {
            db,
            raw,
            rollup,
            high_water,
            latest,
            dict,
            nodes,
            metrics,
            latest_minute: HashMap::new(),
        }
    }

    fn hw_key(node: u32) -> Vec<u8> {
        let mut k = node.to_be_bytes().to_vec();
        k.extend_from_slice(&INSTANCE.to_be_bytes());
        k
    }
}

impl Engine for Sled {
    fn append(&mut self, batch: &[NodeBatch]) {
        // Ids are handed out before the transaction (sled may rerun its closure).
        let mut new_names: Vec<(Vec<u8>, u32)> = Vec::new();
        let mut rows: Vec<NodeWrite> = Vec::new();
        for nb in batch {
            let next = self.nodes.len() as u32;
            let node = *self.nodes.entry(nb.node.clone()).or_insert_with(|| {
                new_names.push(([b"n:".as_slice(), nb.node.as_bytes()].concat(), next));
                next
            });
            let stored = self
                .high_water
                .get(Self::hw_key(node))
                .expect("sled get")
                .map_or(0, |v| {
                    u64::from_be_bytes(v.as_ref().try_into().expect("8 bytes"))
                });
            let mut mark = stored;
            let mut node_rows: BTreeMap<i64, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
            let mut minutes: BTreeMap<i64, Vec<(u32, Agg)>> = BTreeMap::new();
            let mut newest = Vec::new();
            for s in &nb.samples {
                if s.seq <= mark {
                    continue;
                }
                mark = s.seq;
                let mut points = Vec::new();
                for (name, v) in series_of(s) {
                    let next = self.metrics.len() as u32;
                    let id = *self.metrics.entry(name.to_string()).or_insert_with(|| {
                        new_names.push(([b"m:".as_slice(), name.as_bytes()].concat(), next));
                        next
                    });
                    points.push((id, v));
                }
                node_rows
                    .entry(s.timestamp_ms.div_euclid(60_000) * 60_000)
                    .or_default()
                    .push((s.timestamp_ms, codec::encode_row(&points)));
                let aggs = minutes
                    .entry(s.timestamp_ms.div_euclid(60_000) * 60_000)
                    .or_default();
                for (m, v) in points {
                    match aggs.iter_mut().find(|(id, _)| *id == m) {
                        Some((_, a)) => a.merge(&Agg::of(v)),
                        None => aggs.push((m, Agg::of(v))),
                    }
                }
                let minute = s.timestamp_ms.div_euclid(60_000);
                if self.latest_minute.get(&node).is_none_or(|m| *m < minute) {
                    newest = s.encode_to_vec();
                    self.latest_minute.insert(node, minute);
                }
            }
            rows.push((node, mark, node_rows, minutes, newest, nb.node.clone()));
        }
        (
            &self.raw,
            &self.rollup,
            &self.high_water,
            &self.latest,
            &self.dict,
        )
            .transaction(|(raw, rollup, hw, latest, dict)| {
                for (node, mark, node_rows, minutes, newest, name) in &rows {
                    for (minute, new_rows) in node_rows {
                        let k = codec::key(*node, *minute);
                        let existing = raw.get(k)?;
                        let chunk = codec::chunk_add(existing.as_deref(), *minute, new_rows);
                        raw.insert(k.as_slice(), chunk)?;
                    }
                    for (minute, aggs) in minutes {
                        let k = codec::minute_key(*minute, *node);
                        let existing = rollup.get(k)?;
                        let merged = codec::merge_rollup(existing.as_deref(), aggs);
                        rollup.insert(k.as_slice(), merged)?;
                    }
                    hw.insert(Self::hw_key(*node), mark.to_be_bytes().as_slice())?;
                    if !newest.is_empty() {
                        latest.insert(name.as_bytes(), newest.as_slice())?;
                    }
                }
                for (k, id) in &new_names {
                    dict.insert(k.as_slice(), id.to_be_bytes().as_slice())?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .expect("sled transaction");
        self.db.flush().expect("sled flush");
    }

    fn prune(&mut self, now_ms: i64, retention: Retention) {
        let raw_cut = now_ms - retention.raw.as_millis() as i64;
        let roll_cut = now_ms - retention.rollup.as_millis() as i64;
        for &node in self.nodes.values() {
            let mut b = sled::Batch::default();
            for entry in self
                .raw
                .range(codec::key(node, 0)..codec::key(node, raw_cut.div_euclid(60_000) * 60_000))
            {
                b.remove(entry.expect("sled range").0);
            }
            self.raw.apply_batch(b).expect("sled prune");
        }
        let mut b = sled::Batch::default();
        for entry in self
            .rollup
            .range(codec::minute_key(0, 0)..codec::minute_key(roll_cut, 0))
        {
            b.remove(entry.expect("sled range").0);
        }
        self.rollup.apply_batch(b).expect("sled prune");
        self.db.flush().expect("sled flush");
    }

    fn high_water(&self, node: &str) -> u64 {
        let Some(&id) = self.nodes.get(node) else {
            return 0;
        };
        self.high_water
            .get(Self::hw_key(id))
            .expect("sled get")
            .map_or(0, |v| {
                u64::from_be_bytes(v.as_ref().try_into().expect("8 bytes"))
            })
    }

    fn cpu_temps(&self, node: &str) -> Vec<(i64, f64)> {
        let (Some(&id), Some(&m)) = (self.nodes.get(node), self.metrics.get("cpu_temp")) else {
            return Vec::new();
        };
        self.raw
            .scan_prefix(id.to_be_bytes())
            .flat_map(|e| {
                let (k, v) = e.expect("sled scan");
                let key: [u8; 12] = k.as_ref().try_into().expect("12-byte key");
                let minute = codec::split_key(&key).1;
                codec::decode_chunk(&v, minute)
                    .filter_map(|(ts, row)| Some((ts, codec::find_in_row(row, m)?)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn cpu_temp_rollup(&self, node: &str) -> Option<Agg> {
        let (&id, &m) = (self.nodes.get(node)?, self.metrics.get("cpu_temp")?);
        let mut total: Option<Agg> = None;
        for e in self.rollup.iter() {
            let (k, v) = e.expect("sled scan");
            if k[8..] != id.to_be_bytes() {
                continue;
            }
            if let Some((_, a)) = codec::decode_rollup(&v).find(|(id, _)| *id == m) {
                match &mut total {
                    Some(t) => t.merge(&a),
                    None => total = Some(a),
                }
            }
        }
        total.map(|t| Agg {
            min: t.min,
            max: t.max,
            sum: t.mean(),
            count: 0,
        })
    }
}

pub(crate) fn open_engine(engine: &str, dir: &Path) -> Box<dyn Engine> {
    match engine {
        "redb" => Box::new(Redb::open(dir)),
        _ => Box::new(Sled::open(dir)),
    }
}
