//! `nodewarden ups test|beeper NAME` end to end: the CLI asks the
//! collector, which sends the command over the agent's authenticated link
//! to the simulated UPS on its serial line. The rig (collector, agent, the
//! simulated Megatec UPS `rack`) is `nut_server_support`'s.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use nodewarden_tests::eventually;

mod nut_server_support;

use nut_server_support::Rig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_battery_test_and_the_beeper_reach_the_ups_through_its_agent() {
    let rig = Rig::start("").await;
    rig.sim.set(|s| s.testing = false);
    let (ok, out) = rig.collector.cli_text(&["ups", "test", "rack"]);
    assert!(ok, "{out}");
    assert!(
        out.starts_with("test.battery.start.quick on rack (agent ups-host)"),
        "{out}"
    );
    eventually(Duration::from_secs(5), "the UPS testing", || async {
        rig.sim.state().testing.then_some(())
    })
    .await;
    let (ok, out) = rig.collector.cli_text(&["ups", "test", "--stop", "rack"]);
    assert!(ok, "{out}");
    eventually(Duration::from_secs(5), "the test stopped", || async {
        (!rig.sim.state().testing).then_some(())
    })
    .await;
    let beeper = rig.sim.state().beeper_on;
    let (ok, out) = rig.collector.cli_text(&["ups", "beeper", "ups-host/rack"]);
    assert!(ok, "{out}");
    eventually(Duration::from_secs(5), "the beeper toggled", || async {
        (rig.sim.state().beeper_on != beeper).then_some(())
    })
    .await;
    let (ok, out) = rig.collector.cli_text(&["ups", "test", "garage"]);
    assert!(!ok && out.contains("no UPS named `garage`"), "{out}");
    // Plain `ups NAME` still shows the UPS.
    let (ok, out) = rig.collector.cli_text(&["ups", "rack"]);
    assert!(ok && out.contains("rack"), "{out}");
}
