//! The collector's cluster actions (nodewarden::cluster) against the fake
//! Kubernetes API server: cordon records, uncordon only ours, drain with
//! kubectl semantics, deadlines, failures and an unreachable API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use nodewarden::cluster::{
    ClusterError, KubeCluster, KubeSettings, NodeRole, SkipReason, UncordonOutcome,
};
use nodewarden_tests::fakekube::{FakeKube, Reachability};
use serde_json::Value;
use tokio::time::Instant;

/// Three nodes: a server, a worker, and a worker an admin had cordoned.
/// On w1: a StatefulSet pod covered by a PDB, a ReplicaSet pod, a
/// DaemonSet pod, a mirror pod and a bare pod.
const SCENARIO: &str = r#"{
  "time_factor": 0.05,
  "pod_startup_seconds": 2,
  "nodes": [
    {"name": "s1", "role": "server"},
    {"name": "w1"},
    {"name": "w2"},
    {"name": "w3", "unschedulable": true}
  ],
  "pods": [
    {"name": "web-0", "node": "w1", "owner_kind": "StatefulSet", "owner_name": "web", "labels": {"app": "web"}, "grace_seconds": 10},
    {"name": "web-1", "node": "w2", "owner_kind": "StatefulSet", "owner_name": "web", "labels": {"app": "web"}, "grace_seconds": 10},
    {"name": "cache-7f9c4-abcde", "node": "w1", "owner_kind": "ReplicaSet", "owner_name": "cache-7f9c4", "grace_seconds": 20, "empty_dir": true},
    {"namespace": "kube-system", "name": "svclb-traefik-w1", "node": "w1", "owner_kind": "DaemonSet", "owner_name": "svclb-traefik"},
    {"namespace": "kube-system", "name": "static-web-w1", "node": "w1", "mirror": true},
    {"name": "scratch", "node": "w1", "grace_seconds": 4}
  ],
  "pdbs": [{"name": "web", "selector": {"app": "web"}, "min_available": 2}]
}"#;

fn settings(fake: &FakeKube) -> KubeSettings {
    KubeSettings {
        kubeconfig: Some(fake.kubeconfig().to_path_buf()),
        request_timeout: Duration::from_secs(2),
        eviction_retry: Duration::from_millis(200),
        poll_interval: Duration::from_millis(50),
        ..KubeSettings::default()
    }
}

async fn start() -> (FakeKube, KubeCluster) {
    let fake = FakeKube::start_json(SCENARIO).await;
    let cluster = KubeCluster::connect(&settings(&fake))
        .await
        .expect("connect");
    (fake, cluster)
}

fn unschedulable(fake: &FakeKube, node: &str) -> bool {
    fake.node(node).unwrap()["spec"]["unschedulable"]
        .as_bool()
        .unwrap_or(false)
}

fn evictions(fake: &FakeKube, pod: &str) -> Vec<(u16, Value)> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(&format!("/pods/{pod}/eviction")))
        .map(|r| (r.status, serde_json::from_str(&r.body).unwrap()))
        .collect()
}

#[tokio::test]
async fn nodes_have_roles_readiness_and_cordon_state() {
    let (_fake, cluster) = start().await;
    let nodes = cluster.nodes().await.unwrap();
    let by = |n: &str| nodes.iter().find(|x| x.name == n).unwrap().clone();
    assert_eq!(nodes.len(), 4);
    assert_eq!(by("s1").role, NodeRole::Server);
    assert_eq!(by("w1").role, NodeRole::Worker);
    assert!(by("w1").ready);
    assert!(by("w3").unschedulable);
    assert!(!by("w1").unschedulable);
    assert!(by("w1").cordoned_by_us.is_none());
}

#[tokio::test]
async fn server_labels_are_configurable() {
    let fake = FakeKube::start_json(SCENARIO).await;
    let s = KubeSettings {
        server_labels: vec!["kubernetes.io/hostname".into()],
        ..settings(&fake)
    };
    let cluster = KubeCluster::connect(&s).await.unwrap();
    assert!(
        cluster
            .nodes()
            .await
            .unwrap()
            .iter()
            .all(|n| n.role == NodeRole::Server)
    );
}

#[tokio::test]
async fn cordon_records_on_the_node_and_a_second_call_keeps_the_first_record() {
    let (fake, cluster) = start().await;
    let rv_before = fake.node("w1").unwrap()["metadata"]["resourceVersion"].clone();
    let first = cluster.cordon("w1").await.unwrap();
    assert!(first.newly_recorded);
    assert!(!first.was_unschedulable);
    let node = fake.node("w1").unwrap();
    assert_eq!(node["spec"]["unschedulable"], true);
    assert_ne!(node["metadata"]["resourceVersion"], rv_before);
    assert_eq!(
        node["metadata"]["annotations"]["nodewarden.io/cordoned-at"],
        first.cordoned_at.as_str()
    );
    assert_eq!(
        node["metadata"]["annotations"]["nodewarden.io/was-unschedulable"],
        "false"
    );

    let second = cluster.cordon("w1").await.unwrap();
    assert!(!second.newly_recorded);
    assert_eq!(second.cordoned_at, first.cordoned_at);
    assert!(
        !second.was_unschedulable,
        "the second call must not record our own cordon as an admin's"
    );
    let listed = cluster
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.name == "w1")
        .unwrap();
    assert!(listed.unschedulable);
    assert_eq!(
        listed.cordoned_by_us.unwrap().cordoned_at,
        first.cordoned_at
    );

    assert_eq!(
        cluster.uncordon_ours("w1").await.unwrap(),
        UncordonOutcome::Uncordoned
    );
    let node = fake.node("w1").unwrap();
    assert!(!unschedulable(&fake, "w1"));
    assert!(
        node["metadata"]["annotations"]
            .get("nodewarden.io/cordoned-at")
            .is_none()
    );
    assert!(
        node["spec"].get("taints").is_none(),
        "the unschedulable taint must go with the cordon"
    );
}

#[tokio::test]
async fn a_node_the_admin_cordoned_stays_cordoned_after_uncordon_ours() {
    let (fake, cluster) = start().await;
    let rec = cluster.cordon("w3").await.unwrap();
    assert!(rec.was_unschedulable);
    assert_eq!(
        cluster.uncordon_ours("w3").await.unwrap(),
        UncordonOutcome::LeftCordoned
    );
    assert!(unschedulable(&fake, "w3"));
    assert!(
        fake.node("w3").unwrap()["metadata"]["annotations"]
            .get("nodewarden.io/cordoned-at")
            .is_none()
    );
    // No record left: a later recovery pass touches nothing.
    assert_eq!(
        cluster.uncordon_ours("w3").await.unwrap(),
        UncordonOutcome::NotOurs
    );
    assert!(unschedulable(&fake, "w3"));
    assert_eq!(
        cluster.uncordon_ours("gone").await.unwrap(),
        UncordonOutcome::NodeGone
    );
}

#[tokio::test]
async fn drain_waits_for_a_pdb_then_counts_the_recreated_statefulset_pod_as_done() {
    let (fake, cluster) = start().await;
    let old_uid = fake.pod("default", "web-0").unwrap()["metadata"]["uid"].clone();
    cluster.cordon("w1").await.unwrap();
    let drain = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            cluster
                .drain("w1", Instant::now() + Duration::from_secs(15))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let refused: Vec<_> = evictions(&fake, "web-0")
        .into_iter()
        .filter(|(code, _)| *code == 429)
        .collect();
    assert!(
        refused.len() >= 2,
        "the PDB should refuse and the drain retry: {refused:?}"
    );
    assert!(fake.pod("default", "web-0").is_some());
    fake.set_pdb_min_available("default", "web", 1);
    let report = drain.await.unwrap().unwrap();
    assert!(report.complete(), "{report:?}");
    let evicted: Vec<&str> = report.evicted.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(evicted, ["cache-7f9c4-abcde", "scratch", "web-0"]);
    let web0 = fake
        .pod("default", "web-0")
        .expect("the StatefulSet recreates web-0");
    assert_ne!(web0["metadata"]["uid"], old_uid);
    assert_ne!(web0["spec"]["nodeName"], "w1");
    assert!(report.elapsed >= Duration::from_millis(1200));
    let left: Vec<String> = fake
        .pods_on("w1")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["static-web-w1", "svclb-traefik-w1"]);
}

#[tokio::test]
async fn daemonset_and_mirror_pods_are_skipped_and_never_evicted() {
    let (fake, cluster) = start().await;
    fake.set_pdb_min_available("default", "web", 0);
    let report = cluster
        .drain("w1", Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    let skipped: Vec<(&str, SkipReason)> = report
        .skipped
        .iter()
        .map(|s| (s.pod.name.as_str(), s.reason))
        .collect();
    assert_eq!(skipped.len(), 2);
    assert!(skipped.contains(&("svclb-traefik-w1", SkipReason::DaemonSet)));
    assert!(skipped.contains(&("static-web-w1", SkipReason::Mirror)));
    assert!(evictions(&fake, "svclb-traefik-w1").is_empty());
    assert!(evictions(&fake, "static-web-w1").is_empty());
    assert!(fake.pod("kube-system", "svclb-traefik-w1").is_some());
    let list = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v1/pods")
        .unwrap();
    assert!(
        list.query.contains("fieldSelector=spec.nodeName%3Dw1"),
        "{}",
        list.query
    );
}

#[tokio::test]
async fn a_pod_stuck_terminating_is_reported_at_the_deadline() {
    let (fake, cluster) = start().await;
    fake.set_pdb_min_available("default", "web", 0);
    fake.set_stuck("default", "scratch", true);
    let t0 = Instant::now();
    let report = cluster
        .drain("w1", t0 + Duration::from_millis(2500))
        .await
        .unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2400) && took < Duration::from_millis(3500),
        "{took:?}"
    );
    assert_eq!(
        report
            .stuck
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["scratch"]
    );
    assert!(!report.complete());
    assert!(report.evicted.iter().any(|p| p.name == "web-0"));
    assert!(fake.pod("default", "scratch").unwrap()["metadata"]["deletionTimestamp"].is_string());
}

/// kubectl's `--skip-wait-for-delete-timeout`: a pod a finalizer holds past
/// its grace period and the bound is left behind and named, and the drain
/// ends then, long before its deadline.
#[tokio::test]
async fn a_pod_held_by_a_finalizer_is_left_behind_past_the_bound() {
    let fake = FakeKube::start_json(
        r#"{"time_factor": 0.05, "nodes": [{"name": "w1"}, {"name": "w2"}],
            "pods": [{"name": "held-0", "node": "w1", "grace_seconds": 1, "finalizers": ["example.com/hold"]},
                     {"name": "free", "node": "w1", "grace_seconds": 1}]}"#,
    )
    .await;
    let cluster = KubeCluster::connect(&KubeSettings {
        skip_wait_for_delete_timeout: Duration::from_millis(500),
        ..settings(&fake)
    })
    .await
    .expect("connect");
    let t0 = Instant::now();
    let report = cluster
        .drain("w1", t0 + Duration::from_secs(20))
        .await
        .unwrap();
    let took = t0.elapsed();
    // Its 1 s grace (counted unscaled, as the API states it) plus the bound.
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let names =
        |v: &[nodewarden::cluster::PodRef]| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&report.left_behind), ["held-0"], "{report:?}");
    assert_eq!(names(&report.evicted), ["free"], "{report:?}");
    assert!(report.stuck.is_empty(), "{report:?}");
    assert!(report.complete(), "nothing left to wait for: {report:?}");
    assert!(fake.pod("default", "held-0").unwrap()["metadata"]["deletionTimestamp"].is_string());
}

#[tokio::test]
async fn a_pdb_that_never_allows_is_reported_with_its_message_at_the_deadline() {
    let (_fake, cluster) = start().await;
    let report = cluster
        .drain("w1", Instant::now() + Duration::from_millis(1500))
        .await
        .unwrap();
    assert_eq!(report.blocked.len(), 1, "{report:?}");
    assert_eq!(report.blocked[0].pod.name, "web-0");
    assert!(
        report.blocked[0].message.contains("disruption budget web"),
        "{}",
        report.blocked[0].message
    );
}

#[tokio::test]
async fn eviction_404_means_the_pod_is_gone() {
    let (fake, cluster) = start().await;
    fake.set_pdb_min_available("default", "web", 0);
    fake.fail_eviction("default", "scratch", Some(404));
    let report = cluster
        .drain("w1", Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    assert!(report.complete(), "{report:?}");
    assert!(report.evicted.iter().any(|p| p.name == "scratch"));
    assert_eq!(
        evictions(&fake, "scratch").len(),
        1,
        "a 404 is final, not retried"
    );
}

#[tokio::test]
async fn eviction_500_is_retried_until_it_succeeds_or_reported_at_the_deadline() {
    let (fake, cluster) = start().await;
    fake.set_pdb_min_available("default", "web", 0);
    fake.fail_eviction("default", "scratch", Some(500));
    let drain = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            cluster
                .drain("w1", Instant::now() + Duration::from_secs(10))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    fake.fail_eviction("default", "scratch", None);
    let report = drain.await.unwrap().unwrap();
    assert!(report.complete(), "{report:?}");
    let codes: Vec<u16> = evictions(&fake, "scratch")
        .iter()
        .map(|(c, _)| *c)
        .collect();
    assert!(
        codes.len() >= 3 && codes[0] == 500 && *codes.last().unwrap() == 201,
        "{codes:?}"
    );

    fake.fail_eviction("default", "web-1", Some(500));
    fake.set_pdb_min_available("default", "web", 0);
    let report = cluster
        .drain("w2", Instant::now() + Duration::from_millis(800))
        .await
        .unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(
        report.failed[0].error.contains("500"),
        "{}",
        report.failed[0].error
    );
}

#[tokio::test]
async fn the_eviction_body_carries_the_grace_override_under_delete_options() {
    let fake = FakeKube::start_json(SCENARIO).await;
    let s = KubeSettings {
        eviction_grace_seconds: Some(3),
        ..settings(&fake)
    };
    let cluster = KubeCluster::connect(&s).await.unwrap();
    fake.set_pdb_min_available("default", "web", 0);
    let report = cluster
        .drain("w1", Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    assert!(report.complete(), "{report:?}");
    let (code, body) = evictions(&fake, "cache-7f9c4-abcde").remove(0);
    assert_eq!(code, 201);
    assert_eq!(body["apiVersion"], "policy/v1");
    assert_eq!(body["kind"], "Eviction");
    assert_eq!(body["metadata"]["name"], "cache-7f9c4-abcde");
    assert_eq!(body["deleteOptions"]["gracePeriodSeconds"], 3);
    assert!(body.get("delete_options").is_none());
    // The override took effect: 20 s grace shortened to 3 s (x0.05 in the fake).
    assert!(
        report.elapsed < Duration::from_millis(900),
        "{:?}",
        report.elapsed
    );

    // Why we build it ourselves: kube's own evict() puts the options where
    // the API server does not look.
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, EvictParams};
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(fake.kubeconfig()).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let api: Api<Pod> = Api::namespaced(client, "default");
    let ep = EvictParams {
        delete_options: Some(DeleteParams {
            grace_period_seconds: Some(3),
            ..Default::default()
        }),
        ..Default::default()
    };
    api.evict("web-1", &ep).await.unwrap();
    let (_, body) = evictions(&fake, "web-1").remove(0);
    assert!(
        body.get("deleteOptions").is_none() && body["delete_options"]["gracePeriodSeconds"] == 3,
        "{body}"
    );
}

#[tokio::test]
async fn drain_plan_lists_evictions_skips_and_blocking_budgets() {
    let (fake, cluster) = start().await;
    let plan = cluster.drain_plan("w1").await.unwrap();
    let names: Vec<(&str, i64, bool)> = plan
        .evict
        .iter()
        .map(|e| (e.pod.name.as_str(), e.grace_seconds, e.pdb_blocks))
        .collect();
    assert_eq!(
        names,
        [
            ("cache-7f9c4-abcde", 20, false),
            ("scratch", 4, false),
            ("web-0", 10, true)
        ]
    );
    assert_eq!(plan.skipped.len(), 2);
    assert_eq!(plan.blocking_pdbs.len(), 1);
    assert_eq!(plan.blocking_pdbs[0].name, "web");
    assert_eq!(plan.blocking_pdbs[0].disruptions_allowed, 0);
    assert_eq!(plan.blocking_pdbs[0].pods, ["web-0"]);
    assert_eq!(plan.longest_grace_seconds(), 20);
    assert!(
        evictions(&fake, "web-0").is_empty(),
        "a plan evicts nothing"
    );
    fake.set_pdb_min_available("default", "web", 1);
    assert!(
        cluster
            .drain_plan("w1")
            .await
            .unwrap()
            .blocking_pdbs
            .is_empty()
    );
}

#[tokio::test]
async fn an_unreachable_api_gives_a_bounded_error() {
    let (fake, cluster) = start().await;
    fake.set_reachability(Reachability::Hang);
    let t0 = std::time::Instant::now();
    let err = cluster.cordon("w1").await.unwrap_err();
    assert!(
        matches!(
            err,
            ClusterError::Timeout { .. } | ClusterError::Transport { .. }
        ),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let t0 = std::time::Instant::now();
    assert!(
        cluster
            .drain("w1", Instant::now() + Duration::from_secs(30))
            .await
            .is_err()
    );
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    assert!(cluster.uncordon_ours("w1").await.is_err());

    fake.set_reachability(Reachability::Unavailable);
    let err = cluster.nodes().await.unwrap_err();
    assert_eq!(err.code(), Some(503), "{err}");

    // Nothing listening at all.
    let port = nodewarden_tests::free_port();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kc.yaml");
    std::fs::write(
        &kc,
        nodewarden_tests::fakekube::kubeconfig_text(&format!("http://127.0.0.1:{port}")),
    )
    .unwrap();
    let cluster = KubeCluster::connect(&KubeSettings {
        kubeconfig: Some(kc),
        ..settings(&fake)
    })
    .await
    .unwrap();
    let t0 = std::time::Instant::now();
    let err = cluster.cordon("w1").await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(4));
    assert!(
        err.to_string().contains("cordon") || err.to_string().contains("get node"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_kubeconfig_is_a_clear_error() {
    let s = KubeSettings {
        kubeconfig: Some("/nonexistent/k3s.yaml".into()),
        ..KubeSettings::default()
    };
    let err = KubeCluster::connect(&s).await.unwrap_err().to_string();
    assert!(
        err.contains("/nonexistent/k3s.yaml") && err.contains("--kubeconfig"),
        "{err}"
    );
}

#[tokio::test]
async fn a_malformed_kubeconfig_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("k3s.yaml");
    std::fs::write(&kc, "clusters: [this is: not a kubeconfig").unwrap();
    let s = KubeSettings {
        kubeconfig: Some(kc.clone()),
        ..KubeSettings::default()
    };
    let err = KubeCluster::connect(&s).await.unwrap_err().to_string();
    assert!(
        err.contains(&kc.display().to_string()) && err.contains("--kubeconfig"),
        "{err}"
    );
}
