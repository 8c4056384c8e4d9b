//! The power-cut sequence end to end, the main line: a long outage drains
//! and powers everything off in order, a short one does nothing, the triggers
//! that skip the grace, a collector killed mid-sequence, an API that hangs, an
//! agent that never confirms, two power domains. The rig is in
//! `power_support`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nodewarden_tests::{Collector, eventually};

mod power_support;

use power_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_outage_drains_then_powers_off_workers_servers_ups_host_collector_node() {
    let rig = Rig::start(Setup::default()).await;
    let before: BTreeMap<&str, Vec<String>> = ["s1", "w1", "w2"]
        .into_iter()
        .map(|n| (n, rig.pods_on(n)))
        .collect();
    rig.ups("rack").mains(false);
    let cut = now_ns();
    let d = rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    wait_hook(&rig, "s2").await;
    eprintln!(
        "mains off to the collector's node powered off: {:?}",
        Duration::from_nanos((rig.hook_at("s2") - cut) as u64)
    );

    assert_cordoned_by_us(&rig, &["s1", "s2", "s3", "w1", "w2"]);
    // Drained with kubectl semantics: DaemonSet pods stay, the rest evicted.
    assert_eq!(
        rig.evicted(),
        ["api-7d9f-x2x", "cache-0", "web-0"],
        "evictions"
    );
    assert!(before["w1"].contains(&"web-0".to_string()));
    assert_eq!(rig.pods_on("w1"), ["svclb-w1"]);
    assert_eq!(rig.pods_on("w2"), ["svclb-w2"]);
    assert_eq!(rig.pods_on("s1"), before["s1"]);
    // Cordons came before any eviction.
    let reqs = rig.requests();
    let last_cordon = reqs
        .iter()
        .rposition(|(m, p, _)| m == "PATCH" && p.starts_with("/api/v1/nodes/"))
        .unwrap();
    let first_eviction = reqs
        .iter()
        .position(|(_, p, _)| p.ends_with("/eviction"))
        .unwrap();
    assert!(
        last_cordon < first_eviction,
        "an eviction before every node was cordoned"
    );

    assert_full_order(&rig, "rack").await;
    // No poweroff before the grace ran out.
    let first_hook = rig.hooks()[0].1;
    assert!(
        first_hook > cut + 2_000_000_000,
        "a node went down within the grace"
    );
    assert!(
        d["reason"].as_str().unwrap_or("").contains("on battery"),
        "{d}"
    );
    let kinds = rig.events("main").await;
    for k in [
        "power_on_battery",
        "power_shutdown_started",
        "power_poweroff_sent",
        "power_ups_cycle",
    ] {
        assert!(
            kinds.iter().any(|x| x == k),
            "no {k} event in {kinds:?}\n{}",
            rig.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_outage_within_the_grace_is_recorded_and_nothing_else() {
    let rig = Rig::start(Setup {
        power: &[("grace", "\"3s\"")],
        ..Setup::default()
    })
    .await;
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "on_battery", Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    rig.ups("rack").mains(true);
    eventually(Duration::from_secs(10), "a brief_outage event", || async {
        rig.events("main")
            .await
            .iter()
            .any(|k| k == "power_brief_outage")
            .then_some(())
    })
    .await;
    // Well past where the grace would have run out.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(rig.domain("main")["phase"], "on_mains");
    assert_eq!(rig.hooks(), [], "a poweroff hook ran");
    assert_eq!(
        rig.ups("rack").shutdowns(),
        Vec::<String>::new(),
        "UPS line"
    );
    assert_eq!(
        rig.node_patches(),
        0,
        "a node was patched: {:?}",
        rig.requests()
    );
    assert_eq!(rig.evicted(), Vec::<String>::new());
    for n in SERVERS.iter().chain(WORKERS.iter()) {
        assert!(!rig.unschedulable(n), "{n} cordoned");
    }
    let kinds = rig.events("main").await;
    assert!(
        !kinds.iter().any(|k| k == "power_shutdown_started"),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_outage_the_nodes_come_back_and_only_ours_are_uncordoned() {
    let mut rig = Rig::start(Setup {
        admin_cordoned: &["w2"],
        ..Setup::default()
    })
    .await;
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    assert_full_order(&rig, "rack").await;
    assert!(rig.unschedulable("w2"));
    // Mains returns; the UPS powers everything up again: the agents restart
    // (their tmpfs of issued poweroffs is empty after a boot).
    rig.ups("rack").mains(true);
    rig.boot_all();
    rig.wait_phase("main", "on_mains", Duration::from_secs(20))
        .await;
    for n in ["s1", "s2", "s3", "w1"] {
        assert!(
            !rig.unschedulable(n),
            "{n} left cordoned after the recovery"
        );
    }
    assert!(
        rig.unschedulable("w2"),
        "the admin's cordon on w2 was lifted"
    );
    assert_eq!(
        rig.hooks().len(),
        5,
        "a hook ran again after the return: {:?}",
        rig.hooks()
    );
    let kinds = rig.events("main").await;
    assert!(kinds.iter().any(|k| k == "power_recovered"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ups_low_battery_flag_starts_the_sequence_before_the_grace_ends() {
    let rig = Rig::start(Setup {
        power: &[("grace", "\"10m\"")],
        ..Setup::default()
    })
    .await;
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "on_battery", Duration::from_secs(5))
        .await;
    // Below the simulated unit's 20 % low-battery level: it raises its flag.
    rig.ups("rack").sim.set(|s| s.charge_percent = 15.0);
    let flagged = Instant::now();
    eventually(Duration::from_secs(5), "all nodes cordoned", || async {
        SERVERS
            .iter()
            .chain(WORKERS.iter())
            .all(|n| rig.unschedulable(n))
            .then_some(())
    })
    .await;
    let to_cordon = flagged.elapsed();
    let d = rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    assert!(
        d["reason"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("low battery"),
        "reason: {}",
        d["reason"]
    );
    assert_full_order(&rig, "rack").await;
    eprintln!(
        "low-battery flag to every node cordoned: {to_cordon:?} ({})",
        d["reason"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_ups_while_on_battery_starts_the_sequence_at_once() {
    let rig = Rig::start(Setup {
        power: &[("grace", "\"10m\"")],
        ..Setup::default()
    })
    .await;
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "on_battery", Duration::from_secs(5))
        .await;
    rig.ups("rack").sim.set(|s| s.silent = true);
    let d = rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    assert!(
        d["reason"].as_str().unwrap_or("").contains("communication"),
        "reason: {}",
        d["reason"]
    );
    assert_cordoned_by_us(&rig, &["s1", "s2", "s3", "w1", "w2"]);
    let w = rig.hook_at("w1").max(rig.hook_at("w2"));
    assert!(w < rig.hook_at("s3") && rig.hook_at("s3") < rig.hook_at("s1"));
    wait_hook(&rig, "s2").await;
    assert!(rig.hook_at("s1") < rig.hook_at("s2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_killed_mid_sequence_resumes_and_no_poweroff_runs_twice() {
    let mut rig = Rig::start(Setup::default()).await;
    // The workers are slow to go down (their agents stay up after the hook),
    // and busy when the poweroff arrives: it sits unanswered in their socket.
    for w in WORKERS {
        std::fs::write(rig.dir().join(format!("stay-{w}")), "").unwrap();
    }
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "draining", Duration::from_secs(10))
        .await;
    for w in WORKERS {
        signal(rig.pid(w), "STOP");
    }
    eventually(
        SEQUENCE,
        "both workers' poweroffs sent, unanswered",
        || async {
            let d = rig.domain("main");
            let nodes = d["nodes"].as_array()?;
            WORKERS
                .iter()
                .all(|w| {
                    nodes
                        .iter()
                        .any(|n| n["name"] == *w && n["power"] == "sent")
                })
                .then_some(())
        },
    )
    .await;
    rig.collector.proc.kill_hard();
    let first_log = rig.collector.proc.log_text();
    // The workers wake: they read the command the dead collector sent, run it,
    // reconnect, and get it again (same id) from the restarted collector.
    for w in WORKERS {
        signal(rig.pid(w), "CONT");
    }
    rig.collector = Collector::start_with(
        rig.dir.path(),
        rig.port,
        rig.metrics_port,
        &rig.collector_toml,
    )
    .await;
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    let log = rig.collector.proc.log_text();
    assert!(
        log.contains("resuming an interrupted sequence"),
        "before:\n{first_log}\nafter:\n{log}"
    );
    assert_full_order(&rig, "rack").await;
    assert!(
        log.matches("not running it again").count() >= 2,
        "the resent poweroffs did not reach both workers:\n{}",
        rig.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_kubernetes_api_does_not_stop_the_poweroffs() {
    let rig = Rig::start(Setup::default()).await;
    rig.fake.control("POST", "/fake/reachability?mode=hang");
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    assert_full_order(&rig, "rack").await;
    for n in SERVERS.iter().chain(WORKERS.iter()) {
        assert!(!rig.unschedulable(n), "{n} cordoned through a hung API?");
    }
    assert_eq!(rig.pods_on("w1"), ["svclb-w1", "web-0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_never_confirms_is_waited_for_then_left_behind() {
    let rig = Rig::start(Setup::default()).await;
    rig.ups("rack").mains(false);
    // w2's node freezes as the sequence starts: its link stays open, nothing answers.
    rig.wait_phase("main", "draining", Duration::from_secs(10))
        .await;
    signal(rig.pid("w2"), "STOP");
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    let hooks = rig.hooks();
    assert!(
        !hooks.iter().any(|(n, _)| n == "w2"),
        "w2 ran its hook while frozen: {hooks:?}"
    );
    let w1 = rig.hook_at("w1");
    let s3 = rig.hook_at("s3");
    let waited = Duration::from_nanos((s3 - w1) as u64);
    // agent_confirm_timeout = 3s: the servers waited for w2, but no longer.
    assert!(
        waited >= Duration::from_millis(2500),
        "servers went down {waited:?} after w1"
    );
    assert!(
        waited < Duration::from_secs(6),
        "servers waited {waited:?} after w1"
    );
    let d = rig.domain("main");
    let w2 = d["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "w2")
        .unwrap()
        .clone();
    assert_eq!(w2["power"], "failed: timed out", "{w2}");
    wait_hook(&rig, "s2").await;
    assert!(rig.hook_at("s1") < rig.hook_at("s2"));
    assert_eq!(rig.ups("rack").shutdowns(), [SHUTDOWN_RETURN]);
    signal(rig.pid("w2"), "KILL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_power_domains_only_the_one_on_battery_goes_down() {
    let rig = Rig::start(Setup {
        ups: &[("rack-a", "s1"), ("rack-b", "w2")],
        domains: "\n[[power.domain]]\nname = \"a\"\nups = \"rack-a\"\nowner = \"s1\"\nnodes = [\"s1\", \"s2\", \"s3\"]\n\n\
                  [[power.domain]]\nname = \"b\"\nups = \"rack-b\"\nowner = \"w2\"\nnodes = [\"w1\", \"w2\"]\n",
        ..Setup::default()
    })
    .await;
    rig.ups("rack-b").mains(false);
    rig.wait_phase("b", "awaiting_return", SEQUENCE).await;
    assert_eq!(rig.domain("a")["phase"], "on_mains");
    assert_cordoned_by_us(&rig, &["w1", "w2"]);
    for s in SERVERS {
        assert!(!rig.unschedulable(s), "{s} of domain a cordoned");
    }
    assert_eq!(rig.evicted(), ["api-7d9f-x2x", "web-0"]);
    let hooks: Vec<String> = rig.hooks().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        hooks,
        ["w1", "w2"],
        "only domain b's nodes, worker before UPS host"
    );
    assert_eq!(rig.ups("rack-b").shutdowns(), [SHUTDOWN_RETURN]);
    assert!(rig.ups("rack-b").first_shutdown_ns().unwrap() < rig.hook_at("w2"));
    assert_eq!(rig.ups("rack-a").shutdowns(), Vec::<String>::new());
}
