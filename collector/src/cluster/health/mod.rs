//! What nodewarden knows about each node's hardware, told to Kubernetes:
//! node conditions (UnderVoltage, ThermalThrottling, HighTemperature,
//! NodewardenAgentDown, OnBattery), Events on each transition and on the
//! power sequence's steps, and board labels. `rules`, `conditions`,
//! `labels` and `events` are pure; `effects` makes the API calls and `sync`
//! is the loop that ties them to the hub.

pub mod conditions;
mod effects;
pub mod events;
pub mod labels;
pub mod rules;
mod sync;
pub mod taints;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodewarden_common::units::serde_duration;
use serde::{Deserialize, Serialize};

pub use conditions::{Condition, Kind, Status};
pub use effects::{FIELD_MANAGER, HealthError, conditions_patch};
pub use events::{NodeEvent, PowerStep};
pub use sync::{HealthLoop, new_view, spawn};

/// The `[node_health]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// Write node conditions.
    pub conditions: bool,
    /// Post Events on condition transitions and power steps.
    pub events: bool,
    /// Keep the board labels.
    pub labels: bool,
    /// How often the hub is compared with the nodes.
    #[serde(with = "serde_duration")]
    pub check_interval: Duration,
    /// An unchanged condition's lastHeartbeatTime is refreshed this often.
    #[serde(with = "serde_duration")]
    pub heartbeat: Duration,
    /// A node's conditions are written at most once per this (a flapping
    /// sensor folds into one write).
    #[serde(with = "serde_duration")]
    pub min_write_interval: Duration,
    /// Never more than this share of the nodes carries a nodewarden taint.
    pub max_tainted_fraction: f64,
    /// Taint rules (`[[node_health.taint]]`); none by default.
    #[serde(rename = "taint")]
    pub taints: Vec<taints::TaintRule>,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            conditions: true,
            events: true,
            labels: true,
            check_interval: Duration::from_secs(5),
            // The kubelet refreshes its own every 5 minutes when nothing changes.
            heartbeat: Duration::from_secs(300),
            min_write_interval: Duration::from_secs(30),
            // One node in three: a hot afternoon must not leave the cluster
            // unschedulable.
            max_tainted_fraction: 0.34,
            taints: Vec::new(),
        }
    }
}

impl HealthSettings {
    /// Anything to do at all.
    pub fn any(&self) -> bool {
        self.conditions || self.events || self.labels || !self.taints.is_empty()
    }
}

/// What nodewarden has set on one node, for `nodewarden nodes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeHealth {
    /// Our conditions as last written.
    pub conditions: Vec<Condition>,
    /// Our labels as they are on the node.
    pub labels: BTreeMap<String, String>,
    /// Our taints on the node, "key:Effect".
    pub taints: Vec<String>,
}

/// Every node's [`NodeHealth`], shared by the loop and the admin API.
pub type HealthView = Arc<Mutex<BTreeMap<String, NodeHealth>>>;

/// Adds what nodewarden set on the node in Kubernetes to its `NodeInfo`.
pub fn annotate(view: &HealthView, info: &mut nodewarden_proto::v1::NodeInfo) {
    let Ok(v) = view.lock() else { return };
    let Some(h) = v.get(&info.name) else { return };
    info.kube_conditions = wire_conditions(h);
    info.kube_labels = h.labels.clone().into_iter().collect();
    info.kube_taints = h.taints.clone();
}

/// Adds nodewarden's conditions and taints to a node of `nodewarden power`
/// or `plan`: the operator sees there which node Kubernetes was told is
/// under-volted or hot before it is asked to halt.
pub fn annotate_power_node(view: &HealthView, node: &mut nodewarden_proto::v1::PowerNode) {
    let Ok(v) = view.lock() else { return };
    let Some(h) = v.get(&node.name) else { return };
    node.kube_conditions = wire_conditions(h);
    node.kube_taints = h.taints.clone();
}

fn wire_conditions(h: &NodeHealth) -> Vec<nodewarden_proto::v1::KubeCondition> {
    h.conditions
        .iter()
        .map(|c| nodewarden_proto::v1::KubeCondition {
            r#type: c.kind.as_str().into(),
            status: c.status.as_str().into(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_ms: c.transition_ms,
        })
        .collect()
}
