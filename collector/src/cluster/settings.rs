//! Where the client config comes from and the limits every call runs under.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use nodewarden_common::units::serde_duration;
use serde::{Deserialize, Serialize};

use super::ClusterError;

/// The kubeconfig k3s writes on its servers.
pub const DEFAULT_KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";

/// The `[kubernetes]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeSettings {
    /// Kubeconfig path. Unset: the in-cluster service account if present,
    /// else /etc/rancher/k3s/k3s.yaml.
    pub kubeconfig: Option<PathBuf>,
    /// Limit on each API request (connect, send, answer).
    #[serde(with = "serde_duration")]
    pub request_timeout: Duration,
    /// Wait before retrying an eviction a PodDisruptionBudget refused (kubectl: 5 s).
    #[serde(with = "serde_duration")]
    pub eviction_retry: Duration,
    /// How often to check whether an evicted pod is gone (kubectl: 1 s).
    #[serde(with = "serde_duration")]
    pub poll_interval: Duration,
    /// Labels that make a node a server (any value).
    pub server_labels: Vec<String>,
    /// Grace period sent with each eviction, overriding the pods' own
    /// terminationGracePeriodSeconds (e.g. to fit the battery); unset = theirs.
    pub eviction_grace_seconds: Option<i64>,
    /// A pod still terminating this long after its grace period ran out is
    /// left behind (kubectl drain's `--skip-wait-for-delete-timeout`); 0 waits
    /// for it until the drain's deadline.
    #[serde(with = "serde_duration")]
    pub skip_wait_for_delete_timeout: Duration,
}

impl Default for KubeSettings {
    fn default() -> Self {
        KubeSettings {
            kubeconfig: None,
            request_timeout: Duration::from_secs(10),
            eviction_retry: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            server_labels: vec![
                "node-role.kubernetes.io/control-plane".into(),
                "node-role.kubernetes.io/master".into(),
            ],
            eviction_grace_seconds: None,
            // Past its grace period a live kubelet has killed the containers:
            // a pod still there half a minute later waits on a finalizer or a
            // dead kubelet, and the battery should not wait with it.
            skip_wait_for_delete_timeout: Duration::from_secs(30),
        }
    }
}

fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token").exists()
}

/// The kubeconfig systemd hands the service (`LoadCredential=kubeconfig:...`):
/// k3s writes its kubeconfig readable by root only, and the collector runs as
/// user nodewarden, so the package's drop-in passes it in this way.
fn credential_kubeconfig() -> Option<PathBuf> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    let path = PathBuf::from(dir).join("kubeconfig");
    path.exists().then_some(path)
}

impl KubeSettings {
    /// The kubeconfig file to read; `None` means the in-cluster service account.
    fn kubeconfig_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.kubeconfig {
            return Some(p.clone());
        }
        if let Some(p) = credential_kubeconfig() {
            return Some(p);
        }
        if in_cluster() {
            return None;
        }
        Some(PathBuf::from(DEFAULT_KUBECONFIG))
    }

    pub(crate) fn describe_source(&self) -> String {
        match self.kubeconfig_path() {
            Some(p) => p.display().to_string(),
            None => "the in-cluster service account".into(),
        }
    }

    pub(crate) async fn load_config(&self) -> Result<Config, ClusterError> {
        let err = |message: String| ClusterError::Config {
            source_of_config: self.describe_source(),
            message,
        };
        let Some(path) = self.kubeconfig_path() else {
            return Config::incluster().map_err(|e| err(e.to_string()));
        };
        // Opened here first so the common failures get an actionable message.
        if let Err(e) = std::fs::File::open(&path) {
            return Err(err(match e.kind() {
                std::io::ErrorKind::NotFound => "no such file (is this a k3s server?)".into(),
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied: k3s writes it readable by root only; \
                     the package passes it to the service with systemd's \
                     LoadCredential=kubeconfig:/etc/rancher/k3s/k3s.yaml \
                     (see docs/operator-guide.md), or set [kubernetes] kubeconfig \
                     to a file the nodewarden user can read"
                        .into()
                }
                _ => e.to_string(),
            }));
        }
        let kc = Kubeconfig::read_from(&path).map_err(|e| err(e.to_string()))?;
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| err(e.to_string()))
    }
}
