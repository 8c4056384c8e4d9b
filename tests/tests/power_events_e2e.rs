//! The power sequence's steps as Kubernetes Events on the Node objects
//! (`kubectl get events --field-selector involvedObject.kind=Node` tells the
//! story): cordoned, drained, powered off, uncordoned; and never an
//! "uncordoned" for a node an admin had cordoned. The rig is in
//! `power_support`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::time::Duration;

use nodewarden_tests::eventually;
use serde_json::Value;

mod power_support;

use power_support::*;

/// Nodes with an event of `reason`, by `source.component: nodewarden`.
fn nodes_with(rig: &Rig, reason: &str) -> BTreeSet<String> {
    rig.fake.control("GET", "/fake/state")["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == reason && e["source"]["component"] == "nodewarden")
        .filter(|e| e["involvedObject"]["kind"] == "Node")
        .map(|e| e["involvedObject"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn set(nodes: &[&str]) -> BTreeSet<String> {
    nodes.iter().map(|n| n.to_string()).collect()
}

async fn wait_events(rig: &Rig, reason: &str, nodes: &[&str]) {
    eventually(
        Duration::from_secs(10),
        &format!("{reason} on {nodes:?}"),
        || async { (nodes_with(rig, reason) == set(nodes)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_leaves_cordoned_drained_and_powered_off_events() {
    let rig = Rig::start(Setup::default()).await;
    rig.full_outage().await;
    let all = ["s1", "s2", "s3", "w1", "w2"];
    wait_events(&rig, "CordonedByNodewarden", &all).await;
    wait_events(&rig, "PoweredOffByNodewarden", &all).await;
    let drained = nodes_with(&rig, "DrainedByNodewarden");
    assert!(
        drained.is_superset(&set(&["w1", "w2"])),
        "drained: {drained:?}"
    );
    let state = rig.fake.control("GET", "/fake/state");
    let events: &Vec<Value> = state["events"].as_array().unwrap();
    let w1_off = events
        .iter()
        .find(|e| e["reason"] == "PoweredOffByNodewarden" && e["involvedObject"]["name"] == "w1")
        .unwrap();
    assert_eq!(w1_off["type"], "Warning");
    assert!(
        w1_off["message"]
            .as_str()
            .unwrap()
            .starts_with("powered off by nodewarden"),
        "{w1_off}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_sequence_says_uncordoned_only_where_it_uncordoned() {
    // w2 was cordoned by an admin before the outage: it stays so, silently.
    let rig = Rig::start(Setup {
        admin_cordoned: &["w2"],
        web_min_available: 1,
        power: &[("drain_timeout", "\"20s\"")],
        ..Setup::default()
    })
    .await;
    rig.ups("rack").mains(false);
    wait_events(
        &rig,
        "CordonedByNodewarden",
        &["s1", "s2", "s3", "w1", "w2"],
    )
    .await;
    let w2 = rig.fake.control("GET", "/fake/state")["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "CordonedByNodewarden" && e["involvedObject"]["name"] == "w2")
        .cloned()
        .unwrap();
    assert!(
        w2["message"].as_str().unwrap().contains("already cordoned"),
        "{w2}"
    );
    rig.ups("rack").mains(true);
    rig.wait_phase("main", "on_mains", Duration::from_secs(20))
        .await;
    assert_uncordoned(&rig, &["s1", "s2", "s3", "w1"]);
    wait_events(&rig, "UncordonedByNodewarden", &["s1", "s2", "s3", "w1"]).await;
    assert!(nodes_with(&rig, "PoweredOffByNodewarden").is_empty());
}
