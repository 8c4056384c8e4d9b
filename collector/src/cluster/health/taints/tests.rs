use super::*;

fn rule(after_s: u64, hold_s: u64) -> TaintRule {
    TaintRule {
        condition: Kind::UnderVoltage,
        key: "nodewarden.io/under-voltage".into(),
        effect: Effect::PreferNoSchedule,
        after: Duration::from_secs(after_s),
        hold: Duration::from_secs(hold_s),
    }
}

fn obs(uv: &[(&str, bool)]) -> BTreeMap<String, BTreeMap<Kind, Status>> {
    uv.iter()
        .map(|(n, on)| {
            let s = if *on { Status::True } else { Status::False };
            (
                n.to_string(),
                [(Kind::UnderVoltage, s)].into_iter().collect(),
            )
        })
        .collect()
}

fn tainted(out: &BTreeMap<String, Wanted>) -> Vec<String> {
    out.iter()
        .filter(|(_, w)| !w.is_empty())
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn a_taint_comes_after_the_condition_held_and_goes_after_the_hold() {
    let rules = [rule(60, 600)];
    let mut t = Taints::default();
    let d = |t: &mut Taints, now, on| tainted(&t.decide(now, &rules, &obs(&[("pi", on)]), 4, 1.0));
    assert!(d(&mut t, 0, true).is_empty());
    assert!(d(&mut t, 59_000, true).is_empty());
    assert_eq!(d(&mut t, 60_000, true), ["pi"]);
    // Healthy, but not for the hold yet; a relapse restarts the hold.
    assert_eq!(d(&mut t, 100_000, false), ["pi"]);
    assert_eq!(d(&mut t, 500_000, true), ["pi"]);
    assert_eq!(d(&mut t, 510_000, false), ["pi"]);
    assert_eq!(d(&mut t, 1_109_000, false), ["pi"]);
    assert!(d(&mut t, 1_110_000, false).is_empty());
}

#[test]
fn never_more_than_the_fraction_of_nodes_the_longest_sufferer_first() {
    let rules = [rule(0, 60)];
    let mut t = Taints::default();
    t.decide(
        0,
        &rules,
        &obs(&[("b", true), ("a", false), ("c", false)]),
        3,
        0.34,
    );
    let out = t.decide(
        1_000,
        &rules,
        &obs(&[("b", true), ("a", true), ("c", true)]),
        3,
        0.34,
    );
    assert_eq!(tainted(&out), ["b"], "cap 1 of 3, b first");
    // b recovers past its hold: the next in line gets it.
    t.decide(
        2_000,
        &rules,
        &obs(&[("b", false), ("a", true), ("c", true)]),
        3,
        0.34,
    );
    let out = t.decide(
        62_000,
        &rules,
        &obs(&[("b", false), ("a", true), ("c", true)]),
        3,
        0.34,
    );
    assert_eq!(tainted(&out), ["a"]);
}

#[test]
fn a_node_gone_from_nodewarden_loses_its_taints() {
    let rules = [rule(0, 60)];
    let mut t = Taints::default();
    assert_eq!(
        tainted(&t.decide(0, &rules, &obs(&[("pi", true)]), 2, 1.0)),
        ["pi"]
    );
    assert!(tainted(&t.decide(1_000, &rules, &obs(&[]), 2, 1.0)).is_empty());
}

fn node(taints: Value, recorded: Option<&str>) -> Node {
    let mut n: Node = serde_json::from_value(json!({
        "metadata": {"name": "pi", "resourceVersion": "7"},
        "spec": {"taints": taints},
    }))
    .unwrap();
    if let Some(r) = recorded {
        n.metadata.annotations = Some([(ANNOTATION_TAINTS.to_string(), r.to_string())].into());
    }
    n
}

#[test]
fn the_patch_keeps_other_taints_and_removes_only_ours() {
    let want: Wanted = [(
        "nodewarden.io/under-voltage".to_string(),
        Effect::PreferNoSchedule,
    )]
    .into();
    let admin = json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"},
                       {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]);
    let p = taint_patch(&node(admin.clone(), None), &want).unwrap();
    assert_eq!(p["metadata"]["resourceVersion"], "7");
    assert_eq!(
        p["metadata"]["annotations"][ANNOTATION_TAINTS],
        "nodewarden.io/under-voltage"
    );
    let keys: Vec<&str> = p["spec"]["taints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "dedicated",
            "node.kubernetes.io/unschedulable",
            "nodewarden.io/under-voltage"
        ]
    );

    let mut with_ours = admin.as_array().unwrap().clone();
    with_ours.push(json!({"key": "nodewarden.io/under-voltage", "effect": "PreferNoSchedule"}));
    let n = node(Value::Array(with_ours), Some("nodewarden.io/under-voltage"));
    assert_eq!(taint_patch(&n, &want), None, "already there");
    let p = taint_patch(&n, &Wanted::new()).unwrap();
    assert_eq!(p["spec"]["taints"], admin, "only ours removed");
    assert!(p["metadata"]["annotations"][ANNOTATION_TAINTS].is_null());
}

#[test]
fn an_admins_taint_with_our_key_is_theirs() {
    let want: Wanted = [(
        "nodewarden.io/under-voltage".to_string(),
        Effect::PreferNoSchedule,
    )]
    .into();
    let theirs = json!([{"key": "nodewarden.io/under-voltage", "effect": "NoSchedule"}]);
    assert_eq!(taint_patch(&node(theirs.clone(), None), &want), None);
    assert!(
        owned(&node(theirs.clone(), None), &want).is_empty(),
        "not shown as ours"
    );
    assert_eq!(taint_patch(&node(theirs, None), &Wanted::new()), None);
}
