//! What every UPS driver reports and accepts, independent of its protocol.

pub use nodewarden_common::ups::delays::AppliedDelays;
use nodewarden_proto::v1::{UpsIdentity, UpsRatings};

/// One poll of a UPS. `None` means the UPS does not report that value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpsReading {
    /// NUT ups.status tokens in NUT's order (OL/OB first, then LB, ...).
    pub status: Vec<String>,
    pub input_voltage_volts: Option<f64>,
    pub output_voltage_volts: Option<f64>,
    pub input_frequency_hertz: Option<f64>,
    pub load_percent: Option<f64>,
    pub battery_voltage_volts: Option<f64>,
    pub battery_charge_percent: Option<f64>,
    /// The charge was guessed from battery voltage (NUT's guesstimation).
    pub battery_charge_estimated: bool,
    pub battery_runtime_seconds: Option<f64>,
    pub battery_runtime_estimated: bool,
    pub temperature_celsius: Option<f64>,
}

impl UpsReading {
    /// True when `token` (e.g. "OB") is in the status.
    pub fn has(&self, token: &str) -> bool {
        self.status.iter().any(|t| t == token)
    }
}

/// Commands a UPS may accept; each driver lists the ones it supports.
/// Names follow NUT's instcmd names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsCommandKind {
    /// Cut output after `off_delay_s`, restore `restore_delay_s` after mains
    /// returns. NUT: shutdown.return.
    ShutdownReturn {
        off_delay_s: u32,
        restore_delay_s: u32,
    },
    /// Cut output after `off_delay_s` and stay off. NUT: shutdown.stayoff.
    ShutdownStayOff { off_delay_s: u32 },
    /// NUT: shutdown.stop.
    CancelShutdown,
    /// NUT: test.battery.start.quick.
    BatteryTestQuick,
    /// NUT: test.battery.start.deep.
    BatteryTestDeep,
    /// NUT: test.battery.stop.
    CancelTest,
    /// NUT: beeper.toggle.
    BeeperToggle,
}

impl UpsCommandKind {
    /// NUT instcmd name.
    pub fn nut_name(&self) -> &'static str {
        match self {
            UpsCommandKind::ShutdownReturn { .. } => "shutdown.return",
            UpsCommandKind::ShutdownStayOff { .. } => "shutdown.stayoff",
            UpsCommandKind::CancelShutdown => "shutdown.stop",
            UpsCommandKind::BatteryTestQuick => "test.battery.start.quick",
            UpsCommandKind::BatteryTestDeep => "test.battery.start.deep",
            UpsCommandKind::CancelTest => "test.battery.stop",
            UpsCommandKind::BeeperToggle => "beeper.toggle",
        }
    }
}

/// Why talking to a UPS failed. Messages say what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum UpsError {
    #[error("cannot open {port}: {source}{hint}")]
    Open {
        port: String,
        #[source]
        source: std::io::Error,
        /// e.g. "; add the nodewarden user to group dialout".
        hint: String,
    },
    #[error("no reply from the UPS on {port} after {tries} tries ({timeout_ms} ms each)")]
    Timeout {
        port: String,
        tries: u32,
        timeout_ms: u64,
    },
    #[error("the UPS sent a reply nodewarden cannot read: {0}")]
    Protocol(String),
    #[error("the UPS refused the command {command}: {reason}")]
    Refused {
        command: &'static str,
        reason: String,
    },
    #[error("this driver does not support {0}")]
    Unsupported(&'static str),
    /// The `[[ups]]` settings are unusable (names the key).
    #[error("{0}")]
    Config(String),
    #[error("I/O error on {port}: {source}")]
    Io {
        port: String,
        #[source]
        source: std::io::Error,
    },
}

/// A UPS protocol spoken over some transport. Blocking; the monitor runs it
/// on its own thread.
pub trait UpsDriver: Send {
    /// "megatec", "gpser" or "nut".
    fn protocol(&self) -> &'static str;
    /// The port or address this driver talks to.
    fn port(&self) -> String;
    /// Maker, model, firmware (may ask the UPS).
    fn identify(&mut self) -> Result<UpsIdentity, UpsError>;
    /// Nominal values.
    fn ratings(&mut self) -> Result<UpsRatings, UpsError>;
    /// Read the current status.
    fn poll(&mut self) -> Result<UpsReading, UpsError>;
    /// Commands this driver (and this UPS, where it says) supports.
    fn supported_commands(&self) -> Vec<&'static str>;
    /// Send a command; a shutdown says which delays the UPS took.
    fn command(&mut self, command: UpsCommandKind) -> Result<AppliedDelays, UpsError>;
}
