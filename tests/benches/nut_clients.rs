//! Memory per NUT client connection: nodewarden's NUT server (in the
//! collector, one agent reading a simulated Megatec UPS) against Debian's
//! upsd (serving a dummy-ups driver), in one run. Each server gets N
//! clients that log in and read every variable (`LIST VAR`), then stay
//! connected; the figure is the server process's RSS growth divided by N.
//!
//! Run: `cargo build --release -p nodewarden -p nodewarden-agent --bins && cargo bench -p nodewarden-tests --bench nut_clients`
//! (as root: upsd runs with `-u root`; needs tests/setup/install-test-tools.sh nut).
//! Knobs (environment): NW_NUT_CLIENTS (default 1000).
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is the failure report

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nodewarden_agent::ups::sim::SimUps;
use nodewarden_agent::ups::sim::megatec::{MegatecDialect, MegatecResponder};
use nodewarden_tests::{Collector, Proc, free_port};

fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A logged-in client that has read every variable of `ups`.
fn client(port: u16, ups: &str) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    w.write_all(
        format!("USERNAME watcher\nPASSWORD watch\nLOGIN {ups}\nLIST VAR {ups}\n").as_bytes(),
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let end = format!("END LIST VAR {ups}");
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "{ups}: closed");
        assert!(!line.starts_with("ERR"), "{ups}: {line}");
        if line.trim_end() == end {
            return s;
        }
    }
}

/// RSS growth per client, in bytes, for `n` clients of `ups` on `port`.
fn per_client(pid: u32, port: u16, ups: &str, n: usize) -> (u64, u64, f64) {
    let warm: Vec<TcpStream> = (0..10).map(|_| client(port, ups)).collect();
    drop(warm);
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid);
    let held: Vec<TcpStream> = (0..n).map(|_| client(port, ups)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    drop(held);
    let per = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    (before, after, per)
}

fn upsd(dir: &Path, port: u16) -> Vec<Proc> {
    let conf = dir.join("nut");
    let state = conf.join("state");
    fs::create_dir_all(&state).unwrap();
    fs::write(conf.join("nut.conf"), "MODE=standalone\n").unwrap();
    fs::write(
        conf.join("rack.dev"),
        "device.mfr: NODEWARDEN\ndevice.model: SIM-800\nups.status: OL\nbattery.charge: 100\n\
         battery.voltage: 13.00\ninput.voltage: 230.0\noutput.voltage: 230.0\ninput.frequency: 50.0\n\
         ups.load: 25\nups.temperature: 25.0\n",
    )
    .unwrap();
    fs::write(
        conf.join("ups.conf"),
        "[rack]\n  driver = dummy-ups\n  port = rack.dev\n",
    )
    .unwrap();
    fs::write(conf.join("upsd.conf"), format!("LISTEN 127.0.0.1 {port}\n")).unwrap();
    fs::write(
        conf.join("upsd.users"),
        "[watcher]\n  password = watch\n  upsmon secondary\n",
    )
    .unwrap();
    let env = |c: &mut Command| {
        c.env("NUT_CONFPATH", &conf)
            .env("NUT_STATEPATH", &state)
            .env("NUT_ALTPIDPATH", &state)
            .env("NUT_PIDPATH", &state);
    };
    let mut driver = Command::new("/lib/nut/dummy-ups");
    driver.args(["-a", "rack", "-u", "root", "-F"]);
    env(&mut driver);
    let driver = Proc::spawn(&mut driver, dir.join("dummy-ups.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !state.join("dummy-ups-rack").exists() {
        assert!(Instant::now() < deadline, "dummy-ups never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut upsd = Command::new("/lib/nut/upsd");
    upsd.args(["-u", "root", "-F"]);
    env(&mut upsd);
    let upsd = Proc::spawn(&mut upsd, dir.join("upsd.log"));
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "upsd never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    vec![upsd, driver]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    nodewarden_tests::setup::require("nut", &["/lib/nut/upsd", "/lib/nut/dummy-ups"]);
    let n: usize = std::env::var("NW_NUT_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let link = d.join("ups0");
    let _sim = SimUps::spawn(MegatecResponder::new(MegatecDialect::default()), &link).unwrap();
    let nut_port = free_port();
    let collector = Collector::start_with(
        d,
        free_port(),
        free_port(),
        &format!(
            "[nut_server]\nlisten = \"127.0.0.1:{nut_port}\"\nmax_clients = {}\n\
             [[nut_server.user]]\nname = \"watcher\"\npassword = \"watch\"\nupsmon = \"secondary\"\n",
            n + 100
        ),
    )
    .await;
    let _agent = nodewarden_tests::start_ups_agent(d, &collector, &link, "5s");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("upsc")
            .args([&format!("rack@127.0.0.1:{nut_port}"), "ups.status"])
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the NUT server never served rack"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let upsd_port = free_port();
    let nut = upsd(d, upsd_port);

    println!("Memory per NUT client connection ({n} clients, each logged in after LIST VAR)");
    println!("| server | RSS before KiB | RSS with {n} clients KiB | bytes per client |");
    println!("|---|---|---|---|");
    for (name, pid, port) in [
        (
            "nodewarden collector (NUT server)",
            collector.proc.child.id(),
            nut_port,
        ),
        ("NUT upsd 2.8.0", nut[0].child.id(), upsd_port),
    ] {
        let (before, after, per) = per_client(pid, port, "rack", n);
        println!("| {name} | {before} | {after} | {per:.0} |");
    }
}
