//! Node readings: temperatures, CPU, memory, load, pressure, filesystem,
//! Raspberry Pi throttling. One module per kind of reading; every path goes
//! through [`SysRoot`], so the same code reads a real node and the fixture
//! trees of real boards in `tests/fixtures/boards/<board>` (relative to the
//! workspace root: pi3, pi4, pi5, bpi-m5, x86-intel, x86-amd).
//!
//! Cost: the set of sensor files is discovered once and again every
//! [`REDISCOVER_EVERY`] samples or when a file vanishes (a hot-plugged NVMe
//! drive); a sample then only reads the files it knows, kept open between
//! discoveries (see [`reader`]), into one reused buffer. On the real host,
//! load and uptime come from sysinfo(2) and CLOCK_BOOTTIME instead of
//! /proc/loadavg and /proc/uptime: the same kernel values without making and
//! parsing text (under a fixture root, the files are read). No process is
//! spawned, no regex compiled.

mod ascii;
mod cpu;
mod cpu_temperature;
mod facts;
mod filesystem;
mod hwmon;
mod load;
pub mod log_once;
mod memory;
mod pressure;
mod reader;
pub(crate) mod syscall;
mod thermal;
mod throttling;
mod uptime;
mod vcio;

use std::path::PathBuf;

use nodewarden_proto::v1::{Capability, Pressure, Sample};

use self::cpu::CpuReader;
pub use self::cpu_temperature::hottest_cpu;
use self::log_once::LogOnce;
use self::reader::Reader;
use self::throttling::ThrottleReader;
use crate::sysroot::SysRoot;

/// Samples between two discoveries of the sensor files.
pub const REDISCOVER_EVERY: u32 = 60;

/// How often the kernel recomputes the pressure averages (PSI_FREQ in
/// kernel/sched/psi.c: 2 s), less a margin for a tick that comes early.
/// Sampling faster than this reuses the last reading instead of reading
/// three files for the same averages.
const PRESSURE_REFRESH: std::time::Duration = std::time::Duration::from_millis(1900);

/// Static facts about the node, for the Hello message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeFacts {
    pub hostname: String,
    pub board_model: String,
    pub arch: String,
    pub kernel_version: String,
    pub os_name: String,
    pub boot_time_unix_seconds: i64,
    pub capabilities: Vec<Capability>,
}

/// The sensor files found by the last discovery.
#[derive(Debug, Default)]
struct Found {
    zones: Vec<thermal::Zone>,
    hwmon: Vec<hwmon::HwmonTemp>,
    frequency: cpu::FrequencyFiles,
    /// /proc/pressure/{cpu,memory,io}; `None` when /proc/pressure is absent.
    pressure: Option<[PathBuf; 3]>,
}

/// Reads the node. Holds the previous CPU counters so usage is a delta.
pub struct Sensors {
    root: SysRoot,
    /// Filesystem whose usage is reported, as configured ("/").
    filesystem: filesystem::FilesystemReader,
    log: LogOnce,
    reader: Reader,
    found: Found,
    samples_since_discovery: u32,
    cpu: CpuReader,
    throttle: ThrottleReader,
    meminfo: PathBuf,
    loadavg: PathBuf,
    uptime: PathBuf,
    /// The last pressure reading and when it was taken.
    pressure: Option<(std::time::Instant, Pressure)>,
}

impl std::fmt::Debug for Sensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sensors")
            .field("root", &self.root)
            .field("filesystem", &self.filesystem)
            .finish_non_exhaustive()
    }
}

impl Sensors {
    /// Reads the node under `root`, reporting the root filesystem.
    pub fn new(root: SysRoot) -> Self {
        Self::with_filesystem(root, "/")
    }

    /// Reads the node under `root`, reporting the filesystem holding
    /// `filesystem` (an absolute path, taken under `root`).
    pub fn with_filesystem(root: SysRoot, filesystem: impl Into<PathBuf>) -> Self {
        let filesystem = filesystem.into();
        let mut sensors = Sensors {
            filesystem: filesystem::FilesystemReader::new(
                root.join(&filesystem),
                filesystem.display().to_string(),
            ),
            log: LogOnce::new(),
            reader: Reader::new(),
            found: Found::default(),
            samples_since_discovery: 0,
            cpu: CpuReader::new(root.join("/proc/stat"), syscall::clock_ticks_per_second()),
            throttle: ThrottleReader::default(),
            meminfo: root.join("/proc/meminfo"),
            loadavg: root.join("/proc/loadavg"),
            uptime: root.join("/proc/uptime"),
            pressure: None,
            root,
        };
        sensors.discover();
        sensors
    }

    /// Static facts: hostname, board, arch (of this build), kernel, OS,
    /// boot time, capabilities.
    pub fn facts(&self) -> NodeFacts {
        let mut reader = Reader::new();
        let (root, log) = (&self.root, &self.log);
        let mut capabilities = vec![Capability::Telemetry];
        if self.throttle.has_mailbox() {
            capabilities.push(Capability::PiThrottling);
        }
        NodeFacts {
            hostname: facts::hostname(root, &mut reader, log),
            board_model: facts::board_model(root, &mut reader),
            arch: std::env::consts::ARCH.to_string(),
            kernel_version: facts::kernel_version(root, &mut reader, log),
            os_name: facts::os_name(root, &mut reader),
            boot_time_unix_seconds: facts::boot_time(root, &mut reader, log),
            capabilities,
        }
    }

    /// Takes one sample. Never fails: a field that cannot be read is absent.
    /// CPU usage is the share since the previous sample; the first sample's
    /// is the average since boot.
    pub fn sample(&mut self, seq: u64, timestamp_ms: i64) -> Sample {
        self.samples_since_discovery += 1;
        if self.samples_since_discovery >= REDISCOVER_EVERY || self.reader.saw_missing {
            self.discover();
        }
        let (reader, log) = (&mut self.reader, &self.log);

        let mut temperatures = Vec::with_capacity(self.found.zones.len() + self.found.hwmon.len());
        thermal::read(&self.found.zones, reader, log, &mut temperatures);
        hwmon::read(&self.found.hwmon, reader, log, &mut temperatures);
        cpu_temperature::mark_cpu(&mut temperatures);

        let (throttling, measured_arm_clock_hertz) = self.throttle.read(reader, log);
        let cpu = self
            .cpu
            .read(reader, log, &self.found.frequency)
            .map(|mut cpu| {
                cpu.measured_arm_clock_hertz = measured_arm_clock_hertz;
                cpu
            });
        let memory = reader.parse(
            &self.meminfo,
            log,
            "no MemTotal/MemAvailable",
            memory::parse_meminfo,
        );
        let (load, uptime_seconds) = if self.root.is_host() {
            let load = load::from_kernel()
                .map_err(|e| log.read_failed(std::path::Path::new("sysinfo(2)"), &e))
                .ok();
            (load, uptime::since_boot())
        } else {
            let load = reader.parse(
                &self.loadavg,
                log,
                "expected three load averages",
                load::parse_loadavg,
            );
            let uptime = reader.parse(
                &self.uptime,
                log,
                "expected seconds since boot",
                uptime::parse_uptime,
            );
            (load, uptime)
        };
        let uptime_seconds = uptime_seconds.unwrap_or(0.0);
        let pressure = match &self.pressure {
            Some((at, last)) if at.elapsed() < PRESSURE_REFRESH => Some(*last),
            _ => {
                let fresh = self
                    .found
                    .pressure
                    .as_ref()
                    .and_then(|paths| read_pressure(paths, reader, log));
                self.pressure = fresh.map(|p| (std::time::Instant::now(), p));
                fresh
            }
        };
        let root_filesystem = self.filesystem.read(log);

        Sample {
            seq,
            timestamp_ms,
            temperatures,
            cpu,
            load,
            memory,
            pressure,
            uptime_seconds,
            root_filesystem,
            throttling,
            ups: Vec::new(),
        }
    }

    /// How many distinct sensor problems were logged (each once).
    pub fn problems_reported(&self) -> usize {
        self.log.reported()
    }

    /// Finds the sensor files present now.
    fn discover(&mut self) {
        self.reader.close_all();
        self.filesystem.reopen();
        self.pressure = None;
        let (root, reader, log) = (&self.root, &mut self.reader, &self.log);
        let hwmon = hwmon::discover(root, reader, log);
        self.found = Found {
            zones: thermal::discover(root, reader, log),
            hwmon: hwmon.temps,
            frequency: cpu::FrequencyFiles::discover(root),
            pressure: discover_pressure(root),
        };
        self.throttle.discover(root, log, hwmon.rpi_volt_alarm);
        self.reader.saw_missing = false;
        self.samples_since_discovery = 0;
    }
}

fn discover_pressure(root: &SysRoot) -> Option<[PathBuf; 3]> {
    let dir = root.join("/proc/pressure");
    dir.is_dir()
        .then(|| [dir.join("cpu"), dir.join("memory"), dir.join("io")])
}

fn read_pressure(paths: &[PathBuf; 3], reader: &mut Reader, log: &LogOnce) -> Option<Pressure> {
    let mut read = |path: &PathBuf| {
        reader.parse(
            path,
            log,
            "expected some/full pressure lines",
            pressure::parse_pressure,
        )
    };
    let cpu = read(&paths[0]);
    let memory = read(&paths[1]);
    let io = read(&paths[2]);
    if cpu.is_none() && memory.is_none() && io.is_none() {
        return None;
    }
    let (memory, io) = (memory.unwrap_or_default(), io.unwrap_or_default());
    Some(Pressure {
        cpu_some: cpu.and_then(|c| c.some),
        memory_some: memory.some,
        memory_full: memory.full,
        io_some: io.some,
        io_full: io.full,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensors_can_move_to_a_sampling_task() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<Sensors>();
    }
}
