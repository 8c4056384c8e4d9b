//! The order of the poweroffs and the drain's budget, frozen when a
//! sequence starts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CORDON_TIMEOUT_MS, DomainSpec, Machine, NodeProgress, PowerState, Role, Stage};

impl Machine {
    pub(super) fn fresh_nodes(&self) -> BTreeMap<String, NodeProgress> {
        self.members
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    NodeProgress {
                        role: m.role,
                        cordon: None,
                        drain: None,
                        draining: false,
                        power: PowerState::Waiting,
                        uncordoning: false,
                        uncordoned: false,
                        ours_before: false,
                        uncordon_failures: 0,
                        skipped: false,
                        halting_since_ms: None,
                        wakes_sent: 0,
                    },
                )
            })
            .collect()
    }

    /// The poweroff stages a sequence starting now would use.
    pub fn preview_stages(&self) -> Vec<Stage> {
        let mut m = self.clone();
        m.nodes = m.fresh_nodes();
        // A preview has no clock: every agent not connected now counts.
        m.mark_offline(i64::MAX);
        m.plan_stages()
    }

    /// Marks the nodes whose agents are offline at `now_ms` as skipped;
    /// returns them. Offline: not connected, for `offline_after` or since
    /// the machine started listening that long ago (a node we powered off
    /// is offline at once); a shorter absence is a reconnect, and the stage
    /// waits for it within its bound.
    pub(super) fn mark_offline(&mut self, now_ms: i64) -> Vec<String> {
        let mut offline = Vec::new();
        for (n, p) in self.nodes.iter_mut() {
            let gone_since = self
                .offline_since_ms
                .get(n)
                .copied()
                .unwrap_or(self.listening_since_ms);
            let gone_long =
                now_ms.saturating_sub(gone_since) >= self.spec.settings.offline_after_ms;
            if !self.connected.get(n).copied().unwrap_or(false) && gone_long {
                p.skipped = true;
                offline.push(n.clone());
            }
        }
        offline
    }

    /// Workers, then servers together, then external hosts by order; the UPS
    /// owner and the collector's own node are kept for the end.
    pub(super) fn plan_stages(&self) -> Vec<Stage> {
        let s = &self.spec.settings;
        let last = |n: &str| n == self.spec.owner || Some(n) == self.spec.collector_node.as_deref();
        let pick = |f: &dyn Fn(Role) -> bool| -> Vec<String> {
            self.nodes
                .iter()
                .filter(|(n, p)| f(p.role) && !last(n))
                .map(|(n, _)| n.clone())
                .collect()
        };
        let mut stages = Vec::new();
        let workers = pick(&|r| r == Role::Worker);
        if !workers.is_empty() {
            stages.push(Stage {
                label: "workers".into(),
                nodes: workers,
                timeout_ms: s.agent_confirm_timeout_ms,
                skipped: Vec::new(),
            });
        }
        let servers = pick(&|r| r == Role::Server);
        if !servers.is_empty() {
            stages.push(Stage {
                label: "servers".into(),
                nodes: servers,
                timeout_ms: s.servers_timeout_ms,
                skipped: Vec::new(),
            });
        }
        let mut orders: Vec<u32> = self
            .nodes
            .values()
            .filter_map(|p| match p.role {
                Role::External { order } => Some(order),
                _ => None,
            })
            .collect();
        orders.sort_unstable();
        orders.dedup();
        for o in orders {
            let nodes = pick(&|r| r == Role::External { order: o });
            if !nodes.is_empty() {
                stages.push(Stage {
                    label: format!("external hosts (order {o})"),
                    nodes,
                    timeout_ms: s.agent_confirm_timeout_ms,
                    skipped: Vec::new(),
                });
            }
        }
        // The owner goes down after it has told the UPS, the collector last.
        let owner = &self.spec.owner;
        let collector = self.spec.collector_node.as_deref();
        if self.nodes.contains_key(owner) && Some(owner.as_str()) != collector {
            stages.push(Stage {
                label: "UPS host".into(),
                nodes: vec![owner.clone()],
                timeout_ms: s.agent_confirm_timeout_ms,
                skipped: Vec::new(),
            });
        }
        if let Some(c) = collector
            && self.nodes.contains_key(c)
        {
            stages.push(Stage {
                label: if c == owner {
                    "UPS host and collector".into()
                } else {
                    "collector".into()
                },
                nodes: vec![c.to_string()],
                timeout_ms: s.agent_confirm_timeout_ms,
                skipped: Vec::new(),
            });
        }
        for st in &mut stages {
            st.skipped = st
                .nodes
                .iter()
                .filter(|n| self.nodes.get(*n).is_some_and(|p| p.skipped))
                .cloned()
                .collect();
        }
        stages
    }

    /// Index of the first stage that must wait for the UPS command.
    pub(super) fn ups_stage(&self) -> usize {
        ups_stage_of(&self.spec, &self.stages)
    }

    /// The time budget of a sequence: what it needs after the drain, stage
    /// by stage, and what that leaves the drain with the latest runtime. The
    /// frozen stages while a sequence runs, else the ones it would use now.
    pub fn budget(&self) -> Budget {
        let s = &self.spec.settings;
        let stages: Vec<StageBudget> = self
            .stages_for_budget()
            .into_iter()
            .map(|st| StageBudget {
                label: st.label,
                timeout_ms: st.timeout_ms,
            })
            .collect();
        let ups_command_ms = s.agent_confirm_timeout_ms;
        let counted = CORDON_TIMEOUT_MS
            + stages.iter().map(|st| st.timeout_ms).sum::<i64>()
            + ups_command_ms
            + s.halt_time_ms;
        let reserve_ms = counted.max(s.poweroff_reserve_ms);
        let runtime_ms = self.ups.as_ref().and_then(|u| u.runtime_ms);
        let drain_ms = runtime_ms
            .map_or(s.drain_timeout_ms, |r| {
                (r - reserve_ms).min(s.drain_timeout_ms)
            })
            .max(0);
        Budget {
            cordon_ms: CORDON_TIMEOUT_MS,
            drain_ms,
            stages,
            ups_command_ms,
            halt_ms: s.halt_time_ms,
            reserve_ms,
            runtime_ms,
        }
    }

    /// How long the UPS must hold its output after the cycle command: each
    /// stage after it is waited for in turn, then the last node halts.
    pub fn ups_off_need_ms(&self) -> i64 {
        let stages = self.stages_for_budget();
        let from = ups_stage_of(&self.spec, &stages);
        let waits: i64 = stages
            .iter()
            .skip(from)
            .take(stages.len().saturating_sub(from + 1))
            .map(|st| st.timeout_ms)
            .sum();
        waits + self.spec.settings.halt_time_ms
    }

    /// What [`Machine::ups_off_need_ms`] counts, for people: "UPS host
    /// 30s + halt 45s".
    pub fn ups_off_need_text(&self) -> String {
        let stages = self.stages_for_budget();
        let from = ups_stage_of(&self.spec, &stages);
        let mut parts: Vec<String> = stages
            .iter()
            .skip(from)
            .take(stages.len().saturating_sub(from + 1))
            .map(|st| format!("{} {}", st.label, super::fmt_ms(st.timeout_ms)))
            .collect();
        parts.push(format!(
            "halt {}",
            super::fmt_ms(self.spec.settings.halt_time_ms)
        ));
        parts.join(" + ")
    }

    /// The frozen stages while a sequence runs, else the ones it would use.
    fn stages_for_budget(&self) -> Vec<Stage> {
        if self.active() {
            self.stages.clone()
        } else {
            self.preview_stages()
        }
    }

    /// What the stages from the current one on need, and the last halt.
    pub(super) fn remaining_need_ms(&self) -> i64 {
        let waits: i64 = self
            .stages
            .iter()
            .skip(self.stage)
            .map(|st| st.timeout_ms)
            .sum();
        waits + self.spec.settings.halt_time_ms
    }

    /// When the drain gives up: its timeout, or sooner so the battery still
    /// covers every stage after it (`budget`).
    pub(super) fn drain_deadline(&self, now_ms: i64) -> i64 {
        now_ms + self.budget().drain_ms
    }
}

/// Index of the first of `stages` that holds the UPS owner or the
/// collector's node: the UPS command goes out before it.
fn ups_stage_of(spec: &DomainSpec, stages: &[Stage]) -> usize {
    stages
        .iter()
        .position(|st| {
            st.nodes
                .iter()
                .any(|n| *n == spec.owner || Some(n.as_str()) == spec.collector_node.as_deref())
        })
        .unwrap_or(stages.len())
}

/// The time a sequence needs, as [`Machine::budget`] counts it (ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Cordoning, at most.
    pub cordon_ms: i64,
    /// The drain: its timeout, or the runtime left minus `reserve_ms`.
    pub drain_ms: i64,
    /// Each poweroff stage's bounded wait, in order.
    pub stages: Vec<StageBudget>,
    /// The wait for the owner's answer to the UPS command (one try).
    pub ups_command_ms: i64,
    /// The last node's halt after its agent leaves.
    pub halt_ms: i64,
    /// Kept back from the drain: cordon, stages, UPS command and halt (at
    /// least the configured reserve).
    pub reserve_ms: i64,
    /// The runtime the drain was measured against, if the UPS reports one.
    pub runtime_ms: Option<i64>,
}

/// One stage's share of a [`Budget`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageBudget {
    /// The stage ("workers", "servers", ...).
    pub label: String,
    /// Its bounded wait.
    pub timeout_ms: i64,
}
