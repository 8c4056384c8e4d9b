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

/// The collector is gone (a restart, a Wi-Fi blip) when the outage starts:
/// the UPS host's agent takes over, cycles the UPS and powers its node off.
/// When the collector is back, the agent reports what it did, and the
/// collector runs the rest of the sequence without telling the UPS again
/// (which would restart its countdown, or fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_takeover_is_reported_when_the_link_returns_and_the_ups_is_not_told_twice() {
    // Agents reconnecting to the restarted collector are not offline, and
    // their stage waits for them long enough to reconnect (their backoff
    // grew while the collector was gone).
    let mut rig = Rig::start(Setup {
        power: &[
            ("offline_after", "\"20s\""),
            ("agent_confirm_timeout", "\"20s\""),
            ("servers_timeout", "\"20s\""),
        ],
        ..Setup::default()
    })
    .await;
    // s1 reads the UPS: its standalone mode acts after 2 s without the
    // collector and 1 s on battery; its node is slow to go down.
    let config = nodewarden_tests::agent_config(rig.dir(), "s1");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("\n[standalone]\nlink_lost_for = \"2s\"\ngrace = \"1s\"\noff_delay = \"60s\"\n");
    std::fs::write(&config, toml).unwrap();
    std::fs::write(rig.dir().join("stay-s1"), "").unwrap();
    rig.agents.get_mut("s1").unwrap().stop();
    rig.start_agent("s1");
    rig.wait_connected("s1", true).await;

    rig.collector.proc.kill_hard();
    rig.ups("rack").mains(false);
    eventually(
        Duration::from_secs(20),
        "s1's standalone mode cycles the UPS and powers s1 off",
        || async {
            let s1_off = rig.hooks().iter().any(|(n, _)| n == "s1");
            (rig.ups("rack").shutdowns().len() == 1 && s1_off).then_some(())
        },
    )
    .await;

    rig.collector = nodewarden_tests::Collector::start_with(
        rig.dir.path(),
        rig.port,
        rig.metrics_port,
        &rig.collector_toml,
    )
    .await;
    rig.wait_phase("main", "awaiting_return", Duration::from_secs(60))
        .await;
    let timeline = rig.timeline("main");
    assert_eq!(
        rig.count("main", "power_shutdown_started").await,
        1,
        "one outage, one event: {timeline:?}"
    );
    assert!(
        timeline
            .iter()
            .any(|l| l.contains("already cycling (its host did it in standalone mode)")),
        "{timeline:?}\n{}",
        rig.logs()
    );
    assert_eq!(
        rig.ups("rack").shutdowns().len(),
        1,
        "the UPS was told again: {:?}",
        rig.ups("rack").shutdowns()
    );
    let acted = rig.notices_of("standalone_acted");
    assert!(
        acted
            .iter()
            .any(|l| l.contains("|s1|") && l.contains("shutdown.return accepted")),
        "{acted:?}"
    );
    // The rest of the cluster still went down in order.
    for n in ["w1", "w2", "s3"] {
        assert!(
            rig.hooks().iter().any(|(h, _)| h == n),
            "{n} was not powered off: {:?}",
            rig.hooks()
        );
    }
}
