//! The status page in a real browser: Debian's headless chromium, driven
//! through chromium-driver by `web_support/browser.py` (python3-selenium),
//! against the real collector with two real agents (a Raspberry Pi 4's and
//! an Intel PC's fixture trees) and a third reading the simulated UPS.
//! Plus the page's access rules over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod web_support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nodewarden_agent::ups::sim::SimUps;
use nodewarden_agent::ups::sim::megatec::{MegatecDialect, MegatecResponder};
use nodewarden_tests::setup::{INSTALL_SCRIPT, require};
use nodewarden_tests::{Collector, Proc, bin, eventually, free_port, start_agent, start_ups_agent};

const PYTHON: &str = "/usr/bin/python3";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn board(name: &str) -> String {
    repo()
        .join("tests/fixtures/boards")
        .join(name)
        .display()
        .to_string()
}

/// Fails naming the install script unless chromium, its driver and
/// selenium are there.
fn require_browser() {
    require(
        "browser",
        &["/usr/bin/chromium", "/usr/bin/chromedriver", PYTHON],
    );
    let selenium = Command::new(PYTHON)
        .args(["-c", "import selenium"])
        .output()
        .unwrap();
    assert!(
        selenium.status.success(),
        "missing python3-selenium: install the test tools first, as scripts/test.sh does: sudo sh {INSTALL_SCRIPT} browser"
    );
}

/// One raw HTTP/1.1 request to `port` on `to`: the status line and
/// headers, and the body. Dialling this host's LAN address makes the
/// kernel use it as the source, so the collector sees a non-loopback peer.
fn http(to: IpAddr, port: u16, request_line: &str, headers: &str) -> (String, String) {
    let mut s = TcpStream::connect((to, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{request_line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// This host's address on a route out (not loopback): no packet is sent,
/// the kernel only picks the source address.
fn lan_address() -> IpAddr {
    let probe = UdpSocket::bind("0.0.0.0:0").unwrap();
    let routed = ["203.0.113.1:9", "10.255.255.254:9", "192.168.255.254:9"]
        .iter()
        .any(|to| probe.connect(to).is_ok());
    let ip = probe.local_addr().unwrap().ip();
    assert!(
        routed && !ip.is_loopback() && !ip.is_unspecified(),
        "this host has no non-loopback IPv4 address to test remote access from ({ip})"
    );
    ip
}

/// The CPU TEMP column of `nodewarden nodes`, per node ("48.3 °C").
fn cli_temperatures(c: &Collector, nodes: &[&str]) -> Option<BTreeMap<String, String>> {
    let out = c.cli(&["nodes"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut temps = BTreeMap::new();
    for node in nodes {
        let row = text.lines().find(|l| l.starts_with(&format!("{node} ")))?;
        let at = row.find(" °C")?;
        let start = row[..at].rfind(' ')? + 1;
        temps.insert((*node).to_owned(), row[start..at + " °C".len()].to_owned());
    }
    Some(temps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_live_ups_tile_charts_and_narrow_screens_in_chromium() {
    require_browser();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ups0");
    let sim = SimUps::spawn(MegatecResponder::new(MegatecDialect::default()), &link).unwrap();
    let collector = Collector::start(dir.path(), free_port(), free_port()).await;
    let url = collector.url();
    let _agents = [
        start_agent(
            dir.path(),
            "alpha",
            &url,
            "1s",
            &["--sysroot", &board("pi4")],
        ),
        start_agent(
            dir.path(),
            "beta",
            &url,
            "1s",
            &["--sysroot", &board("x86-intel")],
        ),
        start_ups_agent(dir.path(), &collector, &link, "1s"),
    ];
    let temps = eventually(
        Duration::from_secs(20),
        "temperatures in `nodewarden nodes`",
        || async { cli_temperatures(&collector, &["alpha", "beta"]) },
    )
    .await;

    let base = format!("http://127.0.0.1:{}", collector.metrics_port);
    let temps = serde_json::to_string(&temps).unwrap();
    let mut script = web_support::Script::start("browser.py", &[&base, &temps, "alpha"]);
    let ready = script.next_line();
    if ready != "READY" {
        let (_, stderr, said) = script.finish();
        panic!("browser.py did not get ready: {said:?}\n{stderr}");
    }
    // Pull the plug.
    sim.set(|s| s.mains = false);
    let pulled = Instant::now();
    script.say("PULLED");
    let on_battery = script.next_line();
    let seen_after = pulled.elapsed();
    let (status, stderr, said) = script.finish();
    assert!(
        status.success(),
        "browser checks failed: {said:?}\n{stderr}"
    );
    assert!(on_battery.starts_with("ON_BATTERY "), "{said:?}");
    assert!(
        seen_after < Duration::from_secs(2),
        "the UPS tile said on battery {seen_after:?} after the plug was pulled"
    );
    assert_eq!(said.iter().filter(|l| *l == "OK").count(), 1, "{said:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_login_configured_the_page_refuses_strangers_and_posts() {
    let hash = Command::new(bin("nodewarden"))
        .args(["web", "hash-password", "--user", "ops"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"s3cret\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let lines = String::from_utf8(hash.stdout).unwrap();
    assert!(
        lines.starts_with("[web]\nuser = \"ops\"\npassword_hash = \"pbkdf2-sha256$"),
        "{lines}"
    );
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start_with(dir.path(), free_port(), free_port(), &lines).await;
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let port = collector.metrics_port;

    let (head, _) = http(local, port, "GET /", "");
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("www-authenticate: basic realm=\"nodewarden\""),
        "{head}"
    );
    // "ops:s3cret" and "ops:wrong".
    let (head, body) = http(
        local,
        port,
        "GET /",
        "Authorization: Basic b3BzOnMzY3JldA==\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("<h2>Nodes (0)</h2>"), "{body}");
    let (head, _) = http(
        local,
        port,
        "GET /",
        "Authorization: Basic b3BzOndyb25n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let (head, _) = http(
        local,
        port,
        "POST /",
        "Authorization: Basic b3BzOnMzY3JldA==\r\nContent-Length: 0\r\n",
    );
    assert!(
        head.starts_with("HTTP/1.1 405") && head.to_lowercase().contains("allow: get, head"),
        "{head}"
    );
    // Prometheus needs no login.
    let (head, body) = http(local, port, "GET /metrics", "");
    assert!(
        head.starts_with("HTTP/1.1 200") && body.contains("# HELP"),
        "{head}"
    );

    // A guesser: nine more wrong passwords make ten in the minute; the
    // next login from that address is refused unchecked (429), while the
    // browser that logged in before keeps reading.
    for _ in 0..9 {
        let (head, _) = http(
            local,
            port,
            "GET /",
            "Authorization: Basic b3BzOndyb25n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    }
    // "ops:guess": wrong too, but never checked now.
    let (head, _) = http(
        local,
        port,
        "GET /",
        "Authorization: Basic b3BzOmd1ZXNz\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    let retry = head
        .lines()
        .find_map(|l| {
            l.to_lowercase()
                .strip_prefix("retry-after: ")
                .map(str::to_owned)
        })
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "{head}");
    let (head, _) = http(
        local,
        port,
        "GET /",
        "Authorization: Basic b3BzOnMzY3JldA==\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let log = collector.proc.log_text();
    assert!(
        log.contains("wrong passwords from 127.0.0.1"),
        "the refusal is logged: {log}"
    );
    assert!(!log.contains("s3cret") && !log.contains("b3Bz"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_login_only_this_machine_reads_the_page() {
    let lan = lan_address();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    Collector::init(dir.path(), free_port(), port);
    // Every address, as the shipped default `0.0.0.0:7151`.
    let _collector = Proc::spawn(
        Command::new(bin("nodewarden"))
            .arg("serve")
            .arg("--config")
            .arg(Collector::config_path(dir.path()))
            .args(["--metrics-listen", &format!("0.0.0.0:{port}")]),
        dir.path().join("collector.log"),
    );
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    eventually(
        Duration::from_secs(15),
        "the collector's page",
        || async move { TcpStream::connect((local, port)).ok() },
    )
    .await;

    let (head, _) = http(local, port, "GET /", "");
    assert!(head.starts_with("HTTP/1.1 200"), "loopback reads: {head}");
    let (head, body) = http(lan, port, "GET /", "");
    assert!(head.starts_with("HTTP/1.1 403"), "{lan} is refused: {head}");
    assert!(body.contains("allow_remote"), "{body}");
    let (head, _) = http(lan, port, "GET /node/alpha", "");
    assert!(head.starts_with("HTTP/1.1 403"), "{lan} is refused: {head}");
    let (head, _) = http(lan, port, "GET /metrics", "");
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "Prometheus still scrapes from {lan}: {head}"
    );
}
