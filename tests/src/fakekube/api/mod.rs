//! The HTTP surface: discovery, nodes, pods, eviction, PDBs, controllers,
//! answered the way kube-apiserver answers (Status bodies, Table output for
//! kubectl, resourceVersion checks, list paging), plus `/fake/*` control endpoints.

mod discovery;
mod health;
mod list;
mod table;
mod writes;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use self::discovery::discovery;
use self::list::{list, query_map};
use self::table::table;
use self::writes::{evict, patch_node, put_node};
use super::state::{LoggedRequest, Reachability, State};

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
    if let Some(denied) = health::forbidden(&st, r) {
        return denied;
    }
    let reply = route(&mut st, r, &q);
    as_table(reply, r, &q)
}

/// The resource a request names, read or written.
fn route(st: &mut State, r: &Req<'_>, q: &BTreeMap<String, String>) -> Reply {
    let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    match (r.method, parts.as_slice()) {
        ("GET", ["api", "v1", "nodes"]) => {
            let items = st.nodes.values().cloned().collect();
            list(st, "NodeList", "v1", items, q)
        }
        ("GET", ["api", "v1", "nodes", name]) => match st.nodes.get(*name) {
            Some(n) => ok(n.clone()),
            None => not_found("nodes", name),
        },
        ("PATCH", ["api", "v1", "nodes", name]) => patch_node(st, name, r),
        ("PATCH", ["api", "v1", "nodes", name, "status"]) => health::patch_status(st, name, r),
        ("GET", ["api", "v1", "nodes", name, "status"]) => match st.nodes.get(*name) {
            Some(n) => ok(n.clone()),
            None => not_found("nodes", name),
        },
        ("GET", ["api", "v1", "events"]) => {
            let items = st.events.values().cloned().collect();
            list(st, "EventList", "v1", items, q)
        }
        ("GET", ["api", "v1", "namespaces", ns, "events"]) => {
            let items = st
                .events
                .iter()
                .filter(|((n, _), _)| n == ns)
                .map(|(_, e)| e.clone())
                .collect();
            list(st, "EventList", "v1", items, q)
        }
        ("POST", ["api", "v1", "namespaces", ns, "events"]) => health::create_event(st, ns, r),
        ("PUT", ["api", "v1", "nodes", name]) => put_node(st, name, r),
        ("GET", ["api", "v1", "pods"]) => {
            let items = st.pods.values().map(|e| e.obj.clone()).collect();
            list(st, "PodList", "v1", items, q)
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods"]) => {
            let items = st
                .pods
                .iter()
                .filter(|((n, _), _)| n == ns)
                .map(|(_, e)| e.obj.clone())
                .collect();
            list(st, "PodList", "v1", items, q)
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => {
            match st.pods.get(&(ns.to_string(), name.to_string())) {
                Some(e) => ok(e.obj.clone()),
                None => not_found("pods", name),
            }
        }
        ("DELETE", ["api", "v1", "namespaces", ns, "pods", name]) => delete_pod(st, ns, name, r, q),
        ("POST", ["api", "v1", "namespaces", ns, "pods", name, "eviction"]) => {
            evict(st, ns, name, r)
        }
        ("GET", ["apis", "policy", "v1", "poddisruptionbudgets"]) => pdb_list(st, None, q),
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
        ) => pdb_list(st, Some(ns), q),
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
    }
}

/// The PDBs of one namespace, or of all, each with its status.
fn pdb_list(st: &State, ns: Option<&str>, q: &BTreeMap<String, String>) -> Reply {
    let keys: Vec<_> = st
        .pdbs
        .keys()
        .filter(|(n, _)| ns.is_none_or(|ns| n == ns))
        .cloned()
        .collect();
    let items = keys.iter().filter_map(|k| st.pdb_with_status(k)).collect();
    list(st, "PodDisruptionBudgetList", "policy/v1", items, q)
}

/// Deletes a pod, with the grace period from the query or the body.
fn delete_pod(
    st: &mut State,
    ns: &str,
    name: &str,
    r: &Req<'_>,
    q: &BTreeMap<String, String>,
) -> Reply {
    let key = (ns.to_string(), name.to_string());
    if !st.pods.contains_key(&key) {
        return not_found("pods", name);
    }
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

/// A successful GET of nodes or pods as the Table kubectl asks for.
fn as_table(reply: Reply, r: &Req<'_>, q: &BTreeMap<String, String>) -> Reply {
    if reply.code == 200 && r.method == "GET" && r.accept.contains("as=Table") {
        let kind = reply.body["kind"].as_str().unwrap_or("").to_string();
        let include = q
            .get("includeObject")
            .map(String::as_str)
            .unwrap_or("PartialObjectMetadata");
        match kind.as_str() {
            "NodeList" | "PodList" | "EventList" => {
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
