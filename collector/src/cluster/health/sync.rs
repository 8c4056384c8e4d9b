//! The health loop: every `check_interval`, reads the hub and the API's
//! node list, asks the pure rules what each node should carry, and writes
//! only what differs. The state is desired state, so an API that was down
//! is caught up on its return and nothing queues.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use nodewarden_common::clock::now_ms;
use tokio::sync::watch;

use super::conditions::{Condition, Kind, NodeConditions, Status, WritePolicy};
use super::events::NodeEvent;
use super::labels::{self, OUR_LABELS};
use super::rules::observe;
use super::taints::Taints;
use super::{HealthSettings, HealthView, NodeHealth};
use crate::cluster::KubeCluster;
use crate::pki::Authority;
use crate::state::hub::Hub;

/// What the loop works from.
pub struct HealthLoop {
    /// The API.
    pub cluster: KubeCluster,
    /// Live node state.
    pub hub: Arc<Hub>,
    /// Tells which nodes were removed from nodewarden (no live certificate).
    pub authority: Arc<Authority>,
    /// `[node_health]`.
    pub settings: HealthSettings,
    /// `[[power.domain]]`.
    pub domains: Vec<super::labels::PowerDomain>,
    /// Shared with the admin API, for `nodewarden nodes`.
    pub view: HealthView,
}

/// Logs a failure once until it changes or the call works again: an API
/// that is down, or a verb RBAC refuses, is one line, not one per check.
#[derive(Default)]
struct Complaints(BTreeMap<String, String>);

impl Complaints {
    fn failed(&mut self, key: &str, text: String) {
        if self.0.get(key) != Some(&text) {
            tracing::warn!("{text}");
            self.0.insert(key.to_string(), text);
        }
    }
    fn worked(&mut self, key: &str) {
        if self.0.remove(key).is_some() {
            tracing::info!("{key}: works again");
        }
    }
}

struct Run {
    l: HealthLoop,
    nodes: BTreeMap<String, NodeConditions>,
    taints: Taints,
    complaints: Complaints,
    unknown: BTreeSet<String>,
}

/// Runs the loop until `shutdown`.
pub fn spawn(l: HealthLoop, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(l.settings.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut run = Run {
            l,
            nodes: BTreeMap::new(),
            taints: Taints::default(),
            complaints: Complaints::default(),
            unknown: BTreeSet::new(),
        };
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            run.check(now_ms()).await;
        }
    })
}

/// The node's Ready condition is True.
fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// nodewarden's conditions as the node carries them.
fn ours(n: &Node) -> Vec<Condition> {
    let ms = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref().map_or(0, |t| t.0.as_millisecond())
    };
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some(Condition {
                kind: Kind::parse(&c.type_)?,
                status: Status::parse(&c.status),
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
                transition_ms: ms(&c.last_transition_time),
                heartbeat_ms: ms(&c.last_heartbeat_time),
            })
        })
        .collect()
}

/// The label changes that bring `n` to `want` (ours only; None removes).
fn label_diff(n: &Node, want: &BTreeMap<&'static str, String>) -> BTreeMap<String, Option<String>> {
    let have = n.metadata.labels.clone().unwrap_or_default();
    OUR_LABELS
        .iter()
        .filter(|k| have.get(**k) != want.get(**k))
        .map(|k| (k.to_string(), want.get(k).cloned()))
        .collect()
}

impl Run {
    fn policy(&self) -> WritePolicy {
        WritePolicy {
            heartbeat_ms: self.l.settings.heartbeat.as_millis() as i64,
            min_write_interval_ms: self.l.settings.min_write_interval.as_millis() as i64,
        }
    }

    async fn check(&mut self, now: i64) {
        let infos = self.l.hub.node_infos();
        let domains = labels::domains(&self.l.domains, &infos, &self.l.hub.ups_live());
        let kube = match self.l.cluster.node_objects().await {
            Ok(k) => {
                self.complaints.worked("list nodes");
                k
            }
            Err(e) => {
                self.complaints.failed(
                    "list nodes",
                    format!(
                        "node health: cannot list nodes, will catch up when the API answers: {e}"
                    ),
                );
                return;
            }
        };
        let by_name: BTreeMap<String, &Node> = kube
            .iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, n)))
            .collect();
        let mut view = BTreeMap::new();
        for info in &infos {
            let name = &info.name;
            let Some(node) = by_name.get(name) else {
                if self.unknown.insert(name.clone()) {
                    tracing::warn!(node = %name, "node health: Kubernetes has no node of this name (is the agent's node_name the k3s node name?); skipped until it appears");
                }
                continue;
            };
            self.unknown.remove(name);
            if self.l.authority.live_cert(name).is_none() {
                // Removed from nodewarden: take back what we set.
                self.nodes.remove(name);
                self.sync_labels(name, node, &BTreeMap::new()).await;
                self.forget_conditions(name, node).await;
                continue;
            }
            let dom = domains.get(name).cloned();
            let mut health = NodeHealth {
                conditions: self.sync_conditions(now, info, node, dom.clone()).await,
                ..NodeHealth::default()
            };
            if self.l.settings.labels {
                let want = labels::desired(info, dom.as_ref().map(|d| d.0.as_str()));
                if self.sync_labels(name, node, &want).await {
                    health.labels = want.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                }
            }
            view.insert(name.clone(), health);
        }
        // Also with no rules: taints of rules since removed are taken back.
        for (name, taints) in self.sync_taints(now, &by_name).await {
            if let Some(h) = view.get_mut(&name) {
                h.taints = taints;
            }
        }
        if let Ok(mut v) = self.l.view.lock() {
            *v = view;
        }
    }

    /// Observes, writes the conditions when due, posts their transitions.
    async fn sync_conditions(
        &mut self,
        now: i64,
        info: &nodewarden_proto::v1::NodeInfo,
        node: &Node,
        dom: Option<(String, bool)>,
    ) -> Vec<Condition> {
        let policy = self.policy();
        let name = &info.name;
        let entry = self.nodes.entry(name.clone()).or_default();
        entry.seed(ours(node));
        entry.observe(now, &observe(info, dom), ready(node));
        let due = entry
            .due(now, policy)
            .filter(|_| self.l.settings.conditions);
        let Some(due) = due else {
            return entry.current();
        };
        let key = format!("conditions of {name}");
        match self.l.cluster.patch_conditions(name, &due).await {
            Ok(()) => {
                self.complaints.worked(&key);
                let changed = entry.written(now, due);
                let current = entry.current();
                if self.l.settings.events {
                    for (before, c) in changed {
                        self.post(&NodeEvent::transition(name, before, &c)).await;
                    }
                }
                current
            }
            Err(e) => {
                self.complaints
                    .failed(&key, format!("node health: node {name}: {e}"));
                entry.current()
            }
        }
    }

    /// Decides the taints from the conditions observed (nodes removed from
    /// nodewarden have none) and writes the nodes that differ; returns the
    /// taints now on each node ("key:Effect"), for `nodewarden nodes`.
    async fn sync_taints(
        &mut self,
        now: i64,
        by_name: &BTreeMap<String, &Node>,
    ) -> BTreeMap<String, Vec<String>> {
        let observed: BTreeMap<String, BTreeMap<Kind, Status>> = self
            .nodes
            .iter()
            .filter(|(n, _)| by_name.contains_key(*n))
            .map(|(n, c)| (n.clone(), c.observed()))
            .collect();
        let s = &self.l.settings;
        let want = self.taints.decide(
            now,
            &s.taints,
            &observed,
            by_name.len(),
            s.max_tainted_fraction,
        );
        let mut out = BTreeMap::new();
        for (name, node) in by_name {
            let mine = want.get(name).cloned().unwrap_or_default();
            let shown = super::taints::owned(node, &mine);
            if super::taints::taint_patch(node, &mine).is_none() {
                out.insert(name.clone(), shown);
                continue;
            }
            let key = format!("taints of {name}");
            match self.l.cluster.patch_taints(name, &mine).await {
                Ok(_) => {
                    self.complaints.worked(&key);
                    out.insert(name.clone(), shown);
                }
                Err(e) => self
                    .complaints
                    .failed(&key, format!("node health: node {name}: {e}")),
            }
        }
        out
    }

    /// Removes our conditions from a node nodewarden no longer watches.
    async fn forget_conditions(&mut self, name: &str, node: &Node) {
        let kinds: Vec<Kind> = ours(node).iter().map(|c| c.kind).collect();
        if kinds.is_empty() {
            return;
        }
        let key = format!("conditions of {name}");
        match self.l.cluster.remove_conditions(name, &kinds).await {
            Ok(()) => self.complaints.worked(&key),
            Err(e) => self
                .complaints
                .failed(&key, format!("node health: node {name}: {e}")),
        }
    }

    /// Brings our labels on `node` to `want`; true when they are there.
    async fn sync_labels(
        &mut self,
        name: &str,
        node: &Node,
        want: &BTreeMap<&'static str, String>,
    ) -> bool {
        let diff = label_diff(node, want);
        if diff.is_empty() {
            return true;
        }
        let key = format!("labels of {name}");
        match self.l.cluster.patch_labels(name, &diff).await {
            Ok(()) => {
                self.complaints.worked(&key);
                true
            }
            Err(e) => {
                self.complaints
                    .failed(&key, format!("node health: node {name}: {e}"));
                false
            }
        }
    }

    async fn post(&mut self, e: &NodeEvent) {
        let key = "events".to_string();
        match self.l.cluster.post_node_event(e).await {
            Ok(()) => self.complaints.worked(&key),
            Err(err) => self.complaints.failed(
                &key,
                format!("node health: event on node {}: {err}", e.node),
            ),
        }
    }
}

/// A shared, empty view.
pub fn new_view() -> HealthView {
    Arc::new(Mutex::new(BTreeMap::new()))
}
