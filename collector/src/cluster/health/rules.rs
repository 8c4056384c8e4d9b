//! What a node's readings say, by the same rules `nodewarden nodes` colours
//! its table with (`cli::nodes`): one rule, two views. Pure.

use nodewarden_proto::throttle::UNDER_VOLTAGE;
use nodewarden_proto::v1::NodeInfo;

use crate::cli::nodes::{TEMP_CRITICAL_CELSIUS, temperature_level, throttle_level};
use crate::cli::readings::{cpu_temperature_celsius, flag_meaning, meaningful_flags};
use crate::cli::style::Level;

/// One node's readings, reduced to what the conditions need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// The agent has a live stream (its readings are current).
    pub agent_online: bool,
    /// Under-voltage now (firmware bit 0, or hwmon's rpi_volt alarm).
    pub under_voltage: bool,
    /// Throttle flags other than under-voltage active now, by name.
    pub throttling: Vec<&'static str>,
    /// The hottest CPU sensor, °C.
    pub cpu_celsius: Option<f64>,
    /// The power domain (UPS) the node is on, if nodewarden knows it.
    pub ups: Option<String>,
    /// That UPS is on battery now.
    pub on_battery: bool,
}

impl Observation {
    /// The CPU is as hot as `nodewarden nodes` paints red.
    pub fn high_temperature(&self) -> bool {
        self.cpu_celsius
            .is_some_and(|c| temperature_level(c) == Level::Critical)
    }
}

/// The temperature `HighTemperature` starts at (the table's red).
pub const HIGH_TEMPERATURE_CELSIUS: f64 = TEMP_CRITICAL_CELSIUS;

/// Reads one node's latest sample. `ups`: the power domain the node is on
/// and whether its UPS is on battery now (see [`super::labels::domains`]).
pub fn observe(node: &NodeInfo, ups: Option<(String, bool)>) -> Observation {
    let live = node.latest.as_ref().filter(|_| node.online);
    let (ups, on_battery) = match ups {
        Some((name, ob)) => (Some(name), ob),
        None => (None, false),
    };
    let mut o = Observation {
        agent_online: node.online,
        ups,
        on_battery,
        ..Observation::default()
    };
    let Some(sample) = live else {
        return o;
    };
    o.cpu_celsius = cpu_temperature_celsius(sample);
    if let Some(t) = &sample.throttling {
        // Where only hwmon's rpi_volt alarm is readable, the alarm is the
        // under-voltage-now bit (as in the events and the table).
        let word = t.get_throttled
            | if t.under_voltage_alarm {
                UNDER_VOLTAGE
            } else {
                0
            };
        o.under_voltage = throttle_level(word) == Level::Critical;
        o.throttling = meaningful_flags(t)
            .into_iter()
            .filter(|f| f.bit != UNDER_VOLTAGE && word & f.bit != 0)
            .map(flag_meaning)
            .collect();
    }
    o
}

/// The board supports the firmware's throttle word (a Raspberry Pi's
/// mailbox or its rpi_volt alarm): `nodewarden.io/throttling-capable`.
pub fn throttling_capable(node: &NodeInfo) -> bool {
    node.latest
        .as_ref()
        .and_then(|s| s.throttling.as_ref())
        .is_some()
}

#[cfg(test)]
mod tests {
    use nodewarden_proto::v1::{Sample, Temperature, Throttling};

    use super::*;

    fn node(word: u32, alarm: bool, celsius: i32, online: bool) -> NodeInfo {
        NodeInfo {
            name: "pi".into(),
            online,
            latest: Some(Sample {
                throttling: Some(Throttling {
                    get_throttled: word,
                    under_voltage_alarm: alarm,
                    ..Throttling::default()
                }),
                temperatures: vec![Temperature {
                    is_cpu: true,
                    millicelsius: celsius * 1000,
                    ..Temperature::default()
                }],
                ..Sample::default()
            }),
            ..NodeInfo::default()
        }
    }

    #[test]
    fn under_voltage_now_counts_and_since_boot_alone_does_not() {
        assert!(observe(&node(0x1, false, 50, true), None).under_voltage);
        assert!(observe(&node(0, true, 50, true), None).under_voltage);
        assert!(!observe(&node(0x1_0000, false, 50, true), None).under_voltage);
    }

    #[test]
    fn throttling_names_the_active_flags_other_than_under_voltage() {
        let o = observe(&node(0b0101, false, 50, true), None);
        assert_eq!(o.throttling, vec!["throttled"]);
        assert!(
            observe(&node(0x6_0000, false, 50, true), None)
                .throttling
                .is_empty()
        );
    }

    #[test]
    fn high_temperature_is_the_tables_red() {
        assert!(observe(&node(0, false, 80, true), None).high_temperature());
        assert!(!observe(&node(0, false, 79, true), None).high_temperature());
    }

    #[test]
    fn an_offline_agents_last_sample_is_not_a_reading() {
        let o = observe(&node(0x1, false, 90, false), None);
        assert!(!o.agent_online && !o.under_voltage && o.cpu_celsius.is_none());
    }
}
