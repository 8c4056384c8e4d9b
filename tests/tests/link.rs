//! The agent link end to end: real collector and agent processes on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report
use std::time::Duration;

use nodewarden_proto::v1::{EventsRequest, GetNodeRequest, HistoryRequest, ListNodesRequest};
use nodewarden_tests::{
    Collector, PI4_UNDER_VOLTAGE_ALARM, admin, copy_board, eventually, free_port, start_agent,
    start_agent_env,
};

async fn latest_seq(c: &Collector, node: &str) -> Option<u64> {
    let mut a = admin(&c.socket()).await.ok()?;
    let n = a
        .get_node(GetNodeRequest { name: node.into() })
        .await
        .ok()?
        .into_inner();
    n.latest.map(|s| s.seq)
}

fn parse_stop_line(log: &str) -> (u64, u64) {
    // "stopped after N samples; M not acknowledged by the collector"
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("stopped after"))
        .unwrap_or_else(|| panic!("no stop line in agent log:\n{log}"));
    let n: u64 = line
        .split("stopped after ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let m: u64 = line
        .split("samples; ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (n, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_arrives_exactly_once_and_in_order_across_a_collector_crash() {
    crash_and_restart("100ms").await;
}

/// The crash above while the stored samples are committed, seen by
/// `history`, but not yet durable (the first sync is 30 s away): the restart
/// loses them, and the agent, never acked, sends them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_committed_but_not_yet_synced_come_back_after_a_collector_crash() {
    crash_and_restart("30s").await;
}

async fn stored_points(collector: &Collector, node: &str) -> usize {
    let Ok(mut a) = admin(&collector.socket()).await else {
        return 0;
    };
    a.history(HistoryRequest {
        node: node.into(),
        metric: "uptime".into(),
        since_ms: 0,
        until_ms: 0,
        max_points: 0,
    })
    .await
    .map_or(0, |h| h.into_inner().points.len())
}

async fn crash_and_restart(sync: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (port, mport) = (free_port(), free_port());
    let mut collector = Collector::start_synced(dir.path(), port, mport, sync, "").await;
    let mut agent = start_agent(dir.path(), "crash-test", &collector.url(), "1s", &[]);

    eventually(Duration::from_secs(20), "first samples stored", || async {
        latest_seq(&collector, "crash-test")
            .await
            .filter(|s| *s >= 3)
    })
    .await;
    eventually(
        Duration::from_secs(20),
        "first samples in history",
        || async { (stored_points(&collector, "crash-test").await >= 1).then_some(()) },
    )
    .await;

    // Kill the collector without warning, in the middle of the stream.
    collector.proc.kill_hard();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before_restart = std::time::Instant::now();
    collector = Collector::start_synced(dir.path(), port, mport, sync, "").await;

    // The agent reconnects by itself and delivers what it buffered.
    let caught_up = eventually(
        Duration::from_secs(30),
        "agent catches up after restart",
        || async {
            let seq = latest_seq(&collector, "crash-test").await?;
            (seq as f64 >= 3.0 + 4.0 + before_restart.elapsed().as_secs_f64() - 1.0).then_some(seq)
        },
    )
    .await;
    assert!(caught_up >= 7);

    let status = agent.stop();
    assert!(
        status.success(),
        "agent exit {status:?}:\n{}",
        agent.log_text()
    );
    let (produced, unacked) = parse_stop_line(&agent.log_text());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut a = admin(&collector.socket()).await.unwrap();
    let node = a
        .get_node(GetNodeRequest {
            name: "crash-test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let stored = node.latest.unwrap().seq;
    assert!(
        stored <= produced && stored + unacked >= produced,
        "collector has through seq {stored}, agent produced {produced} with {unacked} unacked"
    );

    // Exactly once, in order: one raw point per sample, timestamps strictly
    // increasing, as many points as the highest seq.
    let h = a
        .history(HistoryRequest {
            node: "crash-test".into(),
            metric: "uptime".into(),
            since_ms: 0,
            until_ms: 0,
            max_points: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.resolution_ms, 0, "raw samples expected");
    let ts: Vec<i64> = h.points.iter().map(|p| p.timestamp_ms).collect();
    assert!(
        ts.windows(2).all(|w| w[0] < w[1]),
        "timestamps not strictly increasing: {ts:?}"
    );
    assert_eq!(
        ts.len() as u64,
        stored,
        "stored points {} vs highest seq {stored}",
        ts.len()
    );

    let events = a
        .events(EventsRequest {
            since_ms: 0,
            node: "crash-test".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !events.events.iter().any(|e| e.kind == "samples_lost"),
        "no sample may be lost: {:?}",
        events.events
    );
    let kinds: Vec<&str> = events.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"node_online"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_started_before_the_collector_waits_and_connects_logging_once() {
    let dir = tempfile::tempdir().unwrap();
    let (port, mport) = (free_port(), free_port());
    // Join while the collector is up, then take it down before the agent starts.
    let mut first = Collector::start(dir.path(), port, mport).await;
    nodewarden_tests::join(dir.path(), "early", &first.url());
    first.proc.stop();
    let mut agent = start_agent(
        dir.path(),
        "early",
        &format!("https://127.0.0.1:{port}"),
        "1s",
        &[],
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let collector = Collector::start(dir.path(), port, mport).await;
    eventually(
        Duration::from_secs(40),
        "the early agent's samples",
        || async { latest_seq(&collector, "early").await.filter(|s| *s >= 5) },
    )
    .await;
    agent.stop();
    let log = agent.log_text();
    let down_lines = log
        .lines()
        .filter(|l| l.contains("collector link down"))
        .count();
    assert_eq!(
        down_lines, 1,
        "one line per state change, not per retry:\n{log}"
    );
    // Samples taken while the collector was down were delivered, not dropped.
    let mut a = admin(&collector.socket()).await.unwrap();
    let nodes = a
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].name, "early");
}

/// utime + stime of a process, in clock ticks (USER_HZ, 100 on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f[11] + f[12]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_agent_without_a_ups_sleeps_between_samples() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path(), free_port(), free_port()).await;
    let agent = start_agent(dir.path(), "idle", &c.url(), "1s", &[]);
    eventually(Duration::from_secs(15), "first sample", || async {
        latest_seq(&c, "idle").await
    })
    .await;
    let pid = agent.child.id();
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let used = cpu_ticks(pid) - before;
    // A spinning select loop burns ~400 ticks here; four samples take a few.
    assert!(
        used < 50,
        "agent used {used} ticks of CPU in 4 s while idle; log:\n{}",
        agent.log_text()
    );
}

/// Samples taken at 1 s go to the collector five at a time (send_interval
/// 5 s, the default), but an under-voltage does not wait for the batch.
/// (The harness collector's 5 s offline_after may call the node offline
/// between batches; nothing here depends on that.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_travel_in_batches_but_under_voltage_goes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A Raspberry Pi 4 tree whose hwmon under-voltage alarm this test sets.
    let board = copy_board(dir.path(), "pi4");
    let alarm = board.join(PI4_UNDER_VOLTAGE_ALARM);
    let collector = Collector::start(dir.path(), free_port(), free_port()).await;
    let sysroot = board.to_str().unwrap();
    let mut agent = start_agent(
        dir.path(),
        "pi",
        &collector.url(),
        "1s",
        &["--sysroot", sysroot, "--send-interval", "5s"],
    );

    // The first sample goes at once, then every fifth: the collector's
    // latest seq only ever reads 1, 6, 11, ...
    let mut seen = Vec::new();
    let watch = std::time::Instant::now();
    while watch.elapsed() < Duration::from_secs(12) {
        if let Some(seq) = latest_seq(&collector, "pi").await
            && seen.last() != Some(&seq)
        {
            seen.push(seq);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 2, "too few sends seen: {seen:?}");
    assert!(
        seen.iter().all(|s| s % 5 == 1),
        "latest seqs not on batch boundaries: {seen:?}\n{}",
        agent.log_text()
    );

    // Under-voltage right after a batch went: it must not wait for the next.
    let boundary = eventually(Duration::from_secs(10), "a batch boundary", || async {
        latest_seq(&collector, "pi")
            .await
            .filter(|s| *s > *seen.last().unwrap())
    })
    .await;
    std::fs::write(&alarm, "1\n").unwrap();
    let mut a = admin(&collector.socket()).await.unwrap();
    let arrived = eventually(Duration::from_secs(10), "the under-voltage sample", || {
        let mut a = a.clone();
        async move {
            let latest = a
                .get_node(GetNodeRequest { name: "pi".into() })
                .await
                .ok()?
                .into_inner()
                .latest?;
            latest
                .throttling
                .as_ref()
                .filter(|t| t.under_voltage_alarm)
                .map(|_| latest.seq)
        }
    })
    .await;
    assert!(
        arrived < boundary + 4,
        "under-voltage sample {arrived} waited for the batch after {boundary}"
    );
    let events = a
        .events(EventsRequest {
            since_ms: 0,
            node: "pi".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        events.events.iter().any(|e| e.kind == "under_voltage"),
        "{:?}",
        events.events
    );
    agent.stop();
}

/// A stopping agent hands over the samples it was holding for the next
/// batch: the collector ends up with every sample the agent took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_agent_hands_over_its_held_samples() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(dir.path(), free_port(), free_port()).await;
    let mut agent = start_agent(
        dir.path(),
        "stopper",
        &collector.url(),
        "1s",
        &["--send-interval", "5s"],
    );
    eventually(Duration::from_secs(20), "the first sample", || async {
        latest_seq(&collector, "stopper").await
    })
    .await;
    // Samples 2.. are held for the batch that would go with the sixth.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let status = agent.stop();
    assert!(status.success(), "{status:?}\n{}", agent.log_text());
    let (produced, _) = parse_stop_line(&agent.log_text());
    assert!(
        (2..=5).contains(&produced),
        "expected the agent to stop mid-batch, it took {produced} samples"
    );
    // Stored once committed (commit_interval): one point per sample taken.
    let a = admin(&collector.socket()).await.unwrap();
    eventually(Duration::from_secs(15), "every sample stored", || {
        let mut a = a.clone();
        async move {
            let h = a
                .history(HistoryRequest {
                    node: "stopper".into(),
                    metric: "uptime".into(),
                    since_ms: 0,
                    until_ms: 0,
                    max_points: 0,
                })
                .await
                .ok()?
                .into_inner();
            (h.points.len() as u64 == produced).then_some(())
        }
    })
    .await;
    assert_eq!(latest_seq(&collector, "stopper").await, Some(produced));
}

/// Shell scripts standing in for system programs (`name`, body), in a
/// directory under `dir`; returns a PATH that finds them first.
fn stand_ins(dir: &std::path::Path, programs: &[(&str, &str)]) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, body) in programs {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A node whose systemd is stopping says so before its agent leaves: the
/// collector records "halting" and then the disconnect, and the power
/// sequence times the node's real halt between the two. The stand-in
/// systemctl says "stopping", as systemd's does during a shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_stopped_by_a_system_shutdown_says_the_node_is_halting() {
    let dir = tempfile::tempdir().unwrap();
    let path = stand_ins(
        dir.path(),
        &[
            (
                "systemctl",
                "if [ \"$1\" = is-system-running ]; then echo stopping; exit 1; fi\nexit 0",
            ),
            // logind, as a node without the polkit rule answers CanPowerOff.
            (
                "busctl",
                "case \"$*\" in *CanPowerOff*) echo 's \"challenge\"';; esac\nexit 0",
            ),
        ],
    );
    let collector = Collector::start(dir.path(), free_port(), free_port()).await;
    let mut agent = start_agent_env(
        dir.path(),
        "halter",
        &collector.url(),
        "1s",
        &[],
        &[("PATH", path)],
    );
    eventually(Duration::from_secs(20), "the first sample", || async {
        latest_seq(&collector, "halter").await
    })
    .await;
    // What logind said at the agent's start reaches `nodes` and `plan`.
    let mut a = admin(&collector.socket()).await.unwrap();
    let node = a
        .get_node(GetNodeRequest {
            name: "halter".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(node.can_power_off, "challenge", "{node:?}");
    let status = agent.stop();
    assert!(status.success(), "{status:?}\n{}", agent.log_text());
    let kinds = eventually(Duration::from_secs(15), "halting, then offline", || {
        let mut a = a.clone();
        async move {
            let events = a
                .events(EventsRequest {
                    since_ms: 0,
                    node: "halter".into(),
                    limit: 0,
                })
                .await
                .ok()?
                .into_inner();
            let kinds: Vec<String> = events.events.iter().map(|e| e.kind.clone()).collect();
            kinds.contains(&"node_offline".to_string()).then_some(kinds)
        }
    })
    .await;
    let halting = kinds.iter().position(|k| k == "node_halting");
    let offline = kinds.iter().position(|k| k == "node_offline");
    assert!(
        halting.is_some() && halting < offline,
        "halting must come before the disconnect: {kinds:?}"
    );
}

/// An agent stopped while the system runs (an upgrade, `systemctl stop`) is
/// not a halting node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_stopped_on_a_running_system_does_not_say_halting() {
    let dir = tempfile::tempdir().unwrap();
    let path = stand_ins(dir.path(), &[("systemctl", "echo running\nexit 0")]);
    let collector = Collector::start(dir.path(), free_port(), free_port()).await;
    let mut agent = start_agent_env(
        dir.path(),
        "upgrader",
        &collector.url(),
        "1s",
        &[],
        &[("PATH", path)],
    );
    eventually(Duration::from_secs(20), "the first sample", || async {
        latest_seq(&collector, "upgrader").await
    })
    .await;
    agent.stop();
    let a = admin(&collector.socket()).await.unwrap();
    let kinds = eventually(Duration::from_secs(15), "offline", || {
        let mut a = a.clone();
        async move {
            let events = a
                .events(EventsRequest {
                    since_ms: 0,
                    node: "upgrader".into(),
                    limit: 0,
                })
                .await
                .ok()?
                .into_inner();
            let kinds: Vec<String> = events.events.iter().map(|e| e.kind.clone()).collect();
            kinds.contains(&"node_offline".to_string()).then_some(kinds)
        }
    })
    .await;
    assert!(!kinds.contains(&"node_halting".to_string()), "{kinds:?}");
}
