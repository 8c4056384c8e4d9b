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

#[path = "storage_compare/engines.rs"]
mod engines;

use engines::{Engine, open_engine};

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
