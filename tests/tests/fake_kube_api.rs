//! The fake API server's own contract, through kube-rs as a client: list
//! paging, field selectors, patch types, optimistic concurrency, eviction
//! Status bodies, PDB status, the simulated kubelet, and reachability.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Status;
use nodewarden_tests::fakekube::{FakeKube, Reachability};
use serde_json::json;

fn scenario(pods: usize) -> String {
    let pods: Vec<_> = (0..pods)
        .map(|i| json!({"name": format!("p{i:02}"), "node": if i % 2 == 0 { "a" } else { "b" },
                        "owner_kind": "ReplicaSet", "owner_name": "app-5d8f", "labels": {"app": "x"}, "grace_seconds": 2}))
        .collect();
    json!({"time_factor": 0.05, "pod_startup_seconds": 1,
           "nodes": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
           "pods": pods,
           "pdbs": [{"name": "x", "selector": {"app": "x"}, "max_unavailable": 1}]})
    .to_string()
}

async fn client(fake: &FakeKube) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(fake.kubeconfig()).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    cfg.default_retry = false;
    kube::Client::try_from(cfg).unwrap()
}

#[tokio::test]
async fn lists_page_with_limit_and_continue_and_filter_by_node() {
    let fake = FakeKube::start_json(&scenario(11)).await;
    let pods: Api<Pod> = Api::all(client(&fake).await);
    let mut lp = ListParams::default().fields("spec.nodeName=a").limit(2);
    let mut seen = vec![];
    let mut pages = 0;
    loop {
        let page = pods.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|p| p.metadata.name.clone().unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => {
                assert!(page.metadata.remaining_item_count.unwrap() > 0);
                lp = lp.continue_token(&c);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["p00", "p02", "p04", "p06", "p08", "p10"]);
    let err = pods
        .list(&ListParams::default().fields("spec.hostIP=1"))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 400));
}

#[tokio::test]
async fn patches_bump_resource_version_and_stale_versions_conflict() {
    let fake = FakeKube::start_json(&scenario(0)).await;
    let c = client(&fake).await;
    let nodes: Api<Node> = Api::all(c.clone());
    let before = nodes.get("a").await.unwrap();
    let rv0 = before.metadata.resource_version.clone().unwrap();
    let smp = json!({"metadata": {"labels": {"zone": "rack1"}}, "spec": {"unschedulable": true}});
    let after = nodes
        .patch("a", &PatchParams::default(), &Patch::Strategic(&smp))
        .await
        .unwrap();
    let rv1 = after.metadata.resource_version.clone().unwrap();
    assert_ne!(rv0, rv1);
    assert_eq!(after.metadata.labels.unwrap()["zone"], "rack1");
    assert_eq!(
        after.spec.unwrap().taints.unwrap()[0].key,
        "node.kubernetes.io/unschedulable"
    );
    let stale = json!({"metadata": {"resourceVersion": rv0, "annotations": {"k": "v"}}});
    let err = nodes
        .patch("a", &PatchParams::default(), &Patch::Merge(&stale))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{err}"
    );
    // JSON patch (kube's Patch::Json needs an extra crate; send it raw).
    let req = http::Request::patch("/api/v1/nodes/a")
        .header("content-type", "application/json-patch+json")
        .body(
            serde_json::to_vec(
                &json!([{"op": "add", "path": "/metadata/annotations/k", "value": "v"}]),
            )
            .unwrap(),
        )
        .unwrap();
    let n: Node = c.request(req).await.unwrap();
    // An unchanged object keeps its version.
    let same = nodes
        .patch("a", &PatchParams::default(), &Patch::Merge(&json!({})))
        .await
        .unwrap();
    assert_eq!(same.metadata.resource_version, n.metadata.resource_version);
}

#[tokio::test]
async fn eviction_answers_with_status_bodies_and_honours_the_budget() {
    let fake = FakeKube::start_json(&scenario(3)).await;
    let c = client(&fake).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pp = PostParams::default();
    let v1beta1 =
        json!({"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "p00"}});
    let ok: Status = pods
        .create_subresource("eviction", "p00", &pp, &v1beta1)
        .await
        .unwrap();
    assert_eq!(ok.code, 201);
    let pdbs: Api<PodDisruptionBudget> = Api::all(c.clone());
    let pdb = pdbs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    let st = pdb.status.unwrap();
    assert_eq!(
        (st.disruptions_allowed, st.current_healthy, st.expected_pods),
        (0, 2, 3)
    );
    let v1 = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p01"}});
    let err = pods
        .create_subresource::<_, Status>("eviction", "p01", &pp, &v1)
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("expected a Status")
    };
    assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(s.details.unwrap().causes[0].reason, "DisruptionBudget");
    let gone = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "nope"}});
    let err = pods
        .create_subresource::<_, Status>("eviction", "nope", &pp, &gone)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound" && s.message == "pods \"nope\" not found"),
        "{err}"
    );
    fake.fail_eviction("default", "p02", Some(500));
    let p2 = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p02"}});
    let err = pods
        .create_subresource::<_, Status>("eviction", "p02", &pp, &p2)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 500 && s.reason == "InternalError"),
        "{err}"
    );
}

#[tokio::test]
async fn the_kubelet_removes_pods_after_their_grace_and_replicasets_replace_them() {
    let fake = FakeKube::start_json(&scenario(2)).await;
    let pods: Api<Pod> = Api::namespaced(client(&fake).await, "default");
    let dp = DeleteParams {
        grace_period_seconds: Some(4),
        ..Default::default()
    };
    pods.delete("p00", &dp).await.unwrap();
    let p = pods.get("p00").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_some());
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(4));
    // The ReplicaSet already has a replacement, Pending on another node.
    let all = pods.list(&ListParams::default()).await.unwrap().items;
    let fresh: Vec<_> = all
        .iter()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("app-5d8f-"))
        })
        .collect();
    assert_eq!(fresh.len(), 1);
    assert_ne!(
        fresh[0].spec.as_ref().unwrap().node_name.as_deref(),
        Some("a")
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        pods.get_opt("p00").await.unwrap().is_none(),
        "4 s x 0.05 = 0.2 s grace"
    );
    fake.set_stuck("default", "p01", true);
    pods.delete("p01", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        pods.get_opt("p01").await.unwrap().is_some(),
        "a stuck pod never finishes terminating"
    );
}

#[tokio::test]
async fn a_pod_with_a_finalizer_stays_terminating_until_it_is_cleared() {
    let fake = FakeKube::start_json(
        &json!({"time_factor": 0.05, "nodes": [{"name": "a"}],
                "pods": [{"name": "held", "node": "a", "grace_seconds": 2,
                          "finalizers": ["example.com/hold"]}]})
        .to_string(),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client(&fake).await, "default");
    pods.delete("held", &DeleteParams::default()).await.unwrap();
    // 2 s x 0.05 = 0.1 s grace: the kubelet is long done.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let p = pods.get("held").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_some(), "{p:?}");
    assert_eq!(
        p.metadata.finalizers.as_deref(),
        Some(&["example.com/hold".to_string()][..])
    );
    assert_eq!(
        p.metadata.deletion_grace_period_seconds,
        Some(0),
        "the kubelet's final delete"
    );
    assert!(fake.clear_finalizers("default", "held"));
    assert!(
        pods.get_opt("held").await.unwrap().is_none(),
        "gone once its finalizers are cleared"
    );
}

#[tokio::test]
async fn an_unavailable_api_answers_503_and_control_still_works() {
    let fake = FakeKube::start_json(&scenario(0)).await;
    let nodes: Api<Node> = Api::all(client(&fake).await);
    fake.set_reachability(Reachability::Unavailable);
    let err = nodes.get("a").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 503),
        "{err}"
    );
    fake.set_reachability(Reachability::Hang);
    let hung = tokio::time::timeout(Duration::from_millis(500), nodes.get("a")).await;
    assert!(hung.is_err(), "a hung API never answers");
    fake.set_reachability(Reachability::Up);
    assert!(nodes.get("a").await.is_ok());
    let log = fake.requests();
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 0, 200]
    );
}
