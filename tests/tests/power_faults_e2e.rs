//! Faults a real node or a real UPS line throws at the sequence, end to end:
//! a poweroff refused after the agent confirmed it (logind without the
//! polkit rule), and a battery-voltage sag that puts Megatec's estimated
//! charge below the floor for a moment. The rig is in `power_support`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use nodewarden_tests::eventually;

mod power_support;

use power_support::*;

/// w1's logind refuses after its agent confirmed: the collector hears the
/// late failure, says so with the agent's words, and the workers' stage ends
/// then instead of after its 20 s wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poweroff_refused_after_its_confirm_is_heard_and_does_not_hold_the_stage() {
    let rig = Rig::start(Setup {
        power: &[("agent_confirm_timeout", "\"20s\"")],
        ..Setup::default()
    })
    .await;
    std::fs::write(rig.dir().join("fail-w1"), "").unwrap();
    rig.ups("rack").mains(false);
    rig.wait_phase("main", "awaiting_return", Duration::from_secs(60))
        .await;
    let failed = rig.notices_of("poweroff_failed");
    assert!(
        failed
            .iter()
            .any(|l| l.contains("|w1|") && l.contains("Access denied")),
        "{failed:?}\n{}",
        rig.logs()
    );
    // The servers went down soon after w1's refusal, not 20 s later.
    let gap = rig.hook_at("s3").saturating_sub(rig.hook_at("w1"));
    assert!(
        gap < 10_000_000_000,
        "the servers waited {} ms after w1's refusal",
        gap / 1_000_000
    );
}

/// Megatec charge is a voltage estimate: a sag that reads 25 % for about a
/// second (two readings at most) must not evict every pod. The same low
/// charge held does start the sequence: the agent pushes each level change
/// on battery, and a level that holds is believed after the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voltage_sag_below_the_charge_floor_does_not_start_the_sequence_but_a_lasting_one_does() {
    let rig = Rig::start(Setup {
        power: &[
            ("grace", "\"10m\""),
            ("min_charge_percent", "50"),
            ("estimated_confirmations", "4"),
        ],
        ..Setup::default()
    })
    .await;
    let ups = rig.ups("rack");
    ups.mains(false);
    rig.wait_on_battery("main", true).await;
    ups.sim.set(|s| s.charge_percent = 25.0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    ups.sim.set(|s| s.charge_percent = 90.0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        rig.count("main", "power_shutdown_started").await,
        0,
        "a one-second sag started the sequence:\n{:?}",
        rig.timeline("main")
    );
    ups.sim.set(|s| s.charge_percent = 25.0);
    // Believed after estimated_confirmations readings or comm_lost_window
    // (10 s): a level that holds still is pushed once.
    eventually(
        Duration::from_secs(20),
        "a lasting low charge starts the sequence",
        || async { (rig.count("main", "power_shutdown_started").await == 1).then_some(()) },
    )
    .await;
}
