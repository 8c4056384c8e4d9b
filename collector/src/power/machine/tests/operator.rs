//! What the operator decides: an unarmed domain only observes, and a hold
//! stops the sequence before the point of no return until resume, mains or
//! the battery's reserve.

use super::*;

fn unarmed() -> Machine {
    let mut m = machine();
    let mut spec = m.spec.clone();
    spec.settings.armed = false;
    m.set_spec(spec);
    m
}

fn drains(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::Drain { nodes, .. } => nodes.clone(),
            _ => vec![],
        })
        .collect()
}

#[test]
fn an_unarmed_domain_says_once_what_it_would_do_and_does_nothing() {
    let mut m = unarmed();
    m.step(S, Input::Ups(battery()));
    let a = m.step(31 * S, Input::Tick);
    assert_eq!(kinds(&a), ["would_start"]);
    assert!(cordons(&a).is_empty(), "{a:?}");
    assert_eq!(m.phase, Phase::OnBattery);
    let low = UpsObservation {
        low_battery: true,
        runtime_ms: Some(20 * S),
        ..battery()
    };
    let b = m.step(40 * S, Input::Ups(low));
    assert!(kinds(&b).is_empty() && cordons(&b).is_empty(), "{b:?}");
    assert!(
        m.timeline.iter().any(|e| e
            .text
            .starts_with("observing (not armed): would start the sequence now")),
        "{:?}",
        m.timeline
    );
    // The next outage is said again.
    m.step(50 * S, Input::Ups(mains()));
    m.step(60 * S, Input::Ups(battery()));
    let c = m.step(91 * S, Input::Tick);
    assert_eq!(kinds(&c), ["would_start"]);
}

#[test]
fn arming_during_an_outage_starts_the_sequence_at_once() {
    let mut m = unarmed();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    let mut spec = m.spec.clone();
    spec.settings.armed = true;
    m.set_spec(spec);
    let a = m.step(32 * S, Input::Tick);
    assert_eq!(cordons(&a).len(), 5, "{a:?}");
}

#[test]
fn a_hold_stops_the_drain_and_resume_drains_again_with_a_new_deadline() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    assert_eq!(m.phase, Phase::Draining);
    assert_eq!(m.hold_refusal(), None);
    let a = m.step(33 * S, Input::Hold { by: "root".into() });
    assert_eq!(kinds(&a), ["held"]);
    // Long past the drain's deadline: still held, nothing powered off.
    let b = m.step(600 * S, Input::Tick);
    assert!(poweroffs(&b).is_empty(), "{b:?}");
    assert_eq!(m.phase, Phase::Draining);
    assert_eq!(m.hold_refusal().as_deref(), Some("already held by root"));
    let c = m.step(601 * S, Input::Resume { by: "root".into() });
    assert_eq!(kinds(&c), ["resumed"]);
    assert_eq!(drains(&c).len(), 5, "{c:?}");
    assert!(m.deadline_ms.is_some_and(|d| d > 601 * S));
    let d = drain_all(&mut m, 610 * S);
    assert_eq!(poweroffs(&d).len(), 2, "the workers go once drained");
}

#[test]
fn a_hold_ends_when_mains_returns_and_the_cordons_are_undone() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    m.step(33 * S, Input::Hold { by: "root".into() });
    let a = m.step(40 * S, Input::Ups(mains()));
    assert_eq!(m.hold, None);
    assert_eq!(uncordons(&a).len(), 5, "{a:?}");
}

#[test]
fn a_hold_does_not_outlast_the_battery() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    m.step(33 * S, Input::Hold { by: "root".into() });
    let reserve = m.budget().reserve_ms;
    let still = UpsObservation {
        runtime_ms: Some(reserve + 60 * S),
        ..battery()
    };
    let a = m.step(40 * S, Input::Ups(still));
    assert!(m.hold.is_some() && drains(&a).is_empty(), "{a:?}");
    let low = UpsObservation {
        runtime_ms: Some(reserve),
        ..battery()
    };
    let b = m.step(50 * S, Input::Ups(low));
    assert_eq!(m.hold, None);
    assert!(kinds(&b).contains(&"resumed".to_string()), "{b:?}");
    assert!(
        m.timeline
            .iter()
            .any(|e| e.text.starts_with("hold ended: the battery is down")),
        "{:?}",
        m.timeline
    );
}

#[test]
fn no_hold_past_the_point_of_no_return_or_on_mains() {
    let mut m = machine();
    assert!(m.hold_refusal().unwrap().contains("on mains"));
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    let a = drain_all(&mut m, 40 * S);
    assert!(!poweroffs(&a).is_empty());
    let why = m.hold_refusal().expect("refused");
    assert!(why.contains("point of no return"), "{why}");
    let b = m.step(41 * S, Input::Hold { by: "root".into() });
    assert!(b.is_empty() && m.hold.is_none(), "{b:?}");
}

#[test]
fn a_hold_before_the_grace_ends_keeps_the_sequence_from_starting() {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(2 * S, Input::Hold { by: "ops".into() });
    let a = m.step(31 * S, Input::Tick);
    assert!(cordons(&a).is_empty(), "{a:?}");
    let b = m.step(60 * S, Input::Resume { by: "ops".into() });
    assert_eq!(cordons(&b).len(), 5, "resumed past the grace: it starts");
}
