//! Writes: node patches and updates with resourceVersion checks, and
//! evictions with their PDB rules.

use serde_json::{Value, json};

use super::super::patch;
use super::super::state::{State, labels_match, sync_unschedulable_taint};
use super::{Reply, Req, not_found, ok, status};

pub(super) fn apply_patch(target: &mut Value, r: &Req<'_>) -> Result<(), Reply> {
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

pub(super) fn conflict(kind: &str, name: &str) -> Reply {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {kind} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
        Some(json!({"name": name, "kind": kind})),
    )
}

pub(super) fn store_node(st: &mut State, name: &str, old: &Value, mut new: Value) -> Reply {
    let rv_sent = new["metadata"]["resourceVersion"].clone();
    if rv_sent.is_string() && rv_sent != old["metadata"]["resourceVersion"] {
        return conflict("nodes", name);
    }
    if st.conflicts > 0 {
        st.conflicts -= 1;
        return conflict("nodes", name);
    }
    if let Some(e) = super::health::invalid_labels(name, &new["metadata"]["labels"]) {
        return e;
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

pub(super) fn patch_node(st: &mut State, name: &str, r: &Req<'_>) -> Reply {
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

pub(super) fn put_node(st: &mut State, name: &str, r: &Req<'_>) -> Reply {
    let Some(old) = st.nodes.get(name).cloned() else {
        return not_found("nodes", name);
    };
    match serde_json::from_slice::<Value>(r.body) {
        Ok(new) => store_node(st, name, &old, new),
        Err(e) => status(400, "BadRequest", format!("error decoding body: {e}"), None),
    }
}

pub(super) fn evict(st: &mut State, ns: &str, name: &str, r: &Req<'_>) -> Reply {
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
