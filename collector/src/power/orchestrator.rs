//! The I/O shell around the power state machines: one task per collector
//! that feeds every domain's machine from the hub (UPS statuses, agent
//! connections, as they happen), from the results of the actions it started,
//! and from the clock; persists each machine after every step, then carries
//! out the actions through `ClusterPort` and `AgentPort` without waiting for
//! them (a drain runs while the next UPS reading is already decided on).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::config::{PowerConfig, domain_name};
use super::machine::{
    Action, DomainSpec, Input, Machine, Member, Phase, Role, Stage, TimelineEntry, UpsObservation,
};
use super::notify::{Notification, Notifier};
use super::ports::{AgentPort, ClusterNode, ClusterPort, NodeDrainPlan};
use crate::server::hub::{Hub, HubEvent};
use nodewarden_common::clock::now_ms;

/// Name of the domain when `[[power.domain]]` is not configured.
pub const DEFAULT_DOMAIN: &str = "main";
/// How often the Kubernetes node list (roles) is refreshed.
const MEMBERS_REFRESH: Duration = Duration::from_secs(30);
/// Connection news is saved at the latest this long after it came.
const SETTLE_AT_LEAST_EVERY: Duration = Duration::from_secs(1);
/// A cordon or uncordon call that takes longer has failed.
const API_CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// One domain as `nodewarden power` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DomainView {
    /// The persisted machine (phase, nodes, timeline).
    pub machine: Machine,
    /// What is going on, in one line.
    pub now: String,
}

/// The plan of one domain: what would happen if power failed now.
#[derive(Debug, Clone, Serialize)]
pub struct DomainPlan {
    /// Domain name.
    pub domain: String,
    /// UPS and owner.
    pub ups: String,
    /// Node reading the UPS.
    pub owner: String,
    /// Remaining runtime now, ms, if the UPS reports it.
    pub runtime_ms: Option<i64>,
    /// The nodes and their roles.
    pub members: Vec<Member>,
    /// Poweroff stages in order.
    pub stages: Vec<Stage>,
    /// Per Kubernetes node: pods a drain would evict.
    pub drain: Vec<NodeDrainPlan>,
    /// Why the drain plan is missing, if it is.
    pub drain_error: Option<String>,
    /// Estimated drain time, ms (longest pod grace, capped by the drain timeout).
    pub drain_estimate_ms: i64,
    /// Estimated total until the last node halts, ms (worst case of the waits).
    pub total_estimate_ms: i64,
    /// Warnings for this domain.
    pub warnings: Vec<String>,
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    /// Per domain.
    pub domains: Vec<DomainPlan>,
    /// Config warnings.
    pub warnings: Vec<String>,
}

/// What a drill reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DrillUpdate {
    /// A timeline line of domain `.0`.
    Step(String, TimelineEntry),
    /// The drill of every domain is over.
    Done,
}

/// Options of `nodewarden drill`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrillOptions {
    /// Only this domain (default all).
    pub domain: Option<String>,
    /// Really cordon (and uncordon after).
    pub cordon: bool,
    /// Rehearse the decision too: a simulated UPS goes on battery and the
    /// grace runs; otherwise the sequence starts at once.
    pub simulated_ups: bool,
}

enum Control {
    Plan(oneshot::Sender<PlanReport>),
    Drill(DrillOptions, mpsc::Sender<DrillUpdate>),
}

/// Talks to the running orchestrator (the Admin API holds one).
#[derive(Clone)]
pub struct PowerHandle {
    control: mpsc::Sender<Control>,
    views: Arc<Mutex<Vec<DomainView>>>,
}

impl std::fmt::Debug for PowerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerHandle").finish_non_exhaustive()
    }
}

impl PowerHandle {
    /// Every domain's state now.
    pub fn domains(&self) -> Vec<DomainView> {
        self.views.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What would happen if power failed now.
    pub async fn plan(&self) -> Result<PlanReport, String> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Plan(tx))
            .await
            .map_err(|_| "the power orchestrator is not running".to_string())?;
        rx.await
            .map_err(|_| "the power orchestrator stopped".to_string())
    }

    /// Starts a drill; its timeline arrives on the returned channel.
    pub async fn drill(
        &self,
        options: DrillOptions,
    ) -> Result<mpsc::Receiver<DrillUpdate>, String> {
        let (tx, rx) = mpsc::channel(256);
        self.control
            .send(Control::Drill(options, tx))
            .await
            .map_err(|_| "the power orchestrator is not running".to_string())?;
        Ok(rx)
    }
}

/// Which machine an input is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Real(String),
    Drill(String),
}

struct Drill {
    machine: Machine,
    progress: mpsc::Sender<DrillUpdate>,
    sent: usize,
}

struct Runner<C, A> {
    config: PowerConfig,
    hub: Arc<Hub>,
    cluster: Arc<C>,
    agents: Arc<A>,
    notifier: Notifier,
    collector_node: String,
    machines: BTreeMap<String, Machine>,
    drills: BTreeMap<String, Drill>,
    results: mpsc::UnboundedSender<(Key, Input)>,
    drains: HashMap<Key, Vec<JoinHandle<()>>>,
    cluster_nodes: Option<Vec<ClusterNode>>,
    persisted: HashMap<String, Vec<u8>>,
    views: Arc<Mutex<Vec<DomainView>>>,
    /// Machines stepped by connection news that asked for no action, saved
    /// once the burst of hub events is handled (see [`Runner::settle`]).
    unsaved: BTreeSet<String>,
    /// A node not yet in any domain connected: members are recomputed once
    /// the burst is handled, not once per new node.
    members_stale: bool,
}

/// Starts the orchestrator for `config` and returns the handle the Admin API
/// uses. Domains resume from the store where a previous run left them.
pub fn spawn<C: ClusterPort, A: AgentPort>(
    config: PowerConfig,
    hub: Arc<Hub>,
    cluster: Arc<C>,
    agents: Arc<A>,
    shutdown: watch::Receiver<bool>,
) -> PowerHandle {
    let (control_tx, control_rx) = mpsc::channel(16);
    let views = Arc::new(Mutex::new(Vec::new()));
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    // Subscribe before anything else, so no event falls between the
    // snapshot taken at start and the stream.
    let events = hub.subscribe();
    let collector_node = if config.collector_node.is_empty() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default()
    } else {
        config.collector_node.clone()
    };
    let runner = Runner {
        notifier: Notifier::spawn(config.notify.clone()),
        config,
        hub,
        cluster,
        agents,
        collector_node,
        machines: BTreeMap::new(),
        drills: BTreeMap::new(),
        results: results_tx,
        drains: HashMap::new(),
        cluster_nodes: None,
        persisted: HashMap::new(),
        views: views.clone(),
        unsaved: BTreeSet::new(),
        members_stale: false,
    };
    tokio::spawn(runner.run(events, results_rx, control_rx, shutdown));
    PowerHandle {
        control: control_tx,
        views,
    }
}

impl<C: ClusterPort, A: AgentPort> Runner<C, A> {
    fn spec(&self, name: &str, ups: &str, owner: &str) -> DomainSpec {
        DomainSpec {
            name: name.to_string(),
            ups: ups.to_string(),
            owner: owner.to_string(),
            collector_node: (!self.collector_node.is_empty()).then(|| self.collector_node.clone()),
            settings: self.config.settings(),
        }
    }

    fn specs(&self) -> Vec<DomainSpec> {
        if self.config.domains.is_empty() {
            // The one UPS: whichever the agents report (the first by name).
            let (ups, owner) = self
                .hub
                .ups_infos()
                .into_iter()
                .find_map(|u| u.status.map(|s| (s.ups_name, u.node)))
                .unwrap_or_default();
            return vec![self.spec(DEFAULT_DOMAIN, &ups, &owner)];
        }
        self.config
            .domains
            .iter()
            .map(|d| self.spec(&domain_name(d), &d.ups, &d.owner))
            .collect()
    }

    /// The nodes of `domain` and their roles, from config, labels and agents.
    fn members(&self, spec: &DomainSpec) -> Vec<Member> {
        let hub_nodes = self.hub.node_infos();
        // Looked up once per member: a map, so thousands of nodes are not
        // thousands of scans.
        let hub_roles: HashMap<&str, &str> = hub_nodes
            .iter()
            .map(|n| (n.name.as_str(), n.role.as_str()))
            .collect();
        let cluster_servers: Option<HashMap<&str, bool>> = self
            .cluster_nodes
            .as_ref()
            .map(|c| c.iter().map(|n| (n.name.as_str(), n.server)).collect());
        let mut names: Vec<String> = match self
            .config
            .domains
            .iter()
            .find(|d| domain_name(d) == spec.name)
        {
            Some(d) => d.nodes.clone(),
            None => {
                let mut v: Vec<String> = hub_nodes.iter().map(|n| n.name.clone()).collect();
                if let Some(c) = &self.cluster_nodes {
                    v.extend(c.iter().map(|n| n.name.clone()));
                }
                v.extend(self.config.external.iter().cloned());
                v
            }
        };
        if !spec.owner.is_empty() {
            names.push(spec.owner.clone());
        }
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let role = self.config.role_override(&name).unwrap_or_else(|| {
                    match cluster_servers
                        .as_ref()
                        .map(|c| c.get(name.as_str()).copied())
                    {
                        Some(Some(true)) => Role::Server,
                        Some(Some(false)) => Role::Worker,
                        // Known cluster, not in it: a host outside Kubernetes.
                        Some(None) => Role::External {
                            order: self.config.external.len() as u32 + 1,
                        },
                        None => match hub_roles.get(name.as_str()).copied() {
                            Some("server") => Role::Server,
                            _ => Role::Worker,
                        },
                    }
                });
                Member { name, role }
            })
            .collect()
    }

    async fn run(
        mut self,
        mut events: broadcast::Receiver<HubEvent>,
        mut results: mpsc::UnboundedReceiver<(Key, Input)>,
        mut control: mpsc::Receiver<Control>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.start().await;
        let mut refresh = tokio::time::interval(MEMBERS_REFRESH);
        let (nodes_tx, mut nodes_rx) = mpsc::channel::<Result<Vec<ClusterNode>, String>>(1);
        let mut settled = tokio::time::Instant::now();
        loop {
            // A burst ends when the queue is empty; an endless one is settled
            // at least once a second all the same.
            if events.is_empty() || settled.elapsed() >= SETTLE_AT_LEAST_EVERY {
                self.settle().await;
                settled = tokio::time::Instant::now();
            }
            let wake = self.wake_at();
            let sleep = async {
                match wake {
                    Some(at) => {
                        let wait = (at - now_ms()).max(0) as u64;
                        tokio::time::sleep(Duration::from_millis(wait)).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) => self.on_hub(ev).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("power: missed {n} hub events; resyncing");
                        self.resync(true).await;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some((key, input)) = results.recv() => self.feed(key, input).await,
                Some(c) = control.recv() => self.on_control(c).await,
                () = sleep => self.tick_all().await,
                _ = refresh.tick() => {
                    let cluster = self.cluster.clone();
                    let tx = nodes_tx.clone();
                    tokio::spawn(async move {
                        let r = tokio::time::timeout(API_CALL_TIMEOUT, cluster.nodes())
                            .await
                            .unwrap_or_else(|_| Err("timed out".into()));
                        let _ = tx.try_send(r);
                    });
                }
                Some(nodes) = nodes_rx.recv() => {
                    match nodes {
                        Ok(n) => self.cluster_nodes = Some(n),
                        Err(e) => tracing::debug!("power: cannot list Kubernetes nodes: {e}"),
                    }
                    self.refresh_members().await;
                }
                _ = shutdown.changed() => break,
            }
        }
        for handles in self.drains.values() {
            for h in handles {
                h.abort();
            }
        }
    }

    async fn start(&mut self) {
        let stored: HashMap<String, Vec<u8>> = {
            let store = self.hub.store().clone();
            tokio::task::spawn_blocking(move || store.power_states())
                .await
                .ok()
                .and_then(|r| {
                    r.map_err(|e| tracing::error!("power: cannot read saved state: {e}"))
                        .ok()
                })
                .unwrap_or_default()
                .into_iter()
                .collect()
        };
        let now = now_ms();
        for spec in self.specs() {
            let name = spec.name.clone();
            let mut resumed = Vec::new();
            let machine = match stored.get(&name).map(|b| Machine::from_persisted(b)) {
                Some(Ok(mut m)) => {
                    // Keep the UPS a default domain adopted before the restart.
                    let mut spec = spec;
                    if spec.owner.is_empty() {
                        spec.ups = m.spec.ups.clone();
                        spec.owner = m.spec.owner.clone();
                    }
                    m.set_spec(spec);
                    resumed = m.resume(now);
                    if m.active() {
                        tracing::warn!(domain = %name, phase = m.phase.as_str(), "power: resuming an interrupted sequence");
                    }
                    m
                }
                Some(Err(e)) => {
                    // Loud, in the log and the event list: a sequence that
                    // was running is not resumed; the next UPS reading
                    // decides afresh.
                    let why = e.describe();
                    tracing::error!(domain = %name, "power: cannot restore the saved state: {why}; starting on mains, any interrupted sequence is not resumed");
                    let event = crate::server::events::event(
                        now,
                        &format!("power:{name}"),
                        "power_state_refused",
                        nodewarden_proto::v1::Severity::Critical,
                        format!(
                            "saved power state of domain {name} not restored: {why}; starting on mains"
                        ),
                    );
                    let store = self.hub.store().clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = store.append_event(event) {
                            tracing::error!("power: cannot record event: {e}");
                        }
                    });
                    Machine::new(spec, now)
                }
                None => Machine::new(spec, now),
            };
            self.machines.insert(name.clone(), machine);
            self.persist(&name).await;
            self.execute(Key::Real(name), resumed);
        }
        for stale in stored.keys().filter(|k| !self.machines.contains_key(*k)) {
            let _ = self.hub.store().delete_power_state(stale);
        }
        // Right after a (re)start no agent has reconnected yet: "offline" here
        // means "not heard from since", not "went down", so only connections
        // are fed; the machine waits for the rest within each stage's bound.
        self.resync(false).await;
    }

    /// Feeds every machine what the hub knows now (start, or after lagging);
    /// `offline_too`: also report the agents not connected as disconnected.
    async fn resync(&mut self, offline_too: bool) {
        self.refresh_members().await;
        for n in self.hub.node_infos() {
            let input = if n.online {
                Input::AgentConnected(n.name)
            } else if offline_too {
                Input::AgentDisconnected(n.name)
            } else {
                continue;
            };
            for name in self.domain_names() {
                self.feed(Key::Real(name), input.clone()).await;
            }
        }
        for u in self.hub.ups_infos() {
            if let Some(status) = u.status {
                self.on_hub(HubEvent::Ups {
                    node: u.node,
                    status: Box::new(status),
                })
                .await;
            }
        }
    }

    fn domain_names(&self) -> Vec<String> {
        self.machines.keys().cloned().collect()
    }

    async fn refresh_members(&mut self) {
        for name in self.domain_names() {
            let Some(spec) = self.machines.get(&name).map(|m| m.spec.clone()) else {
                continue;
            };
            let members = self.members(&spec);
            if self
                .machines
                .get(&name)
                .is_some_and(|m| m.members != members)
            {
                self.feed(Key::Real(name), Input::Members(members)).await;
            }
        }
    }

    async fn on_hub(&mut self, ev: HubEvent) {
        match ev {
            HubEvent::Connected(node) | HubEvent::Disconnected(node)
                if !self
                    .machines
                    .values()
                    .any(|m| m.members.iter().any(|x| x.name == node)) =>
            {
                // A new node: it joins the default domain's members once the
                // burst it came in is handled (after a power cut thousands
                // connect at once, and each refresh reads every node).
                self.members_stale = true;
                let connected = self.agents.connected(&node);
                for name in self.domain_names() {
                    let input = if connected {
                        Input::AgentConnected(node.clone())
                    } else {
                        Input::AgentDisconnected(node.clone())
                    };
                    self.feed(Key::Real(name), input).await;
                }
            }
            HubEvent::Connected(node) => self.broadcast(Input::AgentConnected(node)).await,
            HubEvent::Disconnected(node) => self.broadcast(Input::AgentDisconnected(node)).await,
            HubEvent::Ups { node, status } => {
                let default = self.config.domains.is_empty();
                let mut target = None;
                for (name, m) in &self.machines {
                    let ours = m.spec.owner == node && m.spec.ups == status.ups_name;
                    // The default domain adopts the first UPS it hears of.
                    let adopt = default && m.spec.owner.is_empty();
                    if ours || adopt {
                        target = Some(name.clone());
                    }
                }
                let Some(name) = target else {
                    return;
                };
                if let Some(m) = self.machines.get_mut(&name)
                    && m.spec.owner.is_empty()
                {
                    tracing::info!(domain = %name, ups = %status.ups_name, owner = %node, "power: the domain's UPS");
                    let mut spec = m.spec.clone();
                    spec.ups = status.ups_name.clone();
                    spec.owner = node.clone();
                    m.set_spec(spec);
                    self.refresh_members().await;
                }
                let obs = UpsObservation::from_status(&status);
                self.feed(Key::Real(name.clone()), Input::Ups(obs)).await;
            }
        }
    }

    /// Connection events go to every machine and every drill.
    async fn broadcast(&mut self, input: Input) {
        for name in self.domain_names() {
            self.feed(Key::Real(name), input.clone()).await;
        }
        let drills: Vec<String> = self.drills.keys().cloned().collect();
        for d in drills {
            self.feed(Key::Drill(d), input.clone()).await;
        }
    }

    fn wake_at(&self) -> Option<i64> {
        self.machines
            .values()
            .chain(self.drills.values().map(|d| &d.machine))
            .filter_map(Machine::wake_at)
            .min()
    }

    async fn tick_all(&mut self) {
        let now = now_ms();
        for name in self.domain_names() {
            if self
                .machines
                .get(&name)
                .and_then(Machine::wake_at)
                .is_some_and(|w| w <= now)
            {
                self.feed(Key::Real(name), Input::Tick).await;
            }
        }
        let drills: Vec<String> = self.drills.keys().cloned().collect();
        for d in drills {
            if self
                .drills
                .get(&d)
                .and_then(|x| x.machine.wake_at())
                .is_some_and(|w| w <= now)
            {
                self.feed(Key::Drill(d), Input::Tick).await;
            }
        }
    }

    /// One step of one machine: persist, then act.
    async fn feed(&mut self, key: Key, input: Input) {
        let now = now_ms();
        let (actions, phase) = match &key {
            Key::Real(name) => {
                if !self.config.enabled
                    && !matches!(
                        input,
                        Input::Members(_) | Input::AgentConnected(_) | Input::AgentDisconnected(_)
                    )
                {
                    return;
                }
                let Some(m) = self.machines.get_mut(name) else {
                    return;
                };
                let connection_news = matches!(
                    input,
                    Input::Members(_) | Input::AgentConnected(_) | Input::AgentDisconnected(_)
                );
                let a = m.step(now, input);
                let phase = m.phase;
                if connection_news && a.is_empty() {
                    // Nothing to act on: saving can wait for the end of the
                    // burst (after a restart nobody counts as connected anyway).
                    self.unsaved.insert(name.clone());
                } else {
                    // Persist, then act.
                    self.unsaved.remove(name);
                    self.persist(name).await;
                }
                (a, phase)
            }
            Key::Drill(name) => {
                let Some(d) = self.drills.get_mut(name) else {
                    return;
                };
                let a = d.machine.step(now, input);
                (a, d.machine.phase)
            }
        };
        if phase != Phase::Draining
            && let Some(handles) = self.drains.remove(&key)
        {
            for h in handles {
                h.abort();
            }
        }
        self.execute(key.clone(), actions);
        self.report_drill(&key).await;
    }

    async fn report_drill(&mut self, key: &Key) {
        let Key::Drill(name) = key else {
            return;
        };
        let Some(d) = self.drills.get_mut(name) else {
            return;
        };
        // The timeline is cleared when the sequence starts: report from there.
        if d.machine.timeline.len() < d.sent {
            d.sent = 0;
        }
        for e in d.machine.timeline[d.sent..].iter() {
            let _ = d
                .progress
                .send(DrillUpdate::Step(name.clone(), e.clone()))
                .await;
        }
        d.sent = d.machine.timeline.len();
        if d.machine.phase == Phase::OnMains && d.machine.event_id == 0 && d.sent > 0 {
            let done = self.drills.remove(name);
            if self.drills.is_empty()
                && let Some(d) = done
            {
                let _ = d.progress.send(DrillUpdate::Done).await;
            }
        }
    }

    /// Once no hub event is waiting: recompute members if new nodes came,
    /// and save the machines that connection news changed.
    async fn settle(&mut self) {
        if std::mem::take(&mut self.members_stale) {
            self.refresh_members().await;
        }
        for name in std::mem::take(&mut self.unsaved) {
            self.persist(&name).await;
        }
    }

    async fn persist(&mut self, name: &str) {
        let Some(m) = self.machines.get(name) else {
            return;
        };
        let bytes = match m.to_persisted() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("power: cannot encode state: {e}");
                return;
            }
        };
        self.update_views();
        if self.persisted.get(name) == Some(&bytes) {
            return;
        }
        let store = self.hub.store().clone();
        let domain = name.to_string();
        let b = bytes.clone();
        match tokio::task::spawn_blocking(move || store.put_power_state(&domain, &b)).await {
            Ok(Ok(())) => {
                self.persisted.insert(name.to_string(), bytes);
            }
            Ok(Err(e)) => tracing::error!("power: cannot save state of {name}: {e}"),
            Err(e) => tracing::error!("power: save task failed: {e}"),
        }
    }

    fn update_views(&self) {
        let views: Vec<DomainView> = self
            .machines
            .values()
            .map(|m| DomainView {
                machine: m.clone(),
                now: describe(m),
            })
            .collect();
        *self.views.lock().unwrap_or_else(|p| p.into_inner()) = views;
    }

    fn execute(&mut self, key: Key, actions: Vec<Action>) {
        let drill = matches!(key, Key::Drill(_));
        let domain = match &key {
            Key::Real(n) | Key::Drill(n) => n.clone(),
        };
        for action in actions {
            let tx = self.results.clone();
            let k = key.clone();
            match action {
                Action::Cordon(nodes) => {
                    for node in nodes {
                        let cluster = self.cluster.clone();
                        let (tx, k) = (tx.clone(), k.clone());
                        tokio::spawn(async move {
                            let result =
                                tokio::time::timeout(API_CALL_TIMEOUT, cluster.cordon(&node))
                                    .await
                                    .unwrap_or_else(|_| {
                                        Err("the Kubernetes API did not answer".into())
                                    });
                            let _ = tx.send((k, Input::Cordoned { node, result }));
                        });
                    }
                }
                Action::Drain { nodes, deadline_ms } => {
                    let left = Duration::from_millis((deadline_ms - now_ms()).max(0) as u64);
                    let deadline = tokio::time::Instant::now() + left;
                    for node in nodes {
                        let cluster = self.cluster.clone();
                        let (tx, k2) = (tx.clone(), k.clone());
                        let h = tokio::spawn(async move {
                            let result = match tokio::time::timeout_at(
                                deadline,
                                cluster.drain(&node, deadline),
                            )
                            .await
                            {
                                Ok(Ok(s)) if s.remaining.is_empty() => Ok(s.line()),
                                Ok(Ok(s)) => Err(s.line()),
                                Ok(Err(e)) => Err(e),
                                Err(_) => Err("drain timeout".into()),
                            };
                            let _ = tx.send((k2, Input::Drained { node, result }));
                        });
                        self.drains.entry(k.clone()).or_default().push(h);
                    }
                }
                Action::PowerOff {
                    node,
                    command_id,
                    reason,
                    dry_run,
                } => {
                    let agents = self.agents.clone();
                    let wait = self
                        .config
                        .agent_confirm_timeout
                        .max(self.config.servers_timeout)
                        + TASK_BACKSTOP_MARGIN;
                    tokio::spawn(async move {
                        let r = tokio::time::timeout(wait, async {
                            until_connected(&*agents, &node).await;
                            agents.power_off(&node, command_id, &reason, dry_run).await
                        })
                        .await
                        .unwrap_or_else(|_| Err("no answer".into()));
                        let (ok, message) = match r {
                            Ok(o) => (o.ok, o.message),
                            Err(e) => (false, e),
                        };
                        let _ = tx.send((
                            k,
                            Input::CommandResult {
                                node,
                                command_id,
                                ok,
                                message,
                            },
                        ));
                    });
                }
                Action::UpsShutdownReturn {
                    owner,
                    ups,
                    command_id,
                    off_delay_ms,
                    restore_delay_ms,
                    dry_run,
                } => {
                    let agents = self.agents.clone();
                    let wait = self.config.agent_confirm_timeout + TASK_BACKSTOP_MARGIN;
                    tokio::spawn(async move {
                        let off = Duration::from_millis(off_delay_ms.max(0) as u64);
                        let restore = Duration::from_millis(restore_delay_ms.max(0) as u64);
                        let r = tokio::time::timeout(wait, async {
                            until_connected(&*agents, &owner).await;
                            agents
                                .ups_shutdown_return(
                                    &owner, &ups, command_id, off, restore, dry_run,
                                )
                                .await
                        })
                        .await
                        .unwrap_or_else(|_| Err("no answer".into()));
                        let (ok, message) = match r {
                            Ok(o) => (o.ok, o.message),
                            Err(e) => (false, e),
                        };
                        let _ = tx.send((
                            k,
                            Input::CommandResult {
                                node: owner,
                                command_id,
                                ok,
                                message,
                            },
                        ));
                    });
                }
                Action::Uncordon(nodes) => {
                    for node in nodes {
                        let cluster = self.cluster.clone();
                        let (tx, k) = (tx.clone(), k.clone());
                        tokio::spawn(async move {
                            let result = tokio::time::timeout(
                                API_CALL_TIMEOUT,
                                cluster.uncordon_ours(&node),
                            )
                            .await
                            .unwrap_or_else(|_| Err("the Kubernetes API did not answer".into()));
                            let _ = tx.send((k, Input::Uncordoned { node, result }));
                        });
                    }
                }
                Action::Notify(notice) => {
                    let ups = match &key {
                        Key::Real(n) => self.machines.get(n).map(|m| m.spec.ups.clone()),
                        Key::Drill(n) => self.drills.get(n).map(|d| d.machine.spec.ups.clone()),
                    }
                    .unwrap_or_default();
                    let prefix = if drill { "drill_" } else { "" };
                    let event = crate::server::events::event(
                        now_ms(),
                        &format!("power:{domain}"),
                        &format!("power_{prefix}{}", notice.kind),
                        notice.kind.severity(),
                        notice.message.clone(),
                    );
                    let store = self.hub.store().clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = store.append_event(event) {
                            tracing::error!("power: cannot record event: {e}");
                        }
                    });
                    self.notifier.send(Notification {
                        event: notice.kind,
                        domain: domain.clone(),
                        ups,
                        node: notice.node.unwrap_or_default(),
                        message: notice.message,
                        timestamp_ms: now_ms(),
                        drill,
                    });
                }
            }
        }
    }

    async fn on_control(&mut self, c: Control) {
        match c {
            Control::Plan(reply) => {
                let base = self.plan_base();
                let cluster = self.cluster.clone();
                let config = self.config.clone();
                tokio::spawn(async move {
                    let _ = reply.send(finish_plan(base, cluster, config).await);
                });
            }
            Control::Drill(options, progress) => self.start_drill(options, progress).await,
        }
    }

    fn plan_base(&self) -> Vec<Machine> {
        self.machines.values().cloned().collect()
    }

    async fn start_drill(&mut self, options: DrillOptions, progress: mpsc::Sender<DrillUpdate>) {
        let now = now_ms();
        let say = |text: String| TimelineEntry { at_ms: now, text };
        if !self.drills.is_empty() {
            let _ = progress
                .send(DrillUpdate::Step(
                    String::new(),
                    say("a drill is already running".into()),
                ))
                .await;
            let _ = progress.send(DrillUpdate::Done).await;
            return;
        }
        let chosen: Vec<Machine> = self
            .machines
            .values()
            .filter(|m| options.domain.as_ref().is_none_or(|d| *d == m.spec.name))
            .cloned()
            .collect();
        let refuse = if chosen.is_empty() {
            Some("no such power domain (see `nodewarden power`)".to_string())
        } else if chosen.iter().any(Machine::active) {
            Some("a real power sequence is running; no drill now".to_string())
        } else {
            None
        };
        if let Some(why) = refuse {
            let _ = progress
                .send(DrillUpdate::Step(String::new(), say(why)))
                .await;
            let _ = progress.send(DrillUpdate::Done).await;
            return;
        }
        for real in chosen {
            let name = real.spec.name.clone();
            let mut m = Machine::drill(real.spec.clone(), now, options.cordon);
            m.members = real.members.clone();
            m.connected = real.connected.clone();
            m.ups = real.ups.clone();
            self.drills.insert(
                name.clone(),
                Drill {
                    machine: m,
                    progress: progress.clone(),
                    sent: 0,
                },
            );
            let input = if options.simulated_ups {
                Input::Ups(UpsObservation {
                    comm_ok: true,
                    online: false,
                    on_battery: true,
                    low_battery: false,
                    charge_percent: Some(100.0),
                    runtime_ms: real
                        .ups
                        .as_ref()
                        .and_then(|u| u.runtime_ms)
                        .or(Some(1_800_000)),
                    ..Default::default()
                })
            } else {
                Input::Start {
                    reason: "drill started by `nodewarden drill`".into(),
                }
            };
            self.feed(Key::Drill(name), input).await;
        }
    }
}

/// How much longer a command task waits than the machine's own deadline
/// (HubAgents already adds a second): the machine's deadline always fires
/// first, so a node's state reads the same every time, and a late answer
/// arrives at a machine that has moved on and changes nothing.
const TASK_BACKSTOP_MARGIN: Duration = Duration::from_secs(2);

/// Waits for `node`'s agent to be connected. A command resent after a
/// collector restart goes out before the agents have reconnected; without
/// this it would fail at once and the sequence would skip the node.
async fn until_connected<A: AgentPort + ?Sized>(agents: &A, node: &str) {
    while !agents.connected(node) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One line: what the domain is doing now.
pub fn describe(m: &Machine) -> String {
    let stage = m
        .stages
        .get(m.stage)
        .map(|s| s.label.as_str())
        .unwrap_or("");
    match m.phase {
        Phase::OnMains => "on mains; nothing to do".into(),
        Phase::OnBattery => "on battery; within the grace".into(),
        Phase::Cordoning => "cordoning the domain's Kubernetes nodes".into(),
        Phase::Draining => "evicting pods".into(),
        Phase::PoweringOff => format!("powering off {stage}"),
        Phase::UpsCycle => format!("cycling the UPS, then powering off {stage}"),
        Phase::AwaitingReturn => "waiting for mains and the nodes to return".into(),
        Phase::Recovering => "uncordoning the nodes we cordoned".into(),
        Phase::Cancelling => "mains returned: uncordoning the nodes we cordoned".into(),
    }
}

async fn finish_plan<C: ClusterPort>(
    machines: Vec<Machine>,
    cluster: Arc<C>,
    config: PowerConfig,
) -> PlanReport {
    let mut domains = Vec::new();
    for m in machines {
        let stages = m.preview_stages();
        let k8s: Vec<String> = m
            .members
            .iter()
            .filter(|x| x.role.in_cluster())
            .map(|x| x.name.clone())
            .collect();
        let (drain, drain_error) = if k8s.is_empty() {
            (Vec::new(), None)
        } else {
            match tokio::time::timeout(API_CALL_TIMEOUT, cluster.drain_plan(&k8s)).await {
                Ok(Ok(p)) => (p, None),
                Ok(Err(e)) => (Vec::new(), Some(e)),
                Err(_) => (Vec::new(), Some("the Kubernetes API did not answer".into())),
            }
        };
        let s = &m.spec.settings;
        let longest_grace = drain
            .iter()
            .flat_map(|n| n.pods.iter().map(|p| i64::from(p.grace_seconds) * 1000))
            .max()
            .unwrap_or(0);
        let drain_estimate_ms = if drain_error.is_some() {
            s.drain_timeout_ms
        } else {
            longest_grace.min(s.drain_timeout_ms)
        };
        let waits: i64 = stages.iter().map(|st| st.timeout_ms).sum();
        let total_estimate_ms = drain_estimate_ms + waits + config.halt_time.as_millis() as i64;
        let runtime_ms = m.ups.as_ref().and_then(|u| u.runtime_ms);
        let mut warnings = Vec::new();
        if m.spec.owner.is_empty() {
            warnings.push("no UPS reported yet: no agent reads a UPS for this domain".to_string());
        }
        if let Some(r) = runtime_ms
            && r < total_estimate_ms
        {
            warnings.push(format!(
                "runtime left {} is less than the estimated sequence {}",
                nodewarden_common::units::format_duration(Duration::from_millis(r.max(0) as u64)),
                nodewarden_common::units::format_duration(Duration::from_millis(
                    total_estimate_ms as u64
                ))
            ));
        }
        for n in &drain {
            for p in n.pods.iter().filter(|p| p.blocked_by.is_some()) {
                warnings.push(format!(
                    "{}/{} on {} is blocked by PodDisruptionBudget {}: the drain will wait for it until its timeout",
                    p.namespace,
                    p.name,
                    n.node,
                    p.blocked_by.as_deref().unwrap_or("")
                ));
            }
        }
        for x in &m.members {
            if !m.connected.get(&x.name).copied().unwrap_or(false) {
                warnings.push(format!(
                    "{}: agent not connected; it cannot be powered off",
                    x.name
                ));
            }
        }
        domains.push(DomainPlan {
            domain: m.spec.name.clone(),
            ups: m.spec.ups.clone(),
            owner: m.spec.owner.clone(),
            runtime_ms,
            members: m.members.clone(),
            stages,
            drain,
            drain_error,
            drain_estimate_ms,
            total_estimate_ms,
            warnings,
        });
    }
    PlanReport {
        domains,
        warnings: config.warnings(),
    }
}

#[cfg(test)]
#[path = "orchestrator_tests.rs"]
mod tests;
