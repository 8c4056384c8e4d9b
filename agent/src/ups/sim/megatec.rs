//! The Megatec/Q1 device side: answers Q1, F and I from the simulated state
//! with NUT's fixed column layout, takes the commands, and reproduces the
//! quirks real units have (echoing what they do not know, ACK/NAK, '@'
//! fields, per-cell battery voltage).

use super::{Responder, SimEffect, SimState};

/// Quirks of the simulated unit; the default is a plain, well-behaved one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MegatecDialect {
    /// Report battery voltage per cell (2 V cells) instead of per pack.
    pub per_cell_battery: bool,
    /// Fill the temperature field with '@' (not measured).
    pub no_temperature: bool,
    /// Reply "ACK" to accepted commands (most units stay silent).
    pub ack_commands: bool,
    /// Reply "(NAK" to every command.
    pub nak_commands: bool,
    /// Echo `I` back, as units without identity do.
    pub no_identity: bool,
    /// Requests this unit does not know and echoes back (e.g. "TL").
    pub echoed: Vec<String>,
    pub manufacturer: String,
    pub model: String,
    pub firmware: String,
}

impl Default for MegatecDialect {
    fn default() -> Self {
        MegatecDialect {
            per_cell_battery: false,
            no_temperature: false,
            ack_commands: false,
            nak_commands: false,
            no_identity: false,
            echoed: Vec::new(),
            manufacturer: "NODEWARDEN".into(),
            model: "SIM-800".into(),
            firmware: "V1.0".into(),
        }
    }
}

/// A simulated Megatec unit.
#[derive(Debug, Default)]
pub struct MegatecResponder {
    pub dialect: MegatecDialect,
    pending: Vec<u8>,
}

impl MegatecResponder {
    /// A unit with the given quirks.
    pub fn new(dialect: MegatecDialect) -> Self {
        MegatecResponder {
            dialect,
            pending: Vec::new(),
        }
    }

    fn answer(&self, state: &SimState, request: &str) -> (Option<String>, Option<SimEffect>) {
        let echo = || Some(format!("{request}\r"));
        let command = |effect: SimEffect| {
            let reply = if self.dialect.nak_commands {
                Some("(NAK\r".to_string())
            } else if self.dialect.ack_commands {
                Some("ACK\r".to_string())
            } else {
                None
            };
            let effect = (!self.dialect.nak_commands).then_some(effect);
            (reply, effect)
        };
        if self.dialect.echoed.iter().any(|e| e == request) {
            return (echo(), None);
        }
        match request {
            "Q1" => (Some(q1(state, &self.dialect)), None),
            "F" => (Some(f(state)), None),
            "I" if self.dialect.no_identity => (echo(), None),
            "I" => (Some(identity(&self.dialect)), None),
            "Q" => command(SimEffect::ToggleBeeper),
            "T" => command(SimEffect::StartTest { deep: false }),
            "TL" => command(SimEffect::StartTest { deep: true }),
            "CT" => command(SimEffect::CancelTest),
            "C" => command(SimEffect::CancelShutdown),
            r if r.len() == 3
                && r.starts_with('T')
                && r[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                command(SimEffect::StartTest { deep: false })
            }
            r if r.starts_with('S') => match parse_shutdown(r) {
                Some(effect) => command(effect),
                None => (echo(), None),
            },
            _ => (echo(), None),
        }
    }
}

/// `S<n>[R<m>]` → the shutdown it asks for, or None if malformed.
pub fn parse_shutdown(request: &str) -> Option<SimEffect> {
    let body = request.strip_prefix('S')?;
    let (n, m) = match body.split_once('R') {
        Some((n, m)) => (n, Some(m)),
        None => (body, None),
    };
    let off = if let Some(tenths) = n.strip_prefix('.') {
        if tenths.len() != 1 {
            return None;
        }
        f64::from(tenths.parse::<u8>().ok()?) * 6.0
    } else {
        if n.len() != 2 {
            return None;
        }
        f64::from(n.parse::<u8>().ok()?) * 60.0
    };
    let restore = match m {
        None => Some(0.0),
        Some(m) if m.len() == 4 && m.bytes().all(|b| b.is_ascii_digit()) => {
            let minutes: u32 = m.parse().ok()?;
            (minutes > 0).then(|| f64::from(minutes) * 60.0)
        }
        Some(_) => return None,
    };
    Some(SimEffect::Shutdown {
        off_delay_seconds: off,
        restore_delay_seconds: restore,
    })
}

fn clamp_width(v: f64, max: f64) -> f64 {
    if v.is_finite() {
        v.clamp(0.0, max)
    } else {
        0.0
    }
}

/// Q1 reply in NUT's columns: `(MMM.M NNN.N PPP.P QQQ RR.R S.SS TT.T bbbbbbbb\r`.
pub fn q1(s: &SimState, d: &MegatecDialect) -> String {
    let input = if s.mains { s.input_voltage_volts } else { 0.0 };
    let output = if s.output_off {
        0.0
    } else {
        s.output_voltage_volts
    };
    let load = if s.output_off { 0.0 } else { s.load_percent };
    let pack = s.battery_voltage_volts();
    let battery = if d.per_cell_battery {
        // 2 V lead-acid cells.
        let cells = (s.nominal_battery_voltage_volts / 2.0).max(1.0);
        format!("{:4.2}", clamp_width(pack / cells, 9.99))
    } else {
        format!("{:04.1}", clamp_width(pack, 99.9))
    };
    let temperature = if d.no_temperature {
        "@@.@".to_string()
    } else {
        format!("{:04.1}", clamp_width(s.temperature_celsius, 99.9))
    };
    let bit = |b: bool| if b { '1' } else { '0' };
    let bits: String = [
        !s.mains,
        s.low_battery(),
        false,
        false,
        true,
        s.testing,
        s.shutdown_in_seconds.is_some(),
        s.beeper_on,
    ]
    .into_iter()
    .map(bit)
    .collect();
    format!(
        "({:05.1} {:05.1} {:05.1} {:03.0} {:04.1} {battery} {temperature} {bits}\r",
        clamp_width(input, 999.9),
        clamp_width(input, 999.9),
        clamp_width(output, 999.9),
        clamp_width(load, 999.0),
        clamp_width(s.input_frequency_hertz, 99.9),
    )
}

/// F reply: `#MMM.M QQQ SS.SS RR.R\r` (rated voltage, current, battery
/// voltage, frequency).
pub fn f(s: &SimState) -> String {
    let amps = if s.nominal_voltage_volts > 0.0 {
        s.nominal_power_va / s.nominal_voltage_volts
    } else {
        0.0
    };
    format!(
        "#{:05.1} {:03.0} {:05.1} {:04.1}\r",
        clamp_width(s.nominal_voltage_volts, 999.9),
        clamp_width(amps.floor(), 999.0),
        clamp_width(s.nominal_battery_voltage_volts, 999.9),
        clamp_width(s.input_frequency_hertz, 99.9),
    )
}

/// I reply: `#` + maker (15) + model (10) + firmware (10), space separated.
pub fn identity(d: &MegatecDialect) -> String {
    let cut = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    format!(
        "#{:<15} {:<10} {:<10}\r",
        cut(&d.manufacturer, 15),
        cut(&d.model, 10),
        cut(&d.firmware, 10)
    )
}

impl Responder for MegatecResponder {
    fn protocol(&self) -> &'static str {
        "megatec"
    }

    fn baud(&self) -> u32 {
        2400
    }

    fn feed(&mut self, state: &SimState, input: &[u8]) -> (Vec<Vec<u8>>, Vec<SimEffect>) {
        let mut replies = Vec::new();
        let mut effects = Vec::new();
        for &b in input {
            if b == b'\r' {
                let line = String::from_utf8_lossy(&self.pending).trim().to_string();
                self.pending.clear();
                if line.is_empty() {
                    continue;
                }
                let (reply, effect) = self.answer(state, &line);
                replies.extend(reply.map(String::into_bytes));
                effects.extend(effect);
            } else if b != b'\n' {
                self.pending.push(b);
                // A unit's buffer is small; garbage without CR is dropped.
                if self.pending.len() > 64 {
                    self.pending.clear();
                }
            }
        }
        (replies, effects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ups::megatec::protocol;

    #[test]
    fn replies_parse_with_nuts_columns() {
        let s = SimState::default();
        let r = q1(&s, &MegatecDialect::default());
        assert_eq!(r.len(), 47, "{r:?}");
        assert_eq!(&r[38..46], "00001001");
        let q = protocol::parse_q1(r.as_bytes()).expect("parses");
        assert_eq!(q.input_voltage, Some(230.0));
        assert_eq!(q.battery_voltage, Some(13.0));
        assert_eq!(f(&s).len(), 22);
        assert_eq!(identity(&MegatecDialect::default()).len(), 39);
        let cells = q1(
            &s,
            &MegatecDialect {
                per_cell_battery: true,
                ..MegatecDialect::default()
            },
        );
        assert_eq!(cells.len(), 47, "{cells:?}");
        assert_eq!(
            protocol::parse_q1(cells.as_bytes())
                .expect("parses")
                .battery_voltage,
            Some(2.17)
        );
    }

    #[test]
    fn shutdown_requests_decode() {
        let sd = |off: f64, restore: Option<f64>| {
            Some(SimEffect::Shutdown {
                off_delay_seconds: off,
                restore_delay_seconds: restore,
            })
        };
        assert_eq!(parse_shutdown("S.5R0001"), sd(30.0, Some(60.0)));
        assert_eq!(parse_shutdown("S03"), sd(180.0, Some(0.0)));
        assert_eq!(parse_shutdown("S10R0000"), sd(600.0, None));
        assert_eq!(parse_shutdown("S1R0001"), None);
        assert_eq!(parse_shutdown("S.5R01"), None);
    }

    #[test]
    fn unknown_requests_are_echoed() {
        let mut r = MegatecResponder::default();
        let (replies, effects) = r.feed(&SimState::default(), b"QGS\rQ");
        assert_eq!(replies, vec![b"QGS\r".to_vec()]);
        assert!(effects.is_empty());
        let (replies, effects) = r.feed(&SimState::default(), b"\r");
        assert!(replies.is_empty());
        assert_eq!(effects, vec![SimEffect::ToggleBeeper]);
    }
}
