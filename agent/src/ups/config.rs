//! `[[ups]]` sections of agent.toml.

use std::time::Duration;

use nodewarden_common::units::serde_duration;
use serde::Deserialize;

use crate::ups::megatec::BatteryTuning;
use crate::ups::megatec::protocol::RuntimeCal;
use crate::ups::serial::PortSpec;

/// Shortest poll interval: a 2400-baud Q1 round trip takes ~200 ms.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The protocol a `[[ups]]` speaks; lower-case in TOML.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum UpsProtocol {
    /// Megatec first, then GPSER: the first that answers on the port.
    #[default]
    Auto,
    /// Megatec Q1 ("Voltronic").
    Megatec,
    /// Riello GPSER.
    Gpser,
    /// A UPS read through NUT's upsd.
    Nut,
}

impl UpsProtocol {
    /// The name as written in agent.toml (and as drivers report it).
    pub fn as_str(&self) -> &'static str {
        match self {
            UpsProtocol::Auto => "auto",
            UpsProtocol::Megatec => "megatec",
            UpsProtocol::Gpser => "gpser",
            UpsProtocol::Nut => "nut",
        }
    }
}

impl TryFrom<String> for UpsProtocol {
    type Error = String;

    // The message follows the key and line the config loader puts first.
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "auto" => Ok(UpsProtocol::Auto),
            "megatec" => Ok(UpsProtocol::Megatec),
            "gpser" => Ok(UpsProtocol::Gpser),
            "nut" => Ok(UpsProtocol::Nut),
            other => Err(format!("`{other}` is not one of auto, megatec, gpser, nut")),
        }
    }
}

/// One UPS this agent reads.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpsConfig {
    /// Name shown by `nodewarden ups` and used in events.
    pub name: String,
    /// "auto" (the default), "megatec", "gpser" or "nut".
    #[serde(default)]
    pub protocol: UpsProtocol,
    /// Serial device ("/dev/ttyUSB0", "/dev/serial/by-id/...", "auto",
    /// "usb:VID:PID[:SERIAL]") or, for nut, "upsname@host:port".
    pub port: String,
    /// How often to read the UPS (default 2 s, at least 500 ms).
    #[serde(default = "default_poll_interval", with = "serde_duration")]
    pub poll_interval: Duration,
    /// Serial speed; the protocol's own when unset (Megatec 2400).
    #[serde(default)]
    pub baud: Option<u32>,
    /// Pack voltage when full (NUT default.battery.voltage.high).
    #[serde(default)]
    pub battery_voltage_high: Option<f64>,
    /// Pack voltage when empty (NUT default.battery.voltage.low).
    #[serde(default)]
    pub battery_voltage_low: Option<f64>,
    /// Nominal pack voltage for units that do not report it.
    #[serde(default)]
    pub battery_voltage_nominal: Option<f64>,
    /// Reported-to-pack voltage multiplier (NUT battery.packs).
    #[serde(default)]
    pub battery_packs: Option<f64>,
    /// NUT's runtimecal: [runtime_s at load_%, runtime_s at load_%], e.g.
    /// [240, 100, 720, 50].
    #[serde(default)]
    pub runtimecal: Option<[f64; 4]>,
    /// Ignore the Megatec shutdown-active bit (NUT ignoresab).
    #[serde(default)]
    pub ignore_shutdown_active: bool,
    /// protocol = "nut": upsd.users user allowed INSTCMD (shutdown.return).
    #[serde(default)]
    pub nut_user: Option<String>,
    /// protocol = "nut": that user's password.
    #[serde(default)]
    pub nut_password: Option<String>,
}

impl Default for UpsConfig {
    fn default() -> Self {
        UpsConfig {
            name: "ups".into(),
            protocol: UpsProtocol::Auto,
            port: "auto".into(),
            poll_interval: default_poll_interval(),
            baud: None,
            battery_voltage_high: None,
            battery_voltage_low: None,
            battery_voltage_nominal: None,
            battery_packs: None,
            runtimecal: None,
            ignore_shutdown_active: false,
            nut_user: None,
            nut_password: None,
        }
    }
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(2)
}

impl UpsConfig {
    /// Checks values serde cannot; messages name the key.
    pub fn validate(&self) -> Result<(), String> {
        let n = &self.name;
        if self.poll_interval < MIN_POLL_INTERVAL {
            return Err(format!(
                "[[ups]] `{n}`: key `poll_interval`: {:?} is below 500ms",
                self.poll_interval
            ));
        }
        if self.protocol != UpsProtocol::Nut {
            self.port
                .parse::<PortSpec>()
                .map_err(|e| format!("[[ups]] `{n}`: key `port`: {e}"))?;
        }
        if let (Some(lo), Some(hi)) = (self.battery_voltage_low, self.battery_voltage_high)
            && lo >= hi
        {
            return Err(format!(
                "[[ups]] `{n}`: battery_voltage_low ({lo}) must be below battery_voltage_high ({hi})"
            ));
        }
        if self.runtimecal.is_some() && self.runtime_cal().is_none() {
            return Err(format!(
                "[[ups]] `{n}`: key `runtimecal`: want [runtime at high load, high load %, runtime at low load, low load %] with the first load higher, e.g. [240, 100, 720, 50]"
            ));
        }
        Ok(())
    }

    /// The runtimecal model, if set and sane.
    pub fn runtime_cal(&self) -> Option<RuntimeCal> {
        let [rh, lh, rl, ll] = self.runtimecal?;
        let cal = RuntimeCal {
            runtime_high_s: rh,
            load_high_percent: lh,
            runtime_low_s: rl,
            load_low_percent: ll,
            ..RuntimeCal::default()
        };
        cal.estimate(100.0, 100.0).map(|_| cal)
    }

    /// The battery settings for protocol drivers.
    pub fn battery_tuning(&self) -> BatteryTuning {
        BatteryTuning {
            voltage_high: self.battery_voltage_high,
            voltage_low: self.battery_voltage_low,
            voltage_nominal: self.battery_voltage_nominal,
            packs: self.battery_packs,
            runtime: self.runtime_cal(),
            ignore_shutdown_active: self.ignore_shutdown_active,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> UpsConfig {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn defaults_are_auto_and_two_seconds() {
        let c = parse("name = \"riello\"\nport = \"/dev/ttyUSB0\"");
        assert_eq!(c.protocol, UpsProtocol::Auto);
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn rejects_fast_polls_bad_ports_and_protocols() {
        let c = parse("name = \"u\"\nport = \"auto\"\npoll_interval = \"200ms\"");
        assert!(c.validate().unwrap_err().contains("poll_interval"));
        let c = parse("name = \"u\"\nport = \"ttyUSB0\"");
        assert!(c.validate().unwrap_err().contains("key `port`"));
        let c = parse("name = \"u\"\nport = \"usb:zz:0001\"");
        assert!(c.validate().unwrap_err().contains("hex USB id"));
        let c = parse("name = \"u\"\nport = \"auto\"\nruntimecal = [720, 50, 240, 100]");
        assert!(c.validate().unwrap_err().contains("runtimecal"));
    }

    #[test]
    fn protocols_are_the_four_lower_case_names() {
        for (text, want) in [
            ("auto", UpsProtocol::Auto),
            ("megatec", UpsProtocol::Megatec),
            ("gpser", UpsProtocol::Gpser),
            ("nut", UpsProtocol::Nut),
        ] {
            let c = parse(&format!(
                "name = \"u\"\nport = \"auto\"\nprotocol = \"{text}\""
            ));
            assert_eq!(c.protocol, want);
        }
        for bad in ["apc", "Megatec", "NUT", ""] {
            let text = format!("name = \"u\"\nport = \"auto\"\nprotocol = \"{bad}\"");
            assert!(toml::from_str::<UpsConfig>(&text).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_protocol_names_key_and_line() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct File {
            ups: Vec<UpsConfig>,
        }
        let text = "[[ups]]\nname = \"u\"\nport = \"auto\"\nprotocol = \"apc\"\n";
        let err = nodewarden_common::config_error::parse_toml::<File>(
            std::path::Path::new("agent.toml"),
            text,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("agent.toml:4:"), "{err}");
        assert!(err.contains("key `protocol`"), "{err}");
        assert!(
            err.contains("`apc` is not one of auto, megatec, gpser, nut"),
            "{err}"
        );
    }

    #[test]
    fn battery_overrides_reach_the_driver() {
        let c = parse(
            "name = \"u\"\nport = \"usb:0665:5161\"\npoll_interval = \"500ms\"\nbattery_voltage_high = 13.6\nbattery_voltage_low = 10.8\nruntimecal = [300, 100, 900, 50]",
        );
        assert_eq!(c.validate(), Ok(()));
        let t = c.battery_tuning();
        assert_eq!((t.voltage_low, t.voltage_high), (Some(10.8), Some(13.6)));
        assert_eq!(t.runtime.map(|r| r.runtime_high_s), Some(300.0));
    }
}
