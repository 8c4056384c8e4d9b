//! How long `Store::history` takes for one node, one metric, 24 h of 1 Hz
//! data (the goal is <= 50 ms for the whole call). Prints a table.
//!
//! Knobs (environment): NW_HISTORY_NODES (default 10), NW_HISTORY_RUNS
//! (default 50), NW_BENCH_DIR (where the database goes).
#![allow(clippy::expect_used)] // bench code: a panic is the failure report

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nodewarden::store::{NodeBatch, Retention, Store};
use nodewarden_proto::v1::{
    Cpu, CpuCore, Filesystem, LoadAverage, Memory, Sample, Temperature, TemperatureSource,
    Throttling,
};

const T_BASE: i64 = 1_699_999_980_000;
const DAY_S: u64 = 86_400;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A Raspberry Pi 4 sample: 3 temperatures, 4 cores, the usual readings.
fn sample(node: u64, seq: u64, ts: i64) -> Sample {
    let r = mix(seq ^ (node << 40));
    Sample {
        seq,
        timestamp_ms: ts,
        temperatures: ["cpu-thermal", "nvme", "rp1_adc"]
            .iter()
            .enumerate()
            .map(|(i, chip)| Temperature {
                source: TemperatureSource::Hwmon as i32,
                device: format!("dev{i}"),
                chip_name: (*chip).into(),
                sensor: "temp1".into(),
                millicelsius: 40_000 + ((r >> (i * 8)) % 20_000) as i32,
                is_cpu: i == 0,
                ..Default::default()
            })
            .collect(),
        cpu: Some(Cpu {
            usage_percent: (r % 10_000) as f32 / 97.0,
            cores: (0..4)
                .map(|id| CpuCore {
                    id,
                    frequency_hertz: 600_000_000 + (r % 10) * 100_000_000,
                    ..Default::default()
                })
                .collect(),
            logical_cpus: 4,
            measured_arm_clock_hertz: 1_500_000_000,
        }),
        load: Some(LoadAverage {
            load1: (r % 400) as f64 / 100.0,
            load5: 1.25,
            load15: 0.5,
        }),
        memory: Some(Memory {
            total_bytes: 8_245_673_984,
            available_bytes: 5_000_000_000 + (r % 1_000_000) * 1024,
            swap_total_bytes: 104_853_504,
            swap_free_bytes: 104_853_504,
            ..Default::default()
        }),
        uptime_seconds: seq as f64,
        root_filesystem: Some(Filesystem {
            mountpoint: "/".into(),
            size_bytes: 62_000_000_000,
            available_bytes: 40_000_000_000,
            free_bytes: 43_000_000_000,
        }),
        throttling: Some(Throttling {
            source: 1,
            get_throttled: 0x5_0000,
            under_voltage_alarm: false,
        }),
        ..Default::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let env = |k: &str, d: u64| -> u64 {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let nodes = env("NW_HISTORY_NODES", 10).max(1);
    let runs = env("NW_HISTORY_RUNS", 50).max(1) as usize;
    let base = std::env::var("NW_BENCH_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from);
    let dir = tempfile::Builder::new()
        .prefix("nw-history")
        .tempdir_in(base)
        .expect("bench dir");
    let store = Store::open(dir.path(), Retention::default()).expect("open store");

    let fill = Instant::now();
    // One commit per simulated minute keeps the fill quick; the layout is the
    // same as with 1 s commits (same keys, same rows).
    for minute in 0..DAY_S / 60 {
        let batch: Vec<NodeBatch> = (0..nodes)
            .map(|n| NodeBatch {
                node: format!("node{n:02}"),
                instance_id: 1,
                samples: (0..60)
                    .map(|s| {
                        let seq = minute * 60 + s + 1;
                        sample(n, seq, T_BASE + (seq as i64 - 1) * 1000)
                    })
                    .collect(),
                gap: None,
            })
            .collect();
        store.append(&batch).expect("append");
    }
    let fill = fill.elapsed();
    let file_size = std::fs::metadata(store.file()).map_or(0, |m| m.len());
    let now = T_BASE + DAY_S as i64 * 1000;
    eprintln!(
        "filled {nodes} nodes x 24 h at 1 Hz in {fill:.1?}; file {:.1} MiB",
        file_size as f64 / 1_048_576.0
    );

    println!("\n| query | points | resolution | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for (label, max_points) in [
        ("24 h cpu_temp, raw", 0u32),
        ("24 h cpu_temp, max_points=200", 200),
    ] {
        let mut times = Vec::with_capacity(runs);
        let mut shape = (0, 0);
        for i in 0..runs {
            // Rotate over nodes so the page cache is not one node's only.
            let node = format!("node{:02}", i as u64 % nodes);
            let t = Instant::now();
            let h = store
                .history(
                    &node,
                    "cpu_temp",
                    now - DAY_S as i64 * 1000,
                    now,
                    max_points,
                )
                .expect("history");
            times.push(t.elapsed());
            shape = (h.points.len(), h.resolution_ms);
        }
        times.sort_unstable();
        println!(
            "| {label} | {} | {} ms | {:.1?} | {:.1?} | {:.1?} |",
            shape.0,
            shape.1,
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times[times.len() - 1]
        );
    }
}
