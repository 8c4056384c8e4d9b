//! The poller: runs one UPS driver on its own thread, pushes every status
//! change (tokens, communication lost/back) at once, keeps the latest status
//! for the samples, carries out commands, and reconnects by itself.

use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodewarden_common::backoff::Backoff;
use nodewarden_proto::v1::{UpsIdentity, UpsRatings, UpsStatus};
use tokio::sync::{mpsc, oneshot};

use crate::sysroot::SysRoot;
use crate::ups::config::UpsConfig;
use crate::ups::drivers::open_driver;
use crate::ups::model::{AppliedDelays, UpsCommandKind, UpsDriver, UpsError, UpsReading};

/// Opens (or reopens) the driver; called at start and after every failure.
pub type Opener = Box<dyn FnMut() -> Result<Box<dyn UpsDriver>, UpsError> + Send>;

enum Reply {
    Blocking(std_mpsc::Sender<Result<CommandDone, UpsError>>),
    Async(oneshot::Sender<Result<CommandDone, UpsError>>),
}

struct Request {
    command: UpsCommandKind,
    reply: Reply,
}

/// Talks to a running monitor. Cloneable; the monitor thread ends when the
/// last handle is dropped.
#[derive(Clone)]
pub struct UpsHandle {
    name: String,
    latest: Arc<Mutex<UpsStatus>>,
    requests: std_mpsc::Sender<Request>,
}

impl std::fmt::Debug for UpsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpsHandle")
            .field("name", &self.name)
            .finish()
    }
}

/// How long a command may wait for the driver thread (a poll in progress
/// plus the command itself take a few seconds at most).
const COMMAND_WAIT: Duration = Duration::from_secs(30);

/// A command the UPS took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandDone {
    /// What happened, for people: "shutdown.return accepted by the UPS on
    /// /dev/ttyUSB0 (off in 120 s, back on 180 s after mains returns)".
    pub message: String,
    /// The delays the UPS will use, where the command set them.
    pub delays: AppliedDelays,
}

impl UpsHandle {
    /// The UPS's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The latest status (updated at every poll, pushed or not).
    pub fn latest(&self) -> UpsStatus {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `command` on the driver thread and waits for the UPS's answer.
    /// Blocking: from async code use `command_async`.
    pub fn command(&self, command: UpsCommandKind) -> Result<CommandDone, UpsError> {
        let (tx, rx) = std_mpsc::channel();
        self.requests
            .send(Request {
                command,
                reply: Reply::Blocking(tx),
            })
            .map_err(|_| stopped())?;
        rx.recv_timeout(COMMAND_WAIT).map_err(|_| stopped())?
    }

    /// Async form of `command`.
    pub async fn command_async(&self, command: UpsCommandKind) -> Result<CommandDone, UpsError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request {
                command,
                reply: Reply::Async(tx),
            })
            .map_err(|_| stopped())?;
        match tokio::time::timeout(COMMAND_WAIT, rx).await {
            Ok(Ok(r)) => r,
            _ => Err(stopped()),
        }
    }
}

fn stopped() -> UpsError {
    UpsError::Config("the UPS monitor is not running".into())
}

/// Starts polling the UPS in `config` on its own thread. Fails only on
/// unusable settings: a UPS that is absent now is retried until it appears.
pub fn spawn_monitor(
    config: &UpsConfig,
    root: SysRoot,
    changes: mpsc::Sender<UpsStatus>,
) -> Result<UpsHandle, UpsError> {
    config.validate().map_err(UpsError::Config)?;
    let cfg = config.clone();
    let opener: Opener = Box::new(move || open_driver(&cfg, &root));
    spawn_monitor_with(&config.name, config.poll_interval, opener, changes)
}

/// `spawn_monitor` with any way of opening a driver (tests, simulators).
pub fn spawn_monitor_with(
    name: &str,
    poll_interval: Duration,
    opener: Opener,
    changes: mpsc::Sender<UpsStatus>,
) -> Result<UpsHandle, UpsError> {
    let initial = UpsStatus {
        ups_name: name.to_string(),
        timestamp_ms: now_ms(),
        communication_ok: false,
        communication_error: "not read yet".into(),
        ..UpsStatus::default()
    };
    let latest = Arc::new(Mutex::new(initial.clone()));
    let (tx, rx) = std_mpsc::channel();
    let poller = Poller {
        interval: poll_interval.max(crate::ups::config::MIN_POLL_INTERVAL),
        opener,
        driver: None,
        status: initial,
        pushed: None,
        latest: latest.clone(),
        changes,
        // Reconnect delays: 500 ms doubling to 15 s, back to the start after
        // a good poll. Bounded so a replugged UPS is back within seconds,
        // never a busy loop.
        backoff: Backoff::exact(Duration::from_millis(500), Duration::from_secs(15)),
    };
    std::thread::Builder::new()
        .name(format!("ups-{name}"))
        .spawn(move || poller.run(rx))
        .map_err(|e| UpsError::Config(format!("cannot start the UPS thread: {e}")))?;
    Ok(UpsHandle {
        name: name.to_string(),
        latest,
        requests: tx,
    })
}

use nodewarden_common::clock::now_ms;

struct Poller {
    interval: Duration,
    opener: Opener,
    driver: Option<Box<dyn UpsDriver>>,
    status: UpsStatus,
    /// What the last pushed change said: communication ok, tokens, and on
    /// battery the levels the collector's floors judge.
    pushed: Option<PushKey>,
    latest: Arc<Mutex<UpsStatus>>,
    changes: mpsc::Sender<UpsStatus>,
    backoff: Backoff,
}

impl Poller {
    fn run(mut self, requests: std_mpsc::Receiver<Request>) {
        loop {
            // Polls start on a fixed grid: at 2400 baud a Q1 exchange takes
            // about 200 ms, and waiting the interval after it would stretch
            // every period (and the worst-case latency) by that much.
            let started = Instant::now();
            let wait = self.cycle();
            let until = started + wait;
            loop {
                let left = until.saturating_duration_since(Instant::now());
                match requests.recv_timeout(left) {
                    Ok(req) => self.serve(req),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        }
    }

    /// One poll (opening the driver first if needed); returns how long to
    /// wait before the next.
    fn cycle(&mut self) -> Duration {
        let fresh = self.driver.is_none();
        if fresh && let Err(e) = self.connect() {
            self.lost(&e);
            return self.backoff.next_delay();
        }
        let Some(driver) = self.driver.as_mut() else {
            return self.backoff.next_delay();
        };
        match driver.poll() {
            Ok(reading) => {
                if fresh {
                    self.describe();
                }
                self.backoff.reset();
                self.read(reading);
                self.interval
            }
            Err(e) => {
                self.driver = None;
                self.lost(&e);
                self.backoff.next_delay()
            }
        }
    }

    fn connect(&mut self) -> Result<(), UpsError> {
        let d = (self.opener)()?;
        self.status.supported_commands = d
            .supported_commands()
            .iter()
            .map(|s| s.to_string())
            .collect();
        self.driver = Some(d);
        Ok(())
    }

    /// Identity and ratings, once per connection, after the UPS answered a
    /// poll (a silent port would otherwise cost two more timeouts).
    fn describe(&mut self) {
        let Some(d) = self.driver.as_mut() else {
            return;
        };
        let identity = d.identify().unwrap_or_else(|e| {
            tracing::info!("UPS {}: no identity: {e}", self.status.ups_name);
            UpsIdentity {
                driver: d.protocol().into(),
                port: d.port(),
                ..UpsIdentity::default()
            }
        });
        let ratings = d.ratings().unwrap_or_else(|e| {
            tracing::info!("UPS {}: no ratings: {e}", self.status.ups_name);
            UpsRatings::default()
        });
        self.status.identity = Some(identity);
        self.status.ratings = Some(ratings);
    }

    fn read(&mut self, r: UpsReading) {
        let s = &mut self.status;
        s.communication_ok = true;
        s.communication_error.clear();
        s.status = r.status;
        s.input_voltage_volts = r.input_voltage_volts;
        s.output_voltage_volts = r.output_voltage_volts;
        s.input_frequency_hertz = r.input_frequency_hertz;
        s.load_percent = r.load_percent;
        s.battery_voltage_volts = r.battery_voltage_volts;
        s.battery_charge_percent = r.battery_charge_percent;
        s.battery_charge_estimated = r.battery_charge_estimated;
        s.battery_runtime_seconds = r.battery_runtime_seconds;
        s.battery_runtime_estimated = r.battery_runtime_estimated;
        s.temperature_celsius = r.temperature_celsius;
        self.publish();
    }

    /// Communication lost: the other fields keep their last good values.
    fn lost(&mut self, e: &UpsError) {
        if self.status.communication_ok || self.status.communication_error != e.to_string() {
            tracing::warn!("UPS {}: {e}", self.status.ups_name);
        }
        self.status.communication_ok = false;
        self.status.communication_error = e.to_string();
        self.publish();
    }

    fn publish(&mut self) {
        self.status.timestamp_ms = now_ms();
        let key = push_key(&self.status);
        let changed = self.pushed.as_ref() != Some(&key);
        if changed {
            self.status.change_seq += 1;
            self.pushed = Some(key);
        }
        // Latest first: whoever receives the change may ask for it at once.
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = self.status.clone();
        // Our own thread, outside any runtime: blocking is allowed, and a
        // change must not be dropped for a momentarily full channel.
        if changed && self.changes.blocking_send(self.status.clone()).is_err() {
            tracing::debug!("UPS {}: nobody listens for changes", self.status.ups_name);
        }
    }

    fn serve(&mut self, req: Request) {
        let result = self.execute(req.command);
        match req.reply {
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
        }
    }

    fn execute(&mut self, command: UpsCommandKind) -> Result<CommandDone, UpsError> {
        // A shutdown must get through if the UPS can be reached at all.
        if self.driver.is_none() {
            self.connect()?;
        }
        let Some(d) = self.driver.as_mut() else {
            return Err(stopped());
        };
        let port = d.port();
        match d.command(command) {
            Ok(delays) => {
                let message = format!(
                    "{} accepted by the UPS on {port}{}",
                    command.nut_name(),
                    delays.describe()
                );
                tracing::info!("UPS {}: {message}", self.status.ups_name);
                Ok(CommandDone { message, delays })
            }
            Err(e) => {
                if matches!(e, UpsError::Io { .. }) {
                    self.driver = None;
                }
                Err(e)
            }
        }
    }
}

/// What makes a status worth pushing at once rather than with the next
/// sample batch: communication, the NUT tokens, and, on battery, the charge
/// (whole percent) and runtime (10 s steps). The collector's charge and
/// runtime floors, and the drain's budget, follow a discharging battery
/// through these; on mains the levels wait for the samples.
type PushKey = (bool, Vec<String>, Option<(i64, i64)>);

fn push_key(s: &UpsStatus) -> PushKey {
    let on_battery = s.status.iter().any(|t| t == "OB");
    let levels = on_battery.then(|| {
        (
            s.battery_charge_percent.map_or(-1, |c| c.round() as i64),
            s.battery_runtime_seconds
                .map_or(-1, |r| (r / 10.0).floor() as i64),
        )
    });
    (s.communication_ok, s.status.clone(), levels)
}
