//! The agent's footprint next to Debian's prometheus-node-exporter, in one
//! run on this host: RSS, and CPU time per sample (agent) vs per scrape
//! (node_exporter limited to thermal_zone, hwmon, meminfo, cpu, loadavg).
//!
//! Real processes only: the release `nodewarden` collector in a temp dir (its
//! PKI made by `nodewarden init`), the release `nodewarden-agent` enrolled with
//! `nodewarden-agent join` and streaming to it over mutual TLS at a 1 s
//! interval with the default `send_interval` (5 s: five samples per send),
//! a second agent beside it sending each sample as taken
//! (`--send-interval 1s`, half a second out of phase), and two
//! `/usr/bin/prometheus-node-exporter`s on free loopback ports, each scraped
//! once a second by this bench, half a second apart:
//! - one as Prometheus scrapes it: one kept-alive HTTP/1.1 connection and
//!   the request headers Prometheus 3 sends by default (`Accept` listing
//!   its scrape protocols, `Accept-Encoding: gzip`, so node_exporter
//!   compresses every answer). The goal is judged against this one: it is
//!   what a node_exporter costs where it is deployed.
//! - one with a bare `GET` on a new connection and no compression (what
//!   `curl` does), reported beside it, so neither figure hides the other.
//!
//! `cargo bench -p nodewarden-agent --bench footprint`
//! (node_exporter: `sh tests/setup/install-node-exporter.sh` first).
//! The agent measured is the one the amd64 package ships: the static musl
//! build (`cargo build --release --target x86_64-unknown-linux-musl -p
//! nodewarden-agent`, which this bench runs). FOOTPRINT_SECS sets the
//! measured window (default 60). FOOTPRINT_AGENT runs another agent binary
//! (e.g. `target/release/nodewarden-agent`, the glibc build) against the
//! same release collector.
#![allow(clippy::expect_used)] // bench code: a panic is the failure report

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const GOAL_RSS_KIB: u64 = 4 * 1024;
const GOAL_CPU_RATIO: f64 = 0.1;

fn main() {
    let window = Duration::from_secs(
        std::env::var("FOOTPRINT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let bins = release_bins();
    let agent_bin = std::env::var_os("FOOTPRINT_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| packaged_agent().unwrap_or_else(|| bins.join("nodewarden-agent")));
    println!("agent: {}", agent_bin.display());
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = scratch.path();

    let collector = start_collector(&bins.join("nodewarden"), dir);
    let socket = dir.join("admin.sock");
    let spawn_agent = |node: &str, extra: &[&str]| {
        let config = join_agent(&agent_bin, dir, &collector, node);
        Proc::spawn(
            Command::new(&agent_bin)
                .arg("--config")
                .arg(&config)
                .args(["--collector", &format!("https://{}", collector.addr)])
                .args(["--node-name", node, "--sample-interval", "1s"])
                .args(extra),
            dir.join(format!("agent-{node}.log")),
        )
    };
    let agent = spawn_agent("bench", &[]);
    std::thread::sleep(Duration::from_millis(500));
    let each = spawn_agent("bench-each", &["--send-interval", "1s"]);
    let mut exporters: Vec<Exporter> = if Path::new(NODE_EXPORTER).exists() {
        [ScrapeStyle::Prometheus, ScrapeStyle::Bare]
            .into_iter()
            .map(|style| Exporter::spawn(style, dir))
            .collect()
    } else {
        println!(
            "MISSING: {NODE_EXPORTER} (run `sh tests/setup/install-node-exporter.sh` as root); \
             measuring the agent alone\n"
        );
        Vec::new()
    };

    // Let the agent connect and settle, and node_exporter open its port.
    let started = Instant::now();
    // Samples taken are counted on the agent that sends each one at once
    // (its latest stored seq is exact); both tick once a second.
    let each_seq_start = loop {
        if latest_seq(&bins.join("nodewarden"), &socket, "bench").is_some()
            && let Some(seq) = latest_seq(&bins.join("nodewarden"), &socket, "bench-each")
            && started.elapsed() >= Duration::from_secs(5)
        {
            break seq;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the agent's samples never reached the collector; agent log:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for e in &mut exporters {
        if let Err(err) = e.scrape() {
            panic!(
                "node_exporter does not answer on port {}: {err}; log:\n{}",
                e.port,
                e.proc.log_text()
            )
        }
    }

    println!(
        "window {} s; agents sample every 1 s (default send_interval 5 s, and 1 s); \
         each node_exporter scraped every 1 s\n",
        window.as_secs()
    );
    let agent_start = Usage::of(agent.pid());
    let each_start = Usage::of(each.pid());
    for e in &mut exporters {
        e.start = Usage::of(e.proc.pid());
    }
    let mut agent_rss_over_time = vec![(0u64, agent_start.rss_kib)];
    let begin = Instant::now();
    let mut tick = begin;
    while begin.elapsed() < window {
        tick += Duration::from_secs(1);
        // The two node_exporters half a second apart, as the agents are.
        for (i, e) in exporters.iter_mut().enumerate() {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(500));
            }
            e.scrape().expect("scrape node_exporter");
        }
        let secs = begin.elapsed().as_secs();
        if secs.is_multiple_of(10) && agent_rss_over_time.last().map(|r| r.0) != Some(secs) {
            agent_rss_over_time.push((secs, Usage::of(agent.pid()).rss_kib));
        }
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
    }
    let agent_end = Usage::of(agent.pid());
    let each_end = Usage::of(each.pid());
    let exporter_ends: Vec<Usage> = exporters.iter().map(|e| Usage::of(e.proc.pid())).collect();
    let each_seq_end =
        latest_seq(&bins.join("nodewarden"), &socket, "bench-each").expect("bench-each seq");
    agent_rss_over_time.push((begin.elapsed().as_secs(), agent_end.rss_kib));
    let samples = each_seq_end.saturating_sub(each_seq_start).max(1);

    let ticks = clock_ticks();
    let agent_cpu_ms = (agent_end.cpu_ticks - agent_start.cpu_ticks) as f64 * 1000.0 / ticks;
    let agent_sched_ms = (agent_end.cpu_ns - agent_start.cpu_ns) as f64 / 1e6;
    // The agent is one thread, so schedstat sees all of its CPU time.
    let agent_per = agent_sched_ms / samples as f64;
    let each_cpu_ms = (each_end.cpu_ticks - each_start.cpu_ticks) as f64 * 1000.0 / ticks;
    let each_sched_ms = (each_end.cpu_ns - each_start.cpu_ns) as f64 / 1e6;
    let each_per = each_sched_ms / samples as f64;
    println!(
        "{:<16} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>9} {:>12}",
        "process",
        "RSS KiB",
        "anon",
        "file",
        "HWM",
        "threads",
        "events",
        "tick ms",
        "sched ms",
        "CPU ms/event"
    );
    println!(
        "{:<16} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8.0} {:>9.1} {:>12.3}",
        "nodewarden-agent",
        agent_end.rss_kib,
        agent_end.anon_kib,
        agent_end.file_kib,
        agent_end.hwm_kib,
        agent_end.threads,
        format!("{samples} smp"),
        agent_cpu_ms,
        agent_sched_ms,
        agent_per
    );
    println!(
        "{:<16} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8.0} {:>9.1} {:>12.3}",
        "  send each 1s",
        each_end.rss_kib,
        each_end.anon_kib,
        each_end.file_kib,
        each_end.hwm_kib,
        each_end.threads,
        format!("{samples} smp"),
        each_cpu_ms,
        each_sched_ms,
        each_per
    );
    // CPU per scrape of each node_exporter, in exporters' order.
    let mut per_scrape = Vec::new();
    for (e, end) in exporters.iter().zip(&exporter_ends) {
        let cpu_ms = (end.cpu_ticks - e.start.cpu_ticks) as f64 * 1000.0 / ticks;
        let sched_ms = end.cpu_ns.saturating_sub(e.start.cpu_ns) as f64 / 1e6;
        // Go threads may come and go: take the larger of the two clocks so
        // node_exporter is never under-counted against the agent.
        let per = cpu_ms.max(sched_ms) / e.scrapes.max(1) as f64;
        println!(
            "{:<16} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8.0} {:>9.1} {:>12.3}",
            e.style.label(),
            end.rss_kib,
            end.anon_kib,
            end.file_kib,
            end.hwm_kib,
            end.threads,
            format!("{} scr", e.scrapes),
            cpu_ms,
            sched_ms,
            per
        );
        per_scrape.push((e.style, per, end.rss_kib));
    }
    for e in &exporters {
        println!("({}: {})", e.style.label().trim(), e.style.describe(e.last));
    }
    println!(
        "\ntick ms = utime+stime (quantised to {:.1} ms); sched ms = /proc/pid/task/*/schedstat (ns)",
        1000.0 / ticks
    );
    println!("\nagent resident KiB per mapping (smaps):");
    for (kib, name) in rss_by_mapping(agent.pid()) {
        println!("  {kib:>6}  {name}");
    }
    println!("\nagent RSS over the window (s: KiB):");
    for (s, kib) in &agent_rss_over_time {
        println!("  {s:>4}: {kib}");
    }
    println!("\ngoals:");
    println!(
        "  agent RSS {} KiB <= {GOAL_RSS_KIB} KiB: {}",
        agent_end.rss_kib,
        verdict(agent_end.rss_kib <= GOAL_RSS_KIB)
    );
    match per_scrape.as_slice() {
        [] => println!("  CPU ratio: not measured, node_exporter missing"),
        [(_, prometheus, exporter_rss), rest @ ..] => {
            let r = agent_per / prometheus;
            println!(
                "  agent CPU/sample / node_exporter CPU/scrape (as Prometheus scrapes) = {r:.3} <= {GOAL_CPU_RATIO}: {}",
                verdict(r <= GOAL_CPU_RATIO)
            );
            println!(
                "  (sending each sample as taken, --send-interval 1s: {:.3})",
                each_per / prometheus
            );
            for (style, per, _) in rest {
                println!(
                    "  (against the {}: {:.3}; sending each: {:.3})",
                    style.label().trim(),
                    agent_per / per,
                    each_per / per
                );
            }
            println!(
                "  (RSS: agent {} KiB vs node_exporter {exporter_rss} KiB)",
                agent_end.rss_kib
            );
        }
    }
    drop(agent);
    drop(each);
    drop(collector);
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// target/release of this workspace, with both binaries built if missing.
/// The workspace root and its target directory.
fn workspace() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    (root, target)
}

fn release_bins() -> PathBuf {
    let (root, target) = workspace();
    let dir = target.join("release");
    let missing = ["nodewarden", "nodewarden-agent"]
        .iter()
        .any(|b| !dir.join(b).exists());
    if missing {
        println!(
            "release binaries missing in {}; running `cargo build --release -p nodewarden-agent -p nodewarden`",
            dir.display()
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "-p",
                "nodewarden-agent",
                "-p",
                "nodewarden",
            ])
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo build --release failed");
    }
    dir
}

/// The agent as the amd64 package builds it (packaging/build-debs.sh: static
/// musl, release profile), built here if it is not fresh. `None` on other
/// hosts, where the glibc release build is measured instead.
fn packaged_agent() -> Option<PathBuf> {
    const TRIPLE: &str = "x86_64-unknown-linux-musl";
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    let (root, target) = workspace();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--quiet", "--release", "--target", TRIPLE])
        .args(["-p", "nodewarden-agent"])
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "cargo build --release --target {TRIPLE} failed (rustup target add {TRIPLE}; gcc)"
    );
    Some(target.join(TRIPLE).join("release").join("nodewarden-agent"))
}

struct CollectorProc {
    proc: Proc,
    /// host:port of the agent link (TLS only).
    addr: String,
    /// The join token `nodewarden init` printed.
    token: String,
}

/// Writes a config, makes the PKI with `nodewarden init`, starts `serve` and
/// waits until the agent link's port accepts connections (join needs it).
fn start_collector(bin: &Path, dir: &Path) -> CollectorProc {
    let port = free_port();
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nadmin_socket = \"{}\"\nmetrics_listen = \"127.0.0.1:{}\"\n\
             data_dir = \"{}\"\n",
            dir.join("admin.sock").display(),
            free_port(),
            dir.join("data").display()
        ),
    )
    .expect("write collector config");
    let init = Command::new(bin)
        .arg("init")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run nodewarden init");
    let stdout = String::from_utf8_lossy(&init.stdout).into_owned();
    assert!(
        init.status.success(),
        "nodewarden init failed: {stdout}{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let token = stdout
        .lines()
        .find(|l| l.starts_with("NW1::"))
        .unwrap_or_else(|| panic!("no join token in init's output:\n{stdout}"))
        .to_string();
    let proc = Proc::spawn(
        Command::new(bin).arg("serve").arg("--config").arg(&config),
        dir.join("collector.log"),
    );
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the collector never listened on {port}; log:\n{}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    CollectorProc {
        proc,
        addr: format!("127.0.0.1:{port}"),
        token,
    }
}

/// Enrols `node` with `nodewarden-agent join`, which writes the
/// collector's https URL and the state dir into the agent config it returns.
fn join_agent(agent: &Path, dir: &Path, collector: &CollectorProc, node: &str) -> PathBuf {
    let config = empty_file(dir, &format!("agent-{node}.toml"));
    let out = Command::new(agent)
        .arg("--config")
        .arg(&config)
        .args(["join", &collector.addr, &collector.token])
        .args(["--node-name", node, "--state-dir"])
        .arg(dir.join(format!("state-{node}")))
        .output()
        .expect("run nodewarden-agent join");
    assert!(
        out.status.success(),
        "nodewarden-agent join failed: {}{}\ncollector log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        collector.proc.log_text()
    );
    config
}

/// The collector's latest stored seq for `node`, through the real CLI.
fn latest_seq(nodewarden: &Path, socket: &Path, node: &str) -> Option<u64> {
    let out = Command::new(nodewarden)
        .arg("--socket")
        .arg(socket)
        .args(["node", node, "--json"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get("latest")?.get("seq")?.as_u64()
}

/// How this bench scrapes a node_exporter.
#[derive(Clone, Copy, PartialEq)]
enum ScrapeStyle {
    /// As Prometheus does: one kept-alive connection, compressed answers.
    Prometheus,
    /// A bare GET on a new connection, uncompressed (curl).
    Bare,
}

/// The request Prometheus 3 sends by default (scrape/scrape.go: the Accept
/// header built from the default scrape_protocols, `Accept-Encoding: gzip`
/// as enable_compression defaults to true, its User-Agent and the scrape
/// timeout header). Go's HTTP client keeps the connection alive.
const PROMETHEUS_HEADERS: &str = "User-Agent: Prometheus/3.5.0\r\n\
    Accept: application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
    application/openmetrics-text;version=0.0.1;q=0.5,\
    text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
    text/plain;version=0.0.4;q=0.3,*/*;q=0.2\r\n\
    Accept-Encoding: gzip\r\n\
    X-Prometheus-Scrape-Timeout-Seconds: 1\r\n";

impl ScrapeStyle {
    fn label(self) -> &'static str {
        match self {
            ScrapeStyle::Prometheus => "node_exporter",
            ScrapeStyle::Bare => "  bare GET",
        }
    }

    fn describe(self, last: Answer) -> String {
        let what = match self {
            ScrapeStyle::Prometheus => "scraped as Prometheus 3 does, one kept-alive connection",
            ScrapeStyle::Bare => "new connection each time, no compression",
        };
        let encoding = if last.gzip { ", gzip" } else { "" };
        format!("{what}; last answer {} bytes{encoding}", last.body_bytes)
    }
}

/// What one scrape got back.
#[derive(Clone, Copy, Default)]
struct Answer {
    body_bytes: usize,
    gzip: bool,
}

/// A node_exporter limited to the collectors the agent's readings match,
/// and how it is scraped.
struct Exporter {
    proc: Proc,
    port: u16,
    style: ScrapeStyle,
    /// The kept-alive connection (Prometheus style).
    conn: Option<BufReader<TcpStream>>,
    scrapes: u64,
    last: Answer,
    start: Usage,
}

impl Exporter {
    fn spawn(style: ScrapeStyle, dir: &Path) -> Exporter {
        let port = free_port();
        let proc = Proc::spawn(
            Command::new(NODE_EXPORTER).args([
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--collector.disable-defaults",
                "--collector.thermal_zone",
                "--collector.hwmon",
                "--collector.meminfo",
                "--collector.cpu",
                "--collector.loadavg",
            ]),
            dir.join(format!("node_exporter-{port}.log")),
        );
        let start = Usage::of(proc.pid());
        Exporter {
            proc,
            port,
            style,
            conn: None,
            scrapes: 0,
            last: Answer::default(),
            start,
        }
    }

    /// One GET /metrics; an answer other than 200 is an error.
    fn scrape(&mut self) -> std::io::Result<()> {
        let answer = match self.style {
            ScrapeStyle::Bare => {
                let s = TcpStream::connect(("127.0.0.1", self.port))?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut conn = BufReader::new(s);
                let request =
                    "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
                conn.get_mut().write_all(request.as_bytes())?;
                read_answer(&mut conn)?
            }
            ScrapeStyle::Prometheus => {
                if self.conn.is_none() {
                    let s = TcpStream::connect(("127.0.0.1", self.port))?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    self.conn = Some(BufReader::new(s));
                }
                let conn = self.conn.as_mut().expect("connected above");
                let request = format!(
                    "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{PROMETHEUS_HEADERS}\r\n",
                    self.port
                );
                conn.get_mut().write_all(request.as_bytes())?;
                let answer = read_answer(conn);
                if answer.is_err() {
                    self.conn = None;
                }
                answer?
            }
        };
        self.scrapes += 1;
        self.last = answer;
        Ok(())
    }
}

/// Reads one HTTP/1.1 response (Content-Length or chunked body).
fn read_answer(conn: &mut BufReader<TcpStream>) -> std::io::Result<Answer> {
    let bad = |what: String| std::io::Error::other(what);
    let mut line = String::new();
    conn.read_line(&mut line)?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(bad(format!("unexpected answer: {}", line.trim_end())));
    }
    let (mut length, mut chunked, mut gzip) = (None, false, false);
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(bad("connection closed inside the headers".into()));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(bad(format!("not a header: {header}")));
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-encoding" => gzip = value.eq_ignore_ascii_case("gzip"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad(format!("bad chunk size: {}", line.trim_end())))?;
            let at = body.len();
            body.resize(at + size + 2, 0);
            conn.read_exact(&mut body[at..])?;
            body.truncate(at + size);
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        conn.read_exact(&mut body)?;
    } else {
        conn.read_to_end(&mut body)?;
    }
    Ok(Answer {
        body_bytes: body.len(),
        gzip,
    })
}

#[derive(Clone, Copy)]
struct Usage {
    rss_kib: u64,
    hwm_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    threads: u64,
    cpu_ticks: u64,
    /// On-CPU nanoseconds summed over live threads (schedstat): finer than
    /// ticks, but blind to threads that already exited.
    cpu_ns: u64,
}

impl Usage {
    fn of(pid: u32) -> Usage {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        // Fields after the ")" closing comm: state is field 3, utime 14, stime 15.
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let f: Vec<u64> = after
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        Usage {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
            anon_kib: field("RssAnon:"),
            file_kib: field("RssFile:"),
            threads: field("Threads:"),
            cpu_ticks: f[11] + f[12],
            cpu_ns: schedstat_ns(pid),
        }
    }
}

/// Rss summed per mapped file (or [heap], [stack], anonymous), largest first.
fn rss_by_mapping(pid: u32) -> Vec<(u64, String)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by_name: Vec<(u64, String)> = Vec::new();
    let mut name = String::new();
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Rss:") {
            let kib: u64 = kib
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0);
            match by_name.iter_mut().find(|(_, n)| *n == name) {
                Some(entry) => entry.0 += kib,
                None => by_name.push((kib, name.clone())),
            }
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|f| !f.ends_with(':'))
        {
            // A mapping header: "start-end perms offset dev inode [path]";
            // every other line is "Field: value".
            name = line
                .split_whitespace()
                .nth(5)
                .unwrap_or("[anonymous]")
                .to_string();
        }
    }
    by_name.retain(|(kib, _)| *kib > 0);
    by_name.sort_by_key(|(kib, _)| std::cmp::Reverse(*kib));
    by_name
}

fn schedstat_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// USER_HZ; `getconf` keeps this bench free of unsafe sysconf.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn empty_file(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, "").expect("write empty config");
    p
}

/// A child process killed when dropped, its output in a log file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
