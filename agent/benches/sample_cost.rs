//! What one `Sensors::sample()` costs, on this host and on each board
//! fixture, next to sysinfo refreshing the same CPU and memory figures.
//!
//! Each row runs in its own child process (this binary re-executed), so its
//! RSS is its own. CPU time is the thread's on-CPU nanoseconds from
//! /proc/thread-self/schedstat (the sampling is single-threaded, and
//! sysinfo is built without its multithread feature).
//!
//! `cargo bench -p nodewarden-agent --bench sample_cost`; SAMPLE_COST_N sets
//! the samples per row (default 2000).
#![allow(clippy::expect_used)] // bench code: a panic is the failure report

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use nodewarden_agent::sensors::Sensors;
use nodewarden_agent::sysroot::SysRoot;

const BOARDS: [&str; 6] = ["pi3", "pi4", "pi5", "bpi-m5", "x86-intel", "x86-amd"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let (what, target) = (&args[i + 1], &args[i + 2]);
        child(what, target, samples());
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let scratch = tempfile::tempdir().expect("temp dir");
    let cpu_mem_root = cpu_and_memory_only_root(scratch.path());
    let mut rows: Vec<(String, String, String)> = vec![
        ("nodewarden".into(), "host".into(), "/".into()),
        (
            "nodewarden".into(),
            "host: cpu+memory only".into(),
            cpu_mem_root.display().to_string(),
        ),
        ("sysinfo".into(), "host: cpu+memory".into(), String::new()),
    ];
    for board in BOARDS {
        rows.push((
            "nodewarden".into(),
            board.into(),
            fixture_root(board).display().to_string(),
        ));
    }
    println!(
        "{} samples per row; CPU = on-CPU time of the sampling thread; RSS after the run\n",
        samples()
    );
    println!(
        "{:<11} {:<24} {:>14} {:>14} {:>10} {:>10}",
        "reader", "target", "CPU us/sample", "wall us/sample", "RSS KiB", "+RSS KiB"
    );
    for (what, label, target) in rows {
        let out = Command::new(&exe)
            .args(["--child", &what, &target])
            .output()
            .expect("run child");
        let line = String::from_utf8_lossy(&out.stdout);
        let v: Vec<f64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if v.len() != 4 {
            println!(
                "{what:<11} {label:<24} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        println!(
            "{what:<11} {label:<24} {:>14.1} {:>14.1} {:>10} {:>10}",
            v[0], v[1], v[2], v[3]
        );
    }
}

fn samples() -> u32 {
    std::env::var("SAMPLE_COST_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn fixture_root(board: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/boards")
        .join(board)
}

/// A root that has only what sysinfo's CPU and memory refresh read, so the
/// two can be compared like for like.
fn cpu_and_memory_only_root(dir: &Path) -> PathBuf {
    let root = dir.join("cpu-mem");
    std::fs::create_dir_all(root.join("proc")).expect("mkdir");
    std::fs::create_dir_all(root.join("sys/devices/system")).expect("mkdir");
    for (link, target) in [
        ("proc/stat", "/proc/stat"),
        ("proc/meminfo", "/proc/meminfo"),
        ("sys/devices/system/cpu", "/sys/devices/system/cpu"),
    ] {
        std::os::unix::fs::symlink(target, root.join(link)).expect("symlink");
    }
    root
}

/// Runs `n` readings and prints "cpu_us wall_us rss_kib rss_growth_kib".
fn child(what: &str, target: &str, n: u32) {
    let rss_start = rss_kib();
    let (cpu0, t0);
    match what {
        "sysinfo" => {
            let mut sys = sysinfo::System::new().expect("sysinfo");
            (cpu0, t0) = (thread_cpu_ns(), Instant::now());
            for _ in 0..n {
                sys.refresh_cpu_all();
                sys.refresh_memory();
                black_box((sys.global_cpu_usage(), sys.used_memory(), sys.cpus().len()));
            }
        }
        _ => {
            let mut sensors = Sensors::new(SysRoot::at(target));
            (cpu0, t0) = (thread_cpu_ns(), Instant::now());
            for seq in 0..n {
                black_box(sensors.sample(u64::from(seq), 0));
            }
        }
    }
    let (cpu, wall) = (thread_cpu_ns() - cpu0, t0.elapsed());
    let rss_end = rss_kib();
    println!(
        "{:.3} {:.3} {} {}",
        cpu as f64 / 1e3 / f64::from(n),
        wall.as_secs_f64() * 1e6 / f64::from(n),
        rss_end,
        rss_end.saturating_sub(rss_start)
    );
}

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
