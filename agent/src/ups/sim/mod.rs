//! A simulated UPS on a pseudo-terminal, for tests, the demo and the fire
//! drill. One physical model (`SimState`), several protocol front-ends
//! (`Responder`): the same simulated device can be read by nodewarden's
//! drivers and by NUT's own drivers, which is how its faithfulness is checked.

pub mod gpser;

/// The physical state of the simulated UPS. Scripts change it; responders
/// only read it (plus the command side effects they report back).
#[derive(Debug, Clone, PartialEq)]
pub struct SimState {
    /// Mains present.
    pub mains: bool,
    /// Battery charge 0-100.
    pub charge_percent: f64,
    /// Load 0-100 % of rating.
    pub load_percent: f64,
    pub input_voltage_volts: f64,
    pub output_voltage_volts: f64,
    pub input_frequency_hertz: f64,
    pub temperature_celsius: f64,
    /// Nominal (rated) values.
    pub nominal_voltage_volts: f64,
    pub nominal_battery_voltage_volts: f64,
    pub nominal_power_va: f64,
    /// Charge at or below which the UPS raises its low-battery flag.
    pub low_battery_percent: f64,
    /// Full-load runtime at 100 % charge, seconds (runtime scales with load).
    pub full_load_runtime_seconds: f64,
    /// Output is off (after a shutdown command ran out its delay).
    pub output_off: bool,
    /// Seconds until output is cut, when a shutdown is pending.
    pub shutdown_in_seconds: Option<f64>,
    /// Seconds after mains returns until output is restored (None: stay off).
    pub restore_after_seconds: Option<f64>,
    /// Battery test running.
    pub testing: bool,
    pub beeper_on: bool,
    /// The device stops answering entirely (cable pulled).
    pub silent: bool,
    /// Bytes of line noise to put before each reply.
    pub noise_bytes: usize,
    /// Extra delay before each reply, ms.
    pub reply_delay_ms: u64,
}

impl Default for SimState {
    fn default() -> Self {
        SimState {
            mains: true,
            charge_percent: 100.0,
            load_percent: 25.0,
            input_voltage_volts: 230.0,
            output_voltage_volts: 230.0,
            input_frequency_hertz: 50.0,
            temperature_celsius: 25.0,
            nominal_voltage_volts: 230.0,
            nominal_battery_voltage_volts: 12.0,
            nominal_power_va: 800.0,
            low_battery_percent: 20.0,
            full_load_runtime_seconds: 300.0,
            output_off: false,
            shutdown_in_seconds: None,
            restore_after_seconds: None,
            testing: false,
            beeper_on: true,
            silent: false,
            noise_bytes: 0,
            reply_delay_ms: 0,
        }
    }
}

/// What a command received on the line asks the simulated device to do.
#[derive(Debug, Clone, PartialEq)]
pub enum SimEffect {
    Shutdown { off_delay_seconds: f64, restore_delay_seconds: Option<f64> },
    CancelShutdown,
    StartTest { deep: bool },
    CancelTest,
    ToggleBeeper,
}

/// One protocol's device side: bytes in, bytes out.
pub trait Responder: Send {
    /// "megatec" or "gpser".
    fn protocol(&self) -> &'static str;
    /// Serial line speed the protocol uses (the pty ignores it; NUT's drivers
    /// set it).
    fn baud(&self) -> u32;
    /// Feed received bytes. Returns complete replies to write back and any
    /// effects the commands had. Keeps partial requests buffered.
    fn feed(&mut self, state: &SimState, input: &[u8]) -> (Vec<Vec<u8>>, Vec<SimEffect>);
}
