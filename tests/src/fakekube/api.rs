//! The HTTP surface: discovery, nodes, pods, eviction, PDBs, controllers,
//! answered the way kube-apiserver answers (Status bodies, Table output for
//! kubectl, resourceVersion checks, list paging), plus `/fake/*` control endpoints.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{Value, json};

use super::patch;
use super::state::{
    LoggedRequest, Reachability, State, labels_match, pod_ready, sync_unschedulable_taint,
};

/// A response: status code and JSON body.
pub(crate) struct Reply {
    pub code: u16,
    pub body: Value,
}

fn ok(body: Value) -> Reply {
    Reply { code: 200, body }
}

/// A metav1.Status failure body, the shape every API error has.
pub(crate) fn status(code: u16, reason: &str, message: String, details: Option<Value>) -> Reply {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    Reply { code, body }
}

fn not_found(resource: &str, name: &str) -> Reply {
    let (group, kind) = match resource.split_once('.') {
        Some((k, g)) => (g, k),
        None => ("", resource),
    };
    let mut d = json!({"name": name, "kind": kind});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    status(
        404,
        "NotFound",
        format!("{resource} \"{name}\" not found"),
        Some(d),
    )
}

fn query_map(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// field selectors on the fields the API supports for these kinds.
fn field_of<'a>(obj: &'a Value, field: &str) -> Option<&'a Value> {
    match field {
        "metadata.name" => obj.get("metadata")?.get("name"),
        "metadata.namespace" => obj.get("metadata")?.get("namespace"),
        "spec.nodeName" => obj.get("spec")?.get("nodeName"),
        "status.phase" => obj.get("status")?.get("phase"),
        "spec.unschedulable" => obj.get("spec")?.get("unschedulable"),
        _ => None,
    }
}

enum Sel {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
}

fn parse_selector(s: &str) -> Vec<Sel> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                Sel::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                Sel::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                Sel::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                Sel::NotExists(k.trim().into())
            } else {
                Sel::Exists(term.into())
            }
        })
        .collect()
}

fn as_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn field_matches(obj: &Value, sel: &[Sel]) -> Result<bool, String> {
    for s in sel {
        let (k, want, eq) = match s {
            Sel::Eq(k, v) => (k, v, true),
            Sel::Ne(k, v) => (k, v, false),
            _ => return Err("field selectors support only = and !=".into()),
        };
        if !matches!(
            k.as_str(),
            "metadata.name"
                | "metadata.namespace"
                | "spec.nodeName"
                | "status.phase"
                | "spec.unschedulable"
        ) {
            return Err(format!("field label not supported: {k}"));
        }
        if (as_text(field_of(obj, k)) == *want) != eq {
            return Ok(false);
        }
    }
    Ok(true)
}

fn label_matches(obj: &Value, sel: &[Sel]) -> bool {
    let labels = &obj["metadata"]["labels"];
    sel.iter().all(|s| match s {
        Sel::Eq(k, v) => labels.get(k).and_then(Value::as_str) == Some(v),
        Sel::Ne(k, v) => labels.get(k).and_then(Value::as_str) != Some(v),
        Sel::Exists(k) => labels.get(k).is_some(),
        Sel::NotExists(k) => labels.get(k).is_none(),
    })
}

/// Filters, pages (limit/continue) and wraps items as the API's List kinds do.
fn list(
    st: &State,
    kind: &str,
    api_version: &str,
    items: Vec<Value>,
    q: &BTreeMap<String, String>,
) -> Reply {
    let fsel = parse_selector(q.get("fieldSelector").map(String::as_str).unwrap_or(""));
    let lsel = parse_selector(q.get("labelSelector").map(String::as_str).unwrap_or(""));
    let mut filtered = vec![];
    for it in items {
        match field_matches(&it, &fsel) {
            Ok(true) if label_matches(&it, &lsel) => filtered.push(it),
            Ok(_) => {}
            Err(e) => return status(400, "BadRequest", e, None),
        }
    }
    // The continue token is opaque to clients; ours carries the list's
    // resourceVersion and the offset, like the real one encodes a key.
    let start = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(tok) => match tok
            .strip_prefix("fake:")
            .and_then(|t| t.split_once(':'))
            .and_then(|(_, off)| off.parse::<usize>().ok())
        {
            Some(off) => off,
            None => {
                return status(
                    400,
                    "BadRequest",
                    format!("continue key is not valid: {tok}"),
                    None,
                );
            }
        },
        None => 0,
    };
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let total = filtered.len();
    let end = limit.map(|l| (start + l).min(total)).unwrap_or(total);
    let page: Vec<Value> = filtered
        .into_iter()
        .skip(start)
        .take(end.saturating_sub(start))
        .collect();
    let mut meta = json!({"resourceVersion": st.rv.to_string()});
    if end < total {
        meta["continue"] = json!(format!("fake:{}:{end}", st.rv));
        meta["remainingItemCount"] = json!(total - end);
    }
    ok(json!({"kind": kind, "apiVersion": api_version, "metadata": meta, "items": page}))
}

fn human_age(since: &str) -> String {
    // Parse our own RFC 3339 output back to seconds.
    let secs = parse_rfc3339(since).map(|t| {
        SystemTime::now()
            .duration_since(t)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let Some(s) = secs else {
        return "<unknown>".into();
    };
    // k8s.io/apimachinery/pkg/util/duration.HumanDuration
    let (m, h) = (s / 60, s / 3600);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{}h", h / 24, h % 24)
        }
    } else {
        format!("{}d", h / 24)
    }
}

fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let n = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        n(0, 4)?,
        n(5, 7)?,
        n(8, 10)?,
        n(11, 13)?,
        n(14, 16)?,
        n(17, 19)?,
    );
    // days_from_civil
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).ok()?))
}

fn col(name: &str, ty: &str, priority: i64, description: &str) -> Value {
    json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" }, "description": description, "priority": priority})
}

/// kubectl asks for `as=Table`; the server prints the columns (what `kubectl get` shows).
fn table(list: Value, kind: &str, include_object: &str) -> Value {
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let columns = if kind == "Node" {
        vec![
            col(
                "Name",
                "string",
                0,
                "Name must be unique within a namespace.",
            ),
            col("Status", "string", 0, "The status of the node"),
            col("Roles", "string", 0, "The roles of the node"),
            col(
                "Age",
                "string",
                0,
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
            col(
                "Version",
                "string",
                0,
                "Kubelet Version reported by the node.",
            ),
            col(
                "Internal-IP",
                "string",
                1,
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
        ]
    } else {
        vec![
            col(
                "Name",
                "string",
                0,
                "Name must be unique within a namespace.",
            ),
            col(
                "Ready",
                "string",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            col(
                "Status",
                "string",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            col(
                "Restarts",
                "string",
                0,
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            col(
                "Age",
                "string",
                0,
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
            col(
                "Node",
                "string",
                1,
                "Name of the node this pod is scheduled on.",
            ),
        ]
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let m = &o["metadata"];
            let age = human_age(m["creationTimestamp"].as_str().unwrap_or(""));
            let cells = if kind == "Node" {
                let ready = o["status"]["conditions"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                    .map(|c| if c["status"] == "True" { "Ready" } else { "NotReady" })
                    .unwrap_or("Unknown");
                let mut st = ready.to_string();
                if o["spec"]["unschedulable"].as_bool().unwrap_or(false) {
                    st.push_str(",SchedulingDisabled");
                }
                let mut roles: Vec<String> = m["labels"]
                    .as_object()
                    .map(|l| {
                        l.keys()
                            .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/").map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                roles.sort();
                let roles = if roles.is_empty() { "<none>".to_string() } else { roles.join(",") };
                let ip = o["status"]["addresses"][0]["address"].clone();
                json!([m["name"], st, roles, age, o["status"]["nodeInfo"]["kubeletVersion"], ip])
            } else {
                let ready = if pod_ready(o) { "1/1" } else { "0/1" };
                let st = if m["deletionTimestamp"].is_string() {
                    "Terminating".to_string()
                } else if o["spec"]["nodeName"].is_null() {
                    "Pending".to_string()
                } else if !pod_ready(o) && o["status"]["phase"] == "Pending" {
                    "ContainerCreating".to_string()
                } else {
                    o["status"]["phase"].as_str().unwrap_or("Unknown").to_string()
                };
                let node = o["spec"]["nodeName"].as_str().unwrap_or("<none>");
                json!([m["name"], ready, st, "0", age, node])
            };
            let object = if include_object == "Object" {
                o.clone()
            } else {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": m})
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list["metadata"], "columnDefinitions": columns, "rows": rows})
}

fn resource(name: &str, namespaced: bool, kind: &str, verbs: &[&str], short: &[&str]) -> Value {
    let singular = kind.to_lowercase();
    let mut r = json!({"name": name, "singularName": singular, "namespaced": namespaced, "kind": kind, "verbs": verbs});
    if !short.is_empty() {
        r["shortNames"] = json!(short);
    }
    r
}

fn discovery(path: &str, addr: &str) -> Option<Value> {
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

/// The request as the handler sees it.
pub(crate) struct Req<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub content_type: &'a str,
    pub accept: &'a str,
    pub body: &'a [u8],
}

/// Answers one API request against the shared state.
pub(crate) fn handle(shared: &Arc<Mutex<State>>, addr: &str, r: &Req<'_>) -> Reply {
    let mut st = match shared.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    st.tick();
    let q = query_map(r.query);
    if let Some(d) = discovery(r.path, addr) {
        return if r.method == "GET" {
            ok(d)
        } else {
            status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource".into(),
                None,
            )
        };
    }
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return status(
            405,
            "MethodNotAllowed",
            "watch is not supported by the fake API server".into(),
            None,
        );
    }
    let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    let reply = match (r.method, parts.as_slice()) {
        ("GET", ["api", "v1", "nodes"]) => {
            let items = st.nodes.values().cloned().collect();
            list(&st, "NodeList", "v1", items, &q)
        }
        ("GET", ["api", "v1", "nodes", name]) => match st.nodes.get(*name) {
            Some(n) => ok(n.clone()),
            None => not_found("nodes", name),
        },
        ("PATCH", ["api", "v1", "nodes", name]) => patch_node(&mut st, name, r),
        ("PUT", ["api", "v1", "nodes", name]) => put_node(&mut st, name, r),
        ("GET", ["api", "v1", "pods"]) => {
            let items = st.pods.values().map(|e| e.obj.clone()).collect();
            list(&st, "PodList", "v1", items, &q)
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods"]) => {
            let items = st
                .pods
                .iter()
                .filter(|((n, _), _)| n == ns)
                .map(|(_, e)| e.obj.clone())
                .collect();
            list(&st, "PodList", "v1", items, &q)
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => {
            match st.pods.get(&(ns.to_string(), name.to_string())) {
                Some(e) => ok(e.obj.clone()),
                None => not_found("pods", name),
            }
        }
        ("DELETE", ["api", "v1", "namespaces", ns, "pods", name]) => {
            let key = (ns.to_string(), name.to_string());
            if !st.pods.contains_key(&key) {
                not_found("pods", name)
            } else {
                let body: Value = serde_json::from_slice(r.body).unwrap_or(Value::Null);
                let grace = q
                    .get("gracePeriodSeconds")
                    .and_then(|g| g.parse().ok())
                    .or_else(|| body["gracePeriodSeconds"].as_i64());
                st.begin_delete(&key, grace);
                st.tick();
                match st.pods.get(&key) {
                    Some(e) => ok(e.obj.clone()),
                    None => ok(
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                       "details": {"name": name, "kind": "pods"}}),
                    ),
                }
            }
        }
        ("POST", ["api", "v1", "namespaces", ns, "pods", name, "eviction"]) => {
            evict(&mut st, ns, name, r)
        }
        ("GET", ["apis", "policy", "v1", "poddisruptionbudgets"]) => {
            let keys: Vec<_> = st.pdbs.keys().cloned().collect();
            let items = keys.iter().filter_map(|k| st.pdb_with_status(k)).collect();
            list(&st, "PodDisruptionBudgetList", "policy/v1", items, &q)
        }
        (
            "GET",
            [
                "apis",
                "policy",
                "v1",
                "namespaces",
                ns,
                "poddisruptionbudgets",
            ],
        ) => {
            let keys: Vec<_> = st.pdbs.keys().filter(|(n, _)| n == ns).cloned().collect();
            let items = keys.iter().filter_map(|k| st.pdb_with_status(k)).collect();
            list(&st, "PodDisruptionBudgetList", "policy/v1", items, &q)
        }
        (
            "GET",
            [
                "apis",
                "policy",
                "v1",
                "namespaces",
                ns,
                "poddisruptionbudgets",
                name,
            ],
        ) => match st.pdb_with_status(&(ns.to_string(), name.to_string())) {
            Some(p) => ok(p),
            None => not_found("poddisruptionbudgets.policy", name),
        },
        ("GET", ["apis", "apps", "v1", "namespaces", ns, plural, name]) => {
            let kind = match *plural {
                "daemonsets" => "DaemonSet",
                "statefulsets" => "StatefulSet",
                "replicasets" => "ReplicaSet",
                _ => "",
            };
            match st
                .owners
                .get(&(kind.to_string(), ns.to_string(), name.to_string()))
            {
                Some(o) => ok(o.clone()),
                None => not_found(&format!("{plural}.apps"), name),
            }
        }
        ("GET", ["api", "v1", "namespaces", ns]) => {
            ok(json!({"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": ns}, "status": {"phase": "Active"}}))
        }
        _ => status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            Some(json!({})),
        ),
    };
    if reply.code == 200 && r.method == "GET" && r.accept.contains("as=Table") {
        let kind = reply.body["kind"].as_str().unwrap_or("").to_string();
        let include = q
            .get("includeObject")
            .map(String::as_str)
            .unwrap_or("PartialObjectMetadata");
        match kind.as_str() {
            "NodeList" | "PodList" => {
                return ok(table(reply.body, &kind[..kind.len() - 4], include));
            }
            "Node" | "Pod" => {
                let wrapped = json!({"metadata": {"resourceVersion": reply.body["metadata"]["resourceVersion"]}, "items": [reply.body]});
                return ok(table(wrapped, &kind, include));
            }
            _ => {}
        }
    }
    reply
}

fn apply_patch(target: &mut Value, r: &Req<'_>) -> Result<(), Reply> {
    let patch: Value = serde_json::from_slice(r.body).map_err(|e| {
        status(
            400,
            "BadRequest",
            format!("error decoding patch: {e}"),
            None,
        )
    })?;
    let ct = r.content_type.split(';').next().unwrap_or("").trim();
    let res = match ct {
        "application/strategic-merge-patch+json" => patch::strategic_merge_patch(target, &patch),
        "application/merge-patch+json" => {
            patch::merge_patch(target, &patch);
            Ok(())
        }
        "application/json-patch+json" => patch::json_patch(target, &patch),
        "application/apply-patch+yaml" => {
            return Err(status(
                415,
                "UnsupportedMediaType",
                "server-side apply is not supported by the fake".into(),
                None,
            ));
        }
        other => {
            return Err(status(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {other:?}"
                ),
                None,
            ));
        }
    };
    res.map_err(|e| status(422, "Invalid", e, None))
}

fn conflict(kind: &str, name: &str) -> Reply {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {kind} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
        Some(json!({"name": name, "kind": kind})),
    )
}

fn store_node(st: &mut State, name: &str, old: &Value, mut new: Value) -> Reply {
    let rv_sent = new["metadata"]["resourceVersion"].clone();
    if rv_sent.is_string() && rv_sent != old["metadata"]["resourceVersion"] {
        return conflict("nodes", name);
    }
    if new["metadata"]["name"] != json!(name) {
        return status(
            400,
            "BadRequest",
            "the name of the object does not match the name on the URL".into(),
            None,
        );
    }
    // Fields the server owns.
    new["metadata"]["uid"] = old["metadata"]["uid"].clone();
    new["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
    new["kind"] = json!("Node");
    new["apiVersion"] = json!("v1");
    if new["spec"]["unschedulable"] == json!(false)
        && let Some(s) = new["spec"].as_object_mut()
    {
        s.remove("unschedulable");
    }
    sync_unschedulable_taint(&mut new);
    if new != *old {
        new["metadata"]["resourceVersion"] = json!(st.next_rv());
    } else {
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    }
    st.nodes.insert(name.to_string(), new.clone());
    ok(new)
}

fn patch_node(st: &mut State, name: &str, r: &Req<'_>) -> Reply {
    let Some(old) = st.nodes.get(name).cloned() else {
        return not_found("nodes", name);
    };
    let mut new = old.clone();
    // A resourceVersion in the patch is a precondition, checked against the stored object.
    let patch: Value = serde_json::from_slice(r.body).unwrap_or(Value::Null);
    let sent = patch["metadata"]["resourceVersion"].clone();
    if sent.is_string() && sent != old["metadata"]["resourceVersion"] {
        return conflict("nodes", name);
    }
    if let Err(e) = apply_patch(&mut new, r) {
        return e;
    }
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    store_node(st, name, &old, new)
}

fn put_node(st: &mut State, name: &str, r: &Req<'_>) -> Reply {
    let Some(old) = st.nodes.get(name).cloned() else {
        return not_found("nodes", name);
    };
    match serde_json::from_slice::<Value>(r.body) {
        Ok(new) => store_node(st, name, &old, new),
        Err(e) => status(400, "BadRequest", format!("error decoding body: {e}"), None),
    }
}

fn evict(st: &mut State, ns: &str, name: &str, r: &Req<'_>) -> Reply {
    let key = (ns.to_string(), name.to_string());
    let body: Value = match serde_json::from_slice(r.body) {
        Ok(b) => b,
        Err(e) => {
            return status(
                400,
                "BadRequest",
                format!("error decoding Eviction: {e}"),
                None,
            );
        }
    };
    // Like the real decoder, a body without apiVersion/kind is taken as the
    // endpoint's own version (policy/v1 Eviction).
    let api = body["apiVersion"].as_str().unwrap_or("policy/v1");
    let kind = body["kind"].as_str().unwrap_or("Eviction");
    if kind != "Eviction" || !matches!(api, "policy/v1" | "policy/v1beta1") {
        return status(
            400,
            "BadRequest",
            format!(
                "Eviction in version \"{api}\" cannot be handled as a Eviction: the object kind must be Eviction in policy/v1 or policy/v1beta1"
            ),
            None,
        );
    }
    if let Some(n) = body["metadata"]["name"].as_str()
        && n != name
    {
        return status(
            400,
            "BadRequest",
            "name in URL does not match name in Eviction object".into(),
            None,
        );
    }
    if let Some(code) = st.fail_eviction.get(&key).copied() {
        return match code {
            404 => not_found("pods", name),
            429 => status(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.".into(),
                Some(json!({"retryAfterSeconds": 1})),
            ),
            500 => status(
                500,
                "InternalError",
                format!("Internal error occurred: injected failure evicting pod {ns}/{name}"),
                Some(json!({"causes": [{"message": "injected by the fake"}]})),
            ),
            c => status(
                c,
                "ServiceUnavailable",
                "the server is currently unable to handle the request".into(),
                None,
            ),
        };
    }
    let Some(entry) = st.pods.get(&key) else {
        return not_found("pods", name);
    };
    let grace = body["deleteOptions"]["gracePeriodSeconds"].as_i64();
    let success = Reply {
        code: 201,
        body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    };
    // Evicting a terminating pod, or one that is not running, needs no budget.
    let phase = entry.obj["status"]["phase"].as_str().unwrap_or("");
    if entry.obj["metadata"]["deletionTimestamp"].is_string()
        || matches!(phase, "Succeeded" | "Failed" | "Pending")
    {
        st.begin_delete(&key, grace);
        return success;
    }
    let labels = entry.obj["metadata"]["labels"].clone();
    let pdbs: Vec<(String, String)> = st
        .pdbs
        .iter()
        .filter(|((pns, _), p)| {
            pns == ns && labels_match(&labels, &p["spec"]["selector"]["matchLabels"])
        })
        .map(|(k, _)| k.clone())
        .collect();
    if pdbs.len() > 1 {
        return status(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(), None);
    }
    if let Some(k) = pdbs.first()
        && let Some(p) = st.pdb_with_status(k)
        && p["status"]["disruptionsAllowed"].as_i64().unwrap_or(0) <= 0
    {
        let msg = format!(
            "The disruption budget {} needs {} healthy pods and has {} currently",
            k.1, p["status"]["desiredHealthy"], p["status"]["currentHealthy"]
        );
        return status(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            Some(json!({"causes": [{"reason": "DisruptionBudget", "message": msg}]})),
        );
    }
    st.begin_delete(&key, grace);
    success
}

/// Appends a request to the log.
pub(crate) fn log(shared: &Arc<Mutex<State>>, r: &Req<'_>, user_agent: &str, code: u16) {
    let entry = LoggedRequest {
        method: r.method.into(),
        path: r.path.into(),
        query: r.query.into(),
        content_type: r.content_type.into(),
        accept: r.accept.into(),
        user_agent: user_agent.into(),
        body: String::from_utf8_lossy(r.body).into_owned(),
        status: code,
    };
    match shared.lock() {
        Ok(mut g) => g.log.push(entry),
        Err(p) => p.into_inner().log.push(entry),
    }
}

/// The reachability the API is in now.
pub(crate) fn reachability(shared: &Arc<Mutex<State>>) -> Reachability {
    match shared.lock() {
        Ok(g) => g.reachability,
        Err(p) => p.into_inner().reachability,
    }
}
