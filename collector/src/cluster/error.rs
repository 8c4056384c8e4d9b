//! The one error type of the cluster module.

use std::time::Duration;

/// What went wrong talking to the Kubernetes API.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No usable kubeconfig / in-cluster config.
    #[error(
        "cannot load the Kubernetes client config from {source_of_config}: {message}; set [kubernetes] kubeconfig in the collector config or pass --kubeconfig"
    )]
    Config {
        /// Where we looked.
        source_of_config: String,
        /// Why it failed.
        message: String,
    },
    /// The API server did not answer in time.
    #[error("the Kubernetes API did not answer {what} within {after:?}")]
    Timeout {
        /// The call that timed out.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// The API server answered with an error Status.
    #[error("the Kubernetes API refused {what}: {code} {reason}: {message}")]
    Api {
        /// The call.
        what: String,
        /// HTTP status code.
        code: u16,
        /// Status reason (NotFound, Conflict, TooManyRequests, ...).
        reason: String,
        /// Status message.
        message: String,
    },
    /// The API server could not be reached or the answer could not be read.
    #[error("cannot reach the Kubernetes API for {what}: {source}")]
    Transport {
        /// The call.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

impl ClusterError {
    pub(crate) fn from_kube(what: String, e: kube::Error) -> ClusterError {
        match e {
            kube::Error::Api(s) => ClusterError::Api {
                what,
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
            },
            other => ClusterError::Transport {
                what,
                source: other,
            },
        }
    }

    /// The HTTP status code, when the API answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClusterError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}
