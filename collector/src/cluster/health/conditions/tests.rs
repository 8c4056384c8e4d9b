use super::*;

const POLICY: WritePolicy = WritePolicy {
    heartbeat_ms: 300_000,
    min_write_interval_ms: 10_000,
};

fn obs(uv: bool) -> Observation {
    Observation {
        agent_online: true,
        under_voltage: uv,
        ..Observation::default()
    }
}

fn get(conds: &[Condition], kind: Kind) -> Condition {
    conds.iter().find(|c| c.kind == kind).cloned().unwrap()
}

/// Observes, and writes whatever is due (as the effect loop does).
fn step(c: &mut NodeConditions, now: i64, o: &Observation) -> Option<Vec<Condition>> {
    c.observe(now, o, true);
    let due = c.due(now, POLICY)?;
    c.written(now, due.clone());
    Some(due)
}

#[test]
fn the_first_check_writes_every_condition_and_a_quiet_node_then_only_heartbeats() {
    let mut c = NodeConditions::default();
    let first = step(&mut c, 0, &obs(false)).unwrap();
    assert_eq!(first.len(), 4, "no UPS known: no OnBattery");
    assert!(first.iter().all(|c| c.status == Status::False));
    for t in (1..300).map(|s| s * 1000) {
        assert_eq!(step(&mut c, t, &obs(false)), None, "write at {t}");
    }
    let hb = step(&mut c, 300_000, &obs(false)).unwrap();
    let uv = get(&hb, Kind::UnderVoltage);
    assert_eq!((uv.transition_ms, uv.heartbeat_ms), (0, 300_000));
}

#[test]
fn transition_time_moves_only_when_the_status_changes() {
    let mut c = NodeConditions::default();
    step(&mut c, 0, &obs(false));
    let up = step(&mut c, 20_000, &obs(true)).unwrap();
    let uv = get(&up, Kind::UnderVoltage);
    assert_eq!((uv.status, uv.transition_ms), (Status::True, 20_000));
    assert_eq!(uv.reason, "UnderVoltageDetected");
    assert!(
        uv.message.starts_with("under-voltage since "),
        "{}",
        uv.message
    );
    let hb = step(&mut c, 320_000, &obs(true)).unwrap();
    assert_eq!(get(&hb, Kind::UnderVoltage).transition_ms, 20_000);
    let down = step(&mut c, 330_000, &obs(false)).unwrap();
    let uv = get(&down, Kind::UnderVoltage);
    assert_eq!((uv.status, uv.transition_ms), (Status::False, 330_000));
    assert!(
        uv.message
            .starts_with("under-voltage once in the last 24 h"),
        "{}",
        uv.message
    );
}

#[test]
fn a_flapping_sensor_is_written_at_most_once_per_interval_and_counted() {
    let mut c = NodeConditions::default();
    let mut writes = 0;
    for s in 0..600 {
        if step(&mut c, s * 1000, &obs(s % 2 == 1)).is_some() {
            writes += 1;
        }
    }
    assert!(writes <= 600 / 10 + 1, "{writes} writes in 10 min");
    // The next heartbeat tells how often: every rising edge seen (odd seconds).
    let uv = get(&c.due(899_000, POLICY).unwrap(), Kind::UnderVoltage);
    assert!(
        uv.message.contains("300 times in the last 24 h"),
        "{}",
        uv.message
    );
}

#[test]
fn a_change_within_the_interval_waits_then_goes_out() {
    let mut c = NodeConditions::default();
    step(&mut c, 0, &obs(false));
    assert_eq!(step(&mut c, 3_000, &obs(true)), None);
    let w = step(&mut c, 10_000, &obs(true)).unwrap();
    // The transition is stamped when it was written, as the API would see it.
    assert_eq!(get(&w, Kind::UnderVoltage).status, Status::True);
}

#[test]
fn an_agent_gone_makes_readings_unknown_and_agent_down_true_only_while_ready() {
    let mut c = NodeConditions::default();
    step(&mut c, 0, &obs(true));
    let gone = Observation::default();
    c.observe(20_000, &gone, true);
    let w = c.due(20_000, POLICY).unwrap();
    assert_eq!(get(&w, Kind::UnderVoltage).status, Status::Unknown);
    assert_eq!(get(&w, Kind::NodewardenAgentDown).status, Status::True);
    let changed = c.written(20_000, w);
    assert!(changed.iter().any(|(b, c)| *b == Some(Status::True)
        && c.kind == Kind::UnderVoltage
        && c.status == Status::Unknown));
    c.observe(40_000, &gone, false);
    let w = c.due(40_000, POLICY).unwrap();
    assert_eq!(get(&w, Kind::NodewardenAgentDown).status, Status::False);
    // Back with the same reading: not a new occurrence.
    c.written(40_000, w);
    c.observe(60_000, &obs(true), true);
    let uv = get(&c.due(60_000, POLICY).unwrap(), Kind::UnderVoltage);
    assert!(
        uv.message.contains("once in the last 24 h"),
        "{}",
        uv.message
    );
}

#[test]
fn on_battery_is_written_only_for_nodes_on_a_known_ups() {
    let mut c = NodeConditions::default();
    let o = Observation {
        agent_online: true,
        ups: Some("riello".into()),
        on_battery: true,
        ..Observation::default()
    };
    let w = step(&mut c, 0, &o).unwrap();
    let ob = get(&w, Kind::OnBattery);
    assert_eq!(
        (ob.status, ob.reason.as_str()),
        (Status::True, "UpsOnBattery")
    );
    assert!(ob.message.contains("UPS riello"), "{}", ob.message);
}

#[test]
fn seeded_conditions_keep_their_transition_time_across_a_restart() {
    let mut c = NodeConditions::default();
    c.seed(vec![Condition {
        kind: Kind::UnderVoltage,
        status: Status::True,
        reason: "UnderVoltageDetected".into(),
        message: String::new(),
        transition_ms: 5_000,
        heartbeat_ms: 5_000,
    }]);
    let w = step(&mut c, 100_000, &obs(true)).unwrap();
    assert_eq!(get(&w, Kind::UnderVoltage).transition_ms, 5_000);
}

#[test]
fn only_a_problem_is_news_on_the_first_write() {
    let mut c = NodeConditions::default();
    c.observe(0, &obs(true), true);
    let w = c.due(0, POLICY).unwrap();
    let changed = c.written(0, w);
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].1.kind, Kind::UnderVoltage);
}
