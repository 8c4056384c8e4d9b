//! Cluster actions through the Kubernetes API (kube-rs): list nodes with
//! their roles, cordon with a record on the node of what we did, drain with
//! kubectl-drain semantics, uncordon only what we cordoned, and the drain
//! plan `nodewarden plan` shows. Every call is bounded in time so an
//! unreachable API server cannot stall a power-cut sequence.

mod cordon;
mod drain;
mod error;
pub mod health;
mod settings;

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};

pub use cordon::{
    ANNOTATION_CORDONED_AT, ANNOTATION_WAS_UNSCHEDULABLE, CordonRecord, UncordonOutcome,
};
pub use drain::{
    BlockedPod, DrainReport, FailedPod, NodeDrainPlan, PdbBlock, PlannedEviction, PodRef,
    SkipReason, SkippedPod,
};
pub use error::ClusterError;
pub use settings::{DEFAULT_KUBECONFIG, KubeSettings};

/// A node's role in the cluster, from its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Runs the control plane (and etcd with embedded etcd): powered off last, together.
    Server,
    /// Runs workloads only.
    Worker,
}

/// A node as the power sequence needs to see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClusterNode {
    /// Kubernetes node name.
    pub name: String,
    /// Server or worker.
    pub role: NodeRole,
    /// spec.unschedulable (cordoned, by anyone).
    pub unschedulable: bool,
    /// The Ready condition is True.
    pub ready: bool,
    /// Our cordon record on the node, if we cordoned it.
    pub cordoned_by_us: Option<CordonRecord>,
}

/// A connection to the cluster's API server.
#[derive(Clone)]
pub struct KubeCluster {
    client: Client,
    settings: KubeSettings,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl KubeCluster {
    /// Loads the kubeconfig (or in-cluster config) and builds a client; does
    /// not talk to the API server, so it succeeds while the API is down.
    pub async fn connect(settings: &KubeSettings) -> Result<Self, ClusterError> {
        let mut config = settings.load_config().await?;
        config.connect_timeout = Some(settings.request_timeout);
        config.read_timeout = Some(settings.request_timeout);
        config.write_timeout = Some(settings.request_timeout);
        // kube 5 retries 429/503/504 inside the client by default. That would
        // hide a disruption budget's 429 from the drain loop (which must
        // report it) and stretch an unavailable API past our deadlines: the
        // drain does its own retrying.
        config.default_retry = false;
        let client = Client::try_from(config).map_err(|e| ClusterError::Config {
            source_of_config: settings.describe_source(),
            message: e.to_string(),
        })?;
        Ok(KubeCluster {
            client,
            settings: settings.clone(),
        })
    }

    /// The settings this connection was made with.
    pub fn settings(&self) -> &KubeSettings {
        &self.settings
    }

    /// Runs one API call with the request timeout.
    pub(crate) async fn bounded<T>(
        &self,
        what: impl Into<String>,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ClusterError> {
        self.bounded_by(what, self.settings.request_timeout, fut)
            .await
    }

    pub(crate) async fn bounded_by<T>(
        &self,
        what: impl Into<String>,
        limit: Duration,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ClusterError::from_kube(what.into(), e)),
            Err(_) => Err(ClusterError::Timeout {
                what: what.into(),
                after: limit,
            }),
        }
    }

    /// Every node with its role, readiness and our cordon record.
    pub async fn nodes(&self) -> Result<Vec<ClusterNode>, ClusterError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut out = vec![];
        let mut lp = ListParams::default().limit(500);
        loop {
            let page = self.bounded("list nodes", api.list(&lp)).await?;
            out.extend(page.items.iter().map(|n| self.describe(n)));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => break,
            }
        }
        Ok(out)
    }

    fn describe(&self, n: &Node) -> ClusterNode {
        let labels = n.metadata.labels.clone().unwrap_or_default();
        let role = if self
            .settings
            .server_labels
            .iter()
            .any(|l| labels.contains_key(l))
        {
            NodeRole::Server
        } else {
            NodeRole::Worker
        };
        let ready = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        ClusterNode {
            name: n.metadata.name.clone().unwrap_or_default(),
            role,
            unschedulable: n
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
            ready,
            cordoned_by_us: CordonRecord::from_node(n),
        }
    }
}
