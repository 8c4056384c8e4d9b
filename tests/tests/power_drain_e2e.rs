//! The drain inside the power sequence end to end: a disruption budget that
//! blocks, mains back mid-drain (only our cordons undone), a budget that
//! relents. The rig is in `power_support`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use nodewarden_tests::eventually;

mod power_support;

use power_support::*;

/// Waits for a 429 from the budget on web-0: the drain is under way and blocked.
async fn wait_blocked_drain(rig: &Rig) {
    eventually(
        Duration::from_secs(15),
        "the budget refusing web-0's eviction",
        || async {
            rig.requests()
                .iter()
                .any(|(m, p, s)| m == "POST" && p.ends_with("/web-0/eviction") && *s == 429)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mains_back_during_the_drain_cancels_and_uncordons_ours_only() {
    // w2 was cordoned by an admin before the outage: it must stay so.
    let rig = Rig::start(Setup {
        admin_cordoned: &["w2"],
        web_min_available: 1,
        power: &[("drain_timeout", "\"20s\"")],
        ..Setup::default()
    })
    .await;
    rig.ups("rack").mains(false);
    wait_blocked_drain(&rig).await;
    assert_eq!(rig.domain("main")["phase"], "draining");
    assert_cordoned_by_us(&rig, &["s1", "s2", "s3", "w1"]);
    rig.ups("rack").mains(true);
    rig.wait_phase("main", "on_mains", Duration::from_secs(15))
        .await;
    assert_uncordoned(&rig, &["s1", "s2", "s3", "w1"]);
    assert!(
        rig.unschedulable("w2"),
        "the admin's cordon on w2 was lifted"
    );
    // (Once w1 is schedulable again the evicted api pod may be rescheduled onto it.)
    assert!(
        rig.pods_on("w1").contains(&"web-0".to_string()),
        "web-0 left w1 despite its budget"
    );
    assert!(
        !rig.requests()
            .iter()
            .any(|(_, p, s)| p.ends_with("/web-0/eviction") && *s == 201),
        "web-0 was evicted despite its budget"
    );
    assert_eq!(rig.hooks(), [], "a node was powered off");
    assert_eq!(
        rig.ups("rack").shutdowns(),
        Vec::<String>::new(),
        "UPS line"
    );
    let kinds = rig.events("main").await;
    assert!(kinds.iter().any(|k| k == "power_cancelled"), "{kinds:?}");
    assert!(
        !kinds.iter().any(|k| k == "power_poweroff_sent"),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_blocks_then_allows_lets_the_drain_finish_early() {
    let rig = Rig::start(Setup {
        web_min_available: 1,
        power: &[("drain_timeout", "\"20s\"")],
        ..Setup::default()
    })
    .await;
    rig.ups("rack").mains(false);
    wait_blocked_drain(&rig).await;
    assert_eq!(rig.pods_on("w1"), ["svclb-w1", "web-0"]);
    rig.fake.control(
        "POST",
        "/fake/pdb?namespace=default&name=web&minAvailable=0",
    );
    let allowed = Instant::now();
    eventually(SEQUENCE, "the workers powered off", || async {
        rig.hooks()
            .iter()
            .any(|(n, _)| n.starts_with('w'))
            .then_some(())
    })
    .await;
    // Retried every 500 ms and done: not held to the 20 s drain timeout.
    assert!(
        allowed.elapsed() < Duration::from_secs(8),
        "{:?}",
        allowed.elapsed()
    );
    assert!(
        rig.requests()
            .iter()
            .any(|(m, p, s)| m == "POST" && p.ends_with("/web-0/eviction") && *s == 201),
        "web-0 never evicted"
    );
    assert!(!rig.pods_on("w1").contains(&"web-0".to_string()));
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    assert_full_order(&rig, "rack").await;
}

/// A pod a finalizer holds (evicted, deletionTimestamp set, never gone) is
/// left behind `skip_wait_for_delete_timeout` past its grace, named in the
/// timeline, and the workers go down then, not at the 20 s drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_stuck_terminating_is_left_behind_and_the_drain_ends_early() {
    let rig = Rig::start(Setup {
        held_pods: &[("w1", "held-0")],
        kubernetes: &[("skip_wait_for_delete_timeout", "\"1s\"")],
        power: &[("drain_timeout", "\"20s\"")],
        ..Setup::default()
    })
    .await;
    rig.ups("rack").mains(false);
    let cut = Instant::now();
    wait_a_worker_down(&rig).await;
    // 2 s grace, then the held pod's 1 s grace and the 1 s bound.
    let took = cut.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the drain waited for the held pod: workers down {took:?} after the cut"
    );
    assert!(
        rig.evicted().contains(&"held-0".to_string()),
        "held-0 never evicted: {:?}",
        rig.requests()
    );
    let held = rig.fake.control("GET", "/fake/state")["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == "held-0")
        .cloned()
        .expect("the finalizer keeps held-0");
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    let timeline = rig.timeline("main");
    assert!(
        timeline.iter().any(|t| t.starts_with("drained w1:")
            && t.ends_with("left behind: stuck terminating: default/held-0")),
        "{timeline:#?}"
    );
    assert!(
        !timeline.iter().any(|t| t.contains("did not finish")),
        "{timeline:#?}"
    );
    assert_full_order(&rig, "rack").await;
    eprintln!("mains off to a worker powered off, held pod left behind: {took:?}");
}
