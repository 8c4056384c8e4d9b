//! Collector ingest: the real `nodewarden serve` process, fed by N simulated
//! agents speaking the real AgentLink protocol (one mutual-TLS HTTP/2
//! connection each, Hello, then one Pi-4-like sample per second, acks read
//! back). For each N in a ladder it reports the collector's CPU (cores) and
//! memory (and memory per connection above the idle collector), the load
//! generator's own CPU (both share this machine), and the ack lag. Then it
//! times `nodewarden history NODE cpu_temp --since 24h` for a node with 24 h
//! of 1 Hz data, the CLI end to end and the Admin call alone.
//!
//! The link is TLS only, so the bench makes the collector's PKI first (what
//! `nodewarden init` does) and mints one node certificate per simulated
//! agent through the collector's own CA code (`Authority::sign_node`, what a
//! join does, minus the token round trip): the collector binds each stream
//! to the name in its certificate, so agents cannot share one.
//!
//! Run: `cargo build --release -p nodewarden --bin nodewarden && cargo bench -p nodewarden --bench ingest`
//!
//! Knobs (environment): NW_INGEST_LADDER (default "500,1000,2000,3000,5000,7500"),
//! NW_INGEST_SECS (measured seconds per step, default 30), NW_INGEST_RUNS
//! (history runs, default 30), NW_BENCH_DIR (where the data dir goes).
#![allow(clippy::expect_used)] // bench code: a panic is the failure report

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodewarden::pki::{self, Authority, PkiPaths};
use nodewarden::store::{NodeBatch, NodeRecord, Retention, Store};
use nodewarden_proto::v1::agent_link_client::AgentLinkClient;
use nodewarden_proto::v1::{
    AgentMessage, Cpu, CpuCore, Filesystem, Hello, HistoryRequest, LoadAverage, Memory, Pressure,
    PressureLine, Sample, SampleBatch, Temperature, TemperatureSource, Throttling, agent_message,
    collector_message,
};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};

const DAY_S: i64 = 86_400;
const BUDGET_CORES: f64 = 1.0;
const BUDGET_RSS_KIB: u64 = 512 * 1024;
/// The node with 24 h of prefilled history.
const HISTORY_NODE: &str = "history-node";

/// A Raspberry Pi 4 sample: 6 temperatures, 4 cores, memory, load, pressure,
/// root filesystem, throttling. Cloned and re-stamped for every send.
fn template() -> Sample {
    let stall = |avg10: f32| PressureLine {
        avg10_percent: avg10,
        avg60_percent: avg10 / 2.0,
        avg300_percent: avg10 / 4.0,
        ..Default::default()
    };
    Sample {
        seq: 0,
        timestamp_ms: 0,
        temperatures: [
            ("cpu_thermal", "thermal_zone0"),
            ("rp1_adc", "hwmon1"),
            ("nvme", "hwmon2"),
            ("cpu_thermal", "hwmon0"),
            ("pwmfan", "hwmon3"),
            ("vcgencmd", "soc"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (chip, device))| Temperature {
            source: TemperatureSource::Hwmon as i32,
            device: (*device).into(),
            chip_name: (*chip).into(),
            sensor: format!("temp{}", i + 1),
            millicelsius: 45_000 + i as i32 * 1_250,
            is_cpu: i == 0,
            ..Default::default()
        })
        .collect(),
        cpu: Some(Cpu {
            usage_percent: 23.5,
            cores: (0..4)
                .map(|id| CpuCore {
                    id,
                    frequency_hertz: 1_500_000_000,
                    ..Default::default()
                })
                .collect(),
            logical_cpus: 4,
            measured_arm_clock_hertz: 1_500_000_000,
        }),
        load: Some(LoadAverage {
            load1: 0.82,
            load5: 0.61,
            load15: 0.44,
        }),
        memory: Some(Memory {
            total_bytes: 8_245_673_984,
            available_bytes: 5_123_456_789,
            swap_total_bytes: 104_853_504,
            swap_free_bytes: 104_853_504,
            ..Default::default()
        }),
        pressure: Some(Pressure {
            cpu_some: Some(stall(1.5)),
            memory_some: Some(stall(0.1)),
            memory_full: Some(stall(0.0)),
            io_some: Some(stall(2.3)),
            io_full: Some(stall(0.7)),
        }),
        uptime_seconds: 3600.0,
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

use nodewarden_common::clock::now_ms;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; fields are counted after its ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // After ')': state is index 0, utime is field 14 overall -> index 11.
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// (busy, total) jiffies of the whole machine, to show what else ran.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// VmRSS and VmHWM in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// What the simulated agents report to the bench.
struct Shared {
    /// Send-to-ack delays while `measuring` is set.
    lags: Mutex<Vec<Duration>>,
    measuring: AtomicBool,
    connected: AtomicU64,
    /// Connection attempts that failed and were tried again.
    retries: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
}

/// `nodewarden init` into `data/pki`, then one joined identity per name:
/// a fresh P-256 key, its CSR signed by the collector's CA, and the client
/// config an agent builds from them (our CA as the only root, h2).
fn mint_identities(data: &Path, names: &[String]) -> Vec<Arc<ClientConfig>> {
    let paths = PkiPaths::of_data_dir(data);
    pki::init(&paths, &pki::default_server_names(&[]), false).expect("nodewarden init");
    let authority = Authority::load(&paths).expect("load the CA");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(authority.ca_der().clone()).expect("CA as root");
    let roots = Arc::new(roots);
    let started = Instant::now();
    let configs = names
        .iter()
        .map(|name| {
            let key =
                rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("node key");
            let csr = rcgen::CertificateParams::default()
                .serialize_request(&key)
                .expect("node CSR");
            let cert = authority
                .sign_node(csr.der(), name)
                .expect("sign node certificate");
            let chain =
                vec![CertificateDer::from_pem_slice(cert.pem.as_bytes()).expect("node pem")];
            let key =
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("node key");
            let mut config = ClientConfig::builder_with_provider(pki::tls::provider())
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots.clone())
                .with_client_auth_cert(chain, key)
                .expect("client auth");
            config.alpn_protocols = vec![b"h2".to_vec()];
            Arc::new(config)
        })
        .collect();
    eprintln!(
        "minted {} node certificates in {:.1?}",
        names.len(),
        started.elapsed()
    );
    configs
}

/// One mutual-TLS HTTP/2 connection to the collector on loopback, the way
/// the agent makes it (TLS in the connector; tonic sees plain h2).
async fn connect_tls(
    port: u16,
    tls: Arc<ClientConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let connector = tokio_rustls::TlsConnector::from(tls);
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
}

/// Connection attempts after the first before a simulated agent gives up.
const CONNECT_ATTEMPTS: u32 = 5;

/// An error with its causes, for the reason under tonic's "transport error".
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One simulated agent: its own connection, Hello, a sample a second.
async fn agent(
    port: u16,
    tls: Arc<ClientConfig>,
    name: String,
    start_at: tokio::time::Instant,
    shared: Arc<Shared>,
) {
    tokio::time::sleep_until(start_at).await;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        if shared.failed.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("agent {name}: {what}: {e}");
        }
    };
    // A handshake refused while the collector is busy with hundreds of
    // others is retried, as a real agent does after a power cut.
    let mut attempt = 0;
    let mut client = loop {
        match connect_tls(port, tls.clone()).await {
            Ok(c) => break AgentLinkClient::new(c),
            Err(e) if attempt < CONNECT_ATTEMPTS => {
                attempt += 1;
                if shared.retries.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("agent {name}: connect (will retry): {}", chain(&e));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return fail("connect", &chain(&e)),
        }
    };
    let (tx, rx) = mpsc::channel::<AgentMessage>(16);
    let hello = Hello {
        node_name: name.clone(),
        board_model: "Raspberry Pi 4 Model B Rev 1.5".into(),
        arch: "aarch64".into(),
        kernel_version: "6.6.51+rpt-rpi-v8".into(),
        os_name: "Debian GNU/Linux 12 (bookworm)".into(),
        agent_version: "0.1.0".into(),
        instance_id: rand_id(&name),
        sample_interval_ms: 1000,
        boot_time_unix_seconds: now_ms() / 1000 - 3600,
        ..Default::default()
    };
    let body = |b| AgentMessage { body: Some(b) };
    if tx
        .send(body(agent_message::Body::Hello(hello)))
        .await
        .is_err()
    {
        return;
    }
    let mut inbound = match client.session(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(e) => return fail("session", &e),
    };
    match inbound.message().await {
        Ok(Some(m)) if matches!(m.body, Some(collector_message::Body::Welcome(_))) => {}
        Ok(other) => return fail("expected Welcome", &format!("{other:?}")),
        Err(e) => return fail("welcome", &e),
    }
    shared.connected.fetch_add(1, Ordering::Relaxed);

    let template = template();
    let mut seq = 0u64;
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                seq += 1;
                let mut s = template.clone();
                s.seq = seq;
                s.timestamp_ms = now_ms();
                s.uptime_seconds += seq as f64;
                pending.push_back((seq, Instant::now()));
                let batch = SampleBatch { samples: vec![s] };
                if tx.send(body(agent_message::Body::Samples(batch))).await.is_err() {
                    return fail("send", &"stream closed");
                }
            }
            m = inbound.message() => match m {
                Ok(Some(m)) => {
                    if let Some(collector_message::Body::Ack(a)) = m.body {
                        let now = Instant::now();
                        let measuring = shared.measuring.load(Ordering::Relaxed);
                        let mut done = Vec::new();
                        while pending.front().is_some_and(|(s, _)| *s <= a.acked_through_seq) {
                            if let Some((_, sent)) = pending.pop_front() {
                                done.push(now - sent);
                            }
                        }
                        if measuring
                            && !done.is_empty()
                            && let Ok(mut l) = shared.lags.lock()
                        {
                            l.extend(done);
                        }
                    }
                }
                Ok(None) => return fail("stream", &"ended by the collector"),
                Err(e) => return fail("stream", &e),
            }
        }
    }
}

/// A per-agent instance id that differs between bench runs.
fn rand_id(name: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&(name, now_ms(), std::process::id()), &mut h);
    std::hash::Hasher::finish(&h) | 1
}

/// Stores 24 h of 1 Hz samples for HISTORY_NODE, ending now.
fn prefill(data: &Path) {
    let store = Store::open(data, Retention::default()).expect("open store for prefill");
    let t0 = now_ms() - DAY_S * 1000;
    let template = template();
    let started = Instant::now();
    // One commit per simulated minute keeps the fill quick; the rows are the
    // same as with the collector's own commits.
    for minute in 0..DAY_S / 60 {
        let samples = (0..60)
            .map(|s| {
                let seq = (minute * 60 + s + 1) as u64;
                let mut x = template.clone();
                x.seq = seq;
                x.timestamp_ms = t0 + (seq as i64 - 1) * 1000;
                if let Some(t) = x.temperatures.first_mut() {
                    t.millicelsius = 40_000 + ((seq * 7919) % 20_000) as i32;
                }
                x
            })
            .collect();
        store
            .append(&[NodeBatch {
                node: HISTORY_NODE.into(),
                instance_id: 1,
                samples,
                gap: None,
            }])
            .expect("prefill append");
    }
    // The registry entry an agent's first Hello would have made.
    store
        .put_node(NodeRecord {
            name: HISTORY_NODE.into(),
            board_model: "Raspberry Pi 4 Model B Rev 1.5".into(),
            arch: "aarch64".into(),
            first_seen_ms: t0,
            last_seen_ms: now_ms(),
            offline_reason: "stream closed".into(),
            sample_interval_ms: 1000,
            ..Default::default()
        })
        .expect("prefill registry");
    eprintln!(
        "prefilled {HISTORY_NODE}: 24 h at 1 Hz in {:.1?}",
        started.elapsed()
    );
}

fn collector_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable path");
    // target/release/deps/ingest-<hash> -> target/release/nodewarden
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("nodewarden"))
        .unwrap_or_default();
    if !path.exists() {
        eprintln!(
            "{} is missing: build it first with `cargo build --release -p nodewarden --bin nodewarden`",
            path.display()
        );
        std::process::exit(2);
    }
    path
}

struct Collector {
    child: Child,
    pid: u32,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_collector(bin: &Path, dir: &Path, port: u16) -> Collector {
    let config = dir.join("collector.toml");
    let mut f = std::fs::File::create(&config).expect("write collector.toml");
    // Default commit_interval (5 s): what a deployment runs.
    writeln!(
        f,
        "listen = \"127.0.0.1:{port}\"\nadmin_socket = \"{}\"\nmetrics_listen = \"\"\n\
         data_dir = \"{}\"\nlog_level = \"warn\"",
        dir.join("admin.sock").display(),
        dir.join("data").display()
    )
    .expect("write collector.toml");
    let log = std::fs::File::create(dir.join("collector.log")).expect("collector log");
    // exec keeps the pid, so /proc/<pid> is the collector's own.
    let child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n \"$(ulimit -Hn)\"; exec \"$0\" serve --config \"$1\"")
        .arg(bin)
        .arg(&config)
        // What the packaged systemd unit sets (packaging/systemd/nodewarden.service).
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("collector log"))
        .stderr(log)
        .spawn()
        .expect("start the collector");
    let pid = child.id();
    Collector { child, pid }
}

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let bin = collector_binary();
    let ladder: Vec<u64> = std::env::var("NW_INGEST_LADDER")
        .unwrap_or_else(|_| "500,1000,2000,3000,5000,7500".into())
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let secs = env_u64("NW_INGEST_SECS", 30).max(5);
    let runs = env_u64("NW_INGEST_RUNS", 30).max(1) as usize;
    let base = std::env::var("NW_BENCH_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from);
    let dir = tempfile::Builder::new()
        .prefix("nw-ingest")
        .tempdir_in(base)
        .expect("bench dir");
    std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
    prefill(&dir.path().join("data"));
    let names: Vec<String> = (0..ladder.iter().copied().max().unwrap_or(0))
        .map(|i| format!("load-{i:05}"))
        .collect();
    let identities = mint_identities(&dir.path().join("data"), &names);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let collector = start_collector(&bin, dir.path(), port);
    let socket = dir.path().join("admin.sock");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let started = Instant::now();
        while nodewarden::cli::connect(&socket).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "collector did not come up; see {}",
                dir.path().join("collector.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let hz = clock_ticks_per_second();
    let cpid = collector.pid.to_string();
    // What the connections add is measured from here.
    let (idle_rss, _) = memory_kib(collector.pid);
    let shared = Arc::new(Shared {
        lags: Mutex::new(Vec::new()),
        measuring: AtomicBool::new(false),
        connected: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    println!(
        "\ncollector idle, before any agent: RSS {:.1} MiB",
        idle_rss as f64 / 1024.0
    );
    println!(
        "\n| agents | connected | collector CPU (cores) | collector RSS | collector peak RSS | RSS per agent above idle | load generator CPU (cores) | machine busy (cores) | ack lag p50 | ack lag p99 | connect retries | within budget |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut best = None;
    let mut running = 0u64;
    for &n in &ladder {
        if n <= running {
            continue;
        }
        // New agents join over 5 s, so their 1 s ticks spread over the second.
        let t0 = tokio::time::Instant::now();
        let add = n - running;
        // At most ~500 joins a second: a burst overflows the listen backlog
        // (connection resets), which real agents after a power cut retry.
        let ramp_us = (add * 2_000).max(5_000_000);
        let _guard = rt.enter();
        for i in running..n {
            let at = t0 + Duration::from_micros(ramp_us * (i - running) / add);
            rt.spawn(agent(
                port,
                identities[i as usize].clone(),
                names[i as usize].clone(),
                at,
                shared.clone(),
            ));
        }
        running = n;
        // Join, then settle (one full commit cycle and more) before measuring.
        std::thread::sleep(Duration::from_micros(ramp_us) + Duration::from_secs(10));
        if let Ok(mut l) = shared.lags.lock() {
            l.clear();
        }
        shared.measuring.store(true, Ordering::Relaxed);
        let (c0, s0, m0, w0) = (
            cpu_ticks(&cpid),
            cpu_ticks("self"),
            machine_ticks(),
            Instant::now(),
        );
        std::thread::sleep(Duration::from_secs(secs));
        let (c1, s1, m1, wall) = (
            cpu_ticks(&cpid),
            cpu_ticks("self"),
            machine_ticks(),
            w0.elapsed().as_secs_f64(),
        );
        shared.measuring.store(false, Ordering::Relaxed);
        let (rss, hwm) = memory_kib(collector.pid);
        let cores = (c1 - c0) as f64 / hz / wall;
        let gen_cores = (s1 - s0) as f64 / hz / wall;
        let ncpu = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
        let busy = if m1.1 > m0.1 {
            (m1.0 - m0.0) as f64 / (m1.1 - m0.1) as f64 * ncpu
        } else {
            0.0
        };
        let mut lags = shared.lags.lock().map(|l| l.clone()).unwrap_or_default();
        lags.sort_unstable();
        let connected = shared.connected.load(Ordering::Relaxed);
        let ok = cores < BUDGET_CORES && hwm < BUDGET_RSS_KIB && connected == n;
        println!(
            "| {n} | {connected} | {cores:.2} | {:.0} MiB | {:.0} MiB | {:.1} KiB | {gen_cores:.2} | {busy:.2} | {:.0?} | {:.0?} | {} | {} |",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            rss.saturating_sub(idle_rss) as f64 / n as f64,
            percentile(&lags, 0.5),
            percentile(&lags, 0.99),
            shared.retries.load(Ordering::Relaxed),
            if ok { "yes" } else { "no" }
        );
        if ok {
            best = Some(n);
        } else {
            break;
        }
    }
    match best {
        Some(n) => println!(
            "\nlargest N under {BUDGET_CORES} core and 512 MiB: {n} agents at 1 Hz (goal: 5000)"
        ),
        None => println!("\nno step stayed under {BUDGET_CORES} core and 512 MiB"),
    }
    shared.stop.store(true, Ordering::Relaxed);
    // Time history on an idle collector: wait until the agents have seen
    // `stop` and the writer has drained its backlog (at most a minute).
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..60 {
        let c0 = cpu_ticks(&cpid);
        std::thread::sleep(Duration::from_secs(1));
        if ((cpu_ticks(&cpid) - c0) as f64 / hz) < 0.05 {
            break;
        }
    }

    history_latency(&rt, &bin, &socket, runs);
    drop(collector);
}

/// The CLI end to end (process spawn included) and the Admin call alone.
fn history_latency(rt: &tokio::runtime::Runtime, bin: &Path, socket: &Path, runs: usize) {
    let mut cli = Vec::with_capacity(runs);
    let mut out_len = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(bin)
            .arg("--socket")
            .arg(socket)
            .args(["history", HISTORY_NODE, "cpu_temp", "--since", "24h"])
            .env("COLUMNS", "120")
            .stdin(Stdio::null())
            .output()
            .expect("run nodewarden history");
        cli.push(t.elapsed());
        assert!(
            out.status.success(),
            "nodewarden history failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out_len = out.stdout.len();
    }
    cli.sort_unstable();

    let mut rows = Vec::new();
    rt.block_on(async {
        let mut client = nodewarden::cli::connect(socket)
            .await
            .expect("admin connect");
        for (label, max_points) in [
            ("Admin History, max_points=200", 200u32),
            ("Admin History, raw", 0),
        ] {
            let mut times = Vec::with_capacity(runs);
            let mut points = 0;
            for _ in 0..runs {
                let now = now_ms();
                let t = Instant::now();
                let h = client
                    .history(HistoryRequest {
                        node: HISTORY_NODE.into(),
                        metric: "cpu_temp".into(),
                        since_ms: now - DAY_S * 1000,
                        until_ms: 0,
                        max_points,
                    })
                    .await
                    .expect("history call")
                    .into_inner();
                times.push(t.elapsed());
                points = h.points.len();
            }
            times.sort_unstable();
            rows.push((label, points, times));
        }
    });

    println!("\n| history of {HISTORY_NODE}, cpu_temp, 24 h at 1 Hz | points | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    println!(
        "| `nodewarden history` CLI, end to end ({out_len} bytes out) | chart | {:.1?} | {:.1?} | {:.1?} |",
        percentile(&cli, 0.5),
        percentile(&cli, 0.99),
        cli[cli.len() - 1]
    );
    for (label, points, times) in rows {
        println!(
            "| {label} | {points} | {:.1?} | {:.1?} | {:.1?} |",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times[times.len() - 1]
        );
    }
}
