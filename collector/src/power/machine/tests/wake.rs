//! Wake-on-LAN for nodes that do not come back with mains.

use super::*;

fn wakes(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Wake { node, .. } => Some(node.clone()),
            _ => None,
        })
        .collect()
}

/// w1 and w2 are x86 boards with Wake-on-LAN; the others are Pis.
fn machine_with_wol() -> Machine {
    let mut m = machine();
    let mut spec = m.spec.clone();
    spec.settings.wake_macs = [
        ("w1".to_string(), [0x52, 0x54, 0, 0, 0, 1]),
        ("w2".to_string(), [0x52, 0x54, 0, 0, 0, 2]),
    ]
    .into();
    m.set_spec(spec);
    m
}

#[test]
fn nodes_not_back_with_mains_stable_are_woken_a_few_times_then_left() {
    let mut m = machine_with_wol();
    full_sequence(&mut m);
    assert_eq!(m.phase, Phase::AwaitingReturn);
    let t = 1000 * S;
    m.step(t, Input::Ups(mains()));
    // w1 comes back by itself; w2 (and the Pis) do not.
    m.step(t + S, Input::AgentConnected("w1".into()));
    // Not before mains is stable: a flicker must not wake anything.
    assert!(wakes(&m.step(t + 59 * S, Input::Tick)).is_empty());
    let a = m.step(t + 60 * S, Input::Tick);
    assert_eq!(wakes(&a), ["w2"], "only the missing node with a MAC: {a:?}");
    assert!(
        m.timeline.iter().any(|e| e
            .text
            .contains("waking w2 (52:54:00:00:00:02) (Wake-on-LAN)")),
        "{:?}",
        m.timeline
    );
    assert_eq!(m.next_wake_ms, Some(t + 120 * S), "the next round is due");
    assert!(wakes(&m.step(t + 119 * S, Input::Tick)).is_empty());
    assert_eq!(wakes(&m.step(t + 120 * S, Input::Tick)), ["w2"]);
    assert_eq!(wakes(&m.step(t + 180 * S, Input::Tick)), ["w2"]);
    // Three rounds, then the node is left for a person (return_timeout).
    for k in 4..=9 {
        assert!(wakes(&m.step(t + k * 60 * S, Input::Tick)).is_empty());
    }
}

#[test]
fn a_node_that_comes_back_is_not_woken_again() {
    let mut m = machine_with_wol();
    full_sequence(&mut m);
    let t = 1000 * S;
    m.step(t, Input::Ups(mains()));
    assert_eq!(wakes(&m.step(t + 60 * S, Input::Tick)), ["w1", "w2"]);
    m.step(t + 70 * S, Input::AgentConnected("w1".into()));
    m.step(t + 70 * S, Input::AgentConnected("w2".into()));
    assert!(wakes(&m.step(t + 120 * S, Input::Tick)).is_empty());
}
