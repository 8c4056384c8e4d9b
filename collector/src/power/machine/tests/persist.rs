//! The saved state: its version, and states written by earlier versions.

use super::*;

/// A machine mid-sequence with an agent that was not connected at its stage.
fn machine_with_an_absent_agent() -> Machine {
    let mut m = machine();
    m.step(0, Input::AgentDisconnected("w2".into()));
    m.step(S, Input::Ups(battery()));
    m.step(31 * S, Input::Tick);
    cordon_all(&mut m, 32 * S, &[]);
    drain_all(&mut m, 40 * S);
    assert_eq!(m.nodes["w2"].power, PowerState::NotConnected);
    m
}

#[test]
fn not_connected_is_saved_as_the_failure_text_it_always_was() {
    let json = serde_json::to_value(PowerState::NotConnected).unwrap();
    assert_eq!(json, serde_json::json!({"failed": "agent not connected"}));
    let back: PowerState = serde_json::from_value(json).unwrap();
    assert_eq!(back, PowerState::NotConnected);
    let other: PowerState =
        serde_json::from_value(serde_json::json!({"failed": "timed out"})).unwrap();
    assert_eq!(other, PowerState::Failed("timed out".into()));
}

#[test]
fn a_state_saved_before_formats_had_a_version_still_loads() {
    let m = machine_with_an_absent_agent();
    // What the collector wrote before: the bare machine, no envelope.
    let old = serde_json::to_vec(&m).unwrap();
    assert!(!String::from_utf8_lossy(&old).contains("\"version\""));
    assert!(String::from_utf8_lossy(&old).contains(r#"{"failed":"agent not connected"}"#));
    let back = Machine::from_persisted(&old).expect("old format loads");
    assert_eq!(back, m);
    assert_eq!(back.phase, Phase::PoweringOff);
}

#[test]
fn the_current_format_carries_its_version_and_round_trips() {
    let m = machine_with_an_absent_agent();
    let bytes = m.to_persisted().unwrap();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(value["version"], PERSISTED_VERSION);
    assert_eq!(value["machine"], serde_json::to_value(&m).unwrap());
    assert_eq!(Machine::from_persisted(&bytes).unwrap(), m);
}

#[test]
fn an_unknown_version_is_refused_with_a_clear_error() {
    let m = machine_with_an_absent_agent();
    let newer = serde_json::to_vec(&serde_json::json!({"version": 2, "machine": m})).unwrap();
    let e = Machine::from_persisted(&newer).unwrap_err();
    assert!(
        matches!(e, RestoreError::UnknownVersion { found: 2 }),
        "{e:?}"
    );
    assert_eq!(
        e.describe(),
        "saved power state has format version 2, this collector reads up to 1; was the collector downgraded?"
    );
    let odd = br#"{"version": "two", "machine": {}}"#;
    assert!(matches!(
        Machine::from_persisted(odd),
        Err(RestoreError::BadVersion(v)) if v == r#""two""#
    ));
    let torn = Machine::from_persisted(b"{\"version\": 1, \"mach").unwrap_err();
    assert!(matches!(torn, RestoreError::NotJson(_)), "{torn:?}");
    assert!(
        torn.describe()
            .starts_with("saved power state is not valid JSON: ")
    );
    let wrong = Machine::from_persisted(br#"{"version": 1, "machine": {"phase": 3}}"#).unwrap_err();
    assert!(
        matches!(wrong, RestoreError::Invalid { version: 1, .. }),
        "{wrong:?}"
    );
}

#[test]
fn a_state_saved_before_this_round_still_loads_with_the_defaults() {
    let mut m = machine_with_an_absent_agent();
    m.ups_attempts = 0;
    let mut value = serde_json::to_value(&m).unwrap();
    let strip = |v: &mut serde_json::Value| {
        let o = v.as_object_mut().unwrap();
        for k in [
            "ups_attempts",
            "ups_retry_at_ms",
            "held",
            "event_outage_ms",
            "estimated_low",
            "comm_lost",
        ] {
            o.remove(k);
        }
        let settings = o["spec"]["settings"].as_object_mut().unwrap();
        for k in [
            "ups_command_attempts",
            "ups_command_retry_ms",
            "halt_time_ms",
            "estimated_confirmations",
            "comm_lost_window_ms",
            "uncordon_attempts",
        ] {
            settings.remove(k);
        }
        for (_, p) in o["nodes"].as_object_mut().unwrap() {
            let p = p.as_object_mut().unwrap();
            p.remove("ours_before");
            p.remove("uncordon_failures");
            p.remove("skipped");
        }
        for st in o["stages"].as_array_mut().unwrap() {
            st.as_object_mut().unwrap().remove("skipped");
        }
        let ups = o["ups"].as_object_mut().unwrap();
        ups.remove("charge_estimated");
        ups.remove("runtime_estimated");
    };
    strip(&mut value);
    // What the previous collector wrote: the version 1 envelope, none of
    // this round's fields.
    let old = serde_json::to_vec(&serde_json::json!({"version": 1, "machine": value})).unwrap();
    let back = Machine::from_persisted(&old).expect("the previous format loads");
    let s = &back.spec.settings;
    assert_eq!(
        (
            s.ups_command_attempts,
            s.ups_command_retry_ms,
            s.halt_time_ms,
            s.estimated_confirmations,
            s.comm_lost_window_ms,
            s.uncordon_attempts
        ),
        (3, 10 * S, 45 * S, 3, 10 * S, 10)
    );
    assert!(!back.held && back.ups_attempts == 0);
    assert!(back.nodes.values().all(|p| !p.ours_before && !p.skipped));
    let mut resumed = back.clone();
    resumed.resume(50 * S);
    assert_eq!(resumed.event_outage_ms, m.on_battery_since_ms);
    let mut again = serde_json::to_value(&back).unwrap();
    strip(&mut again);
    assert_eq!(again, value, "everything else reads back as it was");
}

#[test]
fn a_state_saved_before_outages_were_told_apart_does_not_restart_its_own_outage() {
    // Awaiting return, still on battery (the collector runs off the domain).
    let mut m = machine();
    m.spec.collector_node = None;
    full_sequence(&mut m);
    assert_eq!(m.phase, Phase::AwaitingReturn);
    assert!(m.on_battery_since_ms.is_some());
    let mut value = serde_json::to_value(&m).unwrap();
    value.as_object_mut().unwrap().remove("event_outage_ms");
    let old = serde_json::to_vec(&serde_json::json!({"version": 1, "machine": value})).unwrap();
    let mut back = Machine::from_persisted(&old).unwrap();
    back.resume(200 * S);
    let a = back.step(200 * S, Input::Tick);
    assert_eq!(started(&a), 0, "{a:?}");
    assert_eq!(back.phase, Phase::AwaitingReturn);
}
