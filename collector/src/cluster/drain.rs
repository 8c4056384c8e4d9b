//! Drain with kubectl-drain semantics (kubernetes/kubectl pkg/drain): list
//! the node's pods by field selector, skip DaemonSet-managed and mirror pods,
//! evict the rest in parallel through the Eviction API (429: a disruption
//! budget refuses, retry after a delay; 404: already gone), then wait until
//! each pod is gone or replaced by one with a new UID, or is left behind
//! because it is still terminating `skip_wait_for_delete_timeout` past its
//! grace period (kubectl's `--skip-wait-for-delete-timeout`). Unlike kubectl,
//! a deadline ends it and the report says what was left, because the power is
//! going off either way.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{Eviction, PodDisruptionBudget};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, LabelSelector, ObjectMeta};
use kube::api::{Api, ListParams, PostParams};
use kube::core::Status;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{ClusterError, KubeCluster};

/// Annotation the kubelet puts on the API copy of a static pod.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// One pod, by identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (a recreated pod with the same name has another).
    pub uid: String,
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why drain leaves a pod alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Managed by a DaemonSet: it would be recreated on the same node at once.
    DaemonSet,
    /// A static pod's mirror: the kubelet owns it, the API cannot remove it.
    Mirror,
}

/// A pod drain leaves alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedPod {
    /// The pod.
    pub pod: PodRef,
    /// Why.
    pub reason: SkipReason,
}

/// A pod whose eviction a PodDisruptionBudget still refused at the deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockedPod {
    /// The pod.
    pub pod: PodRef,
    /// The API's explanation (names the budget).
    pub message: String,
}

/// A pod whose eviction kept failing for another reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedPod {
    /// The pod.
    pub pod: PodRef,
    /// The last error.
    pub error: String,
}

/// What a drain did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrainReport {
    /// The node drained.
    pub node: String,
    /// Pods gone (or replaced by a new UID).
    pub evicted: Vec<PodRef>,
    /// Pods left alone.
    pub skipped: Vec<SkippedPod>,
    /// Still refused by a disruption budget at the deadline.
    pub blocked: Vec<BlockedPod>,
    /// Eviction accepted but still terminating at the deadline.
    pub stuck: Vec<PodRef>,
    /// Still terminating `skip_wait_for_delete_timeout` past their grace
    /// period: no longer waited for (a finalizer or a dead kubelet holds them).
    pub left_behind: Vec<PodRef>,
    /// Eviction failed for another reason until the deadline.
    pub failed: Vec<FailedPod>,
    /// How long it took.
    #[serde(with = "nodewarden_common::units::serde_duration")]
    pub elapsed: Duration,
}

impl DrainReport {
    /// Every pod that had to go is gone.
    pub fn complete(&self) -> bool {
        self.blocked.is_empty() && self.stuck.is_empty() && self.failed.is_empty()
    }
}

/// A pod drain would evict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedEviction {
    /// The pod.
    pub pod: PodRef,
    /// Seconds it gets to stop (the eviction override, else its own).
    pub grace_seconds: i64,
    /// Kind of its controller (StatefulSet, ReplicaSet, Job...), none for a bare pod.
    pub owner_kind: Option<String>,
    /// The disruption budget covering it.
    pub pdb: Option<String>,
    /// That budget allows no disruption now: its eviction would be refused.
    pub pdb_blocks: bool,
}

/// A disruption budget that would refuse an eviction now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PdbBlock {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// status.disruptionsAllowed.
    pub disruptions_allowed: i32,
    /// status.currentHealthy.
    pub current_healthy: i32,
    /// status.desiredHealthy.
    pub desired_healthy: i32,
    /// The pods on this node it covers.
    pub pods: Vec<String>,
}

/// What draining a node would do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeDrainPlan {
    /// The node.
    pub node: String,
    /// Pods that would be evicted.
    pub evict: Vec<PlannedEviction>,
    /// Pods that would be left alone.
    pub skipped: Vec<SkippedPod>,
    /// Budgets that would refuse.
    pub blocking_pdbs: Vec<PdbBlock>,
}

impl NodeDrainPlan {
    /// The longest grace period among the pods to evict: the least a drain takes.
    pub fn longest_grace_seconds(&self) -> i64 {
        self.evict
            .iter()
            .map(|e| e.grace_seconds)
            .max()
            .unwrap_or(0)
    }
}

fn pod_ref(p: &Pod) -> PodRef {
    PodRef {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        uid: p.metadata.uid.clone().unwrap_or_default(),
    }
}

fn controller_kind(p: &Pod) -> Option<String> {
    p.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.kind.clone())
}

fn skip_reason(p: &Pod) -> Option<SkipReason> {
    if p.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
    {
        return Some(SkipReason::Mirror);
    }
    (controller_kind(p).as_deref() == Some("DaemonSet")).then_some(SkipReason::DaemonSet)
}

/// metav1.LabelSelector semantics: a null selector matches nothing, an empty one everything.
fn selector_matches(
    sel: Option<&LabelSelector>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let Some(sel) = sel else { return false };
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_exprs = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let got = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => got.is_some_and(|v| values.contains(v)),
            "NotIn" => got.is_none_or(|v| !values.contains(v)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        }
    });
    by_labels && by_exprs
}

enum Fate {
    Gone,
    Blocked(String),
    Stuck,
    LeftBehind,
    Failed(String),
}

/// The grace period an eviction gives `p`: the override, else its own
/// terminationGracePeriodSeconds (the API's default 30 when unset).
fn grace_seconds(p: &Pod, eviction_override: Option<i64>) -> i64 {
    eviction_override.unwrap_or_else(|| {
        p.spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
    })
}

/// When a pod whose eviction was accepted at `accepted` stops being waited
/// for: `bound` past its grace period (kubectl counts from deletionTimestamp,
/// which the API sets to the eviction plus the grace; this counts on our own
/// monotonic clock, so a skewed API clock or an NTP jump cannot shorten it).
/// None: `bound` is zero, wait until the deadline.
fn leave_behind_at(accepted: Instant, grace_seconds: i64, bound: Duration) -> Option<Instant> {
    (!bound.is_zero())
        .then(|| accepted + Duration::from_secs(grace_seconds.max(0).unsigned_abs()) + bound)
}

impl KubeCluster {
    async fn pods_on(&self, node: &str) -> Result<Vec<Pod>, ClusterError> {
        let api: Api<Pod> = Api::all(self.client.clone());
        let mut lp = ListParams::default()
            .fields(&format!("spec.nodeName={node}"))
            .limit(500);
        let mut out = vec![];
        loop {
            let page = self
                .bounded(format!("list pods on {node}"), api.list(&lp))
                .await?;
            out.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => return Ok(out),
            }
        }
    }

    /// Drains `node` until every evictable pod is gone or `deadline` passes.
    /// Errors only if the pods cannot even be listed; everything after that
    /// is in the report.
    pub async fn drain(&self, node: &str, deadline: Instant) -> Result<DrainReport, ClusterError> {
        let started = Instant::now();
        let limit = self
            .settings
            .request_timeout
            .min(deadline.saturating_duration_since(started));
        let pods = match tokio::time::timeout(limit, self.pods_on(node)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(ClusterError::Timeout {
                    what: format!("list pods on {node}"),
                    after: limit,
                });
            }
        };
        let mut report = DrainReport {
            node: node.to_string(),
            evicted: vec![],
            skipped: vec![],
            blocked: vec![],
            stuck: vec![],
            left_behind: vec![],
            failed: vec![],
            elapsed: Duration::ZERO,
        };
        let mut tasks = JoinSet::new();
        let mut running = std::collections::HashMap::new();
        for p in &pods {
            let pod = pod_ref(p);
            if let Some(reason) = skip_reason(p) {
                report.skipped.push(SkippedPod { pod, reason });
                continue;
            }
            let this = self.clone();
            let grace = grace_seconds(p, self.settings.eviction_grace_seconds);
            let id = tasks
                .spawn({
                    let pod = pod.clone();
                    async move {
                        let fate = this.evict_and_wait(&pod, grace, deadline).await;
                        (pod, fate)
                    }
                })
                .id();
            running.insert(id, pod);
        }
        while let Some(done) = tasks.join_next().await {
            let (pod, fate) = match done {
                Ok(v) => v,
                // A panicking task is a bug; it must not take the drain down
                // with it, nor hide the pod it was evicting.
                Err(e) => match running.remove(&e.id()) {
                    Some(pod) => (pod, Fate::Failed(format!("internal error: {e}"))),
                    None => continue,
                },
            };
            match fate {
                Fate::Gone => report.evicted.push(pod),
                Fate::Blocked(message) => report.blocked.push(BlockedPod { pod, message }),
                Fate::Stuck => report.stuck.push(pod),
                Fate::LeftBehind => {
                    tracing::warn!(pod = %pod, "left behind: stuck terminating past its grace period");
                    report.left_behind.push(pod);
                }
                Fate::Failed(error) => report.failed.push(FailedPod { pod, error }),
            }
        }
        report.evicted.sort();
        report.stuck.sort();
        report.left_behind.sort();
        report.blocked.sort_by(|a, b| a.pod.cmp(&b.pod));
        report.failed.sort_by(|a, b| a.pod.cmp(&b.pod));
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// The Eviction body, built here because kube's `EvictParams` serializes
    /// its options under `delete_options`, a key the API server ignores, which
    /// would silently drop a grace-period override.
    fn eviction(&self, pod: &PodRef) -> Eviction {
        Eviction {
            metadata: ObjectMeta {
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                ..Default::default()
            },
            delete_options: Some(DeleteOptions {
                grace_period_seconds: self.settings.eviction_grace_seconds,
                ..Default::default()
            }),
        }
    }

    async fn evict_and_wait(&self, pod: &PodRef, grace_seconds: i64, deadline: Instant) -> Fate {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let body = self.eviction(pod);
        let pp = PostParams::default();
        let mut refusal: Option<String> = None;
        let mut error: Option<String> = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return match (refusal, error) {
                    (Some(r), _) => Fate::Blocked(r),
                    (None, Some(e)) => Fate::Failed(e),
                    (None, None) => {
                        Fate::Failed("deadline passed before the eviction was sent".into())
                    }
                };
            }
            let limit = self.settings.request_timeout.min(remaining);
            let call = api.create_subresource::<_, Status>("eviction", &pod.name, &pp, &body);
            match tokio::time::timeout(limit, call).await {
                Ok(Ok(_)) => break,
                Ok(Err(kube::Error::Api(s))) if s.code == 404 => return Fate::Gone,
                Ok(Err(kube::Error::Api(s))) if s.code == 429 => {
                    let budget = s
                        .details
                        .as_ref()
                        .and_then(|d| d.causes.iter().find(|c| c.reason == "DisruptionBudget"));
                    match budget {
                        Some(c) => {
                            tracing::info!(pod = %pod, "eviction refused by a disruption budget, retrying: {}", c.message);
                            refusal =
                                Some(format!("{} {}", s.message, c.message).trim().to_string());
                        }
                        None => error = Some(format!("429 {}: {}", s.reason, s.message)),
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(pod = %pod, "eviction failed, retrying: {e}");
                    refusal = None;
                    error =
                        Some(ClusterError::from_kube(format!("evict pod {pod}"), e).to_string());
                }
                Err(_) => {
                    error = Some(
                        ClusterError::Timeout {
                            what: format!("evict pod {pod}"),
                            after: limit,
                        }
                        .to_string(),
                    );
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(self.settings.eviction_retry.min(remaining)).await;
        }
        let give_up = leave_behind_at(
            Instant::now(),
            grace_seconds,
            self.settings.skip_wait_for_delete_timeout,
        );
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let limit = self
                .settings
                .request_timeout
                .min(remaining)
                .max(Duration::from_millis(1));
            match tokio::time::timeout(limit, api.get_opt(&pod.name)).await {
                Ok(Ok(None)) => return Fate::Gone,
                Ok(Ok(Some(p))) if p.metadata.uid.as_deref() != Some(pod.uid.as_str()) => {
                    return Fate::Gone;
                }
                Ok(Ok(Some(_))) => {}
                Ok(Err(e)) => tracing::debug!(pod = %pod, "checking an evicted pod failed: {e}"),
                Err(_) => {}
            }
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            if remaining.is_zero() {
                return Fate::Stuck;
            }
            if give_up.is_some_and(|at| now >= at) {
                return Fate::LeftBehind;
            }
            let until_give_up = give_up.map_or(remaining, |at| at.saturating_duration_since(now));
            tokio::time::sleep(
                self.settings
                    .poll_interval
                    .min(remaining)
                    .min(until_give_up),
            )
            .await;
        }
    }

    /// What draining `node` would do now, without doing it.
    pub async fn drain_plan(&self, node: &str) -> Result<NodeDrainPlan, ClusterError> {
        let pods = self.pods_on(node).await?;
        let pdb_api: Api<PodDisruptionBudget> = Api::all(self.client.clone());
        let pdbs = self
            .bounded(
                "list pod disruption budgets",
                pdb_api.list(&ListParams::default()),
            )
            .await?
            .items;
        let mut plan = NodeDrainPlan {
            node: node.to_string(),
            evict: vec![],
            skipped: vec![],
            blocking_pdbs: vec![],
        };
        for p in &pods {
            let pod = pod_ref(p);
            if let Some(reason) = skip_reason(p) {
                plan.skipped.push(SkippedPod { pod, reason });
                continue;
            }
            let labels = p.metadata.labels.clone().unwrap_or_default();
            let pdb = pdbs.iter().find(|b| {
                b.metadata.namespace == p.metadata.namespace
                    && selector_matches(b.spec.as_ref().and_then(|s| s.selector.as_ref()), &labels)
            });
            let allowed = pdb
                .and_then(|b| b.status.as_ref())
                .map(|s| s.disruptions_allowed);
            let blocks = pdb.is_some() && allowed.unwrap_or(0) <= 0;
            if let (true, Some(b)) = (blocks, pdb) {
                let (ns, name) = (
                    b.metadata.namespace.clone().unwrap_or_default(),
                    b.metadata.name.clone().unwrap_or_default(),
                );
                match plan
                    .blocking_pdbs
                    .iter_mut()
                    .find(|x| x.namespace == ns && x.name == name)
                {
                    Some(x) => x.pods.push(pod.name.clone()),
                    None => {
                        let st = b.status.clone().unwrap_or_default();
                        plan.blocking_pdbs.push(PdbBlock {
                            namespace: ns,
                            name,
                            disruptions_allowed: st.disruptions_allowed,
                            current_healthy: st.current_healthy,
                            desired_healthy: st.desired_healthy,
                            pods: vec![pod.name.clone()],
                        });
                    }
                }
            }
            plan.evict.push(PlannedEviction {
                grace_seconds: grace_seconds(p, self.settings.eviction_grace_seconds),
                owner_kind: controller_kind(p),
                pdb: pdb.and_then(|b| b.metadata.name.clone()),
                pdb_blocks: blocks,
                pod,
            });
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelectorRequirement, OwnerReference,
    };

    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_follow_label_selector_semantics() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(
            !selector_matches(None, &l),
            "a null selector matches nothing"
        );
        assert!(
            selector_matches(Some(&LabelSelector::default()), &l),
            "an empty one matches everything"
        );
        let by_label = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        };
        assert!(selector_matches(Some(&by_label), &l));
        assert!(!selector_matches(
            Some(&by_label),
            &labels(&[("app", "db")])
        ));
        let expr = |op: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..Default::default()
        };
        assert!(selector_matches(Some(&expr("In", &["front", "back"])), &l));
        assert!(!selector_matches(Some(&expr("NotIn", &["front"])), &l));
        assert!(selector_matches(Some(&expr("Exists", &[])), &l));
        assert!(!selector_matches(Some(&expr("DoesNotExist", &[])), &l));
        assert!(!selector_matches(Some(&expr("Bogus", &[])), &l));
    }

    #[test]
    fn daemonset_and_mirror_pods_are_skipped_others_are_not() {
        let owned = |kind: &str| Pod {
            metadata: ObjectMeta {
                owner_references: Some(vec![OwnerReference {
                    kind: kind.into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            skip_reason(&owned("DaemonSet")),
            Some(SkipReason::DaemonSet)
        );
        assert_eq!(skip_reason(&owned("StatefulSet")), None);
        assert_eq!(skip_reason(&Pod::default()), None);
        let mut mirror = Pod::default();
        mirror.metadata.annotations = Some(labels(&[(MIRROR_ANNOTATION, "abc")]));
        assert_eq!(skip_reason(&mirror), Some(SkipReason::Mirror));
    }

    #[test]
    fn a_terminating_pod_is_left_behind_the_bound_past_its_grace() {
        let t0 = Instant::now();
        assert_eq!(
            leave_behind_at(t0, 30, Duration::from_secs(30)),
            Some(t0 + Duration::from_secs(60)),
            "kubectl: deletionTimestamp (eviction + grace) plus the timeout"
        );
        assert_eq!(
            leave_behind_at(t0, 0, Duration::from_secs(5)),
            Some(t0 + Duration::from_secs(5))
        );
        assert_eq!(
            leave_behind_at(t0, -3, Duration::from_secs(5)),
            Some(t0 + Duration::from_secs(5)),
            "a negative grace counts as none"
        );
        assert_eq!(
            leave_behind_at(t0, 30, Duration::ZERO),
            None,
            "0 waits until the drain's deadline, like kubectl's default"
        );
        let mut p = Pod::default();
        assert_eq!(grace_seconds(&p, None), 30, "the API's default");
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            termination_grace_period_seconds: Some(7),
            ..Default::default()
        });
        assert_eq!(grace_seconds(&p, None), 7);
        assert_eq!(grace_seconds(&p, Some(2)), 2, "the eviction override wins");
    }

    #[test]
    fn the_eviction_body_uses_the_api_field_names() {
        let body = Eviction {
            metadata: ObjectMeta {
                name: Some("web-0".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            delete_options: Some(DeleteOptions {
                grace_period_seconds: Some(7),
                ..Default::default()
            }),
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["apiVersion"], "policy/v1");
        assert_eq!(v["kind"], "Eviction");
        assert_eq!(v["deleteOptions"]["gracePeriodSeconds"], 7);
    }
}
