//! Standalone mode: the UPS host's agent, cut off from the collector while
//! the UPS is on battery, applies the power thresholds itself, cycles the UPS
//! (shutdown with return) and powers its own node off.
//!
//! The decision is pure (readings, link state and a clock in, a verdict out)
//! so every case is a unit test; the daemon does the I/O.

use std::time::{Duration, Instant};

use nodewarden_common::units::{format_duration, serde_duration};
use nodewarden_common::ups::{BatteryState, Thresholds, Trigger, UpsFlags};
use nodewarden_proto::v1::UpsStatus;
use serde::Deserialize;

/// `[standalone]` in agent.toml.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StandaloneConfig {
    /// Unset: on when this agent reads a UPS.
    pub enabled: Option<bool>,
    /// Collector unreachable this long before this agent takes over.
    #[serde(with = "serde_duration")]
    pub link_lost_for: Duration,
    /// On battery this long (flicker filter).
    #[serde(with = "serde_duration")]
    pub grace: Duration,
    /// Battery charge at or below this, percent.
    pub min_charge_percent: f64,
    /// Runtime left at or below this.
    #[serde(with = "serde_duration")]
    pub min_runtime: Duration,
    /// Act on the UPS's own low-battery flag (LB).
    pub on_low_battery: bool,
    /// The UPS cuts its output this long after the command: long enough for
    /// this node to halt.
    #[serde(with = "serde_duration")]
    pub off_delay: Duration,
    /// The UPS restores output this long after mains returns.
    #[serde(with = "serde_duration")]
    pub restore_delay: Duration,
}

impl Default for StandaloneConfig {
    fn default() -> Self {
        StandaloneConfig {
            enabled: None,
            link_lost_for: Duration::from_secs(60),
            grace: Duration::from_secs(180),
            min_charge_percent: 30.0,
            min_runtime: Duration::from_secs(300),
            on_low_battery: true,
            off_delay: Duration::from_secs(120),
            // NUT's nutdrv_qx warns some Megatec firmware stays off after a
            // restore delay under 3 minutes.
            restore_delay: Duration::from_secs(180),
        }
    }
}

impl StandaloneConfig {
    /// Whether standalone mode runs on an agent with `has_ups`.
    pub fn active(&self, has_ups: bool) -> bool {
        self.enabled.unwrap_or(has_ups) && has_ups
    }
}

/// What the decision needs from a UPS status.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UpsView {
    pub communication_ok: bool,
    pub on_battery: bool,
    pub low_battery: bool,
    pub charge_percent: Option<f64>,
    pub runtime_seconds: Option<f64>,
}

impl From<&UpsStatus> for UpsView {
    fn from(s: &UpsStatus) -> Self {
        let flags = UpsFlags::from_tokens(&s.status);
        UpsView {
            communication_ok: s.communication_ok,
            on_battery: flags.on_battery,
            low_battery: flags.low_battery,
            charge_percent: s.battery_charge_percent,
            runtime_seconds: s.battery_runtime_seconds,
        }
    }
}

/// What the daemon should do after a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing to watch.
    Idle,
    /// Collector gone while on battery, not yet time to act; says why.
    Watching(String),
    /// The collector came back (or mains did) before this agent acted.
    StoodDown(String),
    /// Cycle the UPS and power this node off now; says why. Given once.
    Act(String),
}

/// The standalone decision for one UPS.
#[derive(Debug, Clone)]
pub struct Standalone {
    cfg: StandaloneConfig,
    link_down_since: Option<Instant>,
    on_battery_since: Option<Instant>,
    /// Last on-battery state read while communication was good.
    last_on_battery: bool,
    watching: bool,
    acted: bool,
}

impl Standalone {
    /// Nothing seen yet; the link counts as down from the first step.
    pub fn new(cfg: StandaloneConfig) -> Self {
        Standalone {
            cfg,
            link_down_since: None,
            on_battery_since: None,
            last_on_battery: false,
            watching: false,
            acted: false,
        }
    }

    /// True once it has told the daemon to act.
    pub fn acted(&self) -> bool {
        self.acted
    }

    /// One look at the world at `now`.
    pub fn step(&mut self, now: Instant, link_up: bool, ups: UpsView) -> Verdict {
        if self.acted {
            return Verdict::Idle;
        }
        if ups.communication_ok {
            self.last_on_battery = ups.on_battery;
        }
        // Communication lost keeps the last known state: a UPS that stops
        // answering on battery is the worst case, not a return of mains.
        let on_battery = self.last_on_battery;
        if on_battery {
            self.on_battery_since.get_or_insert(now);
        } else {
            self.on_battery_since = None;
        }
        if link_up {
            self.link_down_since = None;
            return self.stand_down("the collector is back; it runs the power sequence");
        }
        let down_since = *self.link_down_since.get_or_insert(now);
        let Some(battery_since) = self.on_battery_since else {
            return self.stand_down("mains is back");
        };
        let Some(trigger) = self.threshold(now, battery_since, ups) else {
            self.watching = true;
            return Verdict::Watching(format!(
                "collector unreachable and the UPS is on battery; no threshold crossed yet (grace {})",
                format_duration(self.cfg.grace)
            ));
        };
        let down = now.saturating_duration_since(down_since);
        if down < self.cfg.link_lost_for {
            self.watching = true;
            return Verdict::Watching(format!(
                "{trigger}; collector unreachable for {}, taking over after {}",
                format_duration(down),
                format_duration(self.cfg.link_lost_for)
            ));
        }
        self.acted = true;
        Verdict::Act(format!(
            "standalone: {trigger}, and the collector has been unreachable for {}",
            format_duration(down)
        ))
    }

    fn stand_down(&mut self, why: &str) -> Verdict {
        if std::mem::take(&mut self.watching) {
            Verdict::StoodDown(why.to_string())
        } else {
            Verdict::Idle
        }
    }

    /// The first threshold crossed, by the rule the collector's machine
    /// uses. Only asked while on battery (as last read with communication).
    fn threshold(&self, now: Instant, battery_since: Instant, ups: UpsView) -> Option<Trigger> {
        let c = &self.cfg;
        let thresholds = Thresholds {
            grace: c.grace,
            min_charge_percent: c.min_charge_percent,
            min_runtime: c.min_runtime,
            on_low_battery: c.on_low_battery,
            // Taking over is already the worst case: a UPS that stops
            // answering on battery always counts.
            on_comm_lost: true,
        };
        let state = BatteryState {
            comm_ok: ups.communication_ok,
            on_battery: true,
            low_battery: ups.low_battery,
            charge_percent: ups.charge_percent,
            runtime: ups
                .runtime_seconds
                // NaN is no reading (not zero); too large to hold is plenty.
                .filter(|r| !r.is_nan())
                .and_then(|r| Duration::try_from_secs_f64(r.max(0.0)).ok()),
            on_battery_for: Some(now.saturating_duration_since(battery_since)),
        };
        thresholds.trigger(&state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> StandaloneConfig {
        StandaloneConfig {
            enabled: Some(true),
            link_lost_for: Duration::from_secs(10),
            grace: Duration::from_secs(60),
            min_charge_percent: 30.0,
            min_runtime: Duration::from_secs(120),
            on_low_battery: true,
            ..StandaloneConfig::default()
        }
    }

    fn online() -> UpsView {
        UpsView {
            communication_ok: true,
            on_battery: false,
            low_battery: false,
            charge_percent: Some(100.0),
            runtime_seconds: Some(1800.0),
        }
    }

    fn battery(charge: f64) -> UpsView {
        UpsView {
            on_battery: true,
            charge_percent: Some(charge),
            ..online()
        }
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn low_charge_without_the_collector_acts_once_after_link_lost_for() {
        let t0 = Instant::now();
        let mut s = Standalone::new(cfg());
        assert!(matches!(
            s.step(t0, false, battery(20.0)),
            Verdict::Watching(_)
        ));
        assert!(matches!(
            s.step(secs(t0, 9), false, battery(20.0)),
            Verdict::Watching(_)
        ));
        let Verdict::Act(why) = s.step(secs(t0, 10), false, battery(20.0)) else {
            panic!("should act after 10 s without the collector");
        };
        assert!(
            why.contains("charge 20%") && why.contains("unreachable for 10s"),
            "{why}"
        );
        assert_eq!(s.step(secs(t0, 11), false, battery(10.0)), Verdict::Idle);
        assert!(s.acted());
    }

    #[test]
    fn the_collector_coming_back_first_stands_down() {
        let t0 = Instant::now();
        let mut s = Standalone::new(cfg());
        assert!(matches!(
            s.step(t0, false, battery(20.0)),
            Verdict::Watching(_)
        ));
        assert!(matches!(
            s.step(secs(t0, 5), true, battery(20.0)),
            Verdict::StoodDown(_)
        ));
        // The clock restarts: a new loss needs its own link_lost_for.
        assert!(matches!(
            s.step(secs(t0, 6), false, battery(20.0)),
            Verdict::Watching(_)
        ));
        assert!(matches!(
            s.step(secs(t0, 15), false, battery(20.0)),
            Verdict::Watching(_)
        ));
        assert!(matches!(
            s.step(secs(t0, 16), false, battery(20.0)),
            Verdict::Act(_)
        ));
    }

    #[test]
    fn a_connected_agent_never_acts() {
        let t0 = Instant::now();
        let mut s = Standalone::new(cfg());
        for i in 0..1000 {
            let mut v = battery(5.0);
            v.low_battery = true;
            assert_eq!(s.step(secs(t0, i), true, v), Verdict::Idle);
        }
    }

    #[test]
    fn mains_without_the_collector_is_not_a_reason() {
        let t0 = Instant::now();
        let mut s = Standalone::new(cfg());
        for i in 0..100 {
            assert_eq!(s.step(secs(t0, i), false, online()), Verdict::Idle);
        }
    }

    #[test]
    fn a_brief_outage_under_the_grace_does_nothing_and_mains_back_stands_down() {
        let t0 = Instant::now();
        let mut s = Standalone::new(cfg());
        for i in 0..59 {
            assert!(matches!(
                s.step(secs(t0, i), false, battery(90.0)),
                Verdict::Watching(_)
            ));
        }
        assert!(matches!(
            s.step(secs(t0, 59), false, online()),
            Verdict::StoodDown(_)
        ));
        assert_eq!(s.step(secs(t0, 200), false, online()), Verdict::Idle);
    }

    #[test]
    fn the_grace_alone_is_enough() {
        let t0 = Instant::now();
        let mut s = Standalone::new(cfg());
        s.step(t0, false, battery(90.0));
        assert!(matches!(
            s.step(secs(t0, 59), false, battery(90.0)),
            Verdict::Watching(_)
        ));
        let Verdict::Act(why) = s.step(secs(t0, 60), false, battery(90.0)) else {
            panic!("grace passed");
        };
        assert!(why.contains("on battery for 1m00s"), "{why}");
    }

    #[test]
    fn each_threshold_triggers_on_its_own() {
        let t0 = Instant::now();
        let cases: [(UpsView, &str); 3] = [
            (
                UpsView {
                    low_battery: true,
                    ..battery(80.0)
                },
                "low battery",
            ),
            (
                UpsView {
                    runtime_seconds: Some(100.0),
                    ..battery(80.0)
                },
                "runtime 1m40s",
            ),
            (
                UpsView {
                    communication_ok: false,
                    ..battery(80.0)
                },
                "communication lost",
            ),
        ];
        for (view, words) in cases {
            let mut s = Standalone::new(cfg());
            // Known to be on battery first, then the reading in question.
            s.step(t0, false, battery(80.0));
            let v = s.step(secs(t0, 10), false, view);
            let Verdict::Act(why) = v else {
                panic!("{words}: got {v:?}");
            };
            assert!(why.contains(words), "{why} lacks {words}");
        }
    }

    #[test]
    fn low_battery_flag_can_be_ignored() {
        let t0 = Instant::now();
        let mut s = Standalone::new(StandaloneConfig {
            on_low_battery: false,
            ..cfg()
        });
        let v = UpsView {
            low_battery: true,
            ..battery(80.0)
        };
        s.step(t0, false, v);
        assert!(matches!(
            s.step(secs(t0, 30), false, v),
            Verdict::Watching(_)
        ));
    }

    #[test]
    fn communication_lost_on_mains_is_not_a_reason() {
        let t0 = Instant::now();
        let mut s = Standalone::new(cfg());
        s.step(t0, false, online());
        let lost = UpsView {
            communication_ok: false,
            ..online()
        };
        assert_eq!(s.step(secs(t0, 100), false, lost), Verdict::Idle);
    }

    #[test]
    fn enabled_follows_the_ups_unless_set() {
        let c = StandaloneConfig::default();
        assert!(c.active(true));
        assert!(!c.active(false));
        let off = StandaloneConfig {
            enabled: Some(false),
            ..c
        };
        assert!(!off.active(true));
    }
}
