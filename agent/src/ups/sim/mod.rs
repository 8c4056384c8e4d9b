//! A simulated UPS on a pseudo-terminal, for tests, the demo and the fire
//! drill. One physical model (`SimState`), several protocol front-ends
//! (`Responder`): the same simulated device can be read by nodewarden's
//! drivers and by NUT's own drivers, which is how its faithfulness is checked.
//!
//! `SimUps::spawn` puts a responder on a pty, links the pty's slave to a
//! stable path and runs the physics; `SimHandle` scripts it from Rust, and
//! `control` lets other processes script it through a Unix socket.

#[cfg(feature = "simulator")]
pub mod cli;
pub mod control;
pub mod megatec;
pub mod pty;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};

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
    Shutdown {
        off_delay_seconds: f64,
        restore_delay_seconds: Option<f64>,
    },
    CancelShutdown,
    StartTest {
        deep: bool,
    },
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

impl SimState {
    /// Battery pack voltage for the charge: linear between NUT's guessed
    /// empty (104/120 of nominal) and full (130/120) voltages, so NUT and
    /// nodewarden both read back the charge the simulation holds.
    pub fn battery_voltage_volts(&self) -> f64 {
        self.nominal_battery_voltage_volts
            * (104.0 + 26.0 * self.charge_percent.clamp(0.0, 100.0) / 100.0)
            / 120.0
    }

    /// The low-battery flag.
    pub fn low_battery(&self) -> bool {
        self.charge_percent <= self.low_battery_percent
    }

    /// Advances the physics by `dt` seconds: draining on battery (faster
    /// with load: 100 % charge lasts `full_load_runtime_seconds` at full
    /// load, loads under 10 % count as 10 %), charging on mains (empty to
    /// full in 20 × the full-load runtime), shutdown and restore countdowns.
    pub fn advance(&mut self, dt: f64) {
        if dt.is_nan() || dt <= 0.0 {
            return;
        }
        if let Some(t) = self.shutdown_in_seconds {
            let t = t - dt;
            if t <= 0.0 {
                self.shutdown_in_seconds = None;
                self.output_off = true;
            } else {
                self.shutdown_in_seconds = Some(t);
            }
        }
        let runtime = self.full_load_runtime_seconds.max(1.0);
        if self.mains {
            self.charge_percent = (self.charge_percent + dt * 100.0 / (20.0 * runtime)).min(100.0);
            if self.output_off
                && self.shutdown_in_seconds.is_none()
                && let Some(r) = self.restore_after_seconds
            {
                let r = r - dt;
                if r <= 0.0 {
                    self.output_off = false;
                    self.restore_after_seconds = None;
                } else {
                    self.restore_after_seconds = Some(r);
                }
            }
        } else if !self.output_off {
            let load = (self.load_percent / 100.0).clamp(0.1, 2.0);
            self.charge_percent = (self.charge_percent - dt * 100.0 * load / runtime).max(0.0);
            if self.charge_percent <= 0.0 {
                // Battery exhausted: the inverter stops.
                self.output_off = true;
                self.shutdown_in_seconds = None;
            }
        }
    }

    /// What a command received on the line does to the device.
    pub fn apply(&mut self, effect: &SimEffect) {
        match effect {
            SimEffect::Shutdown {
                off_delay_seconds,
                restore_delay_seconds,
            } => {
                self.shutdown_in_seconds = Some(off_delay_seconds.max(0.0));
                self.restore_after_seconds = *restore_delay_seconds;
            }
            SimEffect::CancelShutdown => {
                // Megatec's C also turns an output that is off back on.
                self.shutdown_in_seconds = None;
                self.output_off = false;
            }
            SimEffect::StartTest { .. } => self.testing = true,
            SimEffect::CancelTest => self.testing = false,
            SimEffect::ToggleBeeper => self.beeper_on = !self.beeper_on,
        }
    }
}

/// How long a quick battery test runs in the simulation.
const QUICK_TEST: Duration = Duration::from_secs(10);
/// Physics and reply-scheduling resolution.
const TICK: Duration = Duration::from_millis(20);

struct Shared {
    state: Mutex<SimState>,
    effects: Mutex<Vec<SimEffect>>,
    received: Mutex<Vec<u8>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts simulated UPSes.
#[derive(Debug)]
pub struct SimUps;

impl SimUps {
    /// Runs `responder` on a new pty whose slave is linked at `link` (an
    /// existing link there is replaced), starting from `SimState::default()`.
    pub fn spawn(responder: impl Responder + 'static, link: &Path) -> io::Result<SimHandle> {
        Self::spawn_with(Box::new(responder), link, SimState::default())
    }

    /// `spawn` with a boxed responder and an initial state.
    pub fn spawn_with(
        responder: Box<dyn Responder>,
        link: &Path,
        state: SimState,
    ) -> io::Result<SimHandle> {
        let pty = pty::open()?;
        match std::fs::symlink_metadata(link) {
            Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(link)?,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a symlink; not replacing it",
                        link.display()
                    ),
                ));
            }
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&pty.path, link)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            effects: Mutex::new(Vec::new()),
            received: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let pts = pty.path.clone();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ups-sim".into())
            .spawn(move || Engine::new(pty, responder, s).run())?;
        Ok(SimHandle {
            shared,
            link: link.to_path_buf(),
            pts,
            thread: Some(thread),
            control: None,
        })
    }
}

/// Scripts and watches a running simulation; dropping it stops the
/// simulation and removes the link.
pub struct SimHandle {
    shared: Arc<Shared>,
    link: PathBuf,
    pts: PathBuf,
    thread: Option<JoinHandle<()>>,
    control: Option<control::ControlServer>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("link", &self.link)
            .field("pts", &self.pts)
            .finish()
    }
}

impl SimHandle {
    /// The stable path clients open.
    pub fn link(&self) -> &Path {
        &self.link
    }

    /// The pty slave the link points to (/dev/pts/N).
    pub fn pty_path(&self) -> &Path {
        &self.pts
    }

    /// A copy of the current state.
    pub fn state(&self) -> SimState {
        lock(&self.shared.state).clone()
    }

    /// Changes the state, e.g. `h.set(|s| s.mains = false)`.
    pub fn set(&self, change: impl FnOnce(&mut SimState)) {
        change(&mut lock(&self.shared.state));
    }

    /// Every command effect received so far, oldest first.
    pub fn effects(&self) -> Vec<SimEffect> {
        lock(&self.shared.effects).clone()
    }

    /// Every byte received on the line so far.
    pub fn received(&self) -> Vec<u8> {
        lock(&self.shared.received).clone()
    }

    /// Serves the line-based control protocol (see `control`) on a Unix
    /// socket at `path`.
    pub fn serve_control(&mut self, path: &Path) -> io::Result<()> {
        let shared = self.shared.clone();
        let server = control::ControlServer::start(path, move |line| {
            control::apply_line(line, &mut lock(&shared.state), &lock(&shared.effects))
        })?;
        self.control = Some(server);
        Ok(())
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.control = None;
        // Only our own link: a newer simulation may have taken the path.
        if std::fs::read_link(&self.link).is_ok_and(|t| t == self.pts) {
            let _ = std::fs::remove_file(&self.link);
        }
    }
}

struct Engine {
    pty: pty::Pty,
    responder: Box<dyn Responder>,
    shared: Arc<Shared>,
    outbox: VecDeque<(Instant, Vec<u8>)>,
    test_ends: Option<Instant>,
    last_tick: Instant,
}

impl Engine {
    fn new(pty: pty::Pty, responder: Box<dyn Responder>, shared: Arc<Shared>) -> Self {
        Engine {
            pty,
            responder,
            shared,
            outbox: VecDeque::new(),
            test_ends: None,
            last_tick: Instant::now(),
        }
    }

    fn run(mut self) {
        let mut buf = [0u8; 256];
        while !self.shared.stop.load(Ordering::SeqCst) {
            let readable = {
                let mut fds = [PollFd::new(self.pty.master.as_fd(), PollFlags::POLLIN)];
                let timeout = PollTimeout::try_from(TICK).unwrap_or(PollTimeout::ZERO);
                matches!(nix::poll::poll(&mut fds, timeout), Ok(n) if n > 0)
                    && fds[0]
                        .revents()
                        .is_some_and(|r| r.contains(PollFlags::POLLIN))
            };
            if readable {
                match self.pty.master.read(&mut buf) {
                    Ok(n) if n > 0 => self.receive(&buf[..n]),
                    // EIO while no client has the slave open: nothing to do.
                    _ => std::thread::sleep(TICK),
                }
            }
            self.tick();
            self.send_due();
        }
    }

    fn receive(&mut self, bytes: &[u8]) {
        lock(&self.shared.received).extend_from_slice(bytes);
        let state = lock(&self.shared.state).clone();
        if state.silent {
            // Cable pulled: nothing reaches the device.
            return;
        }
        let (replies, effects) = self.responder.feed(&state, bytes);
        if !effects.is_empty() {
            let mut st = lock(&self.shared.state);
            for e in &effects {
                st.apply(e);
                if let SimEffect::StartTest { deep } = e {
                    self.test_ends = (!deep).then(|| Instant::now() + QUICK_TEST);
                }
            }
            lock(&self.shared.effects).extend(effects);
        }
        let due = Instant::now() + Duration::from_millis(state.reply_delay_ms);
        for r in replies {
            let mut out = noise(state.noise_bytes);
            out.extend_from_slice(&r);
            self.outbox.push_back((due, out));
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_tick).as_secs_f64();
        self.last_tick = now;
        let mut st = lock(&self.shared.state);
        st.advance(dt);
        if self.test_ends.is_some_and(|t| now >= t) {
            st.testing = false;
            self.test_ends = None;
        }
        if st.testing && !st.mains {
            // A real unit aborts its test when mains fails.
            st.testing = false;
        }
    }

    fn send_due(&mut self) {
        let now = Instant::now();
        while self.outbox.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, bytes)) = self.outbox.pop_front() {
                // One write per reply: NUT reads a reply with a single read.
                let _ = self.pty.master.write_all(&bytes);
            }
        }
    }
}

/// Line noise: bytes a flaky USB-serial bridge emits, never CR, '(' or '#'
/// (those would make a different, not noisier, line).
fn noise(n: usize) -> Vec<u8> {
    const JUNK: &[u8] = b"\x00\xff\x7f~Zq\x1b\x92";
    (0..n).map(|i| JUNK[i % JUNK.len()]).collect()
}

#[cfg(test)]
mod tests;
