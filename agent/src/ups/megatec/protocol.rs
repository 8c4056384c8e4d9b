//! The Megatec/Q1 protocol as pure functions: reply bytes in, values or typed
//! errors out; commands in, request bytes out. No I/O here, so every quirk of
//! real units can be tested and fuzzed.
//!
//! Behaviour follows NUT's nutdrv_qx (megatec subdriver and
//! nutdrv_qx_blazer-common.c) so both report the same thing for one UPS.

use nodewarden_common::ups::delays::{self, MegatecOff};

use crate::ups::model::UpsCommandKind;

/// Longest reply line the transport accepts; real replies are under 50 bytes.
pub const MAX_LINE: usize = 256;

/// Q1 queries status; F ratings; I identity.
pub const QUERY_STATUS: &[u8] = b"Q1\r";
pub const QUERY_RATINGS: &[u8] = b"F\r";
pub const QUERY_IDENTITY: &[u8] = b"I\r";

/// Why a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty reply")]
    Empty,
    #[error("reply is {len} bytes long, more than any Megatec reply")]
    TooLong { len: usize },
    #[error("reply does not start with `{expected}`: {text:?}")]
    WrongStart { expected: char, text: String },
    #[error("expected {expected} fields, got {got}: {text:?}")]
    FieldCount {
        expected: usize,
        got: usize,
        text: String,
    },
    #[error("field {field} is not a number: {text:?}")]
    NotANumber { field: &'static str, text: String },
    #[error("status bits must be 8 of 0/1, got {0:?}")]
    StatusBits(String),
    #[error("the UPS echoed the request back (it does not support it)")]
    Echo,
    #[error("the UPS answered NAK")]
    Nak,
}

/// The eight status bits of a Q1 reply, b7 first on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusBits {
    pub utility_fail: bool,
    pub battery_low: bool,
    /// Bypass, boost or buck active; which one depends on voltages.
    pub bypass_boost_buck: bool,
    pub ups_failed: bool,
    /// 1: offline / line-interactive, 0: online (a type, not a state).
    pub standby_type: bool,
    pub test_in_progress: bool,
    pub shutdown_active: bool,
    pub beeper_on: bool,
}

/// A parsed Q1 reply. `None` marks a field the unit fills with '@' or '-'.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Q1Status {
    pub input_voltage: Option<f64>,
    pub input_fault_voltage: Option<f64>,
    pub output_voltage: Option<f64>,
    pub load_percent: Option<f64>,
    pub input_frequency: Option<f64>,
    /// As reported: per cell on some units, whole pack on others.
    pub battery_voltage: Option<f64>,
    pub temperature: Option<f64>,
    pub bits: StatusBits,
}

/// A parsed F reply (ratings).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ratings {
    pub voltage: Option<f64>,
    pub current: Option<f64>,
    pub battery_voltage: Option<f64>,
    pub frequency: Option<f64>,
}

/// A parsed I reply. Empty strings where the unit sends dashes or blanks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Identity {
    pub manufacturer: String,
    pub model: String,
    pub firmware: String,
}

/// What a unit said to a command (commands normally get no reply at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Silence or ACK: the command was taken (NUT treats both as success).
    Accepted,
    /// NAK or "(NAK".
    Refused,
    /// The request came back unchanged: the unit does not know it.
    Unsupported,
    /// Anything else: NUT counts it as failure.
    Unexpected(String),
}

/// Strips the line ending and anything after it, and rejects oversized lines.
fn line(reply: &[u8]) -> Result<&[u8], ParseError> {
    if reply.len() > MAX_LINE {
        return Err(ParseError::TooLong { len: reply.len() });
    }
    let end = reply
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(reply.len());
    let l = &reply[..end];
    if l.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
        return Err(ParseError::Empty);
    }
    Ok(l)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The part of `l` from the last `start` byte: line noise before a reply is
/// common on cheap USB-serial bridges.
fn from_last(l: &[u8], start: u8) -> Result<&[u8], ParseError> {
    match l.iter().rposition(|&b| b == start) {
        Some(p) => Ok(&l[p + 1..]),
        None => Err(ParseError::WrongStart {
            expected: start as char,
            text: text(l),
        }),
    }
}

fn check_refusal(l: &[u8], request: &[u8]) -> Result<(), ParseError> {
    let trimmed = trim_ascii(l);
    if trimmed.eq_ignore_ascii_case(b"NAK") || trimmed.eq_ignore_ascii_case(b"(NAK") {
        return Err(ParseError::Nak);
    }
    let req = request.strip_suffix(b"\r").unwrap_or(request);
    if trimmed.eq_ignore_ascii_case(req) {
        return Err(ParseError::Echo);
    }
    Ok(())
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let b = match b.iter().position(|c| !c.is_ascii_whitespace() && *c != 0) {
        Some(s) => &b[s..],
        None => return &[],
    };
    match b.iter().rposition(|c| !c.is_ascii_whitespace() && *c != 0) {
        Some(e) => &b[..=e],
        None => &[],
    }
}

/// A numeric field; `None` for the '@'/'-' filler units use for values they
/// do not measure.
fn number(field: &'static str, raw: &[u8]) -> Result<Option<f64>, ParseError> {
    if !raw.is_empty() && raw.iter().all(|b| matches!(b, b'@' | b'-' | b'.' | b'#')) {
        return Ok(None);
    }
    let digits = raw.strip_prefix(b"-").unwrap_or(raw);
    let well_formed = !digits.is_empty()
        && digits.iter().all(|b| b.is_ascii_digit() || *b == b'.')
        && digits.iter().filter(|b| **b == b'.').count() <= 1
        && digits.iter().any(u8::is_ascii_digit);
    let bad = || ParseError::NotANumber {
        field,
        text: text(raw),
    };
    if !well_formed {
        return Err(bad());
    }
    let value: f64 = std::str::from_utf8(raw)
        .map_err(|_| bad())?
        .parse()
        .map_err(|_| bad())?;
    Ok(Some(value))
}

fn fields(body: &[u8]) -> Vec<&[u8]> {
    body.split(|b| *b == b' ' || *b == b'\t')
        .filter(|f| !f.is_empty())
        .collect()
}

/// Parses a Q1 reply: `(MMM.M NNN.N PPP.P QQQ RR.R S.SS TT.T b7b6b5b4b3b2b1b0\r`.
pub fn parse_q1(reply: &[u8]) -> Result<Q1Status, ParseError> {
    let l = line(reply)?;
    check_refusal(l, QUERY_STATUS)?;
    let body = from_last(l, b'(')?;
    let f = fields(body);
    if f.len() != 8 {
        return Err(ParseError::FieldCount {
            expected: 8,
            got: f.len(),
            text: text(l),
        });
    }
    let bits = f[7];
    if bits.len() != 8 || !bits.iter().all(|b| *b == b'0' || *b == b'1') {
        return Err(ParseError::StatusBits(text(bits)));
    }
    let bit = |i: usize| bits[i] == b'1';
    Ok(Q1Status {
        input_voltage: number("input voltage", f[0])?,
        input_fault_voltage: number("input fault voltage", f[1])?,
        output_voltage: number("output voltage", f[2])?,
        load_percent: number("load", f[3])?,
        input_frequency: number("input frequency", f[4])?,
        battery_voltage: number("battery voltage", f[5])?,
        temperature: number("temperature", f[6])?,
        bits: StatusBits {
            utility_fail: bit(0),
            battery_low: bit(1),
            bypass_boost_buck: bit(2),
            ups_failed: bit(3),
            standby_type: bit(4),
            test_in_progress: bit(5),
            shutdown_active: bit(6),
            beeper_on: bit(7),
        },
    })
}

/// NUT ups.status tokens for a Q1 reply, in NUT's order.
///
/// As nutdrv_qx does: utility fail → OB else OL; the bypass/boost/buck bit
/// becomes TRIM (output < 95 % of input), BYPASS (within 5 %) or BOOST
/// (output < 150 % of input), and nothing when the voltages make no sense
/// (as on battery, where input is ~0); test → CAL; shutdown active → FSD
/// unless `ignore_shutdown_active` (NUT's `ignoresab`, for units that set
/// it spuriously). "UPS failed" is an alarm in NUT, not a status token.
pub fn status_tokens(q1: &Q1Status, ignore_shutdown_active: bool) -> Vec<String> {
    let b = q1.bits;
    // Not `UpsFlags::tokens()`: it puts CAL before TRIM and BOOST, nutdrv_qx
    // after. Only one of TRIM/BYPASS/BOOST can apply, so pushing in this order
    // keeps NUT's token order (OL/OB, LB, TRIM, BOOST, BYPASS, CAL, FSD).
    let mut tokens: Vec<&str> = vec![if b.utility_fail { "OB" } else { "OL" }];
    if b.battery_low {
        tokens.push("LB");
    }
    if b.bypass_boost_buck {
        let vi = q1.input_voltage.unwrap_or(0.0);
        let vo = q1.output_voltage.unwrap_or(0.0);
        if vo < 0.5 * vi {
            // NUT drops the item: output voltage too low to classify.
        } else if vo < 0.95 * vi {
            tokens.push("TRIM");
        } else if vo < 1.05 * vi {
            tokens.push("BYPASS");
        } else if vo < 1.5 * vi {
            tokens.push("BOOST");
        }
    }
    if b.test_in_progress {
        tokens.push("CAL");
    }
    if b.shutdown_active && !ignore_shutdown_active {
        tokens.push("FSD");
    }
    tokens.into_iter().map(String::from).collect()
}

/// Parses an F reply: `#MMM.M QQQ SS.SS RR.R\r`.
pub fn parse_f(reply: &[u8]) -> Result<Ratings, ParseError> {
    let l = line(reply)?;
    check_refusal(l, QUERY_RATINGS)?;
    let body = from_last(l, b'#')?;
    let f = fields(body);
    if f.len() != 4 {
        return Err(ParseError::FieldCount {
            expected: 4,
            got: f.len(),
            text: text(l),
        });
    }
    Ok(Ratings {
        voltage: number("rated voltage", f[0])?,
        current: number("rated current", f[1])?,
        battery_voltage: number("rated battery voltage", f[2])?,
        frequency: number("rated frequency", f[3])?,
    })
}

/// Parses an I reply: `#Company_Name(15) UPS_Model(10) Version(10)\r`,
/// fixed columns; shorter replies give what they have.
pub fn parse_i(reply: &[u8]) -> Result<Identity, ParseError> {
    let l = line(reply)?;
    check_refusal(l, QUERY_IDENTITY)?;
    // Fixed width 38: take the '#' that starts a full-width reply if there
    // is one (noise may precede it), else the first '#'.
    let start = if l.len() >= 38 && l[l.len() - 38] == b'#' {
        l.len() - 38
    } else {
        l.iter()
            .position(|&b| b == b'#')
            .ok_or_else(|| ParseError::WrongStart {
                expected: '#',
                text: text(l),
            })?
    };
    let body = &l[start..];
    let col = |from: usize, to: usize| -> String {
        let to = to.min(body.len());
        if from >= to {
            return String::new();
        }
        let s = text(trim_ascii(&body[from..to]));
        if s.chars().all(|c| c == '-' || c == '@') {
            String::new()
        } else {
            s
        }
    };
    Ok(Identity {
        manufacturer: col(1, 16),
        model: col(17, 27),
        firmware: col(28, 38),
    })
}

/// Classifies the reply to a command (`None`: nothing came within the
/// timeout, which is how most units acknowledge).
pub fn command_outcome(request: &[u8], reply: Option<&[u8]>) -> CommandOutcome {
    let Some(reply) = reply else {
        return CommandOutcome::Accepted;
    };
    let l = match line(reply) {
        Ok(l) => trim_ascii(l),
        Err(ParseError::Empty) => return CommandOutcome::Accepted,
        Err(e) => return CommandOutcome::Unexpected(e.to_string()),
    };
    let req = trim_ascii(request.strip_suffix(b"\r").unwrap_or(request));
    if l.eq_ignore_ascii_case(b"ACK") || l.eq_ignore_ascii_case(b"(ACK") {
        CommandOutcome::Accepted
    } else if l.eq_ignore_ascii_case(b"NAK") || l.eq_ignore_ascii_case(b"(NAK") {
        CommandOutcome::Refused
    } else if l.eq_ignore_ascii_case(req) {
        CommandOutcome::Unsupported
    } else {
        CommandOutcome::Unexpected(text(l))
    }
}

/// Why a command cannot be encoded for a Megatec unit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("shutdown delay {0} s is outside what Megatec units accept (12-600 s)")]
    OffDelay(u32),
    #[error("restore delay {0} s is outside what Megatec units accept (0-599940 s)")]
    RestoreDelay(u32),
    #[error("battery test length {0} min is outside 1-99 minutes")]
    TestMinutes(u32),
}

/// The `n` of `S<n>`: `.2`-`.9` (tenths of a minute, 6 s steps) under a
/// minute, `01`-`10` minutes above, rounded up so the unit never cuts
/// sooner than asked (NUT truncates: 100 s would cut at 60 s). See
/// [`delays::megatec_off`].
pub fn encode_off_delay(off_delay_s: u32) -> Result<String, EncodeError> {
    match delays::megatec_off(off_delay_s) {
        Some(MegatecOff::Tenths(t)) => Ok(format!(".{t}")),
        Some(MegatecOff::Minutes(m)) => Ok(format!("{m:02}")),
        None => Err(EncodeError::OffDelay(off_delay_s)),
    }
}

/// `S<n>R<m>`: cut output after `off_delay_s`, turn back on `restore_delay_s`
/// after mains returns (whole minutes, rounded up). A restore delay of 0
/// sends plain `S<n>` (on as soon as mains is back).
pub fn encode_shutdown_return(
    off_delay_s: u32,
    restore_delay_s: u32,
) -> Result<Vec<u8>, EncodeError> {
    let n = encode_off_delay(off_delay_s)?;
    let m = delays::megatec_restore_minutes(restore_delay_s)
        .ok_or(EncodeError::RestoreDelay(restore_delay_s))?;
    let s = if m == 0 {
        format!("S{n}\r")
    } else {
        format!("S{n}R{m:04}\r")
    };
    Ok(s.into_bytes())
}

/// `S<n>R0000`: cut output after `off_delay_s` and stay off.
pub fn encode_shutdown_stay_off(off_delay_s: u32) -> Result<Vec<u8>, EncodeError> {
    Ok(format!("S{}R0000\r", encode_off_delay(off_delay_s)?).into_bytes())
}

/// `T<n>`: battery test for `minutes` (01-99).
pub fn encode_test_minutes(minutes: u32) -> Result<Vec<u8>, EncodeError> {
    if !(1..=99).contains(&minutes) {
        return Err(EncodeError::TestMinutes(minutes));
    }
    Ok(format!("T{minutes:02}\r").into_bytes())
}

/// The request line for a command.
pub fn encode_command(command: UpsCommandKind) -> Result<Vec<u8>, EncodeError> {
    Ok(match command {
        UpsCommandKind::ShutdownReturn {
            off_delay_s,
            restore_delay_s,
        } => encode_shutdown_return(off_delay_s, restore_delay_s)?,
        UpsCommandKind::ShutdownStayOff { off_delay_s } => encode_shutdown_stay_off(off_delay_s)?,
        UpsCommandKind::CancelShutdown => b"C\r".to_vec(),
        UpsCommandKind::BatteryTestQuick => b"T\r".to_vec(),
        UpsCommandKind::BatteryTestDeep => b"TL\r".to_vec(),
        UpsCommandKind::CancelTest => b"CT\r".to_vec(),
        UpsCommandKind::BeeperToggle => b"Q\r".to_vec(),
    })
}

/// What the unit's battery looks like, for turning voltage into charge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatteryModel {
    /// Pack voltage when empty (NUT battery.voltage.low).
    pub voltage_low: f64,
    /// Pack voltage when full, float (NUT battery.voltage.high).
    pub voltage_high: f64,
    /// Multiplier from the reported voltage to the pack voltage.
    pub packs: f64,
}

impl BatteryModel {
    /// NUT's guesstimation from the nominal pack voltage: low = 104/120 and
    /// high = 130/120 of nominal (10.4 V and 13.0 V for a 12 V pack), each
    /// replaced by an override when given.
    pub fn guess(
        nominal: f64,
        reported: f64,
        low: Option<f64>,
        high: Option<f64>,
        packs: Option<f64>,
    ) -> Self {
        BatteryModel {
            voltage_low: low.unwrap_or(104.0 * nominal / 120.0),
            voltage_high: high.unwrap_or(130.0 * nominal / 120.0),
            packs: packs.unwrap_or_else(|| guess_battery_packs(reported, nominal).unwrap_or(1.0)),
        }
    }

    /// Battery charge in percent from the reported voltage, clamped 0-100
    /// (NUT: 100 * (V - low) / (high - low)). `None` when low >= high.
    pub fn charge_percent(&self, reported_voltage: f64) -> Option<f64> {
        let usable = self.voltage_high > self.voltage_low && self.voltage_low > 0.0;
        if !usable {
            return None;
        }
        let v = reported_voltage * self.packs;
        let c = 100.0 * (v - self.voltage_low) / (self.voltage_high - self.voltage_low);
        Some(c.clamp(0.0, 100.0))
    }
}

/// How many cells or packs the reported battery voltage stands for: units
/// report per cell (2.27), per 12 V block, or the whole pack. NUT tries the
/// multipliers from the largest down and takes the first that lands within
/// 80-120 % of nominal; the largest wins because a discharged battery soon
/// recovers at least its nominal voltage.
pub fn guess_battery_packs(reported: f64, nominal: f64) -> Option<f64> {
    const PACKS: [f64; 17] = [
        120.0, 100.0, 80.0, 60.0, 48.0, 36.0, 30.0, 24.0, 18.0, 12.0, 8.0, 6.0, 4.0, 3.0, 2.0, 1.0,
        0.5,
    ];
    if !(reported > 0.0 && nominal > 0.0) {
        return None;
    }
    for p in PACKS {
        if p * reported > 1.2 * nominal {
            continue;
        }
        if p * reported < 0.8 * nominal {
            return None;
        }
        return Some(p);
    }
    None
}

/// NUT's `runtimecal` model: two measured runtimes at two loads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuntimeCal {
    pub runtime_high_s: f64,
    pub load_high_percent: f64,
    pub runtime_low_s: f64,
    pub load_low_percent: f64,
    /// Loads below this (percent) count as this (NUT's idleload, 10 %).
    pub idle_load_percent: f64,
}

impl Default for RuntimeCal {
    /// NUT documentation's example for a small unit: 240 s at full load,
    /// 720 s at half load.
    fn default() -> Self {
        RuntimeCal {
            runtime_high_s: 240.0,
            load_high_percent: 100.0,
            runtime_low_s: 720.0,
            load_low_percent: 50.0,
            idle_load_percent: 10.0,
        }
    }
}

impl RuntimeCal {
    /// Remaining runtime in seconds for `charge_percent` at `load_percent`:
    /// runtime = nominal × charge / effective load, where effective load =
    /// (load/100)^k with k fitted through the two points (Peukert-like), as
    /// NUT computes at start-up. `None` if the calibration is unusable.
    pub fn estimate(&self, charge_percent: f64, load_percent: f64) -> Option<f64> {
        let (rh, lh, rl, ll) = (
            self.runtime_high_s,
            self.load_high_percent,
            self.runtime_low_s,
            self.load_low_percent,
        );
        if !(rh > 0.0 && rl >= rh && ll > 0.0 && lh > ll && lh <= 100.0) {
            return None;
        }
        let exp = (rl / rh).ln() / (lh / ll).ln();
        let nominal = rh * (lh / 100.0).powf(exp);
        let idle = (self.idle_load_percent / 100.0).max(0.01);
        let effective = (load_percent.max(0.0) / 100.0).powf(exp).max(idle);
        let r = nominal * (charge_percent.clamp(0.0, 100.0) / 100.0) / effective;
        r.is_finite().then_some(r)
    }
}

#[cfg(test)]
mod tests;
