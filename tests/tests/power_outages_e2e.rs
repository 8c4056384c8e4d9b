//! Outages as real grids and real clusters make them, end to end: mains
//! reclosing during the drain, while the event waits for the nodes and while
//! it undoes its cordons; an API that stays down through the recovery; a node
//! already offline when the outage starts; a collector restarted while the
//! API is down. What is checked is what a user notices: which nodes get
//! cordoned, powered off and uncordoned, the timeline and the notices the
//! exec hook gets. The rig is in `power_support`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use nodewarden_tests::{Collector, eventually};

mod power_support;

use power_support::*;

/// Mains returns for good and every node boots: our cordons are undone
/// (carried from event to event), the admin's on w2 is not.
async fn recover_for_good(rig: &mut Rig) {
    rig.ups("rack").mains(true);
    rig.boot_all();
    rig.wait_phase("main", "on_mains", Duration::from_secs(20))
        .await;
    assert_uncordoned(rig, &["s1", "s2", "s3", "w1"]);
    assert!(
        rig.unschedulable("w2"),
        "the admin's cordon on w2 was lifted"
    );
}

/// Mains fails past the grace: waits until that starts event number `n`.
async fn mains_fails_for_event(rig: &Rig, n: usize) {
    rig.ups("rack").mains(false);
    eventually(
        Duration::from_secs(10),
        &format!("shutdown event {n} started"),
        || async { (rig.count("main", "power_shutdown_started").await >= n).then_some(()) },
    )
    .await;
}

/// Waits until the exec hook has been run `n` times for `event`.
async fn wait_notices(rig: &Rig, event: &str, n: usize) -> Vec<String> {
    eventually(
        Duration::from_secs(10),
        &format!("{n} `{event}` notices from the exec hook"),
        || async {
            let v = rig.notices_of(event);
            (v.len() >= n).then_some(v)
        },
    )
    .await
}

/// Mains fails (a second event): every node, back from the first, is powered
/// off again and the UPS told to cycle again. Returns the time from `t0` to
/// the event waiting for mains.
async fn second_outage_powers_all_off_again(rig: &Rig, t0: Instant) -> Duration {
    mains_fails_for_event(rig, 2).await;
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    let took = t0.elapsed();
    eventually(Duration::from_secs(5), "s2 powered off again", || async {
        (rig.hook_runs("s2") == 2).then_some(())
    })
    .await;
    for n in SERVERS.iter().chain(WORKERS.iter()) {
        assert_eq!(rig.hook_runs(n), 2, "{n}: {:?}", rig.hooks());
    }
    assert_eq!(rig.ups("rack").shutdowns(), [SHUTDOWN_RETURN; 2]);
    took
}

/// Mains comes back mid-drain, drops again past the grace, three times
/// within a minute: each drop is a new outage (cordon and drain again), each
/// return cancels it; nothing is powered off, the budget is honoured, and at
/// the end only our cordons are undone (the admin's on w2 stays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mains_reclosing_three_times_during_the_drain_is_three_new_outages_and_nothing_goes_down() {
    let rig = Rig::start(Setup {
        admin_cordoned: &["w2"],
        web_min_available: 1,
        power: &[("drain_timeout", "\"20s\"")],
        ..Setup::default()
    })
    .await;
    let t0 = Instant::now();
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "draining", Duration::from_secs(10))
        .await;
    for flap in 1..=3 {
        rig.ups("rack").mains(true);
        rig.wait_phase("main", "on_mains", Duration::from_secs(10))
            .await;
        assert_uncordoned(&rig, &["s1", "s2", "s3", "w1"]);
        mains_fails_for_event(&rig, flap + 1).await;
        rig.wait_phase("main", "draining", Duration::from_secs(10))
            .await;
        assert_cordoned_by_us(&rig, &["s1", "s2", "s3", "w1"]);
    }
    rig.ups("rack").mains(true);
    rig.wait_phase("main", "on_mains", Duration::from_secs(10))
        .await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(60),
        "three reclosings took {took:?}"
    );
    assert_uncordoned(&rig, &["s1", "s2", "s3", "w1"]);
    assert!(
        rig.unschedulable("w2"),
        "the admin's cordon on w2 was lifted"
    );
    assert_eq!(rig.count("main", "power_shutdown_started").await, 4);
    assert_eq!(rig.count("main", "power_cancelled").await, 4);
    assert_eq!(rig.count("main", "power_poweroff_sent").await, 0);
    assert_eq!(rig.hooks(), [], "a node was powered off");
    assert!(rig.ups("rack").shutdowns().is_empty(), "UPS line");
    assert!(
        !rig.requests()
            .iter()
            .any(|(_, p, s)| p.ends_with("/web-0/eviction") && *s == 201),
        "web-0 was evicted despite its budget"
    );
    assert_eq!(wait_notices(&rig, "shutdown_started", 4).await.len(), 4);
    assert_eq!(wait_notices(&rig, "cancelled", 4).await.len(), 4);
    eprintln!("mains off, three reclosings during the drain, back: {took:?}");
}

/// After a full outage mains returns and only the UPS host boots; mains drops
/// again (past the grace) three times before the others are back. Each drop
/// is a new outage: the UPS host, back, is cordoned, drained and powered off
/// again and the UPS told to cycle again; the nodes still off are skipped as
/// offline and never sent anything. Once all are back, our cordons are undone
/// (all of them, carried from event to event), the admin's is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mains_reclosing_three_times_while_awaiting_return_powers_off_only_the_nodes_that_came_back()
 {
    let mut rig = Rig::start(Setup {
        admin_cordoned: &["w2"],
        ..Setup::default()
    })
    .await;
    rig.full_outage().await;
    let t0 = Instant::now();
    for flap in 1..=3 {
        rig.ups("rack").mains(true);
        rig.boot("s1");
        rig.wait_connected("s1", true).await;
        rig.wait_on_battery("main", false).await;
        mains_fails_for_event(&rig, flap + 1).await;
        eventually(SEQUENCE, "s1 powered off again", || async {
            (rig.hook_runs("s1") == flap + 1).then_some(())
        })
        .await;
        rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
        rig.wait_connected("s1", false).await;
    }
    let took = t0.elapsed();
    let timeline = rig.timeline("main");
    for n in ["s2", "s3", "w1", "w2"] {
        assert!(
            timeline
                .iter()
                .any(|t| t.starts_with(&format!("{n} skipped: offline"))),
            "{n} not skipped as offline: {timeline:#?}"
        );
    }
    assert!(
        timeline.iter().any(|t| t.starts_with("draining s1 ")),
        "s1 not drained again: {timeline:#?}"
    );
    assert!(
        timeline.iter().any(|t| t
            .starts_with("still ours to uncordon from the event this one cut short:")
            && t.contains("w1")),
        "{timeline:#?}"
    );
    for n in ["s2", "s3", "w1", "w2"] {
        assert_eq!(
            rig.hook_runs(n),
            1,
            "{n} powered off again: {:?}",
            rig.hooks()
        );
    }
    assert_eq!(rig.hook_runs("s1"), 4);
    assert_eq!(
        rig.ups("rack").shutdowns(),
        [SHUTDOWN_RETURN; 4],
        "one UPS cycle per outage, through the UPS host"
    );
    let started = wait_notices(&rig, "shutdown_started", 4).await;
    assert_eq!(
        started
            .iter()
            .filter(|l| l.contains("a new outage during awaiting_return"))
            .count(),
        3,
        "{started:#?}"
    );
    // Mains for good; everything boots.
    recover_for_good(&mut rig).await;
    assert_eq!(wait_notices(&rig, "recovered", 1).await.len(), 1);
    eprintln!("three reclosings while awaiting return: {took:?}");
}

/// Every node is back and the Kubernetes API is not yet (its servers still
/// start), so the recovery waits to uncordon; meanwhile mains drops twice
/// briefly (within the grace: nothing) and a third time past the grace,
/// with the API back by then: a new outage, in which the nodes that came
/// back are cordoned, drained and powered off again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mains_reclosing_three_times_while_recovering_drains_the_returned_nodes_again() {
    let mut rig = Rig::start(Setup {
        admin_cordoned: &["w2"],
        ..Setup::default()
    })
    .await;
    rig.full_outage().await;
    rig.fake
        .control("POST", "/fake/reachability?mode=unavailable");
    rig.ups("rack").mains(true);
    rig.boot_all();
    rig.wait_phase("main", "recovering", Duration::from_secs(20))
        .await;
    eventually(Duration::from_secs(10), "an uncordon refused", || async {
        rig.timeline("main")
            .iter()
            .any(|t| t.starts_with("uncordon ") && t.contains("failed"))
            .then_some(())
    })
    .await;
    let t0 = Instant::now();
    for _ in 0..2 {
        rig.ups("rack").mains(false);
        rig.wait_on_battery("main", true).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        rig.ups("rack").mains(true);
        rig.wait_on_battery("main", false).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(rig.domain("main")["phase"], "recovering");
    assert_eq!(rig.count("main", "power_shutdown_started").await, 1);
    rig.fake.control("POST", "/fake/reachability?mode=up");
    let took = second_outage_powers_all_off_again(&rig, t0).await;
    let timeline = rig.timeline("main");
    assert!(
        timeline
            .iter()
            .any(|t| t.starts_with("draining ") && t.contains("w1") && t.contains("s3")),
        "the returned nodes were not drained again: {timeline:#?}"
    );
    let started = wait_notices(&rig, "shutdown_started", 2).await;
    assert!(
        started[1].contains("a new outage during recovering"),
        "{started:#?}"
    );
    assert_eq!(rig.count("main", "power_brief_outage").await, 0);
    // Mains for good; everything boots; the API answers.
    recover_for_good(&mut rig).await;
    eprintln!("two brief drops and an outage while recovering: {took:?}");
}

/// The Kubernetes API stays down through the recovery: the uncordon is
/// given up after `uncordon_attempts`, the exec hook gets `uncordon_failed`
/// naming the nodes, the machine is armed again, and the next outage is
/// handled in full (without cordons: the API is still down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_down_through_the_recovery_gives_up_uncordoning_and_the_next_outage_is_handled() {
    let mut rig = Rig::start(Setup {
        // One try: the retry interval is a fixed 30 s; the count itself is
        // proven by the machine's unit tests.
        power: &[("uncordon_attempts", "1")],
        ..Setup::default()
    })
    .await;
    rig.full_outage().await;
    rig.fake
        .control("POST", "/fake/reachability?mode=unavailable");
    rig.ups("rack").mains(true);
    rig.boot_all();
    let failed = wait_notices(&rig, "uncordon_failed", 1).await;
    assert!(
        failed[0].contains("could not uncordon s1, s2, s3, w1, w2 after 1 tries"),
        "{failed:?}"
    );
    rig.wait_phase("main", "on_mains", Duration::from_secs(10))
        .await;
    let recovered = wait_notices(&rig, "recovered", 1).await;
    assert!(
        recovered[0].ends_with("recovered: still cordoned: s1, s2, s3, w1, w2"),
        "{recovered:?}"
    );
    assert_cordoned_by_us(&rig, &["s1", "s2", "s3", "w1", "w2"]);
    // The next outage, the API still down.
    let t0 = Instant::now();
    let took = second_outage_powers_all_off_again(&rig, t0).await;
    eprintln!("second outage after a failed recovery, to awaiting return: {took:?}");
}

/// w2's agent is gone before mains fails: w2 is listed "skipped: offline",
/// not cordoned, not drained, not waited for; the others go down in order
/// without waiting out agent_confirm_timeout for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_offline_at_the_start_is_skipped_and_does_not_hold_the_others() {
    let mut rig = Rig::start(Setup::default()).await;
    rig.agents.get_mut("w2").unwrap().kill_hard();
    rig.wait_connected("w2", false).await;
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    wait_hook(&rig, "s2").await;
    let timeline = rig.timeline("main");
    assert!(
        timeline
            .iter()
            .any(|t| t.starts_with("w2 skipped: offline")),
        "{timeline:#?}"
    );
    assert!(!rig.unschedulable("w2"), "w2 cordoned while offline");
    assert_cordoned_by_us(&rig, &["s1", "s2", "s3", "w1"]);
    assert!(
        !rig.evicted().contains(&"api-7d9f-x2x".to_string()),
        "w2 drained while offline: {:?}",
        rig.evicted()
    );
    assert_eq!(rig.hook_runs("w2"), 0);
    let (w1, s3) = (rig.hook_at("w1"), rig.hook_at("s3"));
    let waited = Duration::from_nanos((s3 - w1) as u64);
    assert!(
        waited < Duration::from_millis(2500),
        "the servers waited {waited:?} after w1 (agent_confirm_timeout is 3 s)"
    );
    assert!(s3 < rig.hook_at("s1") && rig.hook_at("s1") < rig.hook_at("s2"));
    assert_eq!(rig.ups("rack").shutdowns(), [SHUTDOWN_RETURN]);
    let w2 = rig.domain("main")["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "w2")
        .cloned()
        .unwrap();
    assert_eq!(w2["power"], "skipped: offline", "{w2}");
}

/// The collector restarts while the Kubernetes API is down: the servers keep
/// their role (the last known roles are kept), so a following outage still
/// powers off workers, then servers, then the UPS host, then the
/// collector's node, and `plan` says the roles are the last known ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_restarted_while_the_api_is_down_keeps_the_servers_roles() {
    let mut rig = Rig::start(Setup::default()).await;
    rig.fake
        .control("POST", "/fake/reachability?mode=unavailable");
    rig.collector.proc.kill_hard();
    rig.collector = Collector::start_with(
        rig.dir.path(),
        rig.port,
        rig.metrics_port,
        &rig.collector_toml,
    )
    .await;
    rig.wait_ready(&[("rack", "s1")]).await;
    let plan = rig.collector.cli(&["plan"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("roles are the last known ones"), "{text}");
    rig.full_outage().await;
    for n in SERVERS.iter().chain(WORKERS.iter()) {
        assert!(!rig.unschedulable(n), "{n} cordoned through a down API?");
    }
}
