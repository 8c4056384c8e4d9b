//! The agent's footprint next to Debian's prometheus-node-exporter, in one
//! run on this host: RSS, and CPU time per sample (agent) vs per scrape
//! (node_exporter limited to thermal_zone, hwmon, meminfo, cpu, loadavg).
//!
//! Real processes only: the release `nodewarden` collector in a temp dir (its
//! PKI made by `nodewarden init`), the release `nodewarden-agent` enrolled with
//! `nodewarden-agent join` and streaming to it over mutual TLS at a 1 s
//! interval with the default `send_interval` (5 s: five samples per send),
//! a second agent beside it sending each sample as taken
//! (`--send-interval 1s`, half a second out of phase), and
//! `/usr/bin/prometheus-node-exporter` on a free loopback port, scraped once a
//! second by this bench over a plain TCP socket.
//!
//! `cargo bench -p nodewarden-agent --bench footprint`
//! (node_exporter: `sh tests/setup/install-node-exporter.sh` first).
//! The agent measured is the one the amd64 package ships: the static musl
//! build (`cargo build --release --target x86_64-unknown-linux-musl -p
//! nodewarden-agent`, which this bench runs). FOOTPRINT_SECS sets the
//! measured window (default 60). FOOTPRINT_AGENT runs another agent binary
//! (e.g. `target/release/nodewarden-agent`, the glibc build) against the
//! same release collector.

use std::io::{Read, Write};
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
    let exporter = if Path::new(NODE_EXPORTER).exists() {
        let port = free_port();
        Some((
            Proc::spawn(
                Command::new(NODE_EXPORTER).args([
                    &format!("--web.listen-address=127.0.0.1:{port}"),
                    "--collector.disable-defaults",
                    "--collector.thermal_zone",
                    "--collector.hwmon",
                    "--collector.meminfo",
                    "--collector.cpu",
                    "--collector.loadavg",
                ]),
                dir.join("node_exporter.log"),
            ),
            port,
        ))
    } else {
        println!(
            "MISSING: {NODE_EXPORTER} (run `sh tests/setup/install-node-exporter.sh` as root); \
             measuring the agent alone\n"
        );
        None
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
    if let Some((p, port)) = &exporter {
        scrape(*port).unwrap_or_else(|e| {
            panic!(
                "node_exporter does not answer on port {port}: {e}; log:\n{}",
                p.log_text()
            )
        });
    }

    println!(
        "window {} s; agents sample every 1 s (default send_interval 5 s, and 1 s); node_exporter scraped every 1 s\n",
        window.as_secs()
    );
    let agent_start = Usage::of(agent.pid());
    let each_start = Usage::of(each.pid());
    let exporter_start = exporter.as_ref().map(|(p, _)| Usage::of(p.pid()));
    let mut agent_rss_over_time = vec![(0u64, agent_start.rss_kib)];
    let mut scrapes = 0u64;
    let mut scrape_bytes = 0usize;
    let begin = Instant::now();
    let mut tick = begin;
    while begin.elapsed() < window {
        tick += Duration::from_secs(1);
        if let Some((_, port)) = &exporter {
            let body = scrape(*port).expect("scrape node_exporter");
            scrapes += 1;
            scrape_bytes = body;
        }
        let secs = begin.elapsed().as_secs();
        if secs.is_multiple_of(10) && agent_rss_over_time.last().map(|r| r.0) != Some(secs) {
            agent_rss_over_time.push((secs, Usage::of(agent.pid()).rss_kib));
        }
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
    }
    let agent_end = Usage::of(agent.pid());
    let each_end = Usage::of(each.pid());
    let exporter_end = exporter.as_ref().map(|(p, _)| Usage::of(p.pid()));
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
    let mut ratio = None;
    if let (Some(start), Some(end)) = (exporter_start, exporter_end) {
        let cpu_ms = (end.cpu_ticks - start.cpu_ticks) as f64 * 1000.0 / ticks;
        let sched_ms = end.cpu_ns.saturating_sub(start.cpu_ns) as f64 / 1e6;
        // Go threads may come and go: take the larger of the two clocks so
        // node_exporter is never under-counted against the agent.
        let per = cpu_ms.max(sched_ms) / scrapes.max(1) as f64;
        println!(
            "{:<16} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8.0} {:>9.1} {:>12.3}",
            "node_exporter",
            end.rss_kib,
            end.anon_kib,
            end.file_kib,
            end.hwm_kib,
            end.threads,
            format!("{scrapes} scr"),
            cpu_ms,
            sched_ms,
            per
        );
        println!("(last scrape: {scrape_bytes} bytes)");
        ratio = Some((agent_per / per, each_per / per, end.rss_kib));
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
    match ratio {
        Some((r, each_r, exporter_rss)) => {
            println!(
                "  agent CPU/sample / node_exporter CPU/scrape = {r:.3} <= {GOAL_CPU_RATIO}: {}",
                verdict(r <= GOAL_CPU_RATIO)
            );
            println!("  (sending each sample as taken, --send-interval 1s: {each_r:.3})");
            println!(
                "  (RSS: agent {} KiB vs node_exporter {exporter_rss} KiB)",
                agent_end.rss_kib
            );
        }
        None => println!("  CPU ratio: not measured, node_exporter missing"),
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

/// GET /metrics; returns the body length.
fn scrape(port: u16) -> std::io::Result<usize> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    if !buf.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other(format!(
            "unexpected answer: {}",
            String::from_utf8_lossy(&buf[..buf.len().min(200)])
        )));
    }
    Ok(buf.len())
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
