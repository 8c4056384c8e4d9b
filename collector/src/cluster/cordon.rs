//! Cordon with a record on the node, and uncordon only what that record
//! says we cordoned (kured's lesson: never leave nodes cordoned, never
//! uncordon an admin's cordon).

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::{ClusterError, KubeCluster};

/// When nodewarden cordoned the node (RFC 3339); its presence is the record.
pub const ANNOTATION_CORDONED_AT: &str = "nodewarden.io/cordoned-at";
/// Whether the node was already cordoned when nodewarden cordoned it ("true"/"false").
pub const ANNOTATION_WAS_UNSCHEDULABLE: &str = "nodewarden.io/was-unschedulable";

/// What the node's annotations say about our cordon.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CordonRecord {
    /// When we cordoned it (RFC 3339).
    pub cordoned_at: String,
    /// It was already cordoned (by someone else) before we did.
    pub was_unschedulable: bool,
    /// This call wrote the record (false: an earlier call had).
    pub newly_recorded: bool,
}

impl CordonRecord {
    pub(crate) fn from_node(n: &Node) -> Option<CordonRecord> {
        let a = n.metadata.annotations.as_ref()?;
        Some(CordonRecord {
            cordoned_at: a.get(ANNOTATION_CORDONED_AT)?.clone(),
            // A record without the flag is treated as "was cordoned": leaving a
            // node cordoned is safer than uncordoning an admin's cordon.
            was_unschedulable: a
                .get(ANNOTATION_WAS_UNSCHEDULABLE)
                .is_none_or(|v| v != "false"),
            newly_recorded: false,
        })
    }
}

/// What `uncordon_ours` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UncordonOutcome {
    /// We had cordoned it and it was schedulable before: now uncordoned.
    Uncordoned,
    /// We had cordoned it but it was already cordoned before: left cordoned, record cleared.
    LeftCordoned,
    /// No record of ours: nothing changed.
    NotOurs,
    /// The node no longer exists.
    NodeGone,
}

/// Attempts at a read-modify-write before giving up on 409 Conflicts.
const CONFLICT_ATTEMPTS: usize = 3;

impl KubeCluster {
    /// Cordons `node` and records on it that we did and whether it was
    /// already cordoned. Idempotent: a second call keeps the first record
    /// (and re-cordons if someone uncordoned it in between).
    pub async fn cordon(&self, node: &str) -> Result<CordonRecord, ClusterError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut last = None;
        for _ in 0..CONFLICT_ATTEMPTS {
            let n = self
                .bounded(format!("get node {node}"), api.get(node))
                .await?;
            let unschedulable = n
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false);
            let existing = CordonRecord::from_node(&n);
            if let Some(rec) = existing.as_ref().filter(|_| unschedulable) {
                return Ok(rec.clone());
            }
            let record = existing.clone().unwrap_or(CordonRecord {
                cordoned_at: Timestamp::now().to_string(),
                was_unschedulable: unschedulable,
                newly_recorded: true,
            });
            // The resourceVersion makes the patch conditional: an admin's
            // cordon landing between our read and write cannot be recorded
            // as ours.
            let patch = json!({
                "metadata": {
                    "resourceVersion": n.metadata.resource_version,
                    "annotations": {
                        ANNOTATION_CORDONED_AT: record.cordoned_at,
                        ANNOTATION_WAS_UNSCHEDULABLE: record.was_unschedulable.to_string(),
                    },
                },
                "spec": {"unschedulable": true},
            });
            let pp = PatchParams::default();
            match self
                .bounded(
                    format!("cordon node {node}"),
                    api.patch(node, &pp, &Patch::Merge(&patch)),
                )
                .await
            {
                Ok(_) => return Ok(record),
                Err(e) if e.code() == Some(409) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(ClusterError::Timeout {
            what: format!("cordon node {node}"),
            after: self.settings.request_timeout,
        }))
    }

    /// Uncordons `node` only if our record says we cordoned it and it was
    /// schedulable before; clears our record either way.
    pub async fn uncordon_ours(&self, node: &str) -> Result<UncordonOutcome, ClusterError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut last = None;
        for _ in 0..CONFLICT_ATTEMPTS {
            let Some(n) = self
                .bounded(format!("get node {node}"), api.get_opt(node))
                .await?
            else {
                return Ok(UncordonOutcome::NodeGone);
            };
            let Some(rec) = CordonRecord::from_node(&n) else {
                return Ok(UncordonOutcome::NotOurs);
            };
            let mut patch = json!({
                "metadata": {
                    "resourceVersion": n.metadata.resource_version,
                    "annotations": {ANNOTATION_CORDONED_AT: null, ANNOTATION_WAS_UNSCHEDULABLE: null},
                },
            });
            let outcome = if rec.was_unschedulable {
                UncordonOutcome::LeftCordoned
            } else {
                patch["spec"] = json!({"unschedulable": null});
                UncordonOutcome::Uncordoned
            };
            let pp = PatchParams::default();
            match self
                .bounded(
                    format!("uncordon node {node}"),
                    api.patch(node, &pp, &Patch::Merge(&patch)),
                )
                .await
            {
                Ok(_) => return Ok(outcome),
                Err(e) if e.code() == Some(409) => last = Some(e),
                Err(e) if e.code() == Some(404) => return Ok(UncordonOutcome::NodeGone),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(ClusterError::Timeout {
            what: format!("uncordon node {node}"),
            after: self.settings.request_timeout,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(annotations: &[(&str, &str)]) -> Node {
        let mut n = Node::default();
        n.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n
    }

    #[test]
    fn a_record_is_read_back_and_a_damaged_one_errs_on_the_side_of_staying_cordoned() {
        assert_eq!(CordonRecord::from_node(&Node::default()), None);
        assert_eq!(
            CordonRecord::from_node(&node(&[(ANNOTATION_WAS_UNSCHEDULABLE, "false")])),
            None
        );
        let r = CordonRecord::from_node(&node(&[
            (ANNOTATION_CORDONED_AT, "t"),
            (ANNOTATION_WAS_UNSCHEDULABLE, "false"),
        ]))
        .unwrap();
        assert!(!r.was_unschedulable);
        let r = CordonRecord::from_node(&node(&[(ANNOTATION_CORDONED_AT, "t")])).unwrap();
        assert!(r.was_unschedulable);
        let r = CordonRecord::from_node(&node(&[
            (ANNOTATION_CORDONED_AT, "t"),
            (ANNOTATION_WAS_UNSCHEDULABLE, "yes"),
        ]))
        .unwrap();
        assert!(r.was_unschedulable);
    }
}
