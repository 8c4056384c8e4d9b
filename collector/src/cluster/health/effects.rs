//! The API calls the health loop and the power sequence's events make: thin,
//! each bounded by the request timeout, a 409 re-read and retried once, a
//! 403 reported with the verb and resource the ClusterRole lacks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::conditions::{Condition, Kind, rfc3339};
use super::events::{EVENT_NAMESPACE, NodeEvent};
use super::taints::{Wanted, taint_patch};
use crate::cluster::{ClusterError, KubeCluster};

/// The field manager nodewarden's writes carry (`kubectl get node -o yaml
/// --show-managed-fields` shows it beside the kubelet's).
pub const FIELD_MANAGER: &str = "nodewarden";

/// Why a health write failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// RBAC refused it.
    #[error(
        "the Kubernetes API forbids nodewarden to {verb} {resource} ({what}): grant it in the collector's ClusterRole (packaging/kubernetes/nodewarden-rbac.yaml; docs/operator-guide.md, \"Kubernetes permissions\")"
    )]
    Forbidden {
        /// The verb missing (`patch`, `create`).
        verb: &'static str,
        /// The resource (`nodes/status`, `events`).
        resource: &'static str,
        /// The call.
        what: String,
        /// The API's answer.
        #[source]
        source: ClusterError,
    },
    /// An object nodewarden built did not fit the API's type (a bug).
    #[error("cannot encode the event: {source}")]
    Encode {
        /// serde's reason.
        #[source]
        source: serde_json::Error,
    },
    /// Any other failure (the API is down, a timeout, a 404).
    #[error(transparent)]
    Api(#[from] ClusterError),
}

impl HealthError {
    /// The HTTP status code, when the API answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            HealthError::Forbidden { .. } => Some(403),
            HealthError::Api(e) => e.code(),
            HealthError::Encode { .. } => None,
        }
    }
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

impl KubeCluster {
    /// One write, retried once on a 409 Conflict (the object changed under
    /// us: the retry re-reads it, as `write` builds the call afresh).
    async fn write<T, F, Fut>(
        &self,
        verb: &'static str,
        resource: &'static str,
        what: String,
        call: F,
    ) -> Result<T, HealthError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut result = self.bounded(what.clone(), call()).await;
        if result.as_ref().err().and_then(ClusterError::code) == Some(409) {
            result = self.bounded(what.clone(), call()).await;
        }
        result.map_err(|source| match source.code() {
            Some(403) => HealthError::Forbidden {
                verb,
                resource,
                what,
                source,
            },
            _ => HealthError::Api(source),
        })
    }

    /// Every node object as the API has it.
    pub(crate) async fn node_objects(&self) -> Result<Vec<Node>, ClusterError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut out = vec![];
        let mut lp = ListParams::default().limit(500);
        loop {
            let page = self.bounded("list nodes", api.list(&lp)).await?;
            out.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => break,
            }
        }
        Ok(out)
    }

    /// Writes nodewarden's conditions on the status subresource: a strategic
    /// merge patch keyed by type, so the kubelet's and other tools'
    /// conditions are left as they are (node-problem-detector's way).
    pub(crate) async fn patch_conditions(
        &self,
        node: &str,
        conds: &[Condition],
    ) -> Result<(), HealthError> {
        self.patch_status_conditions(node, &conditions_patch(conds))
            .await
    }

    /// Removes nodewarden's conditions (`$patch: delete` by type), for a
    /// node removed from nodewarden: nothing would keep them true.
    pub(crate) async fn remove_conditions(
        &self,
        node: &str,
        kinds: &[Kind],
    ) -> Result<(), HealthError> {
        let items: Vec<Value> = kinds
            .iter()
            .map(|k| json!({"type": k.as_str(), "$patch": "delete"}))
            .collect();
        self.patch_status_conditions(node, &json!({"status": {"conditions": items}}))
            .await
    }

    /// One strategic merge patch of the status subresource.
    async fn patch_status_conditions(&self, node: &str, body: &Value) -> Result<(), HealthError> {
        let api: Api<Node> = Api::all(self.client.clone());
        self.write(
            "patch",
            "nodes/status",
            format!("patch nodes/status of node {node}"),
            || async {
                api.patch_status(node, &params(), &Patch::Strategic(body))
                    .await
            },
        )
        .await
        .map(|_| ())
    }

    /// Sets (Some) or removes (None) labels nodewarden owns.
    pub(crate) async fn patch_labels(
        &self,
        node: &str,
        labels: &BTreeMap<String, Option<String>>,
    ) -> Result<(), HealthError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let body = json!({"metadata": {"labels": labels}});
        self.write(
            "patch",
            "nodes",
            format!("patch the labels of node {node}"),
            || async { api.patch(node, &params(), &Patch::Merge(&body)).await },
        )
        .await
        .map(|_| ())
    }

    /// Brings nodewarden's taints on `node` to `want` (re-reading the node
    /// on each try, so a 409 retry works on the fresh object); true when
    /// something changed.
    pub(crate) async fn patch_taints(
        &self,
        node: &str,
        want: &Wanted,
    ) -> Result<bool, HealthError> {
        let api: Api<Node> = Api::all(self.client.clone());
        self.write(
            "patch",
            "nodes",
            format!("patch the taints of node {node}"),
            || async {
                let n = api.get(node).await?;
                match taint_patch(&n, want) {
                    None => Ok(false),
                    Some(p) => api
                        .patch(node, &params(), &Patch::Merge(&p))
                        .await
                        .map(|_| true),
                }
            },
        )
        .await
    }

    /// Posts one Event about a node.
    async fn post_event(
        &self,
        e: &NodeEvent,
        now_ms: i64,
        seq: u64,
        host: &str,
    ) -> Result<(), HealthError> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), EVENT_NAMESPACE);
        let obj: Event = serde_json::from_value(e.object(now_ms, seq, host))
            .map_err(|source| HealthError::Encode { source })?;
        self.write(
            "create",
            "events",
            format!("create an event on node {}", e.node),
            || async { api.create(&PostParams::default(), &obj).await },
        )
        .await
        .map(|_| ())
    }
}

/// Makes each event's name unique within this collector run.
static EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

/// This host's name, for the events' `source.host`.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "collector".into())
}

impl KubeCluster {
    /// Posts `e` now, with a name unique to this run.
    pub async fn post_node_event(&self, e: &NodeEvent) -> Result<(), HealthError> {
        let seq = EVENT_SEQ.fetch_add(1, Ordering::Relaxed);
        self.post_event(e, nodewarden_common::clock::now_ms(), seq, &host_name())
            .await
    }

    /// Posts `e` in the background: an event never holds up the power
    /// sequence, and a failure is only logged.
    pub fn announce(&self, e: NodeEvent) {
        let cluster = self.clone();
        tokio::spawn(async move {
            if let Err(err) = cluster.post_node_event(&e).await {
                tracing::warn!(node = %e.node, reason = %e.reason, "cannot post the event: {err}");
            }
        });
    }
}

/// The status patch for `conds`.
pub fn conditions_patch(conds: &[Condition]) -> Value {
    let items: Vec<Value> = conds
        .iter()
        .map(|c| {
            json!({
                "type": c.kind.as_str(),
                "status": c.status.as_str(),
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": rfc3339(c.transition_ms),
                "lastHeartbeatTime": rfc3339(c.heartbeat_ms),
            })
        })
        .collect();
    json!({"status": {"conditions": items}})
}
