//! What the stages wait for and what they budget: offline nodes skipped, the
//! time budget, the battery during the drain, the collector's node.

use super::*;

#[test]
fn an_agent_gone_only_a_moment_is_a_reconnect_not_an_offline_node() {
    let mut m = machine();
    m.step(0, Input::Ups(battery()));
    // w2's agent drops 5 s before the grace ends (a Wi-Fi blip, a restart).
    m.step(25 * S, Input::AgentDisconnected("w2".into()));
    let a = m.step(31 * S, Input::Tick);
    assert_eq!(
        cordons(&a),
        ["s1", "s2", "s3", "w1", "w2"],
        "w2 is cordoned and waited for"
    );
    assert!(m.stages[0].skipped.is_empty(), "{:?}", m.stages);
    // Right after a collector restart nobody has reconnected yet: nobody is
    // offline for that.
    let mut m = machine();
    m.step(0, Input::Ups(battery()));
    let mut m = restarted(&m, 20 * S, &["w1", "s1", "s2", "s3", "db"]);
    let b = m.step(31 * S, Input::Tick);
    assert_eq!(
        cordons(&b).len(),
        5,
        "w2 has not had time to reconnect: {b:?}"
    );
}

#[test]
fn a_node_offline_at_the_start_is_skipped_not_cordoned_drained_or_waited_for() {
    let mut m = machine();
    m.step(0, Input::AgentDisconnected("w2".into()));
    let preview = m.preview_stages();
    assert_eq!(preview[0].label, "workers");
    assert_eq!(preview[0].skipped, ["w2"]);
    m.step(S, Input::Ups(battery()));
    let a = m.step(31 * S, Input::Tick);
    assert_eq!(cordons(&a), ["s1", "s2", "s3", "w1"], "w2 is not cordoned");
    assert!(
        m.timeline
            .iter()
            .any(|e| e.text.starts_with("w2 skipped: offline")),
        "{:?}",
        m.timeline
    );
    assert_eq!(m.stages[0].skipped, ["w2"]);
    let b = cordon_all(&mut m, 32 * S, &[]);
    let drained = b
        .iter()
        .find_map(|x| match x {
            Action::Drain { nodes, .. } => Some(nodes.clone()),
            _ => None,
        })
        .expect("drain");
    assert!(!drained.contains(&"w2".to_string()));
    // A collector restart forgets who is connected: w2 is still not waited for.
    let mut m = restarted(&m, 33 * S, &["w1", "s1", "s2", "s3", "db"]);
    let c = drain_all(&mut m, 40 * S);
    let names: Vec<String> = poweroffs(&c).into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["w1"]);
    let d = obey(&mut m, 41 * S, &c);
    let names: Vec<String> = poweroffs(&d).into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["s2", "s3"], "the workers' stage ends without w2");
}

#[test]
fn the_budget_counts_every_stage_after_the_drain() {
    let m = machine();
    let b = m.budget();
    let stages: Vec<(&str, i64)> = b
        .stages
        .iter()
        .map(|s| (s.label.as_str(), s.timeout_ms))
        .collect();
    assert_eq!(
        stages,
        [
            ("workers", 30 * S),
            ("servers", 60 * S),
            ("external hosts (order 1)", 30 * S),
            ("UPS host and collector", 30 * S)
        ]
    );
    assert_eq!(
        (b.cordon_ms, b.ups_command_ms, b.halt_ms, b.reserve_ms),
        (15 * S, 30 * S, 45 * S, 240 * S)
    );
    // 1200 s left: the drain gets its whole timeout.
    assert_eq!((b.runtime_ms, b.drain_ms), (Some(1200 * S), 120 * S));
}

/// On battery, cordoned, draining with the whole drain timeout (until 152 s).
fn draining() -> Machine {
    let mut m = machine();
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    assert_eq!(m.deadline_ms, Some(152 * S));
    m
}

#[test]
fn a_runtime_collapsing_during_the_drain_cuts_it_short() {
    let mut m = draining();
    // 300 s left: 60 s over the reserve: the drain ends at 100 s.
    let a = m.step(
        40 * S,
        Input::Ups(UpsObservation {
            runtime_ms: Some(300 * S),
            ..battery()
        }),
    );
    assert!(poweroffs(&a).is_empty());
    assert_eq!(m.deadline_ms, Some(100 * S));
    // 200 s left: below what the stages need: the drain ends now.
    let b = m.step(
        50 * S,
        Input::Ups(UpsObservation {
            runtime_ms: Some(200 * S),
            ..battery()
        }),
    );
    assert_eq!(poweroffs(&b).len(), 2, "workers at once: {b:?}");
    assert!(
        m.timeline
            .iter()
            .any(|e| e.text == "battery runtime fell to 3m20s: ending the drain now"),
        "{:?}",
        m.timeline
    );
}

#[test]
fn low_battery_or_the_charge_floor_during_the_drain_ends_it_now() {
    let mut m = draining();
    let a = m.step(
        40 * S,
        Input::Ups(UpsObservation {
            low_battery: true,
            ..battery()
        }),
    );
    assert_eq!(poweroffs(&a).len(), 2);
    let mut m = draining();
    let a = m.step(
        40 * S,
        Input::Ups(UpsObservation {
            charge_percent: Some(25.0),
            ..battery()
        }),
    );
    assert_eq!(poweroffs(&a).len(), 2);
}

#[test]
fn the_collector_node_must_be_one_of_the_domains_nodes() {
    let m = machine();
    assert_eq!(m.spec.validate(&m.members), Ok(()));
    let mut spec = m.spec.clone();
    spec.collector_node = Some("k3s-server-1".into());
    let e = spec.validate(&m.members).unwrap_err();
    assert_eq!(
        e,
        SpecError::CollectorNodeUnknown {
            node: "k3s-server-1".into(),
            domains: vec!["`main`".into()],
            nodes: ["db", "s1", "s2", "s3", "w1", "w2"]
                .map(String::from)
                .to_vec(),
        }
    );
    assert!(
        e.to_string().starts_with(
            "key `power.collector_node`: `k3s-server-1` is not a node of power domain `main` (its nodes: db, s1, s2, s3, w1, w2)"
        ),
        "{e}"
    );
    // Several domains: the collector's node is in one of them.
    let other = DomainSpec {
        name: "rack-b".into(),
        ..spec.clone()
    };
    let b = vec![member("k3s-server-1", Role::Server)];
    assert_eq!(
        validate_collector_node(&[(&spec, &m.members), (&other, &b)]),
        Ok(())
    );
    spec.collector_node = None;
    assert_eq!(spec.validate(&[]), Ok(()), "none set: nothing to check");
}
