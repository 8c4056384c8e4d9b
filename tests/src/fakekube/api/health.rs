//! What nodewarden's node health needs of the API, as the real one answers:
//! the nodes/status subresource (only status is taken from the patch; the
//! conditions merge by type), core/v1 Events (create, list with
//! involvedObject field selectors), label value validation (422) and RBAC
//! denials configured in the scenario (403).

use serde_json::{Value, json};

use super::super::state::{State, rfc3339};
use super::writes::{apply_patch, conflict, store_node};
use super::{Reply, Req, not_found, status};

/// The (verb, resource) a request needs, as RBAC names them.
fn verb_resource(r: &Req<'_>) -> Option<(&'static str, String)> {
    let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    let (resource, named) = match parts.as_slice() {
        ["api", "v1", "nodes"] => ("nodes".to_string(), false),
        ["api", "v1", "nodes", _] => ("nodes".to_string(), true),
        ["api", "v1", "nodes", _, sub] => (format!("nodes/{sub}"), true),
        ["api", "v1", "events"] | ["api", "v1", "namespaces", _, "events"] => {
            ("events".to_string(), false)
        }
        ["api", "v1", "namespaces", _, "events", _] => ("events".to_string(), true),
        _ => return None,
    };
    let verb = match (r.method, named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("POST", _) => "create",
        ("DELETE", _) => "delete",
        _ => return None,
    };
    Some((verb, resource))
}

/// The 403 a denied request gets, worded as kube-apiserver words it.
pub(super) fn forbidden(st: &State, r: &Req<'_>) -> Option<Reply> {
    let (verb, resource) = verb_resource(r)?;
    if !st.deny.contains(&(verb.to_string(), resource.clone())) {
        return None;
    }
    let base = resource.split('/').next().unwrap_or("");
    let name = r.path.split('/').nth(4).unwrap_or("");
    let scope = if base == "events" {
        "in the namespace \"default\"".to_string()
    } else {
        "at the cluster scope".to_string()
    };
    Some(status(
        403,
        "Forbidden",
        format!(
            "{base} \"{name}\" is forbidden: User \"system:serviceaccount:nodewarden:nodewarden\" cannot {verb} resource \"{resource}\" in API group \"\" {scope}"
        ),
        Some(json!({"name": name, "kind": base})),
    ))
}

/// A label value the API accepts: at most 63 characters of `[A-Za-z0-9._-]`,
/// starting and ending alphanumeric (or empty).
fn valid_label_value(v: &str) -> Result<(), &'static str> {
    if v.len() > 63 {
        return Err("must be no more than 63 characters");
    }
    let alnum = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    let ok = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && alnum(v.chars().next())
        && alnum(v.chars().last());
    if ok {
        Ok(())
    } else {
        Err(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        )
    }
}

/// The 422 a node with an invalid label value gets.
pub(super) fn invalid_labels(name: &str, labels: &Value) -> Option<Reply> {
    let labels = labels.as_object()?;
    for v in labels.values() {
        let text = v.as_str().unwrap_or("");
        if let Err(why) = valid_label_value(text) {
            return Some(status(
                422,
                "Invalid",
                format!(
                    "Node \"{name}\" is invalid: metadata.labels: Invalid value: \"{text}\": {why}"
                ),
                Some(
                    json!({"name": name, "kind": "Node", "causes": [{"reason": "FieldValueInvalid",
                    "message": format!("Invalid value: \"{text}\": {why}"), "field": "metadata.labels"}]}),
                ),
            ));
        }
    }
    None
}

/// PATCH nodes/NAME/status: the patch is applied, then only its status is
/// kept (the status strategy resets spec and metadata to the stored ones).
pub(super) fn patch_status(st: &mut State, name: &str, r: &Req<'_>) -> Reply {
    let Some(old) = st.nodes.get(name).cloned() else {
        return not_found("nodes", name);
    };
    let patch: Value = serde_json::from_slice(r.body).unwrap_or(Value::Null);
    let sent = patch["metadata"]["resourceVersion"].clone();
    if sent.is_string() && sent != old["metadata"]["resourceVersion"] {
        return conflict("nodes", name);
    }
    let mut patched = old.clone();
    if let Err(e) = apply_patch(&mut patched, r) {
        return e;
    }
    let mut new = old.clone();
    new["status"] = patched["status"].take();
    store_node(st, name, &old, new)
}

/// POST namespaces/NS/events.
pub(super) fn create_event(st: &mut State, ns: &str, r: &Req<'_>) -> Reply {
    let mut e: Value = match serde_json::from_slice(r.body) {
        Ok(v) => v,
        Err(err) => {
            return status(
                400,
                "BadRequest",
                format!("error decoding Event: {err}"),
                None,
            );
        }
    };
    if e["kind"].as_str().is_some_and(|k| k != "Event") {
        return status(
            400,
            "BadRequest",
            "the object kind must be Event".into(),
            None,
        );
    }
    if let Some(n) = e["metadata"]["namespace"].as_str()
        && n != ns
    {
        return status(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
            None,
        );
    }
    let name = match (
        e["metadata"]["name"].as_str(),
        e["metadata"]["generateName"].as_str(),
    ) {
        (Some(n), _) if !n.is_empty() => n.to_string(),
        (_, Some(g)) => format!("{g}{:05x}", st.rv + 1),
        _ => {
            return status(
                422,
                "Invalid",
                "Event \"\" is invalid: metadata.name: Required value: name or generateName is required".into(),
                None,
            );
        }
    };
    if e["involvedObject"]["kind"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        return status(
            422,
            "Invalid",
            format!("Event \"{name}\" is invalid: involvedObject.kind: Required value"),
            None,
        );
    }
    let key = (ns.to_string(), name.clone());
    if st.events.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            format!("events \"{name}\" already exists"),
            Some(json!({"name": name, "kind": "events"})),
        );
    }
    let uid = st.new_uid_pub();
    let rv = st.next_rv();
    e["apiVersion"] = json!("v1");
    e["kind"] = json!("Event");
    e["metadata"]["name"] = json!(name);
    e["metadata"]["namespace"] = json!(ns);
    e["metadata"]["uid"] = json!(uid);
    e["metadata"]["resourceVersion"] = json!(rv);
    e["metadata"]["creationTimestamp"] = json!(rfc3339(std::time::SystemTime::now()));
    st.events.insert(key, e.clone());
    Reply { code: 201, body: e }
}
