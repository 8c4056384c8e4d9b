//! Drills: a copy of each chosen domain's machine runs the sequence with
//! dry-run commands, and its timeline goes to whoever asked.

use tokio::sync::mpsc;

use super::runner::{Drill, Key, Runner};
use super::{DrillOptions, DrillUpdate};
use crate::power::machine::{Input, Machine, Phase, TimelineEntry, UpsObservation};
use crate::power::ports::{AgentPort, ClusterPort, LivePort, StorePort};
use nodewarden_common::clock::steady_ms;

impl<C: ClusterPort, A: AgentPort, L: LivePort, S: StorePort> Runner<C, A, L, S> {
    /// Sends the drill's new timeline lines; ends the drill once it is over.
    pub(super) async fn report_drill(&mut self, key: &Key) {
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

    /// Starts a drill of the chosen domains, unless one is running or a
    /// real sequence is.
    pub(super) async fn start_drill(
        &mut self,
        options: DrillOptions,
        progress: mpsc::Sender<DrillUpdate>,
    ) {
        let now = steady_ms();
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
