//! The cluster the fake API server holds: nodes, pods, PodDisruptionBudgets
//! and the controllers that own pods, with a simulated kubelet and the
//! StatefulSet / ReplicaSet controllers' recreation of evicted pods.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};

/// A scenario file: the cluster the fake starts with.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Real seconds per simulated second for grace periods and pod startup (default 1).
    #[serde(default)]
    pub time_factor: Option<f64>,
    /// Simulated seconds a recreated pod takes to become Ready (default 2).
    #[serde(default)]
    pub pod_startup_seconds: Option<f64>,
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub pods: Vec<PodSpec>,
    #[serde(default)]
    pub pdbs: Vec<PdbSpec>,
    /// RBAC denials, "VERB RESOURCE" (e.g. "patch nodes/status", "create
    /// events"): such requests get the API's 403 Forbidden.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// A node in a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    /// `server` (k3s control-plane,etcd,master labels) or `worker` (default).
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub unschedulable: bool,
    #[serde(default = "yes")]
    pub ready: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// A pod in a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSpec {
    #[serde(default = "default_ns")]
    pub namespace: String,
    pub name: String,
    pub node: String,
    /// Controller kind: StatefulSet, ReplicaSet, DaemonSet, Job; none for a bare pod.
    #[serde(default)]
    pub owner_kind: Option<String>,
    #[serde(default)]
    pub owner_name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// terminationGracePeriodSeconds (default 30, like the API's default).
    #[serde(default)]
    pub grace_seconds: Option<i64>,
    /// A static pod's mirror (annotation kubernetes.io/config.mirror).
    #[serde(default)]
    pub mirror: bool,
    /// Has an emptyDir volume (kubectl drain needs --delete-emptydir-data).
    #[serde(default)]
    pub empty_dir: bool,
    /// Never finishes terminating (a hung container or a finalizer).
    #[serde(default)]
    pub stuck: bool,
    /// metadata.finalizers: once deleted, the pod stays (deletionTimestamp
    /// set, containers stopped) until they are cleared, as in the real API.
    #[serde(default)]
    pub finalizers: Vec<String>,
    /// Pod phase (default Running).
    #[serde(default)]
    pub phase: Option<String>,
}

fn default_ns() -> String {
    "default".into()
}

/// A PodDisruptionBudget in a scenario (matchLabels selector only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdbSpec {
    #[serde(default = "default_ns")]
    pub namespace: String,
    pub name: String,
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub min_available: Option<i64>,
    #[serde(default)]
    pub max_unavailable: Option<i64>,
}

/// How the fake answers API requests (control endpoints always answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// Normal service.
    Up,
    /// Every API request gets 503 ServiceUnavailable.
    Unavailable,
    /// Connections are accepted and requests read, but never answered.
    Hang,
}

/// One request the fake received.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub accept: String,
    pub user_agent: String,
    pub body: String,
    pub status: u16,
}

pub(crate) struct PodEntry {
    pub obj: Value,
    /// When the simulated kubelet finishes terminating it.
    pub delete_at: Option<Instant>,
    /// When a (re)created pod becomes Ready.
    pub ready_at: Option<Instant>,
    pub stuck: bool,
}

pub(crate) struct State {
    pub rv: u64,
    uid: u64,
    pub time_factor: f64,
    pub startup: Duration,
    pub nodes: BTreeMap<String, Value>,
    pub pods: BTreeMap<(String, String), PodEntry>,
    pub pdbs: BTreeMap<(String, String), Value>,
    /// (kind, namespace, name) -> controller object (DaemonSet, StatefulSet, ReplicaSet).
    pub owners: BTreeMap<(String, String, String), Value>,
    pub fail_eviction: BTreeMap<(String, String), u16>,
    pub reachability: Reachability,
    pub log: Vec<LoggedRequest>,
    pub started: SystemTime,
    /// Events by (namespace, name).
    pub events: BTreeMap<(String, String), Value>,
    /// (verb, resource) pairs RBAC refuses.
    pub deny: std::collections::BTreeSet<(String, String)>,
    /// The next this many node writes answer 409 Conflict (injected).
    pub conflicts: u32,
}

/// RFC 3339 UTC timestamp, the API's metav1.Time format.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let t = nodewarden_common::units::Utc::from_unix_ms(secs * 1000);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

pub(crate) fn labels_match(labels: &Value, selector: &Value) -> bool {
    selector
        .as_object()
        .map(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .unwrap_or(false)
}

impl State {
    pub fn new(s: &Scenario) -> State {
        let mut st = State {
            rv: 1000,
            uid: 0,
            time_factor: s.time_factor.unwrap_or(1.0),
            startup: Duration::ZERO,
            nodes: BTreeMap::new(),
            pods: BTreeMap::new(),
            pdbs: BTreeMap::new(),
            owners: BTreeMap::new(),
            fail_eviction: BTreeMap::new(),
            reachability: Reachability::Up,
            log: vec![],
            started: SystemTime::now(),
            events: BTreeMap::new(),
            deny: s
                .deny
                .iter()
                .filter_map(|d| d.split_once(' '))
                .map(|(v, r)| (v.to_string(), r.to_string()))
                .collect(),
            conflicts: 0,
        };
        st.startup = st.scaled(s.pod_startup_seconds.unwrap_or(2.0));
        for n in &s.nodes {
            st.add_node(n);
        }
        for p in &s.pods {
            st.add_pod(p);
        }
        for p in &s.pdbs {
            st.add_pdb(p);
        }
        st
    }

    pub fn scaled(&self, seconds: f64) -> Duration {
        Duration::from_secs_f64((seconds * self.time_factor).max(0.0))
    }

    pub fn new_uid_pub(&mut self) -> String {
        self.new_uid()
    }

    pub fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn new_uid(&mut self) -> String {
        self.uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uid)
    }

    fn add_node(&mut self, n: &NodeSpec) {
        let mut labels = json!({
            "kubernetes.io/hostname": n.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "arm64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "arm64",
        });
        if n.role.as_deref() == Some("server") {
            for r in ["control-plane", "etcd", "master"] {
                labels[format!("node-role.kubernetes.io/{r}")] = json!("true");
            }
        }
        for (k, v) in &n.labels {
            labels[k] = json!(v);
        }
        let uid = self.new_uid();
        let rv = self.next_rv();
        let mut node = json!({
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {
                "name": n.name,
                "uid": uid,
                "resourceVersion": rv,
                "creationTimestamp": rfc3339(self.started),
                "labels": labels,
                "annotations": n.annotations,
            },
            "spec": {"podCIDR": "10.42.0.0/24", "providerID": format!("k3s://{}", n.name)},
            "status": {
                "conditions": [{
                    "type": "Ready",
                    "status": if n.ready { "True" } else { "Unknown" },
                    "reason": if n.ready { "KubeletReady" } else { "NodeStatusUnknown" },
                    "message": if n.ready { "kubelet is posting ready status" } else { "Kubelet stopped posting node status." },
                    "lastHeartbeatTime": rfc3339(self.started),
                    "lastTransitionTime": rfc3339(self.started),
                }],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": n.name}],
                "nodeInfo": {
                    "kubeletVersion": "v1.33.5+k3s1",
                    "kubeProxyVersion": "v1.33.5+k3s1",
                    "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "kernelVersion": "6.6.51+rpt-rpi-v8",
                    "containerRuntimeVersion": "containerd://2.0.5-k3s2",
                    "operatingSystem": "linux",
                    "architecture": "arm64",
                },
            },
        });
        if n.unschedulable {
            node["spec"]["unschedulable"] = json!(true);
        }
        sync_unschedulable_taint(&mut node);
        self.nodes.insert(n.name.clone(), node);
    }

    fn owner(&mut self, kind: &str, ns: &str, name: &str) -> Value {
        let key = (kind.to_string(), ns.to_string(), name.to_string());
        if let Some(o) = self.owners.get(&key) {
            return o.clone();
        }
        let uid = self.new_uid();
        let rv = self.next_rv();
        let group = if kind == "Job" { "batch/v1" } else { "apps/v1" };
        let obj = json!({
            "kind": kind,
            "apiVersion": group,
            "metadata": {"name": name, "namespace": ns, "uid": uid, "resourceVersion": rv,
                         "creationTimestamp": rfc3339(self.started)},
        });
        self.owners.insert(key, obj.clone());
        obj
    }

    fn add_pod(&mut self, p: &PodSpec) {
        let mut annotations = json!({});
        if p.mirror {
            annotations["kubernetes.io/config.mirror"] = json!("0f1e2d3c4b5a");
            annotations["kubernetes.io/config.source"] = json!("file");
        }
        let owner_refs = match (&p.owner_kind, p.mirror) {
            (Some(kind), _) => {
                let oname = p.owner_name.clone().unwrap_or_else(|| p.name.clone());
                let o = self.owner(kind, &p.namespace, &oname);
                json!([{
                    "apiVersion": o["apiVersion"], "kind": kind, "name": oname,
                    "uid": o["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
                }])
            }
            // A mirror pod is owned by its Node.
            (None, true) => {
                let uid = self
                    .nodes
                    .get(&p.node)
                    .map(|n| n["metadata"]["uid"].clone())
                    .unwrap_or(json!(""));
                json!([{"apiVersion": "v1", "kind": "Node", "name": p.node, "uid": uid, "controller": true}])
            }
            (None, false) => json!([]),
        };
        let mut volumes = vec![
            json!({"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}),
        ];
        if p.empty_dir {
            volumes.push(json!({"name": "scratch", "emptyDir": {}}));
        }
        let phase = p.phase.clone().unwrap_or_else(|| "Running".into());
        let uid = self.new_uid();
        let rv = self.next_rv();
        let mut meta = json!({
            "name": p.name, "namespace": p.namespace, "uid": uid, "resourceVersion": rv,
            "creationTimestamp": rfc3339(SystemTime::now()),
            "labels": p.labels, "annotations": annotations,
        });
        if owner_refs.as_array().is_some_and(|a| !a.is_empty()) {
            meta["ownerReferences"] = owner_refs;
        }
        if !p.finalizers.is_empty() {
            meta["finalizers"] = json!(p.finalizers);
        }
        let obj = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": meta,
            "spec": {
                "nodeName": p.node,
                "terminationGracePeriodSeconds": p.grace_seconds.unwrap_or(30),
                "containers": [{"name": "main", "image": "registry.invalid/app:1"}],
                "volumes": volumes,
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
            },
            "status": pod_status(&phase, phase == "Running"),
        });
        self.pods.insert(
            (p.namespace.clone(), p.name.clone()),
            PodEntry {
                obj,
                delete_at: None,
                ready_at: None,
                stuck: p.stuck,
            },
        );
    }

    fn add_pdb(&mut self, p: &PdbSpec) {
        let uid = self.new_uid();
        let rv = self.next_rv();
        let mut spec = json!({"selector": {"matchLabels": p.selector}});
        if let Some(m) = p.min_available {
            spec["minAvailable"] = json!(m);
        }
        if let Some(m) = p.max_unavailable {
            spec["maxUnavailable"] = json!(m);
        }
        let obj = json!({
            "kind": "PodDisruptionBudget",
            "apiVersion": "policy/v1",
            "metadata": {"name": p.name, "namespace": p.namespace, "uid": uid, "resourceVersion": rv,
                         "generation": 1, "creationTimestamp": rfc3339(self.started)},
            "spec": spec,
        });
        self.pdbs.insert((p.namespace.clone(), p.name.clone()), obj);
    }

    /// A PDB with its status computed from the pods it selects now.
    pub fn pdb_with_status(&self, key: &(String, String)) -> Option<Value> {
        let mut pdb = self.pdbs.get(key)?.clone();
        let selector = pdb["spec"]["selector"]["matchLabels"].clone();
        let matching: Vec<&PodEntry> = self
            .pods
            .iter()
            .filter(|((ns, _), e)| {
                *ns == key.0 && labels_match(&e.obj["metadata"]["labels"], &selector)
            })
            .map(|(_, e)| e)
            .collect();
        let healthy = matching
            .iter()
            .filter(|e| pod_ready(&e.obj) && e.delete_at.is_none())
            .count() as i64;
        // A StatefulSet pod still terminating has no replacement yet, so it still counts as expected.
        let expected = matching
            .iter()
            .filter(|e| {
                e.delete_at.is_none() || owner_kind(&e.obj).as_deref() == Some("StatefulSet")
            })
            .count() as i64;
        let desired = if let Some(m) = pdb["spec"]["minAvailable"].as_i64() {
            m
        } else if let Some(m) = pdb["spec"]["maxUnavailable"].as_i64() {
            (expected - m).max(0)
        } else {
            expected
        };
        let allowed = (healthy - desired).max(0);
        pdb["status"] = json!({
            "observedGeneration": pdb["metadata"]["generation"],
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "conditions": [{
                "type": "DisruptionAllowed",
                "status": if allowed > 0 { "True" } else { "False" },
                "reason": if allowed > 0 { "SufficientPods" } else { "InsufficientPods" },
                "message": "",
                "observedGeneration": pdb["metadata"]["generation"],
                "lastTransitionTime": rfc3339(self.started),
            }],
        });
        Some(pdb)
    }

    /// Starts graceful deletion of a pod, as the API server does for DELETE:
    /// sets deletionTimestamp and hands it to the kubelet.
    pub fn begin_delete(&mut self, key: &(String, String), grace: Option<i64>) {
        let rv = self.next_rv();
        let now = Instant::now();
        let Some(e) = self.pods.get_mut(key) else {
            return;
        };
        if e.delete_at.is_some() {
            return;
        }
        let grace = grace
            .unwrap_or_else(|| {
                e.obj["spec"]["terminationGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(30)
            })
            .max(0);
        let wait = Duration::from_secs_f64(grace as f64 * self.time_factor);
        e.delete_at = Some(now + wait);
        let at = SystemTime::now() + Duration::from_secs(grace as u64);
        e.obj["metadata"]["deletionTimestamp"] = json!(rfc3339(at));
        e.obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        e.obj["metadata"]["resourceVersion"] = json!(rv);
        // The ReplicaSet controller replaces a terminating pod at once; a
        // StatefulSet waits until the old pod is gone (same name).
        if owner_kind(&e.obj).as_deref() == Some("ReplicaSet") {
            let old = e.obj.clone();
            self.recreate(&old);
        }
    }

    fn schedulable_node(&self, avoid: &str) -> Option<String> {
        let ok = |n: &Value| {
            !n["spec"]["unschedulable"].as_bool().unwrap_or(false)
                && n["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        };
        // Spread: the node running the fewest pods, never the one being drained.
        self.nodes
            .iter()
            .filter(|(name, n)| *name != avoid && ok(n))
            .min_by_key(|(name, _)| {
                self.pods
                    .values()
                    .filter(|e| e.obj["spec"]["nodeName"] == **name)
                    .count()
            })
            .map(|(name, _)| name.clone())
    }

    fn recreate(&mut self, old: &Value) {
        let ns = old["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let kind = owner_kind(old).unwrap_or_default();
        let name = if kind == "StatefulSet" {
            old["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        } else {
            let owner = old["metadata"]["ownerReferences"][0]["name"]
                .as_str()
                .unwrap_or("pod");
            format!("{owner}-{:05x}", self.uid + 1)
        };
        let uid = self.new_uid();
        let rv = self.next_rv();
        let mut obj = old.clone();
        let m = &mut obj["metadata"];
        m["name"] = json!(name);
        m["uid"] = json!(uid);
        m["resourceVersion"] = json!(rv);
        m["creationTimestamp"] = json!(rfc3339(SystemTime::now()));
        if let Some(m) = m.as_object_mut() {
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
        }
        let node = self.schedulable_node(old["spec"]["nodeName"].as_str().unwrap_or(""));
        match &node {
            Some(n) => obj["spec"]["nodeName"] = json!(n),
            None => {
                if let Some(s) = obj["spec"].as_object_mut() {
                    s.remove("nodeName");
                }
            }
        }
        obj["status"] = pod_status("Pending", false);
        let ready_at = node.is_some().then(|| Instant::now() + self.startup);
        self.pods.insert(
            (ns, name),
            PodEntry {
                obj,
                delete_at: None,
                ready_at,
                stuck: false,
            },
        );
    }

    /// One pass of the simulated kubelets and controllers.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let done: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, e)| !e.stuck && e.delete_at.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let (held, done): (Vec<_>, Vec<_>) = done
            .into_iter()
            .partition(|k| has_finalizers(&self.pods[k].obj));
        for key in held {
            // The kubelet is done (its final delete has grace 0), but the API
            // keeps the object until every finalizer is removed.
            let rv = self.next_rv();
            if let Some(e) = self.pods.get_mut(&key)
                && e.obj["metadata"]["deletionGracePeriodSeconds"] != json!(0)
            {
                e.obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                e.obj["metadata"]["resourceVersion"] = json!(rv);
                let phase = e.obj["status"]["phase"]
                    .as_str()
                    .unwrap_or("Running")
                    .to_string();
                e.obj["status"] = pod_status(&phase, false);
            }
        }
        for key in done {
            if let Some(e) = self.pods.remove(&key) {
                self.next_rv();
                if owner_kind(&e.obj).as_deref() == Some("StatefulSet") {
                    self.recreate(&e.obj);
                }
            }
        }
        let pending: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, e)| e.obj["spec"]["nodeName"].is_null() && e.delete_at.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for key in pending {
            if let Some(node) = self.schedulable_node("") {
                let rv = self.next_rv();
                let startup = self.startup;
                if let Some(e) = self.pods.get_mut(&key) {
                    e.obj["spec"]["nodeName"] = json!(node);
                    e.obj["metadata"]["resourceVersion"] = json!(rv);
                    e.ready_at = Some(now + startup);
                }
            }
        }
        let starting: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, e)| e.ready_at.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in starting {
            let rv = self.next_rv();
            if let Some(e) = self.pods.get_mut(&key) {
                e.ready_at = None;
                e.obj["status"] = pod_status("Running", true);
                e.obj["metadata"]["resourceVersion"] = json!(rv);
            }
        }
    }
}

/// metadata.finalizers is not empty: the API will not remove the object yet.
fn has_finalizers(pod: &Value) -> bool {
    pod["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

pub(crate) fn owner_kind(pod: &Value) -> Option<String> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == json!(true))
        .and_then(|o| o["kind"].as_str())
        .map(str::to_string)
}

pub(crate) fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn pod_status(phase: &str, ready: bool) -> Value {
    let r = if ready { "True" } else { "False" };
    json!({
        "phase": phase,
        "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": r},
            {"type": "ContainersReady", "status": r},
            {"type": "PodScheduled", "status": "True"},
        ],
        "containerStatuses": [{"name": "main", "ready": ready, "restartCount": 0, "image": "registry.invalid/app:1",
                               "started": ready}],
        "podIP": "10.42.1.7",
    })
}

/// The node lifecycle controller's mirror of spec.unschedulable as a taint.
pub(crate) fn sync_unschedulable_taint(node: &mut Value) {
    let cordoned = node["spec"]["unschedulable"].as_bool().unwrap_or(false);
    let mut taints: Vec<Value> = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    taints.retain(|t| t["key"] != "node.kubernetes.io/unschedulable");
    if cordoned {
        taints.push(
            json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
                           "timeAdded": rfc3339(SystemTime::now())}),
        );
    }
    if let Some(spec) = node["spec"].as_object_mut() {
        if taints.is_empty() {
            spec.remove("taints");
        } else {
            spec.insert("taints".into(), Value::Array(taints));
        }
    }
}
