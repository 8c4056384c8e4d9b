//! In-memory ports for the orchestrator's tests: the live state (what the
//! hub would report), the store (power states and events), a Kubernetes API
//! and agents that keep a log of every call. No redb file, no sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodewarden_common::clock::now_ms;
use nodewarden_common::ups::delays::AppliedDelays;
use nodewarden_proto::v1::{Event, NodeInfo, UpsInfo, UpsStatus};
use tokio::sync::{broadcast, watch};

use super::config::PowerConfig;
use super::machine::{Phase, Role};
use super::orchestrator::{Ports, PowerHandle, spawn};
use super::ports::{
    AgentPort, AgentPortError, ClusterNode, ClusterPort, ClusterPortError, CommandOutcome,
    DrainSummary, LateAnswer, LivePort, NodeDrainPlan, PodPlan, StorePort,
};
use crate::state::hub::HubEvent;
use crate::state::nut_hosts::{FollowedUps, NutHost, is_nut_host};
use crate::store::StoreError;

/// The hub as the orchestrator sees it: nodes, UPS statuses and their news.
pub(crate) struct MemLive {
    events: broadcast::Sender<HubEvent>,
    nodes: Mutex<BTreeMap<String, bool>>,
    ups: Mutex<BTreeMap<(String, String), UpsStatus>>,
    /// The k3s role each agent reports of itself.
    pub(crate) k3s_roles: Mutex<BTreeMap<String, String>>,
    /// Hosts logged in to the NUT server (their connection is in `nodes`).
    nut_hosts: Mutex<Vec<NutHost>>,
}

impl Default for MemLive {
    fn default() -> Self {
        MemLive {
            events: broadcast::channel(1024).0,
            nodes: Mutex::default(),
            ups: Mutex::default(),
            k3s_roles: Mutex::default(),
            nut_hosts: Mutex::default(),
        }
    }
}

impl MemLive {
    /// A node's agent connected.
    pub(crate) fn connected(&self, node: &str) {
        self.nodes.lock().unwrap().insert(node.to_string(), true);
        let _ = self.events.send(HubEvent::Connected(node.to_string()));
    }

    /// A node's agent went away (the hub says so only if it was online).
    pub(crate) fn disconnected(&self, node: &str) {
        if let Some(online) = self.nodes.lock().unwrap().get_mut(node)
            && std::mem::take(online)
        {
            let _ = self.events.send(HubEvent::Disconnected(node.to_string()));
        }
    }

    /// A host logged in to the NUT server following `owner`'s UPS `ups`.
    pub(crate) fn nut_login(&self, name: &str, owner: &str, ups: &str) {
        self.nut_hosts.lock().unwrap().push(NutHost {
            name: name.to_string(),
            follows: [FollowedUps {
                owner: owner.to_string(),
                ups: ups.to_string(),
            }]
            .into(),
            users: ["monuser".to_string()].into(),
            sessions: 1,
            fsd: false,
            changed_ms: now_ms(),
        });
        self.connected(name);
    }

    /// A UPS status from a known node's agent.
    pub(crate) fn ups_status(&self, node: &str, status: UpsStatus) {
        if !self.nodes.lock().unwrap().contains_key(node) {
            return;
        }
        self.ups
            .lock()
            .unwrap()
            .insert((node.to_string(), status.ups_name.clone()), status.clone());
        let _ = self.events.send(HubEvent::Ups {
            node: node.to_string(),
            status: Box::new(status),
        });
    }

    /// Whether `node`'s agent is connected now.
    pub(crate) fn online(&self, node: &str) -> bool {
        self.nodes
            .lock()
            .unwrap()
            .get(node)
            .copied()
            .unwrap_or(false)
    }

    /// What a restarted collector's hub knows: the same nodes, all offline
    /// until they reconnect, and the last UPS statuses.
    pub(crate) fn restarted(&self) -> MemLive {
        let nodes = self.nodes.lock().unwrap();
        let offline = nodes.keys().map(|n| (n.clone(), false)).collect();
        MemLive {
            events: broadcast::channel(1024).0,
            nodes: Mutex::new(offline),
            ups: Mutex::new(self.ups.lock().unwrap().clone()),
            k3s_roles: Mutex::new(self.k3s_roles.lock().unwrap().clone()),
            nut_hosts: Mutex::default(),
        }
    }
}

impl LivePort for MemLive {
    fn subscribe(&self) -> broadcast::Receiver<HubEvent> {
        self.events.subscribe()
    }
    fn node_infos(&self) -> Vec<NodeInfo> {
        let nodes = self.nodes.lock().unwrap();
        let roles = self.k3s_roles.lock().unwrap();
        // NUT hosts are not agents' nodes: the hub lists them apart.
        nodes
            .iter()
            .filter(|(name, _)| !is_nut_host(name))
            .map(|(name, online)| NodeInfo {
                name: name.clone(),
                online: *online,
                k3s_role: roles.get(name).cloned().unwrap_or_default(),
                ..Default::default()
            })
            .collect()
    }
    fn ups_infos(&self) -> Vec<UpsInfo> {
        let ups = self.ups.lock().unwrap();
        ups.iter()
            .map(|((node, _), status)| UpsInfo {
                node: node.clone(),
                status: Some(status.clone()),
                last_change_ms: status.timestamp_ms,
            })
            .collect()
    }
    fn nut_hosts(&self) -> Vec<NutHost> {
        self.nut_hosts.lock().unwrap().clone()
    }
}

/// Power states and events, kept in memory.
#[derive(Default)]
pub(crate) struct MemStore {
    states: Mutex<BTreeMap<String, Vec<u8>>>,
    events: Mutex<Vec<Event>>,
    arm: Mutex<Option<Vec<u8>>>,
}

impl MemStore {
    /// Kinds of the events recorded so far.
    pub(crate) fn event_kinds(&self) -> Vec<String> {
        let events = self.events.lock().unwrap();
        events.iter().map(|e| e.kind.clone()).collect()
    }
}

impl StorePort for MemStore {
    fn power_states(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let states = self.states.lock().unwrap();
        Ok(states.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
    fn put_power_state(&self, domain: &str, state: &[u8]) -> Result<(), StoreError> {
        let mut states = self.states.lock().unwrap();
        states.insert(domain.to_string(), state.to_vec());
        Ok(())
    }
    fn delete_power_state(&self, domain: &str) -> Result<(), StoreError> {
        self.states.lock().unwrap().remove(domain);
        Ok(())
    }
    fn append_event(&self, event: Event) -> Result<(), StoreError> {
        self.events.lock().unwrap().push(event);
        Ok(())
    }
    fn power_arm(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.arm.lock().unwrap().clone())
    }
    fn put_power_arm(&self, record: &[u8]) -> Result<(), StoreError> {
        *self.arm.lock().unwrap() = Some(record.to_vec());
        Ok(())
    }
}

/// A Kubernetes API that logs every call.
#[derive(Default)]
pub(crate) struct FakeCluster {
    pub(crate) log: Mutex<Vec<(Instant, String)>>,
    pub(crate) admin_cordoned: BTreeSet<String>,
    /// Drain time per node (its pods' grace periods).
    pub(crate) drain_time: BTreeMap<String, Duration>,
    pub(crate) servers: BTreeSet<String>,
    pub(crate) nodes: Vec<String>,
}

impl FakeCluster {
    fn record(&self, what: String) {
        self.log.lock().unwrap().push((Instant::now(), what));
    }
    pub(crate) fn calls(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|x| x.1.clone())
            .collect()
    }
}

impl ClusterPort for FakeCluster {
    async fn nodes(&self) -> Result<Vec<ClusterNode>, ClusterPortError> {
        Ok(self
            .nodes
            .iter()
            .map(|n| ClusterNode {
                name: n.clone(),
                server: self.servers.contains(n),
                unschedulable: self.admin_cordoned.contains(n),
            })
            .collect())
    }
    async fn cordon(&self, node: &str) -> Result<bool, ClusterPortError> {
        self.record(format!("cordon {node}"));
        Ok(self.admin_cordoned.contains(node))
    }
    async fn drain(
        &self,
        node: &str,
        deadline: tokio::time::Instant,
    ) -> Result<DrainSummary, ClusterPortError> {
        let t = self.drain_time.get(node).copied().unwrap_or_default();
        tokio::time::sleep_until((tokio::time::Instant::now() + t).min(deadline)).await;
        self.record(format!("drained {node}"));
        Ok(DrainSummary {
            evicted: 2,
            ..Default::default()
        })
    }
    async fn uncordon_ours(&self, node: &str) -> Result<(), ClusterPortError> {
        self.record(format!("uncordon {node}"));
        Ok(())
    }
    async fn drain_plan(&self, nodes: &[String]) -> Result<Vec<NodeDrainPlan>, ClusterPortError> {
        Ok(nodes
            .iter()
            .map(|n| NodeDrainPlan {
                node: n.clone(),
                pods: vec![PodPlan {
                    namespace: "default".into(),
                    name: format!("web-{n}"),
                    grace_seconds: self.drain_time.get(n).map_or(30, |d| d.as_secs() as u32),
                    blocked_by: (n == "w1").then(|| "web-pdb".to_string()),
                }],
                skipped: 1,
            })
            .collect())
    }
}

/// Agents that confirm and then drop their stream, like a node going down.
pub(crate) struct FakeAgents {
    // Weak: a command left hanging must not keep the live state alive.
    pub(crate) live: std::sync::Weak<MemLive>,
    pub(crate) log: Mutex<Vec<(Instant, String)>>,
    pub(crate) silent: BTreeSet<String>,
    /// Nodes whose agent confirms the poweroff, then reports it failed (an
    /// inhibitor lock, polkit) and stays up.
    pub(crate) fail_after_accept: BTreeSet<String>,
    /// The off delay the UPS keeps whatever it is asked (a NUT driver that
    /// refuses SET VAR); None: it takes the one asked for.
    pub(crate) ups_own_off_delay_s: Option<u32>,
}

impl FakeAgents {
    pub(crate) fn calls(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|x| x.1.clone())
            .collect()
    }

    /// When the first call starting with `prefix` was made.
    pub(crate) fn first_call_at(&self, prefix: &str) -> Instant {
        let log = self.log.lock().unwrap();
        log.iter()
            .find(|(_, c)| c.starts_with(prefix))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no {prefix} in {log:?}"))
    }
}

impl AgentPort for FakeAgents {
    async fn power_off(
        &self,
        node: &str,
        id: u64,
        _: &str,
        dry_run: bool,
        late: LateAnswer,
    ) -> Result<CommandOutcome, AgentPortError> {
        let d = if dry_run { " (dry run)" } else { "" };
        self.log
            .lock()
            .unwrap()
            .push((Instant::now(), format!("poweroff {node} #{id}{d}")));
        if self.silent.contains(node) {
            std::future::pending::<()>().await;
        }
        if self.fail_after_accept.contains(node) {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                late(CommandOutcome::new(
                    false,
                    "poweroff refused by logind: an inhibitor lock is held",
                ));
            });
            return Ok(CommandOutcome::new(true, "accepted"));
        }
        if !dry_run && let Some(live) = self.live.upgrade() {
            let node = node.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                live.disconnected(&node);
            });
        }
        Ok(CommandOutcome::new(true, "ok"))
    }
    async fn ups_shutdown_return(
        &self,
        owner: &str,
        ups: &str,
        _: u64,
        off: Duration,
        restore: Duration,
        dry_run: bool,
    ) -> Result<CommandOutcome, AgentPortError> {
        let d = if dry_run { " (dry run)" } else { "" };
        self.log.lock().unwrap().push((
            Instant::now(),
            format!(
                "ups {owner}/{ups} off {}s restore {}s{d}",
                off.as_secs(),
                restore.as_secs()
            ),
        ));
        let asked = u32::try_from(off.as_secs()).unwrap_or(u32::MAX);
        Ok(CommandOutcome {
            applied: AppliedDelays {
                off_delay_s: Some(self.ups_own_off_delay_s.unwrap_or(asked)),
                restore_delay_s: Some(u32::try_from(restore.as_secs()).unwrap_or(u32::MAX)),
            },
            ..CommandOutcome::new(true, "S02R0001")
        })
    }
    async fn ups_cancel_shutdown(
        &self,
        owner: &str,
        ups: &str,
        _: u64,
    ) -> Result<CommandOutcome, AgentPortError> {
        self.log
            .lock()
            .unwrap()
            .push((Instant::now(), format!("ups {owner}/{ups} cancel")));
        Ok(CommandOutcome::new(true, "shutdown.stop accepted"))
    }
    fn connected(&self, node: &str) -> bool {
        self.live.upgrade().is_some_and(|l| l.online(node))
    }
}

/// The test cluster: three servers, two workers.
pub(crate) const NODES: [&str; 5] = ["s1", "s2", "s3", "w1", "w2"];

/// Short timeouts, so a whole sequence takes seconds.
pub(crate) fn power_config() -> PowerConfig {
    PowerConfig {
        collector_node: "s1".into(),
        grace: Duration::from_millis(300),
        min_runtime: Duration::ZERO,
        agent_confirm_timeout: Duration::from_secs(2),
        servers_timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(3),
        halt_time: Duration::from_millis(100),
        mains_stable: Duration::from_millis(300),
        armed: true,
        ..Default::default()
    }
}

/// Every node's agent connects.
pub(crate) fn connect_all(live: &MemLive) {
    for n in NODES {
        live.connected(n);
    }
}

/// The ports over these fakes.
pub(crate) fn ports<C>(
    live: &Arc<MemLive>,
    store: &Arc<MemStore>,
    cluster: Arc<C>,
    agents: &Arc<FakeAgents>,
) -> Ports<C, FakeAgents, MemLive, MemStore> {
    Ports {
        cluster,
        agents: agents.clone(),
        live: live.clone(),
        store: store.clone(),
    }
}

/// Agents over `live` that answer at once, except the `silent` ones.
pub(crate) fn agents(live: &Arc<MemLive>, silent: &[&str]) -> Arc<FakeAgents> {
    Arc::new(FakeAgents {
        live: Arc::downgrade(live),
        log: Mutex::default(),
        silent: silent.iter().map(|s| s.to_string()).collect(),
        fail_after_accept: BTreeSet::new(),
        ups_own_off_delay_s: None,
    })
}

/// Agents over `live` that answer at once, except that the `refusing` ones
/// confirm the poweroff and then report it failed.
pub(crate) fn agents_failing_after_accept(
    live: &Arc<MemLive>,
    refusing: &[&str],
) -> Arc<FakeAgents> {
    Arc::new(FakeAgents {
        live: Arc::downgrade(live),
        log: Mutex::default(),
        silent: BTreeSet::new(),
        fail_after_accept: refusing.iter().map(|s| s.to_string()).collect(),
        ups_own_off_delay_s: None,
    })
}

/// A status of UPS riello with these NUT tokens.
pub(crate) fn ups(tokens: &[&str]) -> UpsStatus {
    UpsStatus {
        ups_name: "riello".into(),
        timestamp_ms: now_ms(),
        communication_ok: true,
        status: tokens.iter().map(|s| s.to_string()).collect(),
        battery_charge_percent: Some(90.0),
        battery_runtime_seconds: Some(1200.0),
        ..Default::default()
    }
}

/// s1-s3 servers, w1 drains for 200 ms, w2 was cordoned by an admin.
pub(crate) fn cluster() -> Arc<FakeCluster> {
    Arc::new(FakeCluster {
        admin_cordoned: ["w2".to_string()].into(),
        drain_time: [("w1".to_string(), Duration::from_millis(200))].into(),
        servers: ["s1", "s2", "s3"].iter().map(|s| s.to_string()).collect(),
        nodes: NODES.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

/// Waits up to `secs` for `f`, failing the test with `what`.
pub(crate) async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The first domain's phase.
pub(crate) fn phase(h: &PowerHandle) -> Option<Phase> {
    h.domains().first().map(|d| d.machine.phase)
}

/// What a started orchestrator's test holds.
pub(crate) struct Started {
    pub(crate) live: Arc<MemLive>,
    pub(crate) store: Arc<MemStore>,
    pub(crate) agents: Arc<FakeAgents>,
    pub(crate) handle: PowerHandle,
    pub(crate) stop: watch::Sender<bool>,
}

/// An orchestrator on mains with every node connected, once its domain has
/// adopted the UPS and learnt the roles.
pub(crate) async fn started(c: Arc<FakeCluster>) -> Started {
    started_with(c, |live| agents(live, &[])).await
}

/// `started`, with the agents `make` builds over the live state.
pub(crate) async fn started_with(
    c: Arc<FakeCluster>,
    make: impl FnOnce(&Arc<MemLive>) -> Arc<FakeAgents>,
) -> Started {
    let (live, store) = (Arc::new(MemLive::default()), Arc::new(MemStore::default()));
    connect_all(&live);
    live.ups_status("s1", ups(&["OL"]));
    let agents = make(&live);
    let (stop, rx) = watch::channel(false);
    let h = spawn(power_config(), ports(&live, &store, c, &agents), rx);
    until("the domain to adopt the UPS", 5, || {
        h.domains().first().is_some_and(|d| {
            d.machine.spec.owner == "s1"
                && d.machine.members.len() == 5
                && d.machine.members.iter().any(|m| m.role == Role::Server)
        })
    })
    .await;
    Started {
        live,
        store,
        agents,
        handle: h,
        stop,
    }
}
