//! sled 0.34 vs redb on the collector's real write pattern: same rows (the
//! store's codec), same group commit, same retention. Prints a table.
//!
//! Each measurement runs in a child process (this binary re-executed with
//! NW_BENCH_CHILD set), so write_bytes and peak RSS belong to one engine and
//! one workload only.
//!
//! Knobs (environment): NW_CRASH_RUNS (default 50 per engine),
//! NW_WEEK_INTERVAL_S (sample interval of the week fill, default 5),
//! NW_WEEK_COMMIT_S (simulated seconds per commit in the week fill, default 60),
//! NW_BENCH_DIR (where the databases go, default a temp dir under target/).
#![allow(clippy::expect_used)] // bench code: a panic is the failure report

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nodewarden::series::series_of;
use nodewarden::store::codec::{self, Agg};
use nodewarden::store::{NodeBatch, Retention, Store};
use nodewarden_proto::v1::{
    Cpu, CpuCore, Filesystem, LoadAverage, Memory, Sample, Temperature, TemperatureSource,
    Throttling,
};
use prost::Message;
use sled::Transactional;

const NODES: usize = 10;
const INSTANCE: u64 = 42;
/// 2023-11-14 22:12 UTC, a whole minute.
const T_BASE: i64 = 1_699_999_980_000;
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

fn node_name(i: usize) -> String {
    format!("node{i:02}")
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The CPU temperature the generator gives `node` at `seq`: the crash check
/// recomputes it to prove every stored row is the row that was written.
fn temp_milli(node: usize, seq: u64) -> i32 {
    45_000 + (mix(seq ^ ((node as u64) << 40)) % 15_000) as i32
}

/// A Raspberry Pi 4 sample with values that wander like real ones.
fn gen_sample(node: usize, seq: u64, ts: i64) -> Sample {
    let r = mix(seq.wrapping_mul(31) ^ node as u64);
    let cpu_t = temp_milli(node, seq);
    let cores = (0..4)
        .map(|id| CpuCore {
            id,
            usage_percent: ((r >> (id * 8)) % 100) as f32 * 0.37,
            frequency_hertz: if r.is_multiple_of(3) {
                1_500_000_000
            } else {
                600_000_000
            },
            ..Default::default()
        })
        .collect();
    Sample {
        seq,
        timestamp_ms: ts,
        temperatures: vec![
            Temperature {
                source: TemperatureSource::ThermalZone as i32,
                device: "0".into(),
                chip_name: "cpu-thermal".into(),
                millicelsius: cpu_t,
                is_cpu: true,
                ..Default::default()
            },
            Temperature {
                source: TemperatureSource::Hwmon as i32,
                device: "nvme_nvme0".into(),
                chip_name: "nvme".into(),
                sensor: "temp1".into(),
                label: "Composite".into(),
                millicelsius: 38_850 + (r % 2000) as i32,
                ..Default::default()
            },
            Temperature {
                source: TemperatureSource::Hwmon as i32,
                device: "rpi_volt".into(),
                chip_name: "rp1_adc".into(),
                sensor: "temp1".into(),
                millicelsius: 41_000 + (r % 3000) as i32,
                ..Default::default()
            },
        ],
        cpu: Some(Cpu {
            usage_percent: (r % 10_000) as f32 / 97.0,
            cores,
            logical_cpus: 4,
            measured_arm_clock_hertz: 600_000_000 + (r % 900) * 1_000_000,
        }),
        load: Some(LoadAverage {
            load1: (r % 400) as f64 / 100.0,
            load5: (r % 300) as f64 / 100.0,
            load15: (r % 200) as f64 / 100.0,
        }),
        memory: Some(Memory {
            total_bytes: 8_245_673_984,
            available_bytes: 5_000_000_000 + (r % 1_000_000) * 1024,
            free_bytes: 1_000_000_000,
            buffers_bytes: 100_000_000,
            cached_bytes: 2_000_000_000,
            swap_total_bytes: 104_853_504,
            swap_free_bytes: 104_853_504 - (r % 1000) * 4096,
        }),
        pressure: None,
        uptime_seconds: 86_400.0 + seq as f64 + 0.37,
        root_filesystem: Some(Filesystem {
            mountpoint: "/".into(),
            size_bytes: 62_000_000_000,
            available_bytes: 40_000_000_000 - (seq * 4096),
            free_bytes: 43_000_000_000 - (seq * 4096),
        }),
        throttling: Some(Throttling {
            source: 1,
            get_throttled: if r.is_multiple_of(50) {
                0x5_0005
            } else {
                0x5_0000
            },
            under_voltage_alarm: false,
        }),
        ups: Vec::new(),
    }
}

fn batch_at(seq: u64, ts: i64) -> Vec<NodeBatch> {
    (0..NODES)
        .map(|n| NodeBatch {
            node: node_name(n),
            instance_id: INSTANCE,
            samples: vec![gen_sample(n, seq, ts)],
            gap: None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The two engines behind one interface. redb IS the collector's Store; sled
// writes the same keys and values (store::codec) with the same transaction
// boundaries, then flushes, which is what makes a sled commit durable.

trait Engine {
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

fn open_engine(engine: &str, dir: &Path) -> Box<dyn Engine> {
    match engine {
        "redb" => Box::new(Redb::open(dir)),
        _ => Box::new(Sled::open(dir)),
    }
}

// ---------------------------------------------------------------------------
// Measurements in the child.

fn write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("read /proc/self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("write_bytes in /proc/self/io")
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Disk blocks really used under `dir` (du, not apparent size).
fn du_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One hour of history written in 60 s commits, so the measured writes go
/// to a file in steady state rather than an empty one. Returns the last seq.
fn prefill_hour(e: &mut dyn Engine) -> u64 {
    let mut seq = 0u64;
    for _ in 0..60 {
        let mut all: Vec<NodeBatch> = batch_at(seq + 1, T_BASE + seq as i64 * 1000);
        for s in 2..=60u64 {
            for (n, nb) in all.iter_mut().enumerate() {
                nb.samples
                    .push(gen_sample(n, seq + s, T_BASE + (seq + s - 1) as i64 * 1000));
            }
        }
        seq += 60;
        e.append(&all);
    }
    seq
}

/// One simulated hour of 10 nodes at 1 Hz, one commit per simulated second,
/// after one hour of prefill (a steady-state file, not an empty one).
fn child_hour(engine: &str, dir: &Path) {
    let commit_s = env_u64("NW_HOUR_COMMIT_S", 1).max(1);
    let mut e = open_engine(engine, dir);
    let mut seq = prefill_hour(e.as_mut());
    let before = write_bytes();
    let start = Instant::now();
    for _ in 0..3600 / commit_s {
        let mut all = batch_at(seq + 1, T_BASE + seq as i64 * 1000);
        for s in 2..=commit_s {
            for (n, nb) in all.iter_mut().enumerate() {
                nb.samples
                    .push(gen_sample(n, seq + s, T_BASE + (seq + s - 1) as i64 * 1000));
            }
        }
        seq += commit_s;
        e.append(&all);
    }
    let secs = start.elapsed().as_secs_f64();
    let written = write_bytes() - before;
    println!(
        "RESULT hour_bytes={written} hour_secs={secs:.2} commits={} rss_kib={}",
        3600 / commit_s,
        peak_rss_kib()
    );
}

/// Commit after every single sample: 5 simulated minutes, scaled to an hour.
fn child_per_sample(engine: &str, dir: &Path) {
    let mut e = open_engine(engine, dir);
    let first = prefill_hour(e.as_mut()) + 1;
    let before = write_bytes();
    let start = Instant::now();
    for seq in first..first + 300 {
        for nb in batch_at(seq, T_BASE + (seq - 1) as i64 * 1000) {
            e.append(&[nb]);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let written = write_bytes() - before;
    println!(
        "RESULT per_sample_bytes_5min={written} per_sample_secs={secs:.2} commits=3000 rss_kib={}",
        peak_rss_kib()
    );
}

/// A week of 10 nodes at NW_WEEK_INTERVAL_S, pruned every 5 simulated
/// minutes with the default retention (raw 48 h, rollups 30 d).
fn child_week(engine: &str, dir: &Path) {
    let interval = env_u64("NW_WEEK_INTERVAL_S", 5).max(1);
    let commit_every = env_u64("NW_WEEK_COMMIT_S", 60).max(interval);
    let per_commit = commit_every / interval;
    let mut e = open_engine(engine, dir);
    let retention = Retention::default();
    let total = 7 * 86_400 / interval;
    let start = Instant::now();
    let before = write_bytes();
    let mut seq = 0u64;
    let mut last_prune = T_BASE;
    while seq < total {
        let mut all: Vec<NodeBatch> = Vec::new();
        for n in 0..NODES {
            let samples = (1..=per_commit)
                .map(|i| {
                    gen_sample(
                        n,
                        seq + i,
                        T_BASE + ((seq + i - 1) * interval * 1000) as i64,
                    )
                })
                .collect();
            all.push(NodeBatch {
                node: node_name(n),
                instance_id: INSTANCE,
                samples,
                gap: None,
            });
        }
        seq += per_commit;
        e.append(&all);
        let now = T_BASE + (seq * interval * 1000) as i64;
        if now - last_prune >= 300_000 {
            e.prune(now, retention);
            last_prune = now;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let written = write_bytes() - before;
    drop(e);
    println!(
        "RESULT week_du={} week_secs={secs:.1} week_written={written} interval_s={interval} commit_s={commit_every} rss_kib={}",
        du_bytes(dir),
        peak_rss_kib()
    );
}

/// Writes forever, printing ACK <seq> after each durable commit.
fn child_crash_writer(engine: &str, dir: &Path) {
    let mut e = open_engine(engine, dir);
    let mut seq = e.high_water(&node_name(0));
    let mut out = std::io::stdout().lock();
    loop {
        seq += 1;
        e.append(&batch_at(seq, T_BASE + (seq - 1) as i64 * 1000));
        writeln!(out, "ACK {seq}").expect("stdout");
        out.flush().expect("stdout");
    }
}

// ---------------------------------------------------------------------------
// The parent: runs children, checks crash integrity, prints the table.

fn run_child(mode: &str, engine: &str, dir: &Path) -> HashMap<String, String> {
    run_child_env(mode, engine, dir, &[])
}

fn run_child_env(
    mode: &str,
    engine: &str,
    dir: &Path,
    env: &[(&str, &str)],
) -> HashMap<String, String> {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .envs(env.iter().copied())
        .env("NW_BENCH_CHILD", format!("{mode}:{engine}"))
        .env("NW_BENCH_CHILD_DIR", dir)
        .stderr(Stdio::inherit())
        .output()
        .expect("spawn child");
    assert!(
        out.status.success(),
        "{mode} {engine} child failed: {}",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("child printed RESULT");
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Checks the store after a SIGKILL; returns a description of what is wrong.
fn verify(engine: &str, dir: &Path, acked: u64) -> Result<u64, String> {
    let e = std::panic::catch_unwind(|| open_engine(engine, dir))
        .map_err(|_| "does not open after SIGKILL".to_string())?;
    let mut hw0 = None;
    for n in 0..NODES {
        let name = node_name(n);
        let hw = e.high_water(&name);
        if hw < acked {
            return Err(format!("{name}: high-water {hw} < acked {acked}"));
        }
        // All nodes are committed together: one transaction, one high-water.
        if *hw0.get_or_insert(hw) != hw {
            return Err(format!(
                "{name}: high-water {hw} differs from node00's {hw0:?}"
            ));
        }
        let temps = e.cpu_temps(&name);
        if temps.len() as u64 != hw {
            return Err(format!("{name}: {} rows but high-water {hw}", temps.len()));
        }
        for (i, (ts, v)) in temps.iter().enumerate() {
            let seq = i as u64 + 1;
            let want = f64::from(temp_milli(n, seq)) / 1000.0;
            if *ts != T_BASE + (seq as i64 - 1) * 1000 || *v != want {
                return Err(format!("{name}: row {seq} is ({ts}, {v}), want {want}"));
            }
        }
        if hw > 0 {
            let min = temps.iter().map(|t| t.1).fold(f64::MAX, f64::min);
            let max = temps.iter().map(|t| t.1).fold(f64::MIN, f64::max);
            let mean = temps.iter().map(|t| t.1).sum::<f64>() / temps.len() as f64;
            let r = e
                .cpu_temp_rollup(&name)
                .ok_or_else(|| format!("{name}: no rollups"))?;
            if r.min != min || r.max != max || (r.sum - mean).abs() > 1e-6 {
                return Err(format!(
                    "{name}: rollup min/max/mean {}/{}/{} vs rows {min}/{max}/{mean}",
                    r.min, r.max, r.sum
                ));
            }
        }
    }
    Ok(hw0.unwrap_or(0))
}

fn crash_runs(engine: &str, dir: &Path, runs: u64) -> (u64, Vec<String>, u64) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut failures = Vec::new();
    let mut rows = 0;
    for run in 0..runs {
        let mut child = Command::new(&exe)
            .env("NW_BENCH_CHILD", format!("crash:{engine}"))
            .env("NW_BENCH_CHILD_DIR", dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let acked = Arc::new(AtomicU64::new(0));
        let stdout = child.stdout.take().expect("piped stdout");
        let reader = {
            let acked = Arc::clone(&acked);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(n) = line.strip_prefix("ACK ").and_then(|n| n.parse().ok()) {
                        acked.store(n, Ordering::SeqCst);
                    }
                }
            })
        };
        // Anywhere from during open to deep into a run of commits.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let wait = 20 + mix(run ^ seed) % 700;
        std::thread::sleep(Duration::from_millis(wait));
        child.kill().expect("SIGKILL writer");
        child.wait().expect("reap writer");
        let _ = reader.join();
        let acked = acked.load(Ordering::SeqCst);
        match verify(engine, dir, acked) {
            Ok(hw) => rows = hw,
            Err(e) => failures.push(format!("run {run} (acked {acked}): {e}")),
        }
    }
    (runs, failures, rows)
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / 1_048_576.0)
}

fn main() {
    if let Ok(child) = std::env::var("NW_BENCH_CHILD") {
        let dir = PathBuf::from(std::env::var("NW_BENCH_CHILD_DIR").expect("NW_BENCH_CHILD_DIR"));
        let (mode, engine) = child.split_once(':').expect("mode:engine");
        match mode {
            "hour" => child_hour(engine, &dir),
            "per_sample" => child_per_sample(engine, &dir),
            "week" => child_week(engine, &dir),
            _ => child_crash_writer(engine, &dir),
        }
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` would not: run only under bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let base = match std::env::var("NW_BENCH_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => std::env::temp_dir(),
    };
    let root = tempfile::Builder::new()
        .prefix("nw-storage-compare")
        .tempdir_in(base)
        .expect("bench dir");
    let crash = env_u64("NW_CRASH_RUNS", 50);
    let mut rows = Vec::new();
    for engine in ["redb", "sled"] {
        let t = Instant::now();
        let d = |what: &str| root.path().join(format!("{engine}-{what}"));
        let hour = run_child("hour", engine, &d("hour"));
        eprintln!("{engine}: hour done in {:.0?}", t.elapsed());
        let hour5 = run_child_env("hour", engine, &d("hour5"), &[("NW_HOUR_COMMIT_S", "5")]);
        let per = run_child("per_sample", engine, &d("per_sample"));
        eprintln!("{engine}: per-sample done in {:.0?}", t.elapsed());
        let week = run_child("week", engine, &d("week"));
        eprintln!("{engine}: week done in {:.0?}", t.elapsed());
        let (runs, failures, crash_rows) = crash_runs(engine, &d("crash"), crash);
        eprintln!("{engine}: crash runs done in {:.0?}", t.elapsed());
        for f in &failures {
            eprintln!("{engine} crash failure: {f}");
        }
        let num = |m: &HashMap<String, String>, k: &str| -> f64 {
            m.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
        };
        let rss = num(&hour, "rss_kib").max(num(&week, "rss_kib"));
        rows.push(vec![
            engine.to_string(),
            mib(num(&hour, "hour_bytes")),
            format!("{:.1} KiB", num(&hour, "hour_bytes") / 3600.0 / 1024.0),
            mib(num(&hour5, "hour_bytes")),
            mib(num(&per, "per_sample_bytes_5min") * 12.0),
            mib(num(&week, "week_du")),
            mib(num(&week, "week_written")),
            format!("{:.0} MiB", rss / 1024.0),
            format!("{}/{runs} (to seq {crash_rows})", failures.len()),
            format!(
                "{}s + {}s + {}s",
                hour.get("hour_secs").map_or("?", String::as_str),
                per.get("per_sample_secs").map_or("?", String::as_str),
                week.get("week_secs").map_or("?", String::as_str)
            ),
        ]);
        if let Some(i) = week.get("interval_s") {
            eprintln!(
                "week fill: one sample per node every {i} s, one commit per {} s",
                week.get("commit_s").map_or("?", String::as_str)
            );
        }
    }
    let header = [
        "engine",
        "written/h, 1 s group commit",
        "per commit",
        "written/h, 5 s group commit",
        "written/h, commit per sample",
        "file after 7 d",
        "written during 7 d fill",
        "peak RSS",
        "crash failures",
        "time (hour + per-sample + week)",
    ];
    println!("\n| {} |", header.join(" | "));
    println!(
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
}
