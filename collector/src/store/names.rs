//! Name <-> id dictionaries: nodes and metrics are stored by small ids.

use std::collections::{HashMap, HashSet};

/// Name <-> id dictionaries, mirrored in memory; ids are never reused.
#[derive(Default)]
pub(super) struct Names {
    /// Node name -> id.
    pub(super) nodes: HashMap<String, u32>,
    /// Metric name -> id.
    pub(super) metrics: HashMap<String, u32>,
    /// Metric id -> name.
    pub(super) metric_names: HashMap<u32, String>,
    /// The (node, metric) pairs that have rows.
    pub(super) node_metrics: HashSet<(u32, u32)>,
    /// Minute of the newest sample persisted in LATEST, per node.
    pub(super) latest_minute: HashMap<u32, i64>,
    /// (node, instance) -> its high-water mark as of the last durable
    /// commit, for the marks lazy commits have moved since. What an agent
    /// is told it need not resend must be on disk.
    pub(super) durable_marks: HashMap<(u32, u64), u64>,
}

/// Ids handed out inside a transaction; merged into `Names` only once it commits.
#[derive(Default)]
pub(super) struct PendingNames {
    /// New node names.
    pub(super) nodes: HashMap<String, u32>,
    /// New metric names.
    pub(super) metrics: Vec<(String, u32)>,
    /// A set: the first commit after thousands of agents join holds tens of
    /// thousands of new pairs, and a list made every lookup a scan.
    pub(super) node_metrics: HashSet<(u32, u32)>,
    /// Minutes whose newest sample this transaction wrote to LATEST.
    pub(super) latest_minute: Vec<(u32, i64)>,
    /// High-water marks this transaction moved, with their value before.
    pub(super) moved_marks: Vec<((u32, u64), u64)>,
}

impl Names {
    /// The node's id, a new one (pending) for a name never seen.
    pub(super) fn node_id(&self, pending: &mut PendingNames, name: &str) -> u32 {
        if let Some(&id) = self.nodes.get(name) {
            return id;
        }
        if let Some(&id) = pending.nodes.get(name) {
            return id;
        }
        let id = (self.nodes.len() + pending.nodes.len()) as u32;
        pending.nodes.insert(name.to_string(), id);
        id
    }

    /// The metric's id, new ones pending, and the (node, metric) pair noted.
    pub(super) fn metric_id(&self, pending: &mut PendingNames, node: u32, name: &str) -> u32 {
        let id = if let Some(&id) = self.metrics.get(name) {
            id
        } else if let Some((_, id)) = pending.metrics.iter().find(|(n, _)| n == name) {
            *id
        } else {
            let id = (self.metrics.len() + pending.metrics.len()) as u32;
            pending.metrics.push((name.to_string(), id));
            id
        };
        if !self.node_metrics.contains(&(node, id)) && !pending.node_metrics.contains(&(node, id)) {
            pending.node_metrics.insert((node, id));
        }
        id
    }

    /// Merges a committed transaction's new ids; `durable`: it was synced,
    /// and with it every lazy commit before.
    pub(super) fn absorb(&mut self, pending: PendingNames, durable: bool) {
        if durable {
            self.durable_marks.clear();
        } else {
            for (key, before) in pending.moved_marks {
                self.durable_marks.entry(key).or_insert(before);
            }
        }
        for (name, id) in pending.nodes {
            self.nodes.insert(name, id);
        }
        for (name, id) in pending.metrics {
            self.metric_names.insert(id, name.clone());
            self.metrics.insert(name, id);
        }
        self.node_metrics.extend(pending.node_metrics);
        self.latest_minute.extend(pending.latest_minute);
    }
}
