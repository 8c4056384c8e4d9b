//! The three patch types the API server accepts: JSON merge patch (RFC 7386),
//! strategic merge patch (the subset the core types need) and JSON patch (RFC 6902).

use serde_json::{Map, Value};

/// JSON merge patch: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The merge key of the lists the strategic merge patch merges element-wise
/// (from the `patchMergeKey` tags of the core types); other lists are replaced.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "taints" => Some("key"),
        "conditions" => Some("type"),
        "containers" | "initContainers" | "volumes" | "env" => Some("name"),
        "ownerReferences" => Some("uid"),
        "addresses" => Some("type"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

/// Strategic merge patch: like a merge patch, plus `$patch: replace|delete`
/// directives and element-wise merging of lists that have a merge key.
/// `$setElementOrder/...`, `$retainKeys` and `$deleteFromPrimitiveList/...`
/// are accepted and ignored (order is not significant to any client here).
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut p = p.clone();
            p.remove("$patch");
            *target = Value::Object(p);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) => return Err(format!("unknown patch type: {other}")),
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (merge_key(k), v) {
            (Some(key), Value::Array(items)) => {
                let existing = t.entry(k.clone()).or_insert(Value::Array(vec![]));
                if !existing.is_array() {
                    *existing = Value::Array(vec![]);
                }
                let Value::Array(list) = existing else {
                    continue;
                };
                for item in items {
                    let id = item.get(key).cloned();
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    let pos = id
                        .as_ref()
                        .and_then(|id| list.iter().position(|e| e.get(key) == Some(id)));
                    match (pos, delete) {
                        (Some(i), true) => {
                            list.remove(i);
                        }
                        (Some(i), false) => strategic_merge_patch(&mut list[i], item)?,
                        (None, true) => {}
                        (None, false) => {
                            let mut fresh = Value::Null;
                            strategic_merge_patch(&mut fresh, item)?;
                            list.push(fresh);
                        }
                    }
                }
            }
            _ => {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                strategic_merge_patch(slot, v)?;
                if slot.is_null() {
                    t.remove(k);
                }
            }
        }
    }
    Ok(())
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(Vec<String>, String), String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("invalid JSON pointer {path:?}"));
    };
    let mut parts: Vec<String> = rest.split('/').map(unescape).collect();
    let last = parts.pop().unwrap_or_default();
    Ok((parts, last))
}

fn walk<'a>(mut v: &'a mut Value, parts: &[String]) -> Result<&'a mut Value, String> {
    for p in parts {
        v = match v {
            Value::Object(m) => m
                .get_mut(p)
                .ok_or_else(|| format!("missing path element {p:?}"))?,
            Value::Array(a) => {
                let i: usize = p.parse().map_err(|_| format!("bad array index {p:?}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("array index {i} out of range"))?
            }
            _ => return Err(format!("cannot descend into {p:?}")),
        };
    }
    Ok(v)
}

/// JSON patch (RFC 6902): add, remove, replace, test, copy and move.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or("operation without op")?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("operation without path")?;
        match kind {
            "add" | "replace" => {
                let value = op.get("value").cloned().ok_or("operation without value")?;
                set(target, path, value, kind == "add")?;
            }
            "remove" => {
                remove(target, path)?;
            }
            "test" => {
                let (parts, last) = split_pointer(path)?;
                let parent = walk(target, &parts)?;
                let got = match parent {
                    Value::Object(m) => m.get(&last),
                    Value::Array(a) => last.parse::<usize>().ok().and_then(|i| a.get(i)),
                    _ => None,
                };
                if got != op.get("value") {
                    return Err(format!("test operation failed at {path}"));
                }
            }
            "copy" | "move" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or("operation without from")?;
                let value = if kind == "move" {
                    remove(target, from)?
                } else {
                    let (parts, last) = split_pointer(from)?;
                    walk(target, &parts)?
                        .get(&last)
                        .cloned()
                        .ok_or_else(|| format!("missing {from}"))?
                };
                set(target, path, value, true)?;
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

fn set(target: &mut Value, path: &str, value: Value, add: bool) -> Result<(), String> {
    let (parts, last) = split_pointer(path)?;
    match walk(target, &parts)? {
        Value::Object(m) => {
            if !add && !m.contains_key(&last) {
                return Err(format!("replace of missing {path}"));
            }
            m.insert(last, value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| format!("bad array index {last:?}"))?;
                if add && i <= a.len() {
                    a.insert(i, value);
                } else if !add && i < a.len() {
                    a[i] = value;
                } else {
                    return Err(format!("array index {i} out of range"));
                }
            }
        }
        _ => return Err(format!("cannot set {path}")),
    }
    Ok(())
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parts, last) = split_pointer(path)?;
    match walk(target, &parts)? {
        Value::Object(m) => m
            .remove(&last)
            .ok_or_else(|| format!("remove of missing {path}")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("bad array index {last:?}"))?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(format!("array index {i} out of range"))
            }
        }
        _ => Err(format!("cannot remove {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_taints_by_key_and_deletes_by_directive() {
        let mut node = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}});
        strategic_merge_patch(
            &mut node,
            &json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}),
        )
        .unwrap();
        assert_eq!(node["spec"]["taints"].as_array().unwrap().len(), 2);
        strategic_merge_patch(
            &mut node,
            &json!({"spec": {"taints": [{"key": "a", "$patch": "delete"}]}}),
        )
        .unwrap();
        assert_eq!(
            node["spec"]["taints"],
            json!([{"key": "b", "effect": "NoExecute"}])
        );
    }

    #[test]
    fn merge_patch_null_removes_annotation() {
        let mut o = json!({"metadata": {"annotations": {"a": "1", "b": "2"}}});
        merge_patch(&mut o, &json!({"metadata": {"annotations": {"a": null}}}));
        assert_eq!(o, json!({"metadata": {"annotations": {"b": "2"}}}));
    }

    #[test]
    fn json_patch_adds_and_tests() {
        let mut o = json!({"spec": {}});
        json_patch(
            &mut o,
            &json!([{"op": "add", "path": "/spec/unschedulable", "value": true}]),
        )
        .unwrap();
        assert!(
            json_patch(
                &mut o,
                &json!([{"op": "test", "path": "/spec/unschedulable", "value": false}])
            )
            .is_err()
        );
    }
}
