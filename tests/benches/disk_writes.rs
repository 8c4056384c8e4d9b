//! Disk writes of the collector's history against Prometheus's TSDB, in one
//! run on one disk: bytes written per hour and durable syncs (issue 18).
//!
//! A real `nodewarden serve` takes N real `nodewarden-agent`s at the agent's
//! defaults (a sample every 5 s, sent every 5 s) reading this machine. Beside
//! it, Debian's `prometheus` scrapes N targets every 5 s; target i serves
//! node i's lines of the collector's own `/metrics` (the same sample the
//! store holds, rendered as Prometheus text), so both sides keep the same
//! series with the same values. After a warm-up, for a fixed window, the
//! bench reads `write_bytes` of `/proc/PID/io` for both processes (bytes the
//! process sent to the block layer, page cache writeback included) and
//! counts their fsync-family calls with `strace -f -c`. The log of each goes
//! to a file at level warn, so logging adds next to nothing to either.
//!
//! Run (needs root for strace to attach; installs nothing: see
//! tests/setup/install-test-tools.sh tsdb):
//!   full, 10 and 100 nodes, 1 min warm-up, 10 min window:
//!   `cargo build --release -p nodewarden -p nodewarden-agent --bins && cargo bench -p nodewarden-tests --bench disk_writes`
//!   short (the test command: 10 nodes, 10 s warm-up, 30 s window, the
//!   collector syncing every 20 s so that a sync falls in it):
//!   `cargo build --workspace --bins && cargo test -p nodewarden-tests --bench disk_writes`
//!
//! Knobs (environment): NW_NODES (list, e.g. "10,100"), NW_WARMUP_S,
//! NW_WINDOW_S, NW_COMMIT_INTERVAL and NW_SYNC_INTERVAL (the collector's
//! `commit_interval` and `sync_interval`; unset = its defaults), NW_SAMPLE_INTERVAL (agents' sampling and
//! Prometheus's scraping, default 5s), NW_BENCH_DIR (the disk measured;
//! default the temp dir).
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is the failure report

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodewarden_tests::setup::require;
use nodewarden_tests::{Collector, Proc, admin, bin, eventually, free_port, start_agent};

/// The agents send at their default interval; they sample at theirs
/// (5 s) unless NW_SAMPLE_INTERVAL says otherwise, and Prometheus scrapes
/// at the sample interval.
const SEND_INTERVAL: &str = "5s";
const SYNC_CALLS: &str = "fsync,fdatasync,sync_file_range,msync";

/// One process's figures over the window.
struct Figures {
    bytes_per_hour: f64,
    syncs: u64,
    syncs_per_minute: f64,
}

/// One row of the table.
struct Row {
    nodes: usize,
    series_per_node: usize,
    window: Duration,
    nodewarden: Figures,
    prometheus: Figures,
}

fn sample_interval() -> String {
    std::env::var("NW_SAMPLE_INTERVAL").unwrap_or_else(|_| "5s".into())
}

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --bench` runs the short mode.
    let full = std::env::args().any(|a| a == "--bench");
    require("tsdb", &["/usr/bin/prometheus", "/usr/bin/strace"]);
    let nodes: Vec<usize> = std::env::var("NW_NODES")
        .unwrap_or_else(|_| if full { "10,100" } else { "10" }.to_string())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let warmup = Duration::from_secs(env_u64("NW_WARMUP_S", if full { 60 } else { 10 }));
    let window = Duration::from_secs(env_u64("NW_WINDOW_S", if full { 600 } else { 30 }));
    let commit = std::env::var("NW_COMMIT_INTERVAL").ok();
    // The default sync (15 min) would fall outside the short window.
    let sync = std::env::var("NW_SYNC_INTERVAL")
        .ok()
        .or_else(|| (!full).then(|| "20s".to_string()));
    let intervals = Intervals {
        commit: commit.as_deref(),
        sync: sync.as_deref(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rows: Vec<Row> = nodes
        .iter()
        .map(|&n| rt.block_on(measure(n, warmup, window, intervals)))
        .collect();
    print_table(&rows, intervals);
    for row in &rows {
        // A run where a side wrote nothing measured nothing (a target down,
        // strace not attached): fail rather than print a ratio of noise.
        assert!(
            row.prometheus.bytes_per_hour > 0.0 && row.series_per_node > 0,
            "Prometheus wrote nothing or scraped no series at {} nodes",
            row.nodes
        );
    }
}

/// The collector's `commit_interval` and `sync_interval`; `None` = its default.
#[derive(Clone, Copy)]
struct Intervals<'a> {
    commit: Option<&'a str>,
    sync: Option<&'a str>,
}

async fn measure(
    nodes: usize,
    warmup: Duration,
    window: Duration,
    intervals: Intervals<'_>,
) -> Row {
    let base = std::env::var_os("NW_BENCH_DIR").map(PathBuf::from);
    let tmp = match &base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let dir = tmp.path();
    let (port, metrics_port) = (free_port(), free_port());
    let collector = start_collector(dir, port, metrics_port, intervals).await;
    let url = format!("https://127.0.0.1:{port}");
    let names: Vec<String> = (0..nodes).map(|i| format!("node{i:03}")).collect();
    let _agents: Vec<Proc> = names
        .iter()
        .map(|name| {
            start_agent(
                dir,
                name,
                &url,
                &sample_interval(),
                &["--send-interval", SEND_INTERVAL],
            )
        })
        .collect();
    let targets: Vec<u16> = names
        .iter()
        .map(|name| serve_node_target(metrics_port, name.clone()))
        .collect();
    let series_per_node = eventually(Duration::from_secs(60), "every node's series", || {
        let last = names.last().cloned().unwrap_or_default();
        async move {
            let n = node_lines(metrics_port, &last)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .count();
            (n > 5).then_some(n)
        }
    })
    .await;
    let mut prometheus = start_prometheus(dir, &targets);
    tokio::time::sleep(warmup).await;

    let pids = [collector.id(), prometheus.id()];
    let tracers: Vec<Child> = pids.iter().map(|&pid| strace(dir, pid)).collect();
    // strace needs a moment to attach to every thread.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before: Vec<u64> = pids.iter().map(|&pid| write_bytes(pid)).collect();
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let after: Vec<u64> = pids.iter().map(|&pid| write_bytes(pid)).collect();
    let elapsed = start.elapsed();
    let syncs: Vec<u64> = tracers
        .into_iter()
        .zip(pids)
        .map(|(t, pid)| stop_strace(t, dir, pid))
        .collect();
    let figures = |i: usize| Figures {
        bytes_per_hour: (after[i] - before[i]) as f64 * 3600.0 / elapsed.as_secs_f64(),
        syncs: syncs[i],
        syncs_per_minute: syncs[i] as f64 * 60.0 / elapsed.as_secs_f64(),
    };
    let row = Row {
        nodes,
        series_per_node,
        window: elapsed,
        nodewarden: figures(0),
        prometheus: figures(1),
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    drop(collector);
    row
}

/// A collector at its defaults (but `intervals` and a quiet log), PKI from
/// `nodewarden init`. Killed when dropped.
async fn start_collector(
    dir: &Path,
    port: u16,
    metrics_port: u16,
    intervals: Intervals<'_>,
) -> Killed {
    Collector::init(dir, port, metrics_port);
    let config = Collector::config_path(dir);
    let mut text = format!(
        "listen = \"127.0.0.1:{port}\"\nadmin_socket = \"{}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
         data_dir = \"{}\"\nlog_level = \"warn\"\n",
        dir.join("admin.sock").display(),
        dir.join("data").display()
    );
    if let Some(c) = intervals.commit {
        text.push_str(&format!("commit_interval = \"{c}\"\n"));
    }
    if let Some(s) = intervals.sync {
        text.push_str(&format!("sync_interval = \"{s}\"\n"));
    }
    std::fs::write(&config, text).unwrap();
    let log = std::fs::File::create(dir.join("collector.log")).unwrap();
    let child = Command::new(bin("nodewarden"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("NODEWARDEN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let socket = dir.join("admin.sock");
    eventually(
        Duration::from_secs(30),
        "the collector's admin socket",
        || {
            let socket = socket.clone();
            async move { admin(&socket).await.ok() }
        },
    )
    .await;
    Killed(child)
}

/// A child killed when dropped.
struct Killed(Child);

impl Killed {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_prometheus(dir: &Path, targets: &[u16]) -> Child {
    let list: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: {}\n  evaluation_interval: 1m\n\
             scrape_configs:\n  - job_name: nodes\n    static_configs:\n      - targets: [{}]\n",
            sample_interval(),
            list.join(", ")
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    Command::new("/usr/bin/prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prometheus").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Serves node `name`'s lines of the collector's `/metrics` on a new port.
fn serve_node_target(metrics_port: u16, name: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream, metrics_port, &name);
        }
    });
    port
}

fn answer(mut stream: TcpStream, metrics_port: u16, name: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let body = node_lines(metrics_port, name);
    write!(
        stream,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The collector's exposition lines for node `name`, with the HELP and TYPE lines.
fn node_lines(metrics_port: u16, name: &str) -> String {
    let label = format!("node=\"{name}\"");
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", metrics_port)) else {
        return String::new();
    };
    let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    body.lines()
        .filter(|l| l.starts_with('#') || l.contains(&label))
        .flat_map(|l| [l, "\n"])
        .collect()
}

fn write_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("write_bytes in /proc/PID/io")
}

fn strace(dir: &Path, pid: u32) -> Child {
    Command::new("/usr/bin/strace")
        .args(["-f", "-c", "-e", &format!("trace={SYNC_CALLS}"), "-o"])
        .arg(dir.join(format!("strace-{pid}.txt")))
        .arg("-p")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Detaches strace (SIGINT writes its summary) and returns the sync calls counted.
fn stop_strace(mut tracer: Child, dir: &Path, pid: u32) -> u64 {
    let _ = Command::new("kill")
        .args(["-INT", &tracer.id().to_string()])
        .status();
    let _ = tracer.wait();
    let summary =
        std::fs::read_to_string(dir.join(format!("strace-{pid}.txt"))).unwrap_or_default();
    // Rows: % time, seconds, usecs/call, calls, [errors,] syscall.
    summary
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let name = *cols.last()?;
            SYNC_CALLS
                .split(',')
                .any(|s| s == name)
                .then(|| cols.get(3)?.parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / (1024.0 * 1024.0))
}

fn print_table(rows: &[Row], intervals: Intervals<'_>) {
    println!(
        "\ncollector commit_interval: {}, sync_interval: {}; agents sample every {2} and send every {SEND_INTERVAL}; Prometheus scrapes every {2}\n",
        intervals.commit.unwrap_or("default"),
        intervals.sync.unwrap_or("default"),
        sample_interval()
    );
    println!(
        "| nodes | series/node | window | nodewarden written/h | nodewarden syncs (per min) | Prometheus written/h | Prometheus syncs (per min) | nodewarden / Prometheus |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} s | {} | {} ({:.2}) | {} | {} ({:.2}) | {:.2} |",
            r.nodes,
            r.series_per_node,
            r.window.as_secs(),
            mib(r.nodewarden.bytes_per_hour),
            r.nodewarden.syncs,
            r.nodewarden.syncs_per_minute,
            mib(r.prometheus.bytes_per_hour),
            r.prometheus.syncs,
            r.prometheus.syncs_per_minute,
            r.nodewarden.bytes_per_hour / r.prometheus.bytes_per_hour.max(1.0),
        );
    }
}
