//! The GPSER protocol, pure: bytes in, typed frames, requests and readings
//! or typed errors out. No I/O; [`super::driver`] owns the serial line.

use std::fmt;
use std::ops::Range;

use crate::ups::model::UpsReading;

/// Start of a frame.
pub const STX: u8 = 0x02;
/// End of a frame.
pub const ETX: u8 = 0x03;
/// First command byte of a reply that refuses the request.
pub const NAK: u8 = 0x15;
/// Address bytes of a request (host to UPS), as riello_ser sends them.
pub const REQUEST_ADDRESS: [u8; 2] = [0x20, 0x22];
/// Address bytes of a reply. NUT only recognises a reply whose first address
/// byte is above 0x20, so the device side answers with the pair swapped.
pub const REPLY_ADDRESS: [u8; 2] = [0x22, 0x20];
/// The data length field has two nibbles.
pub const MAX_DATA_LEN: usize = 0xFF;
/// STX, addresses, command, length (7) + data + check, ETX (5).
pub const MAX_FRAME_LEN: usize = 7 + MAX_DATA_LEN + 5;
const MIN_FRAME_LEN: usize = 12;
/// Line speeds a GPSER UPS may use, in the order riello_ser tries them.
pub const BAUD_RATES: [u32; 2] = [9600, 1200];
/// Manufacturer name NUT reports for every Riello unit.
pub const MANUFACTURER: &str = "RPS S.p.a.";

/// How a frame's integrity is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// 16-bit sum of the bytes.
    Sum,
    /// CRC-16/RIELLO (poly 0x1021 reflected, init 0x554D reflected).
    Crc,
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckKind::Sum => "sum",
            CheckKind::Crc => "CRC",
        })
    }
}

/// Why some bytes are not a GPSER frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame too short: {len} bytes, a GPSER frame has at least {MIN_FRAME_LEN}")]
    Short { len: usize },
    #[error("frame starts with 0x{found:02x}, not STX (0x02)")]
    WrongStart { found: u8 },
    #[error("frame ends with 0x{found:02x}, not ETX (0x03)")]
    WrongEnd { found: u8 },
    #[error("frame declares {declared} data bytes but carries {actual}")]
    BadLength { declared: usize, actual: usize },
    #[error("bad {kind} check: the frame says 0x{found:04x}, its bytes give 0x{computed:04x}")]
    BadCheck {
        kind: CheckKind,
        found: u16,
        computed: u16,
    },
    #[error("byte 0x{byte:02x} at offset {offset} is not a GPSER nibble ('0'..'?')")]
    BadNibble { offset: usize, byte: u8 },
    #[error("frame of {len} bytes is longer than the {MAX_FRAME_LEN}-byte maximum")]
    Oversized { len: usize },
}

/// One decoded frame. `data` is as on the wire (nibbles or ASCII text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub address: [u8; 2],
    pub command: [u8; 2],
    pub data: Vec<u8>,
}

impl Frame {
    /// True when the UPS refused the request.
    pub fn is_nak(&self) -> bool {
        self.command[0] == NAK
    }

    /// The command letters, printable.
    pub fn command_name(&self) -> String {
        command_name(self.command)
    }
}

/// Two command letters, printable (`\\xNN` for anything else).
pub fn command_name(command: [u8; 2]) -> String {
    command
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// The value of one nibble byte, or None when it is not one.
pub fn nibble_value(byte: u8) -> Option<u8> {
    (0x30..=0x3F).contains(&byte).then(|| byte - 0x30)
}

/// Reads `bytes` as a big-endian nibble number; `offset` is where they sit in
/// the frame, for the error.
pub fn read_nibbles(bytes: &[u8], offset: usize) -> Result<u32, FrameError> {
    bytes.iter().enumerate().try_fold(0u32, |acc, (i, &b)| {
        let v = nibble_value(b).ok_or(FrameError::BadNibble {
            offset: offset + i,
            byte: b,
        })?;
        Ok((acc << 4) | u32::from(v))
    })
}

/// Appends `value` as `digits` nibbles (the low `4 * digits` bits).
pub fn push_nibbles(out: &mut Vec<u8>, value: u32, digits: usize) {
    for i in (0..digits).rev() {
        // Digits above the 8 a u32 holds are zero; the mask keeps the value
        // below 16, so the cast is exact.
        let shifted = u32::try_from(4 * i).ok().and_then(|s| value.checked_shr(s));
        out.push(0x30 + (shifted.unwrap_or(0) & 0xF) as u8);
    }
}

/// The check over `bytes` (everything between STX and the check field).
pub fn check_value(kind: CheckKind, bytes: &[u8]) -> u16 {
    match kind {
        CheckKind::Sum => bytes
            .iter()
            .fold(0u16, |acc, &b| acc.wrapping_add(u16::from(b))),
        CheckKind::Crc => bytes.iter().fold(0x554D_u16, |crc, &b| {
            // Byte-wise CRC-CCITT update (the reflected form): the same maths
            // riello.c does since NUT 2.8.1 (2.8.0 broke it, NUT issue 2137).
            let mut x = (crc ^ u16::from(b)) & 0xFF;
            x = (x ^ (x << 4)) & 0xFF;
            (crc >> 8) ^ (x << 8) ^ (x << 3) ^ (x >> 4)
        }),
    }
}

/// Builds the bytes of a frame.
pub fn encode_frame(frame: &Frame, check: CheckKind) -> Result<Vec<u8>, FrameError> {
    if frame.data.len() > MAX_DATA_LEN {
        return Err(FrameError::Oversized {
            len: MIN_FRAME_LEN + frame.data.len(),
        });
    }
    let mut out = Vec::with_capacity(MIN_FRAME_LEN + frame.data.len());
    out.push(STX);
    out.extend_from_slice(&frame.address);
    out.extend_from_slice(&frame.command);
    push_nibbles(&mut out, frame.data.len() as u32, 2);
    out.extend_from_slice(&frame.data);
    let sum = check_value(check, &out[1..]);
    push_nibbles(&mut out, u32::from(sum), 4);
    out.push(ETX);
    Ok(out)
}

/// Reads one complete frame (STX through ETX, nothing around it).
pub fn decode_frame(bytes: &[u8], check: CheckKind) -> Result<Frame, FrameError> {
    let len = bytes.len();
    if len > MAX_FRAME_LEN {
        return Err(FrameError::Oversized { len });
    }
    if len < MIN_FRAME_LEN {
        return Err(FrameError::Short { len });
    }
    if bytes[0] != STX {
        return Err(FrameError::WrongStart { found: bytes[0] });
    }
    if bytes[len - 1] != ETX {
        return Err(FrameError::WrongEnd {
            found: bytes[len - 1],
        });
    }
    let declared = read_nibbles(&bytes[5..7], 5)? as usize;
    let actual = len - MIN_FRAME_LEN;
    if declared != actual {
        return Err(FrameError::BadLength { declared, actual });
    }
    // Four nibbles fit in 16 bits.
    let found = read_nibbles(&bytes[len - 5..len - 1], len - 5)? as u16;
    let computed = check_value(check, &bytes[1..len - 5]);
    if found != computed {
        return Err(FrameError::BadCheck {
            kind: check,
            found,
            computed,
        });
    }
    Ok(Frame {
        address: [bytes[1], bytes[2]],
        command: [bytes[3], bytes[4]],
        data: bytes[7..len - 5].to_vec(),
    })
}

/// Where the first complete frame in a received stream is: from the last STX
/// before the first ETX through that ETX. Frame bodies never contain STX or
/// ETX, so line noise before a frame (even a stray STX) is skipped.
pub fn find_frame(stream: &[u8]) -> Option<Range<usize>> {
    let mut from = 0;
    loop {
        let end = from + stream[from..].iter().position(|&b| b == ETX)?;
        // An ETX with no STX before it is noise: look past it.
        if let Some(start) = stream[from..end].iter().rposition(|&b| b == STX) {
            return Some(from + start..end + 1);
        }
        from = end + 1;
    }
}

/// A request the host sends. Delays are seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// GI: model, firmware, phases, check type.
    Identify,
    /// GN: nominal values.
    Nominal,
    /// RS: status flags and measurements.
    Status,
    /// RE: extended measurements (output power, current). Optional.
    Extended,
    /// CS: cut output after the delay. On battery the UPS powers up again
    /// when mains returns (NUT's shutdown.return); on mains it stays off.
    Shutdown { delay_s: u16 },
    /// CR: cut output after `off_delay_s`, restore it `restore_delay_s`
    /// later (NUT's load.on.delay sends it with the off delay 0).
    ShutdownRestore {
        off_delay_s: u16,
        restore_delay_s: u16,
    },
    /// CD: cancel a pending shutdown.
    CancelShutdown,
    /// TB: battery test.
    BatteryTest,
    /// TP: front-panel test.
    PanelTest,
}

impl Request {
    /// The two command letters.
    pub fn command(&self) -> [u8; 2] {
        *match self {
            Request::Identify => b"GI",
            Request::Nominal => b"GN",
            Request::Status => b"RS",
            Request::Extended => b"RE",
            Request::Shutdown { .. } => b"CS",
            Request::ShutdownRestore { .. } => b"CR",
            Request::CancelShutdown => b"CD",
            Request::BatteryTest => b"TB",
            Request::PanelTest => b"TP",
        }
    }

    /// The request as a frame.
    pub fn frame(&self) -> Frame {
        let mut data = Vec::new();
        match *self {
            Request::Shutdown { delay_s } => push_nibbles(&mut data, u32::from(delay_s), 4),
            Request::ShutdownRestore {
                off_delay_s,
                restore_delay_s,
            } => {
                push_nibbles(&mut data, u32::from(off_delay_s), 4);
                push_nibbles(&mut data, u32::from(restore_delay_s), 4);
            }
            // The battery test carries "005", as riello_ser sends it.
            Request::BatteryTest => data.extend_from_slice(b"005"),
            _ => {}
        }
        Frame {
            address: REQUEST_ADDRESS,
            command: self.command(),
            data,
        }
    }

    /// The check this request and its reply use: identification always
    /// uses the sum, since the UPS has not yet told which one it wants.
    pub fn check(&self, negotiated: CheckKind) -> CheckKind {
        match self {
            Request::Identify => CheckKind::Sum,
            _ => negotiated,
        }
    }

    /// The bytes to send.
    pub fn encode(&self, negotiated: CheckKind) -> Vec<u8> {
        // Request data is at most 8 bytes, far below the limit.
        encode_frame(&self.frame(), self.check(negotiated)).unwrap_or_default()
    }

    /// The request a received frame carries; None for commands this
    /// implementation does not know (the device side answers NAK).
    pub fn from_frame(frame: &Frame) -> Result<Option<Request>, GpserError> {
        let name = frame.command_name();
        let delay = |at: usize| -> Result<u16, GpserError> {
            let bytes = frame.data.get(at..at + 4).ok_or(GpserError::ShortReply {
                command: name.clone(),
                len: frame.data.len(),
                need: at + 4,
            })?;
            Ok(read_nibbles(bytes, 7 + at)? as u16)
        };
        Ok(Some(match &frame.command {
            b"GI" => Request::Identify,
            b"GN" => Request::Nominal,
            b"RS" => Request::Status,
            b"RE" => Request::Extended,
            b"CS" => Request::Shutdown { delay_s: delay(0)? },
            b"CR" => Request::ShutdownRestore {
                off_delay_s: delay(0)?,
                restore_delay_s: delay(4)?,
            },
            b"CD" => Request::CancelShutdown,
            b"TB" => Request::BatteryTest,
            b"TP" => Request::PanelTest,
            _ => return Ok(None),
        }))
    }
}

/// Why a reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpserError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the UPS answered {command} with NAK (command not supported)")]
    Nak { command: String },
    #[error("the {command} reply has {len} data bytes, it needs at least {need}")]
    ShortReply {
        command: String,
        len: usize,
        need: usize,
    },
    #[error("sent {sent} but the reply is for {got}")]
    WrongReply { sent: String, got: String },
    #[error("the identification names check type {0:?}; known are '0' (sum) and '1' (CRC)")]
    UnknownCheck(char),
}

/// Data length of a GI reply.
pub const GI_DATA_LEN: usize = 56;
/// Data length of a GN reply.
pub const GN_DATA_LEN: usize = 22;
/// Data length of an RS reply for single-phase input.
pub const RS_DATA_LEN_SINGLE: usize = 36;
/// ... three-phase input, single-phase output.
pub const RS_DATA_LEN_THREE_SINGLE: usize = 42;
/// ... three-phase input and output.
pub const RS_DATA_LEN_THREE_THREE: usize = 58;
/// Data length of an RE reply.
pub const RE_DATA_LEN: usize = 58;

fn need(command: &str, data: &[u8], len: usize) -> Result<(), GpserError> {
    if data.len() < len {
        return Err(GpserError::ShortReply {
            command: command.into(),
            len: data.len(),
            need: len,
        });
    }
    Ok(())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string()
}

/// What the identification reply (GI) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identification {
    /// Serial number.
    pub serial: String,
    /// Model name (NUT keeps 15 characters of its 16).
    pub model: String,
    pub firmware: String,
    /// Phase layout code: '1' single/single, '2' single in/three out,
    /// '3' three in/single out, '4' three/three.
    pub phases: u8,
    /// Which check the UPS wants from now on.
    pub check: CheckKind,
    /// Number of batteries ('0'..), as NUT reads it.
    pub batteries: u8,
}

impl Identification {
    /// Single-phase input (riello_ser's input_monophase).
    pub fn input_single_phase(&self) -> bool {
        matches!(self.phases, b'1' | b'2')
    }

    /// Single-phase output.
    pub fn output_single_phase(&self) -> bool {
        matches!(self.phases, b'1' | b'3')
    }

    /// How many data bytes riello_ser reads from an RS reply for this layout.
    pub fn status_len(&self) -> usize {
        if self.input_single_phase() {
            RS_DATA_LEN_SINGLE
        } else if self.output_single_phase() {
            RS_DATA_LEN_THREE_SINGLE
        } else {
            RS_DATA_LEN_THREE_THREE
        }
    }

    /// Parses GI data: serial (16), model (16), firmware (12), flags (12).
    pub fn parse(data: &[u8]) -> Result<Identification, GpserError> {
        need("GI", data, GI_DATA_LEN)?;
        let flags = &data[44..56];
        let check = match flags[4] {
            b'0' => CheckKind::Sum,
            b'1' => CheckKind::Crc,
            other => return Err(GpserError::UnknownCheck(char::from(other))),
        };
        Ok(Identification {
            serial: text(&data[0..16]),
            model: text(&data[16..31]),
            firmware: text(&data[32..44]),
            phases: flags[0],
            check,
            batteries: flags[7].wrapping_sub(b'0'),
        })
    }
}

/// Nominal values (GN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nominal {
    pub power_va: u32,
    pub real_power_w: u32,
    pub battery_voltage_v: u16,
    /// Battery capacity, Ah.
    pub battery_capacity_ah: u16,
    pub output_voltage_v: u16,
    /// Output frequency, tenths of a hertz.
    pub output_frequency_dhz: u16,
}

impl Nominal {
    /// Parses GN data; `phases` comes from the identification (power is in
    /// hundreds of VA except on single/single units, as riello_ser reads it).
    pub fn parse(data: &[u8], phases: u8) -> Result<Nominal, GpserError> {
        need("GN", data, GN_DATA_LEN)?;
        let mut at = 0;
        let mut field = |digits: usize| -> Result<u32, GpserError> {
            let v = read_nibbles(&data[at..at + digits], 7 + at)?;
            at += digits;
            Ok(v)
        };
        let scale = if phases == b'1' { 1 } else { 100 };
        Ok(Nominal {
            power_va: field(5)? / scale,
            real_power_w: field(5)? / scale,
            battery_voltage_v: field(3)? as u16,
            battery_capacity_ah: field(3)? as u16,
            output_voltage_v: field(3)? as u16,
            output_frequency_dhz: field(3)? as u16,
        })
    }
}

/// Status and measurements (RS). Frequencies in tenths of a hertz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// The five status nibbles; see [`Status::tokens`].
    pub flags: [u8; 5],
    pub input_frequency_dhz: u16,
    /// L1 (and L2, L3 for three-phase input).
    pub input_voltage_v: [u16; 3],
    /// Zero while the output is off, as riello_ser reports it.
    pub output_frequency_dhz: u16,
    pub output_voltage_v: [u16; 3],
    pub load_percent: [u16; 3],
    pub bypass_frequency_dhz: u16,
    pub bypass_voltage_v: [u16; 3],
    /// Battery voltage, tenths of a volt.
    pub battery_voltage_dv: u16,
    pub battery_charge_percent: u16,
    /// Minutes; None when the UPS sends 0xFFF (unknown).
    pub battery_runtime_min: Option<u16>,
    /// None when the UPS sends 0xFF (no sensor).
    pub temperature_c: Option<u16>,
    /// The reply carried three-phase input / output fields.
    pub three_phase_input: bool,
    pub three_phase_output: bool,
}

/// Status bit positions as (nibble, bit), as riello_ser tests them.
pub mod flag {
    /// Battery low (NUT shows LB only together with OB).
    pub const LOW_BATTERY: (usize, u8) = (0, 0);
    /// Mains failed: on battery.
    pub const ON_BATTERY: (usize, u8) = (0, 1);
    /// UPS locked (riello_ser reads it, reports nothing).
    pub const LOCKED: (usize, u8) = (0, 2);
    /// Output powered; clear means NUT's OFF.
    pub const OUTPUT_ON: (usize, u8) = (0, 3);
    /// Buck (NUT's TRIM).
    pub const BUCK: (usize, u8) = (1, 0);
    /// Boost.
    pub const BOOST: (usize, u8) = (1, 1);
    /// On bypass.
    pub const BYPASS: (usize, u8) = (1, 3);
    /// Replace battery.
    pub const REPLACE_BATTERY: (usize, u8) = (2, 0);
    /// Charging.
    pub const CHARGING: (usize, u8) = (2, 2);
    /// Overload.
    pub const OVERLOAD: (usize, u8) = (4, 2);
}

impl Status {
    /// Parses RS data for the layout `ident` names.
    pub fn parse(data: &[u8], ident: &Identification) -> Result<Status, GpserError> {
        let len = ident.status_len();
        need("RS", data, len)?;
        let mut at = 0;
        let mut field = |digits: usize| -> Result<u16, GpserError> {
            // At most 4 nibbles: fits in 16 bits.
            let v = read_nibbles(&data[at..at + digits], 7 + at)? as u16;
            at += digits;
            Ok(v)
        };
        let mut s = Status::default();
        for i in 0..5 {
            s.flags[i] = field(1)? as u8;
        }
        s.input_frequency_dhz = field(3)?;
        s.input_voltage_v[0] = field(3)?;
        s.output_frequency_dhz = field(3)?;
        s.output_voltage_v[0] = field(3)?;
        s.load_percent[0] = field(2)?;
        s.bypass_frequency_dhz = field(3)?;
        s.bypass_voltage_v[0] = field(3)?;
        s.battery_voltage_dv = field(4)?;
        s.battery_charge_percent = field(2)?;
        let runtime = field(3)?;
        s.battery_runtime_min = (runtime != 0xFFF).then_some(runtime);
        let temp = field(2)?;
        s.temperature_c = (temp != 0xFF).then_some(temp);
        if len > RS_DATA_LEN_SINGLE {
            s.three_phase_input = true;
            s.input_voltage_v[1] = field(3)?;
            s.input_voltage_v[2] = field(3)?;
        }
        if len > RS_DATA_LEN_THREE_SINGLE {
            s.three_phase_output = true;
            s.output_voltage_v[1] = field(3)?;
            s.load_percent[1] = field(2)?;
            s.bypass_voltage_v[1] = field(3)?;
            s.output_voltage_v[2] = field(3)?;
            s.load_percent[2] = field(2)?;
            s.bypass_voltage_v[2] = field(3)?;
        }
        if !s.flag(flag::OUTPUT_ON) {
            s.output_frequency_dhz = 0;
        }
        Ok(s)
    }

    /// One status bit.
    pub fn flag(&self, (nibble, bit): (usize, u8)) -> bool {
        self.flags[nibble] & (1 << bit) != 0
    }

    /// Sets one status bit (for the device side).
    pub fn set_flag(&mut self, (nibble, bit): (usize, u8), on: bool) {
        if on {
            self.flags[nibble] |= 1 << bit;
        } else {
            self.flags[nibble] &= !(1 << bit);
        }
    }

    /// NUT ups.status tokens, in riello_ser's order. Not
    /// `UpsFlags::tokens()`: that order (RB and CHRG before BYPASS, OFF last
    /// but two) differs from what riello_ser, and so NUT clients, show.
    pub fn tokens(&self) -> Vec<String> {
        let on_battery = self.flag(flag::ON_BATTERY);
        let mut t = vec![if on_battery { "OB" } else { "OL" }];
        if on_battery && self.flag(flag::LOW_BATTERY) {
            t.push("LB");
        }
        let checks = [
            (!self.flag(flag::OUTPUT_ON), "OFF"),
            (self.flag(flag::BYPASS), "BYPASS"),
            (self.flag(flag::OVERLOAD), "OVER"),
            (self.flag(flag::BUCK), "TRIM"),
            (self.flag(flag::BOOST), "BOOST"),
            (self.flag(flag::REPLACE_BATTERY), "RB"),
            (self.flag(flag::CHARGING), "CHRG"),
        ];
        t.extend(checks.iter().filter(|(on, _)| *on).map(|(_, tok)| *tok));
        t.into_iter().map(String::from).collect()
    }

    /// The reading riello_ser would publish: L1 values for three-phase
    /// voltages, the mean load of three output phases, and charge and
    /// runtime only when the UPS knows the runtime.
    pub fn reading(&self) -> UpsReading {
        let load = if self.three_phase_output {
            f64::from(self.load_percent.iter().sum::<u16>() / 3)
        } else {
            f64::from(self.load_percent[0])
        };
        UpsReading {
            status: self.tokens(),
            input_voltage_volts: Some(f64::from(self.input_voltage_v[0])),
            output_voltage_volts: Some(f64::from(self.output_voltage_v[0])),
            input_frequency_hertz: Some(f64::from(self.input_frequency_dhz) / 10.0),
            load_percent: Some(load),
            battery_voltage_volts: Some(f64::from(self.battery_voltage_dv) / 10.0),
            battery_charge_percent: self
                .battery_runtime_min
                .map(|_| f64::from(self.battery_charge_percent)),
            battery_charge_estimated: false,
            battery_runtime_seconds: self.battery_runtime_min.map(|m| f64::from(m) * 60.0),
            battery_runtime_estimated: false,
            temperature_celsius: self.temperature_c.map(f64::from),
        }
    }
}

/// Extended measurements (RE); units as the UPS sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extended {
    pub output_current: [u16; 3],
    pub output_real_power_w: [u32; 3],
    pub output_power_va: [u32; 3],
}

impl Extended {
    /// Parses RE data; the first 16 bytes are not used by riello_ser.
    pub fn parse(data: &[u8]) -> Result<Extended, GpserError> {
        need("RE", data, RE_DATA_LEN)?;
        let mut at = 16;
        let mut field = |digits: usize| -> Result<u32, GpserError> {
            let v = read_nibbles(&data[at..at + digits], 7 + at)?;
            at += digits;
            Ok(v)
        };
        let mut e = Extended::default();
        for i in 0..3 {
            e.output_current[i] = field(4)? as u16;
        }
        for i in 0..3 {
            e.output_real_power_w[i] = field(5)?;
        }
        for i in 0..3 {
            e.output_power_va[i] = field(5)?;
        }
        Ok(e)
    }
}
