//! The UPS cycle at the end of the power sequence end to end: mains back past
//! the point of no return still cycles the UPS, and a cycle that cannot be
//! sent keeps the last nodes up until it can. The rig is in `power_support`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use nodewarden_tests::eventually;

mod power_support;

use power_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mains_back_after_the_workers_are_off_carries_on_and_cycles_the_ups() {
    let rig = Rig::start(Setup::default()).await;
    rig.ups("rack").mains(false);
    wait_a_worker_down(&rig).await;
    // Past the point of no return: only the UPS cycle brings the workers back.
    rig.ups("rack").mains(true);
    eventually(SEQUENCE, "the collector's node powered off", || async {
        rig.hooks().iter().any(|(n, _)| n == "s2").then_some(())
    })
    .await;
    assert_full_order(&rig, "rack").await;
    let kinds = rig.events("main").await;
    assert!(!kinds.iter().any(|k| k == "power_cancelled"), "{kinds:?}");
}

/// A UPS cycle that cannot be sent while mains is back (the UPS host's agent
/// is gone) must not strand the cluster: the UPS host and the collector's
/// node stay up, `manual_power_cycle_needed` is raised, and once the UPS
/// host's agent is back the cycle is tried again; only when the UPS took it
/// do the last nodes go down, so the UPS brings everything back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_ups_cycle_with_mains_back_keeps_the_last_nodes_up_until_it_works() {
    let mut rig = Rig::start(Setup {
        power: &[
            ("ups_command_attempts", "2"),
            ("ups_command_retry", "\"1s\""),
        ],
        ..Setup::default()
    })
    .await;
    // s3 is slow to go down: its stage waits out servers_timeout (3 s),
    // time for what follows to happen before the UPS is told to cycle.
    std::fs::write(rig.dir().join("stay-s3"), "").unwrap();
    rig.ups("rack").mains(false);
    wait_a_worker_down(&rig).await;
    // Past the point of no return, mains comes back, and the UPS host's
    // agent dies before it can pass the UPS command on.
    rig.ups("rack").mains(true);
    eventually(SEQUENCE, "the collector to see mains", || async {
        (rig.domain("main")["ups_state"]["on_battery"] == false).then_some(())
    })
    .await;
    signal(rig.pid("s1"), "KILL");
    eventually(SEQUENCE, "a manual power cycle asked for", || async {
        rig.events("main")
            .await
            .iter()
            .any(|k| k == "power_manual_power_cycle_needed")
            .then_some(())
    })
    .await;
    wait_hook(&rig, "s3").await;
    // Held: nothing more goes down while the UPS cannot cycle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down: Vec<String> = rig.hooks().into_iter().map(|(n, _)| n).collect();
    assert!(
        !down.iter().any(|n| n == "s1" || n == "s2"),
        "the UPS host or the collector's node went down with mains back and no UPS cycle: {down:?}\n{}",
        rig.logs()
    );
    assert!(rig.ups("rack").shutdowns().is_empty(), "UPS line");
    // The UPS host is back: the cycle is tried again and taken, then the
    // held nodes go down, the collector's own last.
    rig.start_agent("s1");
    eventually(SEQUENCE, "the collector's node powered off", || async {
        rig.hooks().iter().any(|(n, _)| n == "s2").then_some(())
    })
    .await;
    assert_full_order(&rig, "rack").await;
}
