//! upsd's network protocol (NUT's docs/net-protocol.txt), pure: reply lines
//! split into words, classified, LIST blocks parsed, and NUT variables mapped
//! to the driver-neutral reading. No I/O; [`super::driver`] owns the socket.

use std::collections::BTreeMap;
use std::fmt;

use nodewarden_common::nut::{self, WordError};
use nodewarden_proto::v1::UpsRatings;

use crate::ups::model::UpsReading;

/// upsd's IANA port.
pub const DEFAULT_PORT: u16 = 3493;
/// Longest reply line accepted; upsd's own lines are far shorter.
pub const MAX_LINE_LEN: usize = 64 * 1024;
/// Most items accepted in one LIST reply.
pub const MAX_LIST_ITEMS: usize = 10_000;

/// Why a reply line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NutParseError {
    #[error("empty reply line")]
    Empty,
    #[error("unterminated quoted string starting at column {column}")]
    UnterminatedQuote { column: usize },
    #[error("the line ends in a lone backslash")]
    TrailingBackslash,
    #[error("reply line longer than {MAX_LINE_LEN} bytes")]
    LineTooLong,
    #[error("reply is not UTF-8")]
    NotUtf8,
    #[error("expected {expected:?}, got {found:?}")]
    Unexpected { expected: String, found: String },
    #[error("the list ended without {expected:?}")]
    Truncated { expected: String },
    #[error("the list has more than {MAX_LIST_ITEMS} items")]
    TooManyItems,
}

/// Splits one reply line into words the way NUT's parseconf does
/// (`nodewarden_common::nut`), refusing lines longer than upsd ever sends.
pub fn split_words(line: &str) -> Result<Vec<String>, NutParseError> {
    if line.len() > MAX_LINE_LEN {
        return Err(NutParseError::LineTooLong);
    }
    nut::split_words(line).map_err(|e| match e {
        WordError::UnterminatedQuote { column } => NutParseError::UnterminatedQuote { column },
        WordError::TrailingBackslash => NutParseError::TrailingBackslash,
    })
}

/// Quotes a value for a request line.
pub use nut::quote;

/// The error names of net-protocol.txt's "Error responses".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NutErrorCode {
    AccessDenied,
    UnknownUps,
    VarNotSupported,
    CmdNotSupported,
    InvalidArgument,
    InstcmdFailed,
    SetFailed,
    Readonly,
    TooLong,
    FeatureNotSupported,
    FeatureNotConfigured,
    AlreadySslMode,
    DriverNotConnected,
    DataStale,
    AlreadyLoggedIn,
    InvalidPassword,
    AlreadySetPassword,
    InvalidUsername,
    AlreadySetUsername,
    UsernameRequired,
    PasswordRequired,
    UnknownCommand,
    InvalidValue,
    /// A tracked command failed (GET TRACKING's ERR UNKNOWN / FAILED).
    Failed,
    Unknown,
    /// A name this client does not know.
    Other(String),
}

/// Each error name on the wire and its code.
pub(super) const CODES: &[(&str, NutErrorCode)] = &[
    ("ACCESS-DENIED", NutErrorCode::AccessDenied),
    ("UNKNOWN-UPS", NutErrorCode::UnknownUps),
    ("VAR-NOT-SUPPORTED", NutErrorCode::VarNotSupported),
    ("CMD-NOT-SUPPORTED", NutErrorCode::CmdNotSupported),
    ("INVALID-ARGUMENT", NutErrorCode::InvalidArgument),
    ("INSTCMD-FAILED", NutErrorCode::InstcmdFailed),
    ("SET-FAILED", NutErrorCode::SetFailed),
    ("READONLY", NutErrorCode::Readonly),
    ("TOO-LONG", NutErrorCode::TooLong),
    ("FEATURE-NOT-SUPPORTED", NutErrorCode::FeatureNotSupported),
    ("FEATURE-NOT-CONFIGURED", NutErrorCode::FeatureNotConfigured),
    ("ALREADY-SSL-MODE", NutErrorCode::AlreadySslMode),
    ("DRIVER-NOT-CONNECTED", NutErrorCode::DriverNotConnected),
    ("DATA-STALE", NutErrorCode::DataStale),
    ("ALREADY-LOGGED-IN", NutErrorCode::AlreadyLoggedIn),
    ("INVALID-PASSWORD", NutErrorCode::InvalidPassword),
    ("ALREADY-SET-PASSWORD", NutErrorCode::AlreadySetPassword),
    ("INVALID-USERNAME", NutErrorCode::InvalidUsername),
    ("ALREADY-SET-USERNAME", NutErrorCode::AlreadySetUsername),
    ("USERNAME-REQUIRED", NutErrorCode::UsernameRequired),
    ("PASSWORD-REQUIRED", NutErrorCode::PasswordRequired),
    ("UNKNOWN-COMMAND", NutErrorCode::UnknownCommand),
    ("INVALID-VALUE", NutErrorCode::InvalidValue),
    ("FAILED", NutErrorCode::Failed),
    ("UNKNOWN", NutErrorCode::Unknown),
];

impl NutErrorCode {
    /// The code for a wire name.
    pub fn from_wire(name: &str) -> NutErrorCode {
        CODES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| NutErrorCode::Other(name.to_string()))
    }

    /// The wire name.
    pub fn wire_name(&self) -> &str {
        match self {
            NutErrorCode::Other(name) => name,
            code => CODES
                .iter()
                .find(|(_, c)| c == code)
                .map(|(n, _)| *n)
                .unwrap_or("?"),
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            NutErrorCode::AccessDenied => {
                "the NUT user lacks the right; give it `instcmds = ALL` (and `actions = SET` \
                 for shutdown delays) in upsd.users"
            }
            NutErrorCode::UsernameRequired | NutErrorCode::PasswordRequired => {
                "commands need a NUT user: set nut_user and nut_password for this UPS, \
                 matching a upsd.users entry with `instcmds = ALL`"
            }
            NutErrorCode::InvalidPassword | NutErrorCode::InvalidUsername => {
                "check nut_user and nut_password against upsd.users"
            }
            NutErrorCode::UnknownUps => "`upsc -l <host>` lists the UPS names upsd knows",
            NutErrorCode::DataStale => {
                "the NUT driver has lost the UPS; check the UPS cable and the driver on the NUT host"
            }
            NutErrorCode::DriverNotConnected => {
                "upsd has no running driver for this UPS; start it (upsdrvctl start) on the NUT host"
            }
            NutErrorCode::CmdNotSupported => "this UPS does not offer that command (see upscmd -l)",
            NutErrorCode::InstcmdFailed | NutErrorCode::Failed | NutErrorCode::Unknown => {
                "the NUT driver could not carry the command out; see its log on the NUT host"
            }
            _ => "see NUT's net-protocol documentation",
        }
    }
}

impl fmt::Display for NutErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// One reply line, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NutReply {
    /// "OK" and what follows it ("OK TRACKING <id>", "OK Goodbye").
    Ok(Vec<String>),
    /// "ERR <code> [<extra>...]".
    Err {
        code: NutErrorCode,
        extra: Vec<String>,
    },
    /// Anything else ("VAR ups name value", "BEGIN LIST ...", "PENDING").
    Words(Vec<String>),
}

/// Classifies one reply line (without its newline).
pub fn parse_reply_line(line: &str) -> Result<NutReply, NutParseError> {
    let mut words = split_words(line.trim_end_matches(['\r', '\n']))?;
    match words.first().map(String::as_str) {
        None => Err(NutParseError::Empty),
        Some("OK") => Ok(NutReply::Ok(words.split_off(1))),
        Some("ERR") => {
            let rest = words.split_off(1);
            let code = rest
                .first()
                .map(|c| NutErrorCode::from_wire(c))
                .unwrap_or_else(|| NutErrorCode::Other(String::new()));
            Ok(NutReply::Err {
                code,
                extra: rest.into_iter().skip(1).collect(),
            })
        }
        Some(_) => Ok(NutReply::Words(words)),
    }
}

/// Parses a whole LIST block for `query` (e.g. ["VAR", "ups"]): "BEGIN LIST
/// VAR ups", items "VAR ups <rest...>", "END LIST VAR ups". Returns each
/// item's words after the query's first word and, for per-UPS lists, the
/// UPS name. `lines` may run past the END line; that rest is ignored.
pub fn parse_list(lines: &[&str], query: &[&str]) -> Result<Vec<Vec<String>>, NutParseError> {
    let expect = |prefix: &str| format!("{prefix} LIST {}", query.join(" "));
    let begin = expect("BEGIN");
    let mut iter = lines.iter();
    let first = iter.next().ok_or(NutParseError::Truncated {
        expected: begin.clone(),
    })?;
    let words = split_words(first)?;
    if !starts_with(&words, &["BEGIN", "LIST"], query) {
        return Err(NutParseError::Unexpected {
            expected: begin,
            found: first.to_string(),
        });
    }
    let item_prefix: Vec<&str> = query.iter().take(2).copied().collect();
    let mut items = Vec::new();
    for line in iter {
        let words = split_words(line)?;
        if starts_with(&words, &["END", "LIST"], query) && words.len() == query.len() + 2 {
            return Ok(items);
        }
        if words.len() <= item_prefix.len() || !words.iter().zip(&item_prefix).all(|(w, p)| w == p)
        {
            return Err(NutParseError::Unexpected {
                expected: format!("{} ... or {}", item_prefix.join(" "), expect("END")),
                found: line.to_string(),
            });
        }
        if items.len() >= MAX_LIST_ITEMS {
            return Err(NutParseError::TooManyItems);
        }
        items.push(words[item_prefix.len()..].to_vec());
    }
    Err(NutParseError::Truncated {
        expected: expect("END"),
    })
}

fn starts_with(words: &[String], head: &[&str], query: &[&str]) -> bool {
    words.len() >= head.len() + query.len()
        && words
            .iter()
            .zip(head.iter().chain(query))
            .all(|(w, e)| w == e)
}

/// NUT instant commands nodewarden knows by name (supported_commands needs
/// static names).
pub const KNOWN_COMMANDS: &[&str] = &[
    "shutdown.return",
    "shutdown.stayoff",
    "shutdown.stop",
    "shutdown.reboot",
    "shutdown.reboot.graceful",
    "load.off",
    "load.on",
    "load.off.delay",
    "load.on.delay",
    "test.battery.start",
    "test.battery.start.quick",
    "test.battery.start.deep",
    "test.battery.stop",
    "test.panel.start",
    "test.panel.stop",
    "calibrate.start",
    "calibrate.stop",
    "beeper.enable",
    "beeper.disable",
    "beeper.mute",
    "beeper.toggle",
    "bypass.start",
    "bypass.stop",
];

fn number(vars: &BTreeMap<String, String>, name: &str) -> Option<f64> {
    vars.get(name)?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

/// The first of `names` that is set to something other than blanks, trimmed.
pub fn first_text(vars: &BTreeMap<String, String>, names: &[&str]) -> String {
    names
        .iter()
        .filter_map(|n| vars.get(*n))
        .find(|v| !v.trim().is_empty())
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// The reading NUT variables describe.
pub fn reading_from_vars(vars: &BTreeMap<String, String>) -> UpsReading {
    UpsReading {
        status: vars
            .get("ups.status")
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        input_voltage_volts: number(vars, "input.voltage"),
        output_voltage_volts: number(vars, "output.voltage"),
        input_frequency_hertz: number(vars, "input.frequency"),
        load_percent: number(vars, "ups.load"),
        battery_voltage_volts: number(vars, "battery.voltage"),
        battery_charge_percent: number(vars, "battery.charge"),
        battery_charge_estimated: false,
        battery_runtime_seconds: number(vars, "battery.runtime"),
        battery_runtime_estimated: false,
        temperature_celsius: number(vars, "ups.temperature"),
    }
}

/// The ratings NUT variables describe.
pub fn ratings_from_vars(vars: &BTreeMap<String, String>) -> UpsRatings {
    let either = |a: &str, b: &str| number(vars, a).or_else(|| number(vars, b));
    UpsRatings {
        input_voltage_volts: number(vars, "input.voltage.nominal"),
        output_voltage_volts: number(vars, "output.voltage.nominal"),
        current_amperes: either("output.current.nominal", "input.current.nominal"),
        battery_voltage_volts: number(vars, "battery.voltage.nominal"),
        frequency_hertz: either("output.frequency.nominal", "input.frequency.nominal"),
        power_va: number(vars, "ups.power.nominal"),
        real_power_watts: number(vars, "ups.realpower.nominal"),
    }
}
