//! What starts the sequence and what does not: the grace, each threshold,
//! communication loss, and estimated readings debounced.

use super::*;

#[test]
fn brief_outage_within_grace_does_nothing_but_record() {
    let mut m = machine();
    let a = m.step(S, Input::Ups(battery()));
    assert_eq!(kinds(&a), ["on_battery"]);
    assert_eq!(m.phase, Phase::OnBattery);
    assert_eq!(m.wake_at(), Some(31 * S));
    assert!(m.step(20 * S, Input::Tick).is_empty());
    let a = m.step(25 * S, Input::Ups(mains()));
    assert!(cordons(&a).is_empty());
    assert_eq!(kinds(&a), ["mains_returned", "brief_outage"]);
    assert_eq!(m.phase, Phase::OnMains);
    assert!(m.step(100 * S, Input::Tick).is_empty());
}

#[test]
fn grace_expiry_cordons_every_cluster_node_at_once() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    assert!(cordons(&m.step(30 * S, Input::Tick)).is_empty());
    let a = m.step(31 * S, Input::Tick);
    assert_eq!(cordons(&a), ["s1", "s2", "s3", "w1", "w2"]);
    assert!(kinds(&a).contains(&"shutdown_started".to_string()));
    assert_eq!(m.phase, Phase::Cordoning);
}

#[test]
fn each_threshold_starts_the_sequence_before_the_grace() {
    let low = UpsObservation {
        low_battery: true,
        ..battery()
    };
    let charge = UpsObservation {
        charge_percent: Some(29.0),
        ..battery()
    };
    let runtime = UpsObservation {
        runtime_ms: Some(200 * S),
        ..battery()
    };
    for (obs, why) in [
        (low, "low battery"),
        (charge, "charge"),
        (runtime, "runtime"),
    ] {
        let mut m = machine();
        m.step(S, Input::Ups(battery()));
        let a = m.step(2 * S, Input::Ups(obs));
        assert_eq!(cordons(&a).len(), 5, "{why}");
        assert!(m.reason.contains(why), "{}: {why}", m.reason);
    }
}

#[test]
fn low_charge_on_mains_does_not_start_anything() {
    let mut m = machine();
    let a = m.step(
        S,
        Input::Ups(UpsObservation {
            charge_percent: Some(5.0),
            ..mains()
        }),
    );
    assert!(a.is_empty());
    assert_eq!(m.phase, Phase::OnMains);
}

#[test]
fn communication_lost_on_battery_starts_but_not_on_mains() {
    let lost = || {
        Input::Ups(UpsObservation {
            comm_ok: false,
            ..battery()
        })
    };
    // Three lost readings in a row (estimated_confirmations) start it.
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    assert!(
        cordons(&m.step(2 * S, lost())).is_empty(),
        "one failed poll"
    );
    assert!(cordons(&m.step(3 * S, lost())).is_empty());
    let a = m.step(4 * S, lost());
    assert_eq!(cordons(&a).len(), 5);
    assert!(m.reason.contains("communication lost"));
    // One lost reading and silence: it counts after comm_lost_window.
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(2 * S, lost());
    assert_eq!(m.wake_at(), Some(12 * S));
    assert!(cordons(&m.step(11 * S, Input::Tick)).is_empty());
    assert_eq!(cordons(&m.step(12 * S, Input::Tick)).len(), 5);
    // A failed poll between good ones: nothing.
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(2 * S, lost());
    m.step(3 * S, Input::Ups(battery()));
    assert!(cordons(&m.step(13 * S, Input::Tick)).is_empty());
    assert_eq!(m.phase, Phase::OnBattery);

    let mut m = machine();
    let a = m.step(
        2 * S,
        Input::Ups(UpsObservation {
            comm_ok: false,
            ..mains()
        }),
    );
    assert_eq!(kinds(&a), ["ups_comm_lost"]);
    assert_eq!(m.phase, Phase::OnMains);
    assert!(m.step(100 * S, Input::Tick).is_empty());
}

#[test]
fn one_estimated_reading_below_a_floor_does_not_start_the_sequence_three_in_a_row_do() {
    let sag = UpsObservation {
        charge_percent: Some(20.0),
        charge_estimated: true,
        runtime_ms: Some(100 * S),
        runtime_estimated: true,
        ..battery()
    };
    let fine = UpsObservation {
        charge_percent: Some(60.0),
        charge_estimated: true,
        runtime_ms: Some(900 * S),
        runtime_estimated: true,
        ..battery()
    };
    let mut m = machine();
    m.step(S, Input::Ups(fine.clone()));
    // A voltage sag: one reading, then back up.
    assert!(cordons(&m.step(2 * S, Input::Ups(sag.clone()))).is_empty());
    assert!(cordons(&m.step(3 * S, Input::Ups(fine.clone()))).is_empty());
    assert!(cordons(&m.step(4 * S, Input::Ups(sag.clone()))).is_empty());
    assert!(cordons(&m.step(5 * S, Input::Ups(sag.clone()))).is_empty());
    assert!(
        cordons(&m.step(10 * S, Input::Tick)).is_empty(),
        "6 s of a low estimate is inside the 10 s window"
    );
    assert_eq!(m.phase, Phase::OnBattery);
    let a = m.step(11 * S, Input::Ups(sag.clone()));
    assert_eq!(cordons(&a).len(), 5, "three in a row");
    assert!(m.reason.contains("charge"), "{}", m.reason);
    // The same value reported by the UPS itself counts at once.
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    let reported = UpsObservation {
        charge_estimated: false,
        runtime_estimated: false,
        ..sag
    };
    assert_eq!(cordons(&m.step(2 * S, Input::Ups(reported))).len(), 5);
}

#[test]
fn an_estimated_low_that_holds_still_is_believed_after_the_window() {
    // The agent pushes a level when it changes: a low estimate that holds
    // comes once, and must still start the sequence.
    let low = UpsObservation {
        charge_percent: Some(20.0),
        charge_estimated: true,
        ..battery()
    };
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    assert!(cordons(&m.step(2 * S, Input::Ups(low))).is_empty());
    assert_eq!(
        m.wake_at(),
        Some(12 * S),
        "a tick is due when the window ends"
    );
    assert!(cordons(&m.step(11 * S, Input::Tick)).is_empty());
    let a = m.step(12 * S, Input::Tick);
    assert_eq!(cordons(&a).len(), 5, "{a:?}");
    assert!(m.reason.contains("charge"), "{}", m.reason);
}

#[test]
fn the_estimated_flags_come_from_the_agents_status() {
    let s = nodewarden_proto::v1::UpsStatus {
        communication_ok: true,
        status: vec!["OB".into()],
        battery_charge_percent: Some(40.0),
        battery_charge_estimated: true,
        battery_runtime_seconds: Some(600.0),
        battery_runtime_estimated: false,
        ..Default::default()
    };
    let o = UpsObservation::from_status(&s);
    assert!(o.charge_estimated && !o.runtime_estimated);
    assert_eq!(o.runtime_ms, Some(600 * S));
}
