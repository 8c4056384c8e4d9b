//! Optional taints with hysteresis (`[[node_health.taint]]`, none by
//! default): a condition True for `after` taints the node, healthy for
//! `hold` removes the taint, and never more than `max_tainted_fraction` of
//! the nodes carry one at once (a hot afternoon must not leave the cluster
//! unschedulable). Pure: observed statuses and a clock in, the taints each
//! node should carry out. Only taints nodewarden added (recorded in the
//! annotation `nodewarden.io/taints`) are ever changed or removed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Taint};
use nodewarden_common::units::serde_duration;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::conditions::{Kind, Status};

/// The annotation listing the taint keys nodewarden added (comma-separated).
pub const ANNOTATION_TAINTS: &str = "nodewarden.io/taints";

/// A taint's effect (`NoExecute` would evict: not nodewarden's call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum Effect {
    /// The scheduler avoids the node when it can.
    PreferNoSchedule,
    /// No new pods without a toleration.
    NoSchedule,
}

impl Effect {
    /// As the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::PreferNoSchedule => "PreferNoSchedule",
            Effect::NoSchedule => "NoSchedule",
        }
    }
}

/// One `[[node_health.taint]]` rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaintRule {
    /// The condition that raises it: `UnderVoltage`, `ThermalThrottling`,
    /// `HighTemperature`, `NodewardenAgentDown` or `OnBattery`.
    pub condition: Kind,
    /// The taint key, e.g. `nodewarden.io/under-voltage`.
    pub key: String,
    /// `PreferNoSchedule` (default) or `NoSchedule`.
    #[serde(default = "prefer")]
    pub effect: Effect,
    /// The condition must hold this long first.
    #[serde(with = "serde_duration", default)]
    pub after: Duration,
    /// The node must be healthy this long before the taint goes.
    #[serde(with = "serde_duration", default = "ten_minutes")]
    pub hold: Duration,
}

fn prefer() -> Effect {
    Effect::PreferNoSchedule
}

fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}

/// One rule on one node.
#[derive(Debug, Clone, Default, PartialEq)]
struct Track {
    true_since: Option<i64>,
    clear_since: Option<i64>,
    tainted: bool,
}

/// The taint state of every node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Taints {
    tracks: BTreeMap<(String, usize), Track>,
}

/// (key, effect) pairs a node should carry.
pub type Wanted = BTreeSet<(String, Effect)>;

impl Taints {
    /// Decides every node's taints. `observed`: each node's condition
    /// statuses now (nodes absent lose their taints); `total`: the nodes in
    /// the cluster, for the cap.
    pub fn decide(
        &mut self,
        now: i64,
        rules: &[TaintRule],
        observed: &BTreeMap<String, BTreeMap<Kind, Status>>,
        total: usize,
        max_fraction: f64,
    ) -> BTreeMap<String, Wanted> {
        self.tracks
            .retain(|(n, i), _| observed.contains_key(n) && *i < rules.len());
        let ms = |d: Duration| d.as_millis() as i64;
        // (true_since, node, rule) of those that want a new taint.
        let mut candidates = Vec::new();
        for (node, statuses) in observed {
            for (i, rule) in rules.iter().enumerate() {
                let t = self.tracks.entry((node.clone(), i)).or_default();
                if statuses.get(&rule.condition) == Some(&Status::True) {
                    t.clear_since = None;
                    let since = *t.true_since.get_or_insert(now);
                    if !t.tainted && now - since >= ms(rule.after) {
                        candidates.push((since, node.clone(), i));
                    }
                } else {
                    t.true_since = None;
                    let clear = *t.clear_since.get_or_insert(now);
                    if t.tainted && now - clear >= ms(rule.hold) {
                        t.tainted = false;
                    }
                }
            }
        }
        let mut tainted: BTreeSet<String> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.tainted)
            .map(|((n, _), _)| n.clone())
            .collect();
        let cap = (max_fraction.clamp(0.0, 1.0) * total as f64).floor() as usize;
        candidates.sort();
        for (_, node, i) in candidates {
            if tainted.contains(&node) || tainted.len() < cap {
                tainted.insert(node.clone());
                if let Some(t) = self.tracks.get_mut(&(node, i)) {
                    t.tainted = true;
                }
            }
        }
        let mut out: BTreeMap<String, Wanted> = observed
            .keys()
            .map(|n| (n.clone(), Wanted::new()))
            .collect();
        for ((node, i), t) in &self.tracks {
            if t.tainted {
                out.entry(node.clone())
                    .or_default()
                    .insert((rules[*i].key.clone(), rules[*i].effect));
            }
        }
        out
    }
}

/// A node's taints and the keys nodewarden recorded as its own.
fn split(node: &Node) -> (Vec<Taint>, BTreeSet<String>) {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let recorded: BTreeSet<String> = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_TAINTS))
        .map(|v| {
            v.split(',')
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    (current, recorded)
}

/// The taints of `want` nodewarden may own on `node` ("key:Effect"): a key
/// someone else already uses is theirs.
pub fn owned(node: &Node, want: &Wanted) -> Vec<String> {
    let (current, recorded) = split(node);
    want.iter()
        .filter(|(k, _)| !current.iter().any(|t| &t.key == k && !recorded.contains(k)))
        .map(|(k, e)| format!("{k}:{}", e.as_str()))
        .collect()
}

/// The patch that brings `node`'s taints to `want`, touching only the ones
/// nodewarden recorded as its own; None when they already match. Carries
/// the node's resourceVersion, so a concurrent change (an admin's `kubectl
/// taint`, the power sequence's cordon) is a 409, not a lost update.
pub fn taint_patch(node: &Node, want: &Wanted) -> Option<Value> {
    let (current, recorded) = split(node);
    let theirs: Vec<&Taint> = current
        .iter()
        .filter(|t| !recorded.contains(&t.key))
        .collect();
    // A key someone else already uses is theirs: leave it, add nothing.
    let ours: Vec<&(String, Effect)> = want
        .iter()
        .filter(|(k, _)| !theirs.iter().any(|t| &t.key == k))
        .collect();
    let mut list: Vec<Value> = theirs.iter().map(|t| json!(t)).collect();
    list.extend(
        ours.iter()
            .map(|(k, e)| json!({"key": k, "effect": e.as_str()})),
    );
    let keys: Vec<&str> = ours.iter().map(|(k, _)| k.as_str()).collect();
    let same = current.len() == list.len()
        && ours.iter().all(|(k, e)| {
            current
                .iter()
                .any(|t| &t.key == k && t.effect == e.as_str() && recorded.contains(k))
        })
        && recorded.len() == keys.len();
    if same {
        return None;
    }
    let annotation = (!keys.is_empty()).then(|| keys.join(","));
    Some(json!({
        "metadata": {
            "resourceVersion": node.metadata.resource_version,
            "annotations": {ANNOTATION_TAINTS: annotation},
        },
        "spec": {"taints": if list.is_empty() { Value::Null } else { Value::Array(list) }},
    }))
}

#[cfg(test)]
mod tests;
