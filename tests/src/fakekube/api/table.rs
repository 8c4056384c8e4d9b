//! The server-side printing kubectl asks for (`as=Table`).

use std::time::SystemTime;

use serde_json::{Value, json};

use super::super::state::pod_ready;

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
pub(super) fn table(list: Value, kind: &str, include_object: &str) -> Value {
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let columns = columns(kind);
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let m = &o["metadata"];
            let age = human_age(m["creationTimestamp"].as_str().unwrap_or(""));
            let cells = match kind {
                "Node" => node_cells(o, &age),
                "Event" => event_cells(o),
                _ => pod_cells(o, &age),
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

/// The columns of `kubectl get events` (the server's core/v1 Event printer).
fn event_columns() -> Vec<Value> {
    vec![
        col("Last Seen", "string", 0, "Last time the event occurred"),
        col("Type", "string", 0, "Type of this event (Normal, Warning)"),
        col(
            "Reason",
            "string",
            0,
            "Short, machine understandable string that gives the reason for this event being generated.",
        ),
        col("Object", "string", 0, "The object this Event is about."),
        col(
            "Subobject",
            "string",
            1,
            "The field of the object this Event is about.",
        ),
        col("Source", "string", 1, "The component reporting this event."),
        col(
            "Message",
            "string",
            0,
            "A human-readable description of the status of this operation.",
        ),
        col(
            "First Seen",
            "string",
            1,
            "The first time the event was seen.",
        ),
        col(
            "Count",
            "string",
            1,
            "The number of times this event has occurred.",
        ),
        col(
            "Name",
            "string",
            1,
            "Name must be unique within a namespace.",
        ),
    ]
}

/// One `kubectl get events` row.
fn event_cells(o: &Value) -> Value {
    let io = &o["involvedObject"];
    let last = o["lastTimestamp"]
        .as_str()
        .or(o["eventTime"].as_str())
        .unwrap_or("");
    let first = o["firstTimestamp"].as_str().unwrap_or(last);
    let object = format!(
        "{}/{}",
        io["kind"].as_str().unwrap_or("").to_lowercase(),
        io["name"].as_str().unwrap_or("")
    );
    let source = match (
        o["source"]["component"].as_str(),
        o["source"]["host"].as_str(),
    ) {
        (Some(c), Some(h)) => format!("{c}, {h}"),
        (Some(c), None) => c.to_string(),
        _ => String::new(),
    };
    json!([
        human_age(last),
        o["type"],
        o["reason"],
        object,
        io["fieldPath"].as_str().unwrap_or(""),
        source,
        o["message"],
        human_age(first),
        o["count"].as_i64().unwrap_or(1).to_string(),
        o["metadata"]["name"],
    ])
}

/// The columns `kubectl get nodes`, `pods` or `events` shows.
fn columns(kind: &str) -> Vec<Value> {
    if kind == "Event" {
        return event_columns();
    }
    if kind == "Node" {
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
    }
}

/// One `kubectl get nodes` row: name, status, roles, age, version, IP.
fn node_cells(o: &Value, age: &str) -> Value {
    let m = &o["metadata"];
    let ready = o["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| {
            if c["status"] == "True" {
                "Ready"
            } else {
                "NotReady"
            }
        })
        .unwrap_or("Unknown");
    let mut st = ready.to_string();
    if o["spec"]["unschedulable"].as_bool().unwrap_or(false) {
        st.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = m["labels"]
        .as_object()
        .map(|l| {
            l.keys()
                .filter_map(|k| {
                    k.strip_prefix("node-role.kubernetes.io/")
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let ip = o["status"]["addresses"][0]["address"].clone();
    json!([
        m["name"],
        st,
        roles,
        age,
        o["status"]["nodeInfo"]["kubeletVersion"],
        ip
    ])
}

/// One `kubectl get pods` row: name, ready, status, restarts, age, node.
fn pod_cells(o: &Value, age: &str) -> Value {
    let m = &o["metadata"];
    let ready = if pod_ready(o) { "1/1" } else { "0/1" };
    let st = if m["deletionTimestamp"].is_string() {
        "Terminating".to_string()
    } else if o["spec"]["nodeName"].is_null() {
        "Pending".to_string()
    } else if !pod_ready(o) && o["status"]["phase"] == "Pending" {
        "ContainerCreating".to_string()
    } else {
        o["status"]["phase"]
            .as_str()
            .unwrap_or("Unknown")
            .to_string()
    };
    let node = o["spec"]["nodeName"].as_str().unwrap_or("<none>");
    json!([m["name"], ready, st, "0", age, node])
}
