//! The operator's word end to end, with the real CLI: a collector that is
//! not armed only observes a power cut, `power arm` is refused while `plan`
//! has errors and records who armed it, and `power hold` stops a drain that
//! `power resume` carries on. The rig is in `power_support`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use nodewarden_tests::eventually;

mod power_support;

use power_support::*;

fn evictions_of_web0(rig: &Rig) -> usize {
    rig.requests()
        .iter()
        .filter(|(m, p, _)| m == "POST" && p.ends_with("/web-0/eviction"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unarmed_it_only_observes_and_arm_is_refused_while_the_plan_has_errors() {
    // 6 s of UPS off delay cannot cover the UPS host's 10 s stage after the
    // cycle and the halt: a plan error.
    let rig = Rig::start(Setup {
        power: &[
            ("armed", "false"),
            ("ups_off_delay", "\"6s\""),
            ("agent_confirm_timeout", "\"10s\""),
        ],
        ..Setup::default()
    })
    .await;
    let (_, power) = rig.collector.cli_text(&["power"]);
    assert!(power.contains("observing, not armed"), "{power}");
    let (ok, arm) = rig.collector.cli_text(&["power", "arm"]);
    assert!(!ok, "armed despite a plan error: {arm}");
    assert!(
        arm.contains("plan` has errors") && arm.contains("would cut its output 6s"),
        "{arm}"
    );
    assert_eq!(rig.power()["arm"]["armed"], false);
    let (_, plan) = rig.collector.cli_text(&["plan"]);
    assert!(
        plan.contains("error: UPS rack would cut its output"),
        "{plan}"
    );

    // A power cut past the grace: said, recorded, nothing done.
    rig.ups("rack").mains(false);
    eventually(SEQUENCE, "the would-start notice", || async {
        (rig.domain("main")["now"] == "observing (not armed): would start the sequence now")
            .then_some(())
    })
    .await;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rig.domain("main")["phase"], "on_battery");
    assert_eq!(rig.hooks(), [], "a node was powered off");
    assert!(!rig.unschedulable("w1"), "a node was cordoned");
    assert_eq!(rig.count("main", "power_would_start").await, 1);
    assert_eq!(rig.notices_of("would_start").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm_records_who_and_hold_stops_a_drain_that_resume_carries_on() {
    let rig = Rig::start(Setup {
        power: &[("armed", "false"), ("drain_timeout", "\"6s\"")],
        web_min_available: 1,
        ..Setup::default()
    })
    .await;
    let (ok, arm) = rig.collector.cli_text(&["power", "arm"]);
    assert!(ok, "{arm}");
    let state = rig.power()["arm"].clone();
    assert_eq!(state["armed"], true, "{state}");
    assert_eq!(state["by"], "root", "{state}");
    let (_, power) = rig.collector.cli_text(&["power"]);
    assert!(power.contains("armed by root at"), "{power}");
    let (ok, early) = rig.collector.cli_text(&["power", "hold"]);
    assert!(
        !ok && early.contains("nothing to hold: the UPS is on mains"),
        "{early}"
    );

    rig.ups("rack").mains(false);
    // The budget holds web-0: the drain retries its eviction every 500 ms.
    eventually(
        Duration::from_secs(20),
        "the drain retrying web-0",
        || async { (evictions_of_web0(&rig) >= 2).then_some(()) },
    )
    .await;
    let (ok, held) = rig.collector.cli_text(&["power", "hold"]);
    assert!(ok, "{held}");
    assert!(held.contains("held by root: main"), "{held}");
    let at_hold = evictions_of_web0(&rig);
    // Longer than the 6 s drain timeout: a drain that still ran would have
    // given up and powered the workers off.
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        evictions_of_web0(&rig) <= at_hold + 1,
        "the drain went on while held"
    );
    assert_eq!(rig.domain("main")["phase"], "draining");
    assert_eq!(rig.domain("main")["held_by"], "root");
    assert_eq!(rig.hooks(), [], "a node was powered off while held");
    let (ok, resumed) = rig.collector.cli_text(&["power", "resume"]);
    assert!(ok, "{resumed}");
    eventually(Duration::from_secs(5), "the drain again", || async {
        (evictions_of_web0(&rig) > at_hold + 1).then_some(())
    })
    .await;
    rig.wait_phase("main", "awaiting_return", SEQUENCE).await;
    assert_full_order(&rig, "rack").await;
    let (ok, late) = rig.collector.cli_text(&["power", "hold"]);
    assert!(!ok && late.contains("point of no return"), "{late}");
    let kinds = rig.events("main").await;
    for k in ["power_held", "power_resumed"] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing: {kinds:?}");
    }
}
