//! The web status page, server side:
//! 1. time to serve the overview (gather the hub's nodes, UPSes, power
//!    domains and events, judge them, render the HTML) for 10 to 10,000
//!    nodes (the budget: 10,000 in under 200 ms), and the live
//!    tick (render every tile and diff it against the last);
//! 2. memory per connected browser: N real HTTP connections following
//!    `/events/stream` on the real listener, the collector process's RSS
//!    before and after, and the time for one UPS change to reach all N.
//!
//! `cargo bench -p nodewarden --bench web_render`
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is the failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use nodewarden::config::EventThresholds;
use nodewarden::server::web::{Web, WebConfig, live, render};
use nodewarden::state::hub::Hub;
use nodewarden::store::{NodeRecord, Retention, Store};
use nodewarden_common::clock::now_ms;
use nodewarden_proto::v1::{Cpu, LoadAverage, Memory, Sample, Temperature, Throttling, UpsStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sample(i: usize) -> Sample {
    Sample {
        timestamp_ms: now_ms(),
        temperatures: vec![Temperature {
            millicelsius: 40_000 + (i as i32 * 37) % 45_000,
            is_cpu: true,
            chip_name: "cpu-thermal".into(),
            ..Default::default()
        }],
        cpu: Some(Cpu {
            usage_percent: (i % 100) as f32,
            logical_cpus: 4,
            ..Default::default()
        }),
        load: Some(LoadAverage {
            load1: 0.5,
            load5: 0.4,
            load15: 0.3,
        }),
        memory: Some(Memory {
            total_bytes: 4 << 30,
            available_bytes: (1 + (i as u64 % 3)) << 30,
            ..Default::default()
        }),
        throttling: Some(Throttling {
            get_throttled: if i.is_multiple_of(7) { 0x50005 } else { 0 },
            ..Default::default()
        }),
        uptime_seconds: 86_400.0,
        ..Default::default()
    }
}

fn ups(tokens: &[&str]) -> UpsStatus {
    UpsStatus {
        ups_name: "rack".into(),
        timestamp_ms: now_ms(),
        communication_ok: true,
        status: tokens.iter().map(|t| t.to_string()).collect(),
        battery_charge_percent: Some(87.0),
        battery_runtime_seconds: Some(900.0),
        load_percent: Some(23.0),
        input_voltage_volts: Some(230.0),
        ..Default::default()
    }
}

/// A real store and hub with `n` connected nodes, each with one sample,
/// and a UPS on the first.
fn cluster(dir: &std::path::Path, n: usize) -> Arc<Hub> {
    let store = Arc::new(Store::open(dir, Retention::default()).unwrap());
    let hub = Arc::new(Hub::new(store, EventThresholds::default()));
    for i in 0..n {
        let name = format!("node-{i:05}");
        let _registration = hub.connected(
            NodeRecord {
                name: name.clone(),
                role: if i.is_multiple_of(10) {
                    "server"
                } else {
                    "worker"
                }
                .into(),
                board_model: "Raspberry Pi 4 Model B Rev 1.4".into(),
                arch: "aarch64".into(),
                ..Default::default()
            },
            i as u64 + 1,
            "bench".into(),
            now_ms(),
        );
        hub.samples(&name, &[sample(i)]);
    }
    hub.ups_status("node-00000", ups(&["OL"]));
    hub
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn render_table() {
    println!("overview, server side (median of runs; release build)");
    println!(
        "{:>7} {:>6} {:>12} {:>12} {:>10}",
        "nodes", "runs", "serve (ms)", "tick (ms)", "page (KiB)"
    );
    for n in [10, 100, 5_000, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let hub = cluster(dir.path(), n);
        let web = Web::new(hub, None, true, &WebConfig::default());
        let runs = if n >= 5_000 { 15 } else { 101 };
        let mut serve = Vec::new();
        let mut tick = Vec::new();
        let mut size = 0;
        let mut last = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let html = render::overview(&web.overview(now_ms()));
            serve.push(t.elapsed());
            size = html.len();
            let t = Instant::now();
            let tiles = render::tiles(&web.overview(now_ms()));
            let _changed = live::diff(&last, &tiles);
            tick.push(t.elapsed());
            last = tiles;
        }
        println!(
            "{n:>7} {runs:>6} {:>12.2} {:>12.2} {:>10.0}",
            median(serve).as_secs_f64() * 1e3,
            median(tick).as_secs_f64() * 1e3,
            size as f64 / 1024.0
        );
    }
}

/// Resident set size of this process, bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Opens `n` browsers' worth of `/events/stream` connections; returns
/// the streams once each has its first batch of tiles.
async fn followers(port: u16, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(b"GET /events/stream HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        streams.push(s);
    }
    for s in &mut streams {
        read_until(s, b"events-log").await;
    }
    streams
}

async fn read_until(s: &mut tokio::net::TcpStream, needle: &[u8]) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream closed");
        // Keep only a tail long enough to match across reads.
        seen.extend_from_slice(&buf[..n]);
        if seen.len() > 64 * 1024 {
            seen.drain(..seen.len() - needle.len());
        }
    }
}

async fn fan_out_table() {
    println!();
    println!("server-sent events: followers of /events/stream on the real listener (100 nodes)");
    println!(
        "{:>9} {:>16} {:>18} {:>22}",
        "browsers", "RSS growth (KiB)", "per browser (KiB)", "UPS change to all (ms)"
    );
    let dir = tempfile::tempdir().unwrap();
    let hub = cluster(dir.path(), 100);
    let web = Web::new(hub.clone(), None, true, &WebConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(nodewarden::server::http::serve(
        listener,
        hub.clone(),
        web,
        shutdown,
    ));
    // Warm up allocator arenas and the renderer with one follower.
    let warm = followers(port, 1).await;
    let mut on_battery = false;
    for n in [100, 1_000] {
        let before = rss();
        let mut streams = followers(port, n).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let grown = rss().saturating_sub(before);
        on_battery = !on_battery;
        let (tokens, words): (&[&str], &[u8]) = if on_battery {
            (&["OB", "DISCHRG"], b"on battery")
        } else {
            (&["OL"], b"on line")
        };
        let t = Instant::now();
        hub.ups_status("node-00000", ups(tokens));
        for s in &mut streams {
            read_until(s, words).await;
        }
        let reach = t.elapsed();
        println!(
            "{n:>9} {:>16.0} {:>18.1} {:>22.1}",
            grown as f64 / 1024.0,
            grown as f64 / 1024.0 / n as f64,
            reach.as_secs_f64() * 1e3
        );
        drop(streams);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(warm);
}

fn main() {
    render_table();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(fan_out_table());
}
