//! UPS status latency: from mains lost on the serial line to the collector
//! holding the on-battery status, nodewarden against NUT, in one run.
//!
//! Four simulated Megatec UPSes on real pseudo-terminals share one script:
//! every flip cuts mains on all of them at the same instant. Two are read by
//! one real `nodewarden-agent` (poll 1 s and 2 s) streaming to a real
//! `nodewarden serve`; "arrived" is the first Admin `ListUps` answer showing
//! OB (asked every 2 ms). Two are read by Debian's nutdrv_qx (pollinterval
//! 1 and 2) behind one upsd, watched by two upsmon processes, one with
//! upsmon's defaults (POLLFREQ 5, POLLFREQALERT 5) and one at 1 s;
//! "arrived" is the wall-clock time NOTIFYCMD writes for ONBATT. The same
//! two upsmon processes also follow the agent's two UPSes through the
//! collector's NUT server (`[nut_server]`), so upsd and nodewarden's server
//! are measured side by side with the same client. Between
//! flips everything returns to OL and waits a random time, so the flip falls
//! at a random phase of every poller.
//!
//! Run (as root: NUT's programs run with `-u root`; installs NUT if missing):
//! `cargo build --release -p nodewarden -p nodewarden-agent --bins && cargo bench -p nodewarden-tests --bench ups_latency`
//!
//! Knobs (environment): NW_UPS_FLIPS (flips, default 30).
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is the failure report

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nodewarden_agent::ups::sim::megatec::{MegatecDialect, MegatecResponder};
use nodewarden_agent::ups::sim::{SimHandle, SimUps};
use nodewarden_proto::v1::ListUpsRequest;
use nodewarden_tests::{Collector, Proc, admin, bin, free_port};

/// One path being measured: who reads which simulated UPS.
struct Row {
    label: &'static str,
    poll: &'static str,
}

const ROWS: [Row; 10] = [
    Row {
        label: "nodewarden (agent → collector)",
        poll: "1 s",
    },
    Row {
        label: "nodewarden (agent → collector)",
        poll: "2 s",
    },
    Row {
        label: "NUT defaults (nutdrv_qx → upsd → upsmon POLLFREQ 5)",
        poll: "1 s",
    },
    Row {
        label: "NUT defaults (nutdrv_qx → upsd → upsmon POLLFREQ 5)",
        poll: "2 s",
    },
    Row {
        label: "NUT tuned (upsmon POLLFREQ 1, POLLFREQALERT 1)",
        poll: "1 s",
    },
    Row {
        label: "NUT tuned (upsmon POLLFREQ 1, POLLFREQALERT 1)",
        poll: "2 s",
    },
    Row {
        label: "nodewarden NUT server, upsmon defaults (agent → collector → upsmon POLLFREQ 5)",
        poll: "1 s",
    },
    Row {
        label: "nodewarden NUT server, upsmon defaults (agent → collector → upsmon POLLFREQ 5)",
        poll: "2 s",
    },
    Row {
        label: "nodewarden NUT server, upsmon tuned (POLLFREQ 1, POLLFREQALERT 1)",
        poll: "1 s",
    },
    Row {
        label: "nodewarden NUT server, upsmon tuned (POLLFREQ 1, POLLFREQALERT 1)",
        poll: "2 s",
    },
];

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A cheap pseudo-random number (xorshift seeded from the clock): enough to
/// spread flips over the pollers' phases.
struct Jitter(u64);

impl Jitter {
    fn next_ms(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn install_nut() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("setup/install-nut.sh");
    let ok = Command::new("sh").arg(&script).status().unwrap().success();
    assert!(ok, "{} failed", script.display());
}

/// NUT's side: ups.conf with `nut1` and `nut2` (pollinterval 1 and 2) on
/// the given ports, upsd on `port`, and two upsmon instances whose
/// NOTIFYCMD appends "UPSNAME NOTIFYTYPE unix-ns" to `<dir>/<name>.notify`.
struct Nut {
    _procs: Vec<Proc>,
}

impl Nut {
    fn start(dir: &Path, port: u16, ports: [&Path; 2], nodewarden_port: u16) -> Nut {
        let conf = dir.join("nut");
        let state = conf.join("state");
        fs::create_dir_all(&state).unwrap();
        fs::write(conf.join("nut.conf"), "MODE=standalone\n").unwrap();
        let mut ups = String::new();
        for (i, p) in ports.iter().enumerate() {
            ups += &format!(
                "[nut{n}]\n  driver = nutdrv_qx\n  port = {}\n  protocol = megatec\n  pollinterval = {n}\n",
                p.display(),
                n = i + 1
            );
        }
        fs::write(conf.join("ups.conf"), ups).unwrap();
        fs::write(conf.join("upsd.conf"), format!("LISTEN 127.0.0.1 {port}\n")).unwrap();
        fs::write(
            conf.join("upsd.users"),
            "[watcher]\n  password = watch\n  upsmon secondary\n",
        )
        .unwrap();
        let mut procs = Vec::new();
        for n in ["nut1", "nut2"] {
            procs.push(Proc::spawn(
                Command::new("/lib/nut/nutdrv_qx")
                    .args(["-a", n, "-u", "root", "-F"])
                    .env("NUT_CONFPATH", &conf)
                    .env("NUT_STATEPATH", &state)
                    .env("NUT_ALTPIDPATH", &state)
                    .env("NUT_PIDPATH", &state),
                dir.join(format!("{n}.log")),
            ));
        }
        // The drivers' sockets must exist before upsd starts or it waits
        // for them to be retried.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(state.join("nutdrv_qx-nut1").exists() && state.join("nutdrv_qx-nut2").exists()) {
            assert!(Instant::now() < deadline, "nutdrv_qx never came up");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut upsd = Command::new("/lib/nut/upsd");
        upsd.args(["-u", "root", "-F"]);
        procs.push(nut_command_from(upsd, &conf, &state, dir.join("upsd.log")));
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "upsd never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        for (name, freq) in [("default", None), ("tuned", Some(1))] {
            let c = dir.join(format!("upsmon-{name}"));
            fs::create_dir_all(&c).unwrap();
            fs::write(c.join("nut.conf"), "MODE=netclient\n").unwrap();
            let script = c.join("notify.sh");
            let out = dir.join(format!("{name}.notify"));
            fs::write(
                &script,
                format!(
                    "#!/bin/sh\necho \"$UPSNAME $NOTIFYTYPE $(date +%s%N)\" >> {}\n",
                    out.display()
                ),
            )
            .unwrap();
            Command::new("chmod")
                .arg("755")
                .arg(&script)
                .status()
                .unwrap();
            let mut cfg = String::new();
            for n in ["nut1", "nut2"] {
                cfg += &format!("MONITOR {n}@127.0.0.1:{port} 1 watcher watch secondary\n");
            }
            for n in ["nw1", "nw2"] {
                cfg +=
                    &format!("MONITOR {n}@127.0.0.1:{nodewarden_port} 1 watcher watch secondary\n");
            }
            cfg += &format!(
                "MINSUPPLIES 1\nSHUTDOWNCMD \"/bin/true\"\nNOTIFYCMD {}\n\
                 NOTIFYFLAG ONBATT EXEC\nNOTIFYFLAG ONLINE EXEC\n",
                script.display()
            );
            if let Some(f) = freq {
                cfg += &format!("POLLFREQ {f}\nPOLLFREQALERT {f}\n");
            }
            fs::write(c.join("upsmon.conf"), cfg).unwrap();
            let upsmon = nodewarden_tests::upsmon_command(&[]);
            procs.push(nut_command_from(
                upsmon,
                &c,
                &c,
                dir.join(format!("upsmon-{name}.log")),
            ));
        }
        // Ready when both upsmon instances are logged in to every UPS.
        for (ups, port) in [
            ("nut1", port),
            ("nut2", port),
            ("nw1", nodewarden_port),
            ("nw2", nodewarden_port),
        ] {
            loop {
                let out = Command::new("upsc")
                    .args(["-c", &format!("{ups}@127.0.0.1:{port}")])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout).lines().count() >= 2 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "upsmon never logged in to {ups}:\n{}",
                    logs(dir)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Nut { _procs: procs }
    }
}

/// Every log in the bench directory, for failure messages.
fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "log" || x == "notify") {
            out += &format!(
                "--- {}\n{}\n",
                p.display(),
                fs::read_to_string(&p).unwrap_or_default()
            );
        }
    }
    out
}

fn nut_command_from(mut cmd: Command, conf: &Path, state: &Path, log: PathBuf) -> Proc {
    // NUT_PIDPATH too: upsmon otherwise keeps its PID file in /run/nut,
    // and a second upsmon (or one from another test) refuses to start.
    cmd.env("NUT_CONFPATH", conf)
        .env("NUT_STATEPATH", state)
        .env("NUT_ALTPIDPATH", state)
        .env("NUT_PIDPATH", state);
    Proc::spawn(&mut cmd, log)
}

/// Every notification time per (UPS, type) in a notify file.
fn notifications(file: &Path) -> BTreeMap<(String, String), Vec<u128>> {
    let mut out: BTreeMap<(String, String), Vec<u128>> = BTreeMap::new();
    for line in fs::read_to_string(file).unwrap_or_default().lines() {
        let mut it = line.split_whitespace();
        if let (Some(ups), Some(kind), Some(ns)) = (it.next(), it.next(), it.next())
            && let Ok(ns) = ns.parse()
        {
            out.entry((ups.to_string(), kind.to_string()))
                .or_default()
                .push(ns);
        }
    }
    out
}

/// The first `kind` notification of `ups` at or after `since`; upsmon
/// names it "ups@host:port".
fn notified(
    notes: &BTreeMap<(String, String), Vec<u128>>,
    ups: &str,
    kind: &str,
    since: u128,
) -> Option<u128> {
    let prefix = format!("{ups}@");
    notes
        .iter()
        .filter(|((u, k), _)| u.starts_with(&prefix) && k == kind)
        .flat_map(|(_, v)| v.iter().copied())
        .find(|&t| t >= since)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let flips: usize = std::env::var("NW_UPS_FLIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    install_nut();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spawn = |name: &str| -> SimHandle {
        SimUps::spawn(
            MegatecResponder::new(MegatecDialect::default()),
            &d.join(name),
        )
        .unwrap()
    };
    // Index = row in ROWS order for the first four; nut sims serve two rows each.
    let sims = [spawn("nw1"), spawn("nw2"), spawn("nut1"), spawn("nut2")];

    let nodewarden_nut = free_port();
    let collector = Collector::start_with(
        d,
        free_port(),
        free_port(),
        &format!(
            "[nut_server]\nlisten = \"127.0.0.1:{nodewarden_nut}\"\n\
             [[nut_server.user]]\nname = \"watcher\"\npassword = \"watch\"\nupsmon = \"secondary\"\n"
        ),
    )
    .await;
    let config = d.join("agent.toml");
    let mut cfg = format!(
        "collector = \"{}\"\nnode_name = \"ups-host\"\nsample_interval = \"5s\"\n",
        collector.url()
    );
    for (name, poll) in [("nw1", "1s"), ("nw2", "2s")] {
        cfg += &format!(
            "\n[[ups]]\nname = \"{name}\"\nprotocol = \"megatec\"\nport = \"{}\"\npoll_interval = \"{poll}\"\n",
            d.join(name).display()
        );
    }
    fs::write(&config, cfg).unwrap();
    // The link is mutual TLS: join first, as a node would.
    let joined = nodewarden_tests::join_with(
        &config,
        &d.join("agent-state"),
        "ups-host",
        &collector.url(),
        &collector.token(),
    );
    assert!(joined.status.success(), "join failed: {joined:?}");
    let _agent = Proc::spawn(
        Command::new(bin("nodewarden-agent"))
            .arg("--config")
            .arg(&config),
        d.join("agent.log"),
    );
    let _nut = Nut::start(
        d,
        free_port(),
        [&d.join("nut1"), &d.join("nut2")],
        nodewarden_nut,
    );
    let notify_files = [d.join("default.notify"), d.join("tuned.notify")];

    let mut client = admin(&collector.socket()).await.unwrap();
    // UPS name → (on battery, when the agent polled it, unix ms).
    let mut ours = async || -> BTreeMap<String, (bool, i64)> {
        let list = match client
            .list_ups(ListUpsRequest {
                name: String::new(),
            })
            .await
        {
            Ok(l) => l.into_inner(),
            Err(_) => return BTreeMap::new(),
        };
        list.ups
            .into_iter()
            .filter_map(|u| u.status)
            .map(|s| {
                let ob = s.communication_ok && s.status.iter().any(|t| t == "OB");
                (s.ups_name, (ob, s.timestamp_ms))
            })
            .collect()
    };

    // Everyone sees the UPSes on line before the first flip. upsmon only
    // notifies on a change, so its readiness is upsd answering, checked by
    // the first flip producing notifications (a missing one fails below).
    let start = Instant::now();
    loop {
        let s = ours().await;
        if ["nw1", "nw2"]
            .iter()
            .all(|u| s.get(*u).is_some_and(|v| !v.0))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the collector never saw both UPSes; agent log:\n{}",
            fs::read_to_string(d.join("agent.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // upsmon needs a first poll to know the UPSes are on line.
    tokio::time::sleep(Duration::from_secs(12)).await;

    let mut jitter = Jitter(now_ns() as u64 | 1);
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); ROWS.len()];
    // nodewarden only: from the agent's poll to the collector (push + link).
    let mut transit: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    eprintln!("{flips} flips; each waits for every reader to see OB, then OL");
    for flip in 0..flips {
        // Longer than upsmon's 5 s cycle, whose poll ended the last wait, so
        // the cut lands at an even phase of every poller.
        tokio::time::sleep(Duration::from_millis(300 + jitter.next_ms(6000))).await;
        let cut_ns = now_ns();
        let cut = Instant::now();
        for s in &sims {
            s.set(|st| st.mains = false);
        }
        let mut got: [Option<f64>; ROWS.len()] = [None; ROWS.len()];
        while got.iter().any(Option::is_none) {
            let s = ours().await;
            for (i, name) in ["nw1", "nw2"].iter().enumerate() {
                if got[i].is_none()
                    && let Some(&(true, polled_ms)) = s.get(*name)
                {
                    let total = cut.elapsed().as_secs_f64() * 1000.0;
                    got[i] = Some(total);
                    transit[i].push(total - (polled_ms as f64 - cut_ns as f64 / 1e6));
                }
            }
            for (f, file) in notify_files.iter().enumerate() {
                let notes = notifications(file);
                for (u, ups) in ["nut1", "nut2", "nw1", "nw2"].iter().enumerate() {
                    let row = if u < 2 {
                        2 + f * 2 + u
                    } else {
                        6 + f * 2 + u - 2
                    };
                    if got[row].is_none()
                        && let Some(t) = notified(&notes, ups, "ONBATT", cut_ns)
                    {
                        got[row] = Some((t - cut_ns) as f64 / 1e6);
                    }
                }
            }
            assert!(
                cut.elapsed() < Duration::from_secs(30),
                "flip {flip}: not everyone saw OB within 30 s: {got:?}\n{}",
                logs(d)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for (row, v) in got.iter().enumerate() {
            samples[row].push(v.unwrap_or_default());
        }
        // Back on mains; wait until every reader has seen it.
        let back_ns = now_ns();
        let back = Instant::now();
        for s in &sims {
            s.set(|st| st.mains = true);
        }
        loop {
            let s = ours().await;
            let nw = ["nw1", "nw2"]
                .iter()
                .all(|u| s.get(*u).is_some_and(|v| !v.0));
            let nut = notify_files.iter().all(|file| {
                let notes = notifications(file);
                ["nut1", "nut2", "nw1", "nw2"]
                    .iter()
                    .all(|u| notified(&notes, u, "ONLINE", back_ns).is_some())
            });
            if nw && nut {
                break;
            }
            assert!(
                back.elapsed() < Duration::from_secs(30),
                "flip {flip}: not everyone saw OL again within 30 s\n{}",
                logs(d)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "flip {:>3}: {}",
            flip + 1,
            got.iter()
                .map(|g| format!("{:>6.0}", g.unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" ms ")
        );
    }

    println!();
    println!("UPS mains lost on the serial line → status at the reader, {flips} flips");
    println!("| path | poll | p50 ms | p99 ms | max ms | goal p99 ≤ poll + 200 ms |");
    println!("|---|---|---|---|---|---|");
    for (row, path) in ROWS.iter().enumerate() {
        let mut v = samples[row].clone();
        v.sort_by(f64::total_cmp);
        let poll_ms = if path.poll == "1 s" { 1000.0 } else { 2000.0 };
        let p99 = percentile(&v, 0.99);
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {} |",
            path.label,
            path.poll,
            percentile(&v, 0.5),
            p99,
            v.last().copied().unwrap_or_default(),
            if p99 <= poll_ms + 200.0 {
                "met"
            } else {
                "not met"
            }
        );
    }
    println!();
    println!(
        "nodewarden's share after the poll that saw it: agent poll → collector (push over the link)"
    );
    println!("| poll | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|");
    for (i, poll) in ["1 s", "2 s"].iter().enumerate() {
        let mut v = transit[i].clone();
        v.sort_by(f64::total_cmp);
        println!(
            "| {poll} | {:.1} | {:.1} | {:.1} |",
            percentile(&v, 0.5),
            percentile(&v, 0.99),
            v.last().copied().unwrap_or_default()
        );
    }
    drop(collector);
}
