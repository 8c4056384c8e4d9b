//! The orchestrator's task: its loop, what it feeds each machine, and how
//! it saves them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::operator::ArmState;
use super::plan::finish_plan;
use super::{
    API_CALL_TIMEOUT, Control, DEFAULT_DOMAIN, DomainView, DrillUpdate, MEMBERS_REFRESH,
    SETTLE_AT_LEAST_EVERY, describe,
};
use crate::power::config::{PowerConfig, domain_name};
use crate::power::machine::{
    DomainSpec, Input, Machine, Member, Phase, Role, UpsObservation, validate_collector_node,
};
use crate::power::notify::Notifier;
use crate::power::ports::{AgentPort, ClusterNode, ClusterPort, LivePort, StorePort};
use crate::state::hub::HubEvent;
use crate::state::nut_hosts::is_nut_host;
use nodewarden_common::clock::{now_ms, steady_ms};

/// Which machine an input is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Key {
    Real(String),
    Drill(String),
}

pub(super) struct Drill {
    pub(super) machine: Machine,
    pub(super) progress: mpsc::Sender<DrillUpdate>,
    pub(super) sent: usize,
}

/// The orchestrator's task: every domain's machine and drill, and the
/// actions under way.
pub(super) struct Runner<C, A, L, S> {
    pub(super) config: PowerConfig,
    pub(super) cluster: Arc<C>,
    pub(super) agents: Arc<A>,
    pub(super) live: Arc<L>,
    pub(super) store: Arc<S>,
    pub(super) notifier: Notifier,
    pub(super) collector_node: String,
    pub(super) machines: BTreeMap<String, Machine>,
    pub(super) drills: BTreeMap<String, Drill>,
    pub(super) results: mpsc::UnboundedSender<(Key, Input)>,
    pub(super) drains: HashMap<Key, Vec<JoinHandle<()>>>,
    pub(super) cluster_nodes: Option<Vec<ClusterNode>>,
    pub(super) persisted: HashMap<String, Vec<u8>>,
    pub(super) views: Arc<Mutex<Vec<DomainView>>>,
    /// Machines stepped by connection news that asked for no action, saved
    /// once the burst of hub events is handled (see [`Runner::settle`]).
    pub(super) unsaved: BTreeSet<String>,
    /// A node not yet in any domain connected: members are recomputed once
    /// the burst is handled, not once per new node.
    pub(super) members_stale: bool,
    /// The last `collector_node` problem reported, so it is said once, not
    /// on every refresh of the members.
    pub(super) collector_node_problem: Option<String>,
    /// Whether the sequence may start (shared with `nodewarden power`).
    pub(super) arm: Arc<Mutex<ArmState>>,
}

impl<C: ClusterPort, A: AgentPort, L: LivePort, S: StorePort> Runner<C, A, L, S> {
    fn spec(&self, name: &str, ups: &str, owner: &str) -> DomainSpec {
        let mut settings = self.config.settings();
        settings.armed = self.armed();
        DomainSpec {
            name: name.to_string(),
            ups: ups.to_string(),
            owner: owner.to_string(),
            collector_node: (!self.collector_node.is_empty()).then(|| self.collector_node.clone()),
            settings,
        }
    }

    fn specs(&self) -> Vec<DomainSpec> {
        if self.config.domains.is_empty() {
            // The one UPS: whichever the agents report (the first by name).
            let (ups, owner) = self
                .live
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
        let hub_nodes = self.live.node_infos();
        // Looked up once per member: a map, so thousands of nodes are not
        // thousands of scans.
        let hub_roles: HashMap<&str, &str> = hub_nodes
            .iter()
            .map(|n| (n.name.as_str(), n.role.as_str()))
            .collect();
        // What each agent found of its own k3s units: the last resort.
        let agent_roles: HashMap<&str, &str> = hub_nodes
            .iter()
            .map(|n| (n.name.as_str(), n.k3s_role.as_str()))
            .collect();
        let cluster_servers: Option<HashMap<&str, bool>> = self
            .cluster_nodes
            .as_ref()
            .map(|c| c.iter().map(|n| (n.name.as_str(), n.server)).collect());
        // Without an answer from the Kubernetes API (no kubeconfig yet, or
        // the API down after a restart) the roles last learnt stand: they are
        // persisted with the machine. A server must never become a worker
        // for lack of an answer, or it would go down with the workers and
        // take etcd's quorum with it.
        let known: HashMap<&str, Role> = self
            .machines
            .get(&spec.name)
            .map(|m| {
                m.members
                    .iter()
                    .map(|x| (x.name.as_str(), x.role))
                    .collect()
            })
            .unwrap_or_default();
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
            // The hosts that follow this UPS through the NUT server.
            names.extend(
                self.live
                    .nut_hosts()
                    .into_iter()
                    .filter(|h| {
                        h.follows
                            .iter()
                            .any(|f| f.owner == spec.owner && f.ups == spec.ups)
                    })
                    .map(|h| h.name),
            );
        }
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let role = self.config.role_override(&name).unwrap_or_else(|| {
                    if is_nut_host(&name) {
                        // Never a Kubernetes node: after the listed external hosts.
                        return Role::External {
                            order: self.config.external.len() as u32 + 1,
                        };
                    }
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
                        None => match (
                            known.get(name.as_str()),
                            hub_roles.get(name.as_str()),
                            agent_roles.get(name.as_str()),
                        ) {
                            (Some(role), _, _) => *role,
                            (None, Some(&"server"), _) | (None, _, Some(&"server")) => Role::Server,
                            _ => Role::Worker,
                        },
                    }
                });
                Member { name, role }
            })
            .collect()
    }

    pub(super) async fn run(
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
                        let wait = (at - steady_ms()).max(0) as u64;
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
                            .map_or_else(|_| Err("timed out".into()), |r| r.map_err(|e| e.to_string()));
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

    pub(super) async fn start(&mut self) {
        let stored: HashMap<String, Vec<u8>> = {
            let store = self.store.clone();
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
        self.load_arm(!stored.is_empty()).await;
        let now = steady_ms();
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
                    let event = crate::state::events::event(
                        now,
                        &format!("power:{name}"),
                        "power_state_refused",
                        nodewarden_proto::v1::Severity::Critical,
                        format!(
                            "saved power state of domain {name} not restored: {why}; starting on mains"
                        ),
                    );
                    self.record(event);
                    Machine::new(spec, now)
                }
                None => Machine::new(spec, now),
            };
            self.machines.insert(name.clone(), machine);
            self.persist(&name).await;
            self.execute(Key::Real(name), resumed);
        }
        for stale in stored.keys().filter(|k| !self.machines.contains_key(*k)) {
            let _ = self.store.delete_power_state(stale);
        }
        // Right after a (re)start no agent has reconnected yet: "offline" here
        // means "not heard from since", not "went down", so only connections
        // are fed; the machine waits for the rest within each stage's bound.
        self.resync(false).await;
    }

    /// Feeds every machine what the hub knows now (start, or after lagging);
    /// `offline_too`: also report the agents not connected as disconnected.
    pub(super) async fn resync(&mut self, offline_too: bool) {
        self.refresh_members().await;
        let agents = self
            .live
            .node_infos()
            .into_iter()
            .map(|n| (n.name, n.online));
        let nut_hosts = self.live.nut_hosts().into_iter().map(|h| {
            let online = h.online();
            (h.name, online)
        });
        for (node, online) in agents.chain(nut_hosts) {
            let input = if online {
                Input::AgentConnected(node)
            } else if offline_too {
                Input::AgentDisconnected(node)
            } else {
                continue;
            };
            for name in self.domain_names() {
                self.feed(Key::Real(name), input.clone()).await;
            }
        }
        for u in self.live.ups_infos() {
            if let Some(status) = u.status {
                self.on_hub(HubEvent::Ups {
                    node: u.node,
                    status: Box::new(status),
                })
                .await;
            }
        }
    }

    pub(super) fn domain_names(&self) -> Vec<String> {
        self.machines.keys().cloned().collect()
    }

    pub(super) async fn refresh_members(&mut self) {
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
        self.check_collector_node();
    }

    /// Appends `event` to the events log off the sequence's path.
    pub(super) fn record(&self, event: nodewarden_proto::v1::Event) {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.append_event(event) {
                tracing::error!("power: cannot record event: {e}");
            }
        });
    }

    /// The collector's node must be one of the domains' nodes, or it would be
    /// planned as an ordinary node and go down with the servers instead of
    /// last. Said loudly (log and a critical event), once per new problem;
    /// checked only once some domain knows its nodes.
    fn check_collector_node(&mut self) {
        let domains: Vec<(&DomainSpec, &[Member])> = self
            .machines
            .values()
            .filter(|m| !m.members.is_empty())
            .map(|m| (&m.spec, m.members.as_slice()))
            .collect();
        if domains.is_empty() {
            return;
        }
        let problem = validate_collector_node(&domains)
            .err()
            .map(|e| e.to_string());
        if problem == self.collector_node_problem {
            return;
        }
        self.collector_node_problem = problem.clone();
        let Some(why) = problem else {
            return;
        };
        tracing::error!("power: {why}");
        let event = crate::state::events::event(
            now_ms(),
            "power",
            "power_collector_node_unknown",
            nodewarden_proto::v1::Severity::Critical,
            why,
        );
        self.record(event);
    }

    pub(super) async fn on_hub(&mut self, ev: HubEvent) {
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
            HubEvent::Standalone { node, result } => {
                let answer = crate::power::adapters::outcome(&result);
                let input = Input::StandaloneActed {
                    node,
                    ups_cycled: answer.ok,
                    message: answer.message,
                    applied: answer.applied,
                };
                self.broadcast(input).await
            }
            HubEvent::Halting { node, reason } => {
                self.broadcast(Input::Halting { node, reason }).await
            }
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
    pub(super) async fn broadcast(&mut self, input: Input) {
        for name in self.domain_names() {
            self.feed(Key::Real(name), input.clone()).await;
        }
        let drills: Vec<String> = self.drills.keys().cloned().collect();
        for d in drills {
            self.feed(Key::Drill(d), input.clone()).await;
        }
    }

    pub(super) fn wake_at(&self) -> Option<i64> {
        self.machines
            .values()
            .chain(self.drills.values().map(|d| &d.machine))
            .filter_map(Machine::wake_at)
            .min()
    }

    pub(super) async fn tick_all(&mut self) {
        let now = steady_ms();
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
    pub(super) async fn feed(&mut self, key: Key, input: Input) {
        // Machine time: Unix ms that do not jump at an NTP sync.
        let now = steady_ms();
        let (actions, phase, held) = match &key {
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
                let (phase, held) = (m.phase, m.hold.is_some());
                if connection_news && a.is_empty() {
                    // Nothing to act on: saving can wait for the end of the
                    // burst (after a restart nobody counts as connected anyway).
                    self.unsaved.insert(name.clone());
                } else {
                    // Persist, then act.
                    self.unsaved.remove(name);
                    self.persist(name).await;
                }
                (a, phase, held)
            }
            Key::Drill(name) => {
                let Some(d) = self.drills.get_mut(name) else {
                    return;
                };
                let a = d.machine.step(now, input);
                (a, d.machine.phase, false)
            }
        };
        // A held sequence stops its drains; resume starts them again.
        if (phase != Phase::Draining || held)
            && let Some(handles) = self.drains.remove(&key)
        {
            for h in handles {
                h.abort();
            }
        }
        self.execute(key.clone(), actions);
        self.report_drill(&key).await;
    }

    /// Once no hub event is waiting: recompute members if new nodes came,
    /// and save the machines that connection news changed.
    pub(super) async fn settle(&mut self) {
        if std::mem::take(&mut self.members_stale) {
            self.refresh_members().await;
        }
        for name in std::mem::take(&mut self.unsaved) {
            self.persist(&name).await;
        }
    }

    pub(super) async fn persist(&mut self, name: &str) {
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
        let store = self.store.clone();
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

    pub(super) fn update_views(&self) {
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

    pub(super) async fn on_control(&mut self, c: Control) {
        match c {
            Control::Plan(reply) => {
                let base = self.plan_base();
                let cluster = self.cluster.clone();
                let config = self.config.clone();
                let can_power_off = self
                    .live
                    .node_infos()
                    .into_iter()
                    .map(|n| (n.name, n.can_power_off))
                    .collect();
                tokio::spawn(async move {
                    let plan = finish_plan(base, cluster, config, can_power_off).await;
                    let _ = reply.send(plan);
                });
            }
            Control::Drill(options, progress) => self.start_drill(options, progress).await,
            Control::Arm { armed, by, reply } => {
                let answer = self.on_arm(armed, by).await;
                let _ = reply.send(answer);
            }
            Control::Hold {
                domain,
                hold,
                by,
                reply,
            } => {
                let answer = self.on_hold(domain, hold, by).await;
                let _ = reply.send(answer);
            }
        }
    }
}
