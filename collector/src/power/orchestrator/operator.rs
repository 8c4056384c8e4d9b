//! The operator's word, carried out by the runner: arming the sequence
//! (saved with who and when; until then it only observes) and holding or
//! resuming a running one.

use serde::{Deserialize, Serialize};

use super::plan::arm_errors;
use super::runner::{Key, Runner};
use crate::power::machine::Input;
use crate::power::ports::{AgentPort, ClusterPort, LivePort, StorePort};
use nodewarden_common::clock::now_ms;

/// Whether the sequence may start, and who said so last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmState {
    /// Armed by the operator (`power arm`) or by the config file.
    pub armed: bool,
    /// Who ran `power arm` or `power disarm` last ("" never).
    pub by: String,
    /// When (Unix ms).
    pub at_ms: i64,
    /// `power.armed = true` in the config file.
    #[serde(skip)]
    pub by_config: bool,
}

impl ArmState {
    /// The sequence may start: armed by the operator or by the config file.
    pub fn is_armed(&self) -> bool {
        self.armed || self.by_config
    }
}

/// The answer to `power arm|disarm|hold|resume`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionReply {
    /// Done.
    pub ok: bool,
    /// What was done, or why not.
    pub message: String,
    /// What stands in the way (the plan's errors when arming).
    pub problems: Vec<String>,
}

impl ActionReply {
    fn done(message: impl Into<String>) -> Self {
        ActionReply {
            ok: true,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    fn refused(message: impl Into<String>) -> Self {
        ActionReply {
            ok: false,
            message: message.into(),
            problems: Vec::new(),
        }
    }
}

/// Who armed a collector that ran a sequence before arming existed: it was
/// armed then, and an upgrade must not leave it unprotected.
const ARMED_BEFORE: &str = "an earlier version (armed before `power arm` existed)";

impl<C: ClusterPort, A: AgentPort, L: LivePort, S: StorePort> Runner<C, A, L, S> {
    /// Reads the saved arming; `upgraded` (saved machines, no arming record)
    /// is a collector that ran armed before arming existed.
    pub(super) async fn load_arm(&mut self, upgraded: bool) {
        let store = self.store.clone();
        let saved = tokio::task::spawn_blocking(move || store.power_arm())
            .await
            .ok()
            .and_then(|r| {
                r.map_err(|e| tracing::error!("power: cannot read arming: {e}"))
                    .ok()
            })
            .flatten();
        let mut arm = match saved.map(|b| serde_json::from_slice::<ArmState>(&b)) {
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                // Fail safe: unreadable means not armed, said loudly.
                tracing::error!(
                    "power: the saved arming is unreadable ({e}); observing until `nodewarden power arm`"
                );
                ArmState::default()
            }
            None if upgraded => {
                let a = ArmState {
                    armed: true,
                    by: ARMED_BEFORE.into(),
                    at_ms: now_ms(),
                    by_config: false,
                };
                self.save_arm(&a).await;
                a
            }
            None => {
                // A fresh install: saved, so the next start is not taken
                // for an upgrade (its machines are saved from now on).
                let a = ArmState::default();
                self.save_arm(&a).await;
                a
            }
        };
        arm.by_config = self.config.armed;
        self.set_arm(arm);
    }

    async fn save_arm(&self, arm: &ArmState) -> bool {
        let Ok(bytes) = serde_json::to_vec(arm) else {
            return false;
        };
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.put_power_arm(&bytes)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!("power: cannot save arming: {e}");
                false
            }
            Err(e) => {
                tracing::error!("power: arming save task failed: {e}");
                false
            }
        }
    }

    /// Sets the arming everywhere it counts: each machine's settings and
    /// the view `nodewarden power` reads.
    fn set_arm(&mut self, arm: ArmState) {
        let armed = arm.is_armed();
        for m in self.machines.values_mut() {
            let mut spec = m.spec.clone();
            spec.settings.armed = armed;
            m.set_spec(spec);
        }
        *self.arm.lock().unwrap_or_else(|p| p.into_inner()) = arm;
    }

    /// Whether the sequence may start now.
    pub(super) fn armed(&self) -> bool {
        self.arm
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_armed()
    }

    /// `power arm` (refused while the plan has errors) or `power disarm`
    /// (refused while a sequence runs, or when the config file arms).
    pub(super) async fn on_arm(&mut self, armed: bool, by: String) -> ActionReply {
        if armed {
            let problems: Vec<String> = self
                .machines
                .values()
                .flat_map(|m| {
                    arm_errors(m)
                        .into_iter()
                        .map(move |e| format!("{}: {e}", m.spec.name))
                })
                .collect();
            if !problems.is_empty() {
                return ActionReply {
                    ok: false,
                    message: "not armed: `nodewarden plan` has errors; fix them first".into(),
                    problems,
                };
            }
        } else {
            if self.config.armed {
                return ActionReply::refused(
                    "armed by the config file (power.armed = true): set it to false and restart the collector",
                );
            }
            if let Some(m) = self.machines.values().find(|m| m.active()) {
                return ActionReply::refused(format!(
                    "domain {} is in its sequence ({}): `nodewarden power hold` stops it before the point of no return",
                    m.spec.name,
                    m.phase.as_str()
                ));
            }
        }
        let arm = ArmState {
            armed,
            by: by.clone(),
            at_ms: now_ms(),
            by_config: self.config.armed,
        };
        if !self.save_arm(&arm).await {
            return ActionReply::refused("the store refused the change: see the collector's log");
        }
        self.set_arm(arm);
        let (word, kind, text) = if armed {
            (
                "armed",
                "power_armed",
                "the power-cut sequence will run on the next outage",
            )
        } else {
            (
                "disarmed",
                "power_disarmed",
                "the power-cut sequence only observes until `nodewarden power arm`",
            )
        };
        tracing::warn!(by, "power: {word}");
        let event = crate::state::events::event(
            now_ms(),
            "power",
            kind,
            nodewarden_proto::v1::Severity::Warning,
            format!("{word} by {by}: {text}"),
        );
        self.record(event);
        for name in self.domain_names() {
            // Saved with the new settings; an outage in progress is judged
            // again at once.
            self.feed(Key::Real(name), Input::Tick).await;
        }
        ActionReply::done(format!("{word} by {by}: {text}"))
    }

    /// `power hold` / `power resume` for `domain` (or every domain with
    /// something to hold or resume).
    pub(super) async fn on_hold(
        &mut self,
        domain: Option<String>,
        hold: bool,
        by: String,
    ) -> ActionReply {
        let names: Vec<String> = match &domain {
            Some(d) if !self.machines.contains_key(d) => {
                return ActionReply::refused(format!("no power domain {d}"));
            }
            Some(d) => vec![d.clone()],
            None => self.domain_names(),
        };
        let mut done = Vec::new();
        let mut refusals = Vec::new();
        for name in names {
            let Some(m) = self.machines.get(&name) else {
                continue;
            };
            let refusal = if hold {
                m.hold_refusal()
            } else {
                m.hold.is_none().then(|| "not held".to_string())
            };
            if let Some(why) = refusal {
                refusals.push(format!("{name}: {why}"));
                continue;
            }
            let input = if hold {
                Input::Hold { by: by.clone() }
            } else {
                Input::Resume { by: by.clone() }
            };
            self.feed(Key::Real(name.clone()), input).await;
            done.push(name);
        }
        let verb = if hold { "held" } else { "resumed" };
        if done.is_empty() {
            return ActionReply {
                ok: false,
                message: format!("nothing {verb}"),
                problems: refusals,
            };
        }
        ActionReply {
            ok: true,
            message: format!("{verb} by {by}: {}", done.join(", ")),
            problems: refusals,
        }
    }
}
