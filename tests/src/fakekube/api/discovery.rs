//! Discovery: `/version`, `/api`, `/apis` and the resource lists.

use serde_json::{Value, json};

fn resource(name: &str, namespaced: bool, kind: &str, verbs: &[&str], short: &[&str]) -> Value {
    let singular = kind.to_lowercase();
    let mut r = json!({"name": name, "singularName": singular, "namespaced": namespaced, "kind": kind, "verbs": verbs});
    if !short.is_empty() {
        r["shortNames"] = json!(short);
    }
    r
}

/// The discovery document at `path`, if it is one.
pub(super) fn discovery(path: &str, addr: &str) -> Option<Value> {
    let read = ["get", "list"];
    let rw = ["create", "delete", "get", "list", "patch", "update"];
    Some(match path {
        "/version" => json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.5+k3s1", "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2025-10-01T00:00:00Z", "goVersion": "go1.24.6",
            "compiler": "gc", "platform": "linux/arm64", "emulationMajor": "1", "emulationMinor": "33",
            "minCompatibilityMajor": "1", "minCompatibilityMinor": "32",
        }),
        "/api" => json!({"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]}),
        "/apis" => {
            let g = |name: &str, v: &str| {
                json!({"name": name, "versions": [{"groupVersion": format!("{name}/{v}"), "version": v}],
                                               "preferredVersion": {"groupVersion": format!("{name}/{v}"), "version": v}})
            };
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [g("apps", "v1"), g("policy", "v1")]})
        }
        "/api/v1" => json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            resource("nodes", false, "Node", &rw, &["no"]),
            resource("pods", true, "Pod", &rw, &["po"]),
            {"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy", "version": "v1",
             "kind": "Eviction", "verbs": ["create"]},
            resource("namespaces", false, "Namespace", &read, &["ns"]),
            {"name": "nodes/status", "singularName": "", "namespaced": false, "kind": "Node",
             "verbs": ["get", "patch", "update"]},
            resource("events", true, "Event", &["create", "get", "list", "patch"], &["ev"]),
        ]}),
        "/apis/apps/v1" => {
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
                resource("daemonsets", true, "DaemonSet", &read, &["ds"]),
                resource("replicasets", true, "ReplicaSet", &read, &["rs"]),
                resource("statefulsets", true, "StatefulSet", &read, &["sts"]),
            ]})
        }
        "/apis/policy/v1" => {
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "policy/v1", "resources": [
                resource("poddisruptionbudgets", true, "PodDisruptionBudget", &read, &["pdb"]),
            ]})
        }
        _ => return None,
    })
}
