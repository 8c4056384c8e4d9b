//! Query strings, field and label selectors, and list paging.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::super::state::State;
use super::{Reply, ok, status};

/// The query string's parameters, decoded.
pub(super) fn query_map(q: &str) -> BTreeMap<String, String> {
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
        "reason" | "type" | "reportingComponent" => obj.get(field),
        "source" => obj.get("source")?.get("component"),
        _ => obj
            .get("involvedObject")?
            .get(field.strip_prefix("involvedObject.")?),
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
                | "involvedObject.kind"
                | "involvedObject.name"
                | "involvedObject.namespace"
                | "involvedObject.uid"
                | "involvedObject.apiVersion"
                | "involvedObject.resourceVersion"
                | "involvedObject.fieldPath"
                | "reason"
                | "type"
                | "source"
                | "reportingComponent"
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
pub(super) fn list(
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
