//! The UPS decision vocabulary both sides use: NUT status tokens parsed once
//! into [`UpsFlags`], and the one rule that says a power cut has gone on too
//! long ([`Thresholds::trigger`]), used by the collector's power machine and
//! by the agent's standalone mode alike; and the delays a UPS really applies
//! to a shutdown ([`delays`]).

pub mod delays;

use std::fmt;
use std::time::Duration;

use crate::units::format_duration;

/// The NUT `ups.status` tokens nodewarden reads or writes, parsed once.
/// Unknown tokens are ignored here (they still travel as text).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsFlags {
    /// `OL`: on line (mains).
    pub online: bool,
    /// `OB`: on battery.
    pub on_battery: bool,
    /// `LB`: the UPS's own low-battery flag.
    pub low_battery: bool,
    /// `HB`: high battery.
    pub high_battery: bool,
    /// `RB`: replace battery.
    pub replace_battery: bool,
    /// `CHRG`: charging.
    pub charging: bool,
    /// `DISCHRG`: discharging.
    pub discharging: bool,
    /// `BYPASS`: on bypass.
    pub bypass: bool,
    /// `CAL`: runtime calibration (a battery test) running.
    pub calibrating: bool,
    /// `OFF`: output off.
    pub off: bool,
    /// `OVER`: overloaded.
    pub overload: bool,
    /// `TRIM`: trimming high input voltage.
    pub trim: bool,
    /// `BOOST`: boosting low input voltage.
    pub boost: bool,
    /// `FSD`: forced shutdown (set by a primary, never by a UPS).
    pub forced_shutdown: bool,
}

impl UpsFlags {
    /// Parses a status as NUT's `ups.status` lists it ("OB DISCHRG LB" split
    /// into tokens).
    pub fn from_tokens<I, S>(tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut f = UpsFlags::default();
        for t in tokens {
            match t.as_ref() {
                "OL" => f.online = true,
                "OB" => f.on_battery = true,
                "LB" => f.low_battery = true,
                "HB" => f.high_battery = true,
                "RB" => f.replace_battery = true,
                "CHRG" => f.charging = true,
                "DISCHRG" => f.discharging = true,
                "BYPASS" => f.bypass = true,
                "CAL" => f.calibrating = true,
                "OFF" => f.off = true,
                "OVER" => f.overload = true,
                "TRIM" => f.trim = true,
                "BOOST" => f.boost = true,
                "FSD" => f.forced_shutdown = true,
                _ => {}
            }
        }
        f
    }

    /// The tokens in NUT's customary order (`OL`/`OB` first).
    pub fn tokens(&self) -> Vec<&'static str> {
        [
            (self.online, "OL"),
            (self.on_battery, "OB"),
            (self.low_battery, "LB"),
            (self.high_battery, "HB"),
            (self.replace_battery, "RB"),
            (self.charging, "CHRG"),
            (self.discharging, "DISCHRG"),
            (self.bypass, "BYPASS"),
            (self.calibrating, "CAL"),
            (self.off, "OFF"),
            (self.overload, "OVER"),
            (self.trim, "TRIM"),
            (self.boost, "BOOST"),
            (self.forced_shutdown, "FSD"),
        ]
        .into_iter()
        .filter_map(|(on, t)| on.then_some(t))
        .collect()
    }

    /// Something a person should look at (the `ups` table's red).
    pub fn alarming(&self) -> bool {
        self.on_battery || self.low_battery || self.overload || self.forced_shutdown || self.off
    }

    /// Worth a note but not an alarm (the `ups` table's yellow).
    pub fn notable(&self) -> bool {
        self.replace_battery || self.bypass || self.calibrating
    }
}

/// When a power cut has gone on too long: the thresholds NUT's upsmon and
/// apcupsd users know (grace, BATTERYLEVEL, MINUTES, LB).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// On battery this long (the flicker filter).
    pub grace: Duration,
    /// Battery charge at or below this, percent.
    pub min_charge_percent: f64,
    /// Runtime left at or below this.
    pub min_runtime: Duration,
    /// Act on the UPS's own low-battery flag.
    pub on_low_battery: bool,
    /// Act when the UPS stops answering while the last reading said on battery.
    pub on_comm_lost: bool,
}

/// What the rule reads: the UPS's latest state as the caller tracks it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatteryState {
    /// The last poll was answered.
    pub comm_ok: bool,
    /// On battery (when `comm_ok` is false: as the last good reading said).
    pub on_battery: bool,
    /// The UPS's LB flag.
    pub low_battery: bool,
    /// Battery charge, percent.
    pub charge_percent: Option<f64>,
    /// Remaining runtime.
    pub runtime: Option<Duration>,
    /// How long it has been on battery, if known.
    pub on_battery_for: Option<Duration>,
}

/// Why the shutdown must start; `Display` is the sentence the timeline and
/// the logs show.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// The UPS stopped answering and the last reading said on battery.
    CommLostOnBattery,
    /// The UPS's LB flag.
    LowBattery,
    /// Charge at or below the floor.
    Charge { percent: f64, floor: f64 },
    /// Runtime at or below the floor.
    Runtime { left: Duration, floor: Duration },
    /// On battery past the grace.
    Grace {
        on_battery: Duration,
        grace: Duration,
    },
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::CommLostOnBattery => f.write_str("UPS communication lost while on battery"),
            Trigger::LowBattery => f.write_str("the UPS reports low battery"),
            Trigger::Charge { percent, floor } => {
                write!(f, "battery charge {percent:.0}% is at or below {floor:.0}%")
            }
            Trigger::Runtime { left, floor } => write!(
                f,
                "battery runtime {} is at or below {}",
                format_duration(*left),
                format_duration(*floor)
            ),
            Trigger::Grace { on_battery, grace } => write!(
                f,
                "on battery for {} (grace {})",
                format_duration(*on_battery),
                format_duration(*grace)
            ),
        }
    }
}

impl Thresholds {
    /// The first threshold crossed, if any, in the order a person would give
    /// the reason: communication, LB, charge, runtime, then time on battery.
    pub fn trigger(&self, s: &BatteryState) -> Option<Trigger> {
        if !s.comm_ok {
            // The last good reading said on battery: assume the worst.
            return (self.on_comm_lost && s.on_battery).then_some(Trigger::CommLostOnBattery);
        }
        if !s.on_battery {
            return None;
        }
        if self.on_low_battery && s.low_battery {
            return Some(Trigger::LowBattery);
        }
        if let Some(percent) = s.charge_percent
            && percent <= self.min_charge_percent
        {
            return Some(Trigger::Charge {
                percent,
                floor: self.min_charge_percent,
            });
        }
        if let Some(left) = s.runtime
            && left <= self.min_runtime
        {
            return Some(Trigger::Runtime {
                left,
                floor: self.min_runtime,
            });
        }
        let on_battery = s.on_battery_for?;
        (on_battery >= self.grace).then_some(Trigger::Grace {
            on_battery,
            grace: self.grace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds() -> Thresholds {
        Thresholds {
            grace: Duration::from_secs(60),
            min_charge_percent: 30.0,
            min_runtime: Duration::from_secs(300),
            on_low_battery: true,
            on_comm_lost: true,
        }
    }

    fn on_battery() -> BatteryState {
        BatteryState {
            comm_ok: true,
            on_battery: true,
            charge_percent: Some(90.0),
            runtime: Some(Duration::from_secs(1800)),
            on_battery_for: Some(Duration::from_secs(5)),
            ..BatteryState::default()
        }
    }

    #[test]
    fn tokens_round_trip_and_unknown_ones_are_ignored() {
        let f = UpsFlags::from_tokens(["OB", "DISCHRG", "LB", "WHATEVER"]);
        assert!(f.on_battery && f.discharging && f.low_battery && !f.online);
        assert_eq!(f.tokens(), vec!["OB", "LB", "DISCHRG"]);
        assert!(f.alarming());
        let ol = UpsFlags::from_tokens("OL RB".split(' '));
        assert!(!ol.alarming() && ol.notable());
    }

    #[test]
    fn on_mains_nothing_triggers_even_below_every_floor() {
        let s = BatteryState {
            on_battery: false,
            low_battery: true,
            charge_percent: Some(1.0),
            ..on_battery()
        };
        assert_eq!(thresholds().trigger(&s), None);
    }

    #[test]
    fn each_threshold_in_order_with_its_sentence() {
        let t = thresholds();
        assert_eq!(t.trigger(&on_battery()), None);
        let lb = BatteryState {
            low_battery: true,
            charge_percent: Some(10.0),
            ..on_battery()
        };
        assert_eq!(t.trigger(&lb), Some(Trigger::LowBattery));
        let no_lb = Thresholds {
            on_low_battery: false,
            ..thresholds()
        };
        assert_eq!(
            no_lb.trigger(&lb).map(|t| t.to_string()).as_deref(),
            Some("battery charge 10% is at or below 30%")
        );
        let runtime = BatteryState {
            runtime: Some(Duration::from_secs(240)),
            ..on_battery()
        };
        assert_eq!(
            t.trigger(&runtime).map(|t| t.to_string()).as_deref(),
            Some("battery runtime 4m00s is at or below 5m00s")
        );
        let long = BatteryState {
            on_battery_for: Some(Duration::from_secs(61)),
            ..on_battery()
        };
        assert_eq!(
            t.trigger(&long).map(|t| t.to_string()).as_deref(),
            Some("on battery for 1m01s (grace 1m00s)")
        );
    }

    #[test]
    fn comm_lost_triggers_only_after_an_on_battery_reading_and_when_asked() {
        let t = thresholds();
        let lost = BatteryState {
            comm_ok: false,
            ..on_battery()
        };
        assert_eq!(t.trigger(&lost), Some(Trigger::CommLostOnBattery));
        let lost_on_mains = BatteryState {
            on_battery: false,
            ..lost
        };
        assert_eq!(t.trigger(&lost_on_mains), None);
        let off = Thresholds {
            on_comm_lost: false,
            ..thresholds()
        };
        assert_eq!(off.trigger(&lost), None);
    }
}
