//! The blocking GPSER driver: finds the line speed, sends requests over a
//! [`SerialIo`] line, reassembles reply frames and maps them to the
//! driver-neutral model.

use std::io;
use std::time::{Duration, Instant};

use nodewarden_proto::v1::{UpsIdentity, UpsRatings};
use serialport::TTYPort;

use super::protocol::{
    BAUD_RATES, CheckKind, Extended, Frame, FrameError, GpserError, Identification, MANUFACTURER,
    MAX_FRAME_LEN, Nominal, Request, STX, Status, command_name, decode_frame, find_frame, flag,
};
use crate::ups::model::{AppliedDelays, UpsCommandKind, UpsDriver, UpsError, UpsReading};
use crate::ups::serial::{self, SerialIo};

/// How long to wait for a reply beyond its transmission time. riello_ser
/// waits up to 5 s; a healthy unit answers within tens of milliseconds.
pub const REPLY_TIMEOUT: Duration = Duration::from_millis(1000);
/// Tries per request (riello_ser's MAXTRIES).
pub const TRIES: u32 = 3;

/// Drives a Riello UPS over a [`SerialIo`] line.
pub struct GpserDriver<T: SerialIo = TTYPort> {
    line: T,
    port: String,
    baud: u32,
    ident: Identification,
    reply_timeout: Duration,
    tries: u32,
    /// Whether the last status said the UPS runs on battery (decides which
    /// shutdown request brings the output back).
    on_battery: Option<bool>,
}

impl GpserDriver<TTYPort> {
    /// Opens a serial device (8N1) and finds the UPS at `baud`, or at 9600
    /// then 1200 when None.
    pub fn open(port: &str, baud: Option<u32>) -> Result<Self, UpsError> {
        let line = serial::open_port(port, baud.unwrap_or(BAUD_RATES[0]), REPLY_TIMEOUT)?;
        GpserDriver::over(line, port, baud)
    }
}

impl<T: SerialIo> GpserDriver<T> {
    /// Talks GPSER over an already open line named `port`: finds the line
    /// speed (as `open`) and reads the identification.
    pub fn over(line: T, port: &str, baud: Option<u32>) -> Result<Self, UpsError> {
        let placeholder = Identification {
            serial: String::new(),
            model: String::new(),
            firmware: String::new(),
            phases: b'1',
            check: CheckKind::Sum,
            batteries: 0,
        };
        let mut driver = GpserDriver {
            line,
            port: port.to_string(),
            baud: baud.unwrap_or(BAUD_RATES[0]),
            ident: placeholder,
            reply_timeout: REPLY_TIMEOUT,
            tries: TRIES,
            on_battery: None,
        };
        let rates: Vec<u32> = match baud {
            Some(b) => vec![b],
            None => BAUD_RATES.to_vec(),
        };
        let mut last = None;
        for rate in rates {
            driver
                .line
                .set_baud_rate(rate)
                .map_err(|source| driver.io_error(source))?;
            driver.baud = rate;
            match driver.exchange(Request::Identify) {
                Ok(frame) => {
                    driver.ident = Identification::parse(&frame.data)
                        .map_err(|e| UpsError::Protocol(e.to_string()))?;
                    return Ok(driver);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| UpsError::Protocol("no line speed to try".into())))
    }

    /// Shortens the wait for a reply (tests of a silent line).
    pub fn set_reply_timeout(&mut self, timeout: Duration, tries: u32) {
        self.reply_timeout = timeout;
        self.tries = tries.max(1);
    }

    /// The identification read when the line was opened.
    pub fn identification(&self) -> &Identification {
        &self.ident
    }

    /// The line speed the UPS answered at.
    pub fn baud(&self) -> u32 {
        self.baud
    }

    fn io_error(&self, source: io::Error) -> UpsError {
        UpsError::Io {
            port: self.port.clone(),
            source,
        }
    }

    /// Sends a request and returns the UPS's reply frame, trying again on
    /// silence or a damaged reply. A NAK is returned as a frame.
    pub fn exchange(&mut self, request: Request) -> Result<Frame, UpsError> {
        let check = request.check(self.ident.check);
        let bytes = request.encode(self.ident.check);
        // 10 bits per byte on an 8N1 line.
        let wire = Duration::from_millis((MAX_FRAME_LEN as u64 * 10 * 1000) / u64::from(self.baud));
        let mut last_error = None;
        for _ in 0..self.tries {
            // Stale bytes from an earlier timed-out reply would be taken for
            // this one.
            self.line
                .discard_input()
                .map_err(|source| self.io_error(source))?;
            self.line
                .write_all(&bytes)
                .and_then(|()| self.line.flush())
                .map_err(|source| self.io_error(source))?;
            match self.read_frame(self.reply_timeout + wire)? {
                None => {}
                Some(raw) => match decode_frame(&raw, check) {
                    Ok(frame) if frame.is_nak() || frame.command == request.command() => {
                        return Ok(frame);
                    }
                    Ok(frame) => {
                        last_error = Some(GpserError::WrongReply {
                            sent: command_name(request.command()),
                            got: frame.command_name(),
                        })
                    }
                    Err(e) => last_error = Some(e.into()),
                },
            }
        }
        Err(match last_error {
            Some(e) => UpsError::Protocol(e.to_string()),
            None => UpsError::Timeout {
                port: self.port.clone(),
                tries: self.tries,
                timeout_ms: self.reply_timeout.as_millis() as u64,
            },
        })
    }

    /// Reads until one frame is complete or `timeout` runs out (None).
    fn read_frame(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, UpsError> {
        let deadline = Instant::now() + timeout;
        let mut buf: Vec<u8> = Vec::with_capacity(MAX_FRAME_LEN);
        let mut chunk = [0u8; 128];
        loop {
            if let Some(range) = find_frame(&buf) {
                return Ok(Some(buf[range].to_vec()));
            }
            // Keep only what can still become a frame: from the last STX.
            match buf.iter().rposition(|&b| b == STX) {
                Some(start) => {
                    buf.drain(..start);
                }
                None => buf.clear(),
            }
            if buf.len() > MAX_FRAME_LEN {
                return Err(UpsError::Protocol(
                    FrameError::Oversized { len: buf.len() }.to_string(),
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.line
                .set_read_timeout(deadline - now)
                .map_err(|source| self.io_error(source))?;
            match self.line.read(&mut chunk) {
                Ok(0) => {
                    return Err(self.io_error(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the line was closed",
                    )));
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if serial::no_data_yet(&e) => {}
                Err(e) => return Err(self.io_error(e)),
            }
        }
    }

    fn expect(&mut self, request: Request) -> Result<Frame, UpsError> {
        let frame = self.exchange(request)?;
        if frame.is_nak() {
            return Err(UpsError::Protocol(
                GpserError::Nak {
                    command: command_name(request.command()),
                }
                .to_string(),
            ));
        }
        Ok(frame)
    }

    /// Reads the status (RS).
    pub fn status(&mut self) -> Result<Status, UpsError> {
        let frame = self.expect(Request::Status)?;
        let status = Status::parse(&frame.data, &self.ident)
            .map_err(|e| UpsError::Protocol(e.to_string()))?;
        self.on_battery = Some(status.flag(flag::ON_BATTERY));
        Ok(status)
    }

    /// Reads the nominal values (GN).
    pub fn nominal(&mut self) -> Result<Nominal, UpsError> {
        let frame = self.expect(Request::Nominal)?;
        Nominal::parse(&frame.data, self.ident.phases)
            .map_err(|e| UpsError::Protocol(e.to_string()))
    }

    /// Reads the extended measurements (RE); None when the UPS has none.
    pub fn extended(&mut self) -> Result<Option<Extended>, UpsError> {
        let frame = self.exchange(Request::Extended)?;
        if frame.is_nak() {
            return Ok(None);
        }
        Extended::parse(&frame.data)
            .map(Some)
            .map_err(|e| UpsError::Protocol(e.to_string()))
    }

    fn send_command(&mut self, name: &'static str, request: Request) -> Result<(), UpsError> {
        let frame = self.exchange(request)?;
        if frame.is_nak() {
            return Err(UpsError::Refused {
                command: name,
                reason: "the UPS answered NAK".into(),
            });
        }
        Ok(())
    }
}

fn delay_s(command: &'static str, seconds: u32) -> Result<u16, UpsError> {
    u16::try_from(seconds).map_err(|_| UpsError::Refused {
        command,
        reason: format!("a delay of {seconds} s is over the 65535 s a Riello accepts"),
    })
}

impl<T: SerialIo> UpsDriver for GpserDriver<T> {
    fn protocol(&self) -> &'static str {
        "gpser"
    }

    fn port(&self) -> String {
        self.port.clone()
    }

    fn identify(&mut self) -> Result<UpsIdentity, UpsError> {
        let frame = self.expect(Request::Identify)?;
        self.ident =
            Identification::parse(&frame.data).map_err(|e| UpsError::Protocol(e.to_string()))?;
        Ok(UpsIdentity {
            manufacturer: MANUFACTURER.into(),
            model: self.ident.model.clone(),
            firmware: self.ident.firmware.clone(),
            driver: "gpser".into(),
            port: self.port.clone(),
            serial_number: self.ident.serial.clone(),
        })
    }

    fn ratings(&mut self) -> Result<UpsRatings, UpsError> {
        let n = self.nominal()?;
        Ok(UpsRatings {
            input_voltage_volts: None,
            output_voltage_volts: Some(f64::from(n.output_voltage_v)),
            current_amperes: None,
            battery_voltage_volts: Some(f64::from(n.battery_voltage_v)),
            frequency_hertz: Some(f64::from(n.output_frequency_dhz) / 10.0),
            power_va: Some(f64::from(n.power_va)),
            real_power_watts: Some(f64::from(n.real_power_w)),
        })
    }

    fn poll(&mut self) -> Result<UpsReading, UpsError> {
        Ok(self.status()?.reading())
    }

    fn supported_commands(&self) -> Vec<&'static str> {
        vec![
            "shutdown.return",
            "shutdown.stop",
            "test.battery.start.quick",
        ]
    }

    fn command(&mut self, command: UpsCommandKind) -> Result<AppliedDelays, UpsError> {
        let name = command.nut_name();
        match command {
            UpsCommandKind::ShutdownReturn {
                off_delay_s,
                restore_delay_s,
            } => {
                let off = delay_s(name, off_delay_s)?;
                let on_battery = match self.status() {
                    Ok(s) => s.flag(flag::ON_BATTERY),
                    Err(_) => self.on_battery.unwrap_or(true),
                };
                // On battery a plain shutdown comes back with mains (what
                // riello_ser's shutdown.return sends). On mains it would stay
                // off, so ask for the restore explicitly: mains may have
                // returned mid-sequence and the nodes still need the cycle.
                //
                // Which of CR's two delays is the off delay is not published
                // (riello_ser only ever sends 0000 in the first), so both
                // carry the longer of the two: read either way, the output
                // is never cut before the nodes have had their off delay,
                // and comes back. On mains a later cut costs no battery.
                let (request, applied) = if on_battery {
                    // CS: back on as soon as mains returns.
                    (Request::Shutdown { delay_s: off }, (off, 0))
                } else {
                    let both = off.max(delay_s(name, restore_delay_s)?);
                    let request = Request::ShutdownRestore {
                        off_delay_s: both,
                        restore_delay_s: both,
                    };
                    (request, (both, both))
                };
                self.send_command(name, request)?;
                Ok(AppliedDelays {
                    off_delay_s: Some(u32::from(applied.0)),
                    restore_delay_s: Some(u32::from(applied.1)),
                })
            }
            UpsCommandKind::CancelShutdown => self
                .send_command(name, Request::CancelShutdown)
                .map(|()| AppliedDelays::NONE),
            UpsCommandKind::BatteryTestQuick => self
                .send_command(name, Request::BatteryTest)
                .map(|()| AppliedDelays::NONE),
            UpsCommandKind::ShutdownStayOff { .. }
            | UpsCommandKind::BatteryTestDeep
            | UpsCommandKind::CancelTest
            | UpsCommandKind::BeeperToggle => Err(UpsError::Unsupported(name)),
        }
    }
}
