//! The blocking Megatec driver: queries over a [`SerialLine`] with NUT's
//! retry rules, and charge and runtime guessed as NUT does.

use std::path::Path;

use nodewarden_common::ups::delays;
use nodewarden_proto::v1::{UpsIdentity, UpsRatings};
use serialport::TTYPort;

use super::protocol::{self, BatteryModel, CommandOutcome, ParseError, Ratings, RuntimeCal};
use crate::ups::model::{AppliedDelays, UpsCommandKind, UpsDriver, UpsError, UpsReading};
use crate::ups::serial::{SerialIo, SerialLine};

/// Megatec units talk at 2400 baud 8N1.
pub const DEFAULT_BAUD: u32 = 2400;

/// How to turn what the unit reports into charge and runtime; every field
/// overrides NUT's guess (NUT's names in brackets).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatteryTuning {
    /// Pack voltage when full [default.battery.voltage.high].
    pub voltage_high: Option<f64>,
    /// Pack voltage when empty [default.battery.voltage.low].
    pub voltage_low: Option<f64>,
    /// Nominal pack voltage when the unit does not answer F
    /// [default.battery.voltage.nominal].
    pub voltage_nominal: Option<f64>,
    /// Multiplier from the reported voltage to the pack [battery.packs].
    pub packs: Option<f64>,
    /// Runtime model [runtimecal]; NUT's documented example when unset.
    pub runtime: Option<RuntimeCal>,
    /// Ignore the shutdown-active bit [ignoresab].
    pub ignore_shutdown_active: bool,
}

/// A Megatec UPS on a serial line.
pub struct MegatecDriver<P: SerialIo = TTYPort> {
    line: SerialLine<P>,
    tuning: BatteryTuning,
    /// F reply, read once per connection (None: not asked yet).
    rated: Option<Option<Ratings>>,
    battery: Option<BatteryModel>,
}

impl MegatecDriver<TTYPort> {
    /// Opens the serial port at `path`.
    pub fn open(path: &Path, baud: Option<u32>, tuning: BatteryTuning) -> Result<Self, UpsError> {
        let line = SerialLine::open(path, baud.unwrap_or(DEFAULT_BAUD))?;
        Ok(MegatecDriver::new(line, tuning))
    }
}

impl<P: SerialIo> MegatecDriver<P> {
    /// Speaks Megatec over an already open line.
    pub fn new(line: SerialLine<P>, tuning: BatteryTuning) -> Self {
        MegatecDriver {
            line,
            tuning,
            rated: None,
            battery: None,
        }
    }

    /// Sends a query up to `tries` times until a reply parses. Echo and NAK
    /// are final: asking again gets the same answer.
    fn query<T>(
        &mut self,
        request: &'static [u8],
        parse: fn(&[u8]) -> Result<T, ParseError>,
    ) -> Result<T, UpsError> {
        let name =
            String::from_utf8_lossy(request.strip_suffix(b"\r").unwrap_or(request)).into_owned();
        let mut last: Option<ParseError> = None;
        for _ in 0..self.line.tries.max(1) {
            let Some(reply) = self.line.exchange(request)? else {
                continue;
            };
            match parse(&reply) {
                Ok(v) => return Ok(v),
                Err(ParseError::Echo) => {
                    return Err(UpsError::Protocol(format!(
                        "the UPS on {} echoed `{name}` back: it does not support that Megatec query",
                        self.line.name()
                    )));
                }
                Err(ParseError::Nak) => {
                    return Err(UpsError::Protocol(format!(
                        "the UPS on {} answered NAK to `{name}`",
                        self.line.name()
                    )));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => {
                UpsError::Protocol(format!("reply to `{name}` on {}: {e}", self.line.name()))
            }
            None => UpsError::Timeout {
                port: self.line.name().to_string(),
                tries: self.line.tries.max(1),
                timeout_ms: u64::try_from(self.line.timeout.as_millis()).unwrap_or(u64::MAX),
            },
        })
    }

    fn rated(&mut self) -> Result<Option<Ratings>, UpsError> {
        if let Some(r) = &self.rated {
            return Ok(r.clone());
        }
        // Units without F echo it; that is an answer, not a failure.
        let r = match self.query(protocol::QUERY_RATINGS, protocol::parse_f) {
            Ok(r) => Some(r),
            Err(UpsError::Protocol(e)) => {
                tracing::info!("{e}; battery charge needs battery_voltage_nominal or high/low");
                None
            }
            Err(e) => return Err(e),
        };
        self.rated = Some(r.clone());
        Ok(r)
    }

    fn battery_model(&mut self, reported: f64) -> Result<Option<BatteryModel>, UpsError> {
        if self.battery.is_none() {
            let nominal = match self.tuning.voltage_nominal {
                Some(n) => Some(n),
                None => self
                    .rated()?
                    .and_then(|r| r.battery_voltage)
                    .filter(|v| *v > 0.0),
            };
            let t = &self.tuning;
            self.battery = match (nominal, t.voltage_low, t.voltage_high) {
                (Some(n), low, high) => Some(BatteryModel::guess(n, reported, low, high, t.packs)),
                (None, Some(low), Some(high)) => Some(BatteryModel {
                    voltage_low: low,
                    voltage_high: high,
                    packs: t.packs.unwrap_or(1.0),
                }),
                _ => None,
            };
        }
        Ok(self.battery)
    }
}

impl<P: SerialIo> UpsDriver for MegatecDriver<P> {
    fn protocol(&self) -> &'static str {
        "megatec"
    }

    fn port(&self) -> String {
        self.line.name().to_string()
    }

    fn identify(&mut self) -> Result<UpsIdentity, UpsError> {
        let id = match self.query(protocol::QUERY_IDENTITY, protocol::parse_i) {
            Ok(i) => i,
            // Plenty of units do not answer I; they still work.
            Err(UpsError::Protocol(e)) => {
                tracing::info!("{e}");
                protocol::Identity::default()
            }
            Err(e) => return Err(e),
        };
        Ok(UpsIdentity {
            manufacturer: id.manufacturer,
            model: id.model,
            firmware: id.firmware,
            driver: "megatec".into(),
            port: self.port(),
            serial_number: String::new(),
        })
    }

    fn ratings(&mut self) -> Result<UpsRatings, UpsError> {
        let r = self.rated()?.unwrap_or_default();
        Ok(UpsRatings {
            input_voltage_volts: r.voltage,
            current_amperes: r.current,
            battery_voltage_volts: r.battery_voltage,
            frequency_hertz: r.frequency,
            ..UpsRatings::default()
        })
    }

    fn poll(&mut self) -> Result<UpsReading, UpsError> {
        let q1 = self.query(protocol::QUERY_STATUS, protocol::parse_q1)?;
        let status = protocol::status_tokens(&q1, self.tuning.ignore_shutdown_active);
        if q1.bits.ups_failed {
            tracing::warn!(
                "UPS on {} reports a failure (self-test failed)",
                self.line.name()
            );
        }
        let mut reading = UpsReading {
            status,
            input_voltage_volts: q1.input_voltage,
            output_voltage_volts: q1.output_voltage,
            input_frequency_hertz: q1.input_frequency,
            load_percent: q1.load_percent,
            temperature_celsius: q1.temperature,
            ..UpsReading::default()
        };
        if let Some(reported) = q1.battery_voltage {
            match self.battery_model(reported)? {
                Some(model) => {
                    // Whole-pack voltage, as current NUT publishes it.
                    reading.battery_voltage_volts = Some(reported * model.packs);
                    reading.battery_charge_percent = model.charge_percent(reported);
                    reading.battery_charge_estimated = reading.battery_charge_percent.is_some();
                }
                None => reading.battery_voltage_volts = Some(reported),
            }
        }
        if let (Some(charge), Some(load)) = (reading.battery_charge_percent, reading.load_percent) {
            let cal = self.tuning.runtime.unwrap_or_default();
            reading.battery_runtime_seconds = cal.estimate(charge, load);
            reading.battery_runtime_estimated = reading.battery_runtime_seconds.is_some();
        }
        Ok(reading)
    }

    fn supported_commands(&self) -> Vec<&'static str> {
        vec![
            "shutdown.return",
            "shutdown.stayoff",
            "shutdown.stop",
            "test.battery.start.quick",
            "test.battery.start.deep",
            "test.battery.stop",
            "beeper.toggle",
        ]
    }

    fn command(&mut self, command: UpsCommandKind) -> Result<AppliedDelays, UpsError> {
        let request = protocol::encode_command(command).map_err(|e| UpsError::Refused {
            command: command.nut_name(),
            reason: e.to_string(),
        })?;
        // Sent once: a retry of a command the unit took silently (as most
        // do) would e.g. toggle the beeper back.
        let reply = self.line.exchange(&request)?;
        match protocol::command_outcome(&request, reply.as_deref()) {
            CommandOutcome::Accepted => Ok(applied(command)),
            CommandOutcome::Refused => Err(UpsError::Refused {
                command: command.nut_name(),
                reason: "the UPS answered NAK".into(),
            }),
            CommandOutcome::Unsupported => Err(UpsError::Unsupported(command.nut_name())),
            CommandOutcome::Unexpected(r) => Err(UpsError::Refused {
                command: command.nut_name(),
                reason: format!("unexpected reply {r:?}"),
            }),
        }
    }
}

/// The delays a Megatec unit applies for `command`: what the encoder sent,
/// rounded up to what the unit counts.
fn applied(command: UpsCommandKind) -> AppliedDelays {
    let off = |s| delays::megatec_off(s).map(delays::MegatecOff::seconds);
    match command {
        UpsCommandKind::ShutdownReturn {
            off_delay_s,
            restore_delay_s,
        } => AppliedDelays {
            off_delay_s: off(off_delay_s),
            restore_delay_s: delays::megatec_restore_minutes(restore_delay_s).map(|m| m * 60),
        },
        UpsCommandKind::ShutdownStayOff { off_delay_s } => AppliedDelays {
            off_delay_s: off(off_delay_s),
            restore_delay_s: None,
        },
        _ => AppliedDelays::NONE,
    }
}
