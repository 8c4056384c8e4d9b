//! What a user would see from the agent's sensors on each real board, read
//! from the fixture trees in tests/fixtures/boards/<board> (workspace root).
// The helpers below are test code too: a failed unwrap or expect is a
// failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nodewarden_agent::sensors::{Sensors, hottest_cpu};
use nodewarden_agent::sysroot::SysRoot;
use nodewarden_proto::throttle;
use nodewarden_proto::v1::{Capability, Sample, Temperature, TemperatureSource, ThrottlingSource};

/// Fixture root of `board` (pi3, pi4, pi5, bpi-m5, x86-intel, x86-amd).
fn fixture_root(board: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/boards")
        .join(board)
}

fn sample_of(board: &str) -> (Sensors, Sample) {
    let mut sensors = Sensors::new(SysRoot::at(fixture_root(board)));
    let sample = sensors.sample(1, 1_763_900_000_000);
    (sensors, sample)
}

/// The CPU temperature a user is shown: (source, device, chip, label, m°C).
fn cpu_temp(s: &Sample) -> (TemperatureSource, &str, &str, &str, i32) {
    let t = hottest_cpu(&s.temperatures).expect("a CPU temperature");
    (
        t.source(),
        &t.device,
        &t.chip_name,
        &t.label,
        t.millicelsius,
    )
}

fn cpu_marked(s: &Sample) -> Vec<&Temperature> {
    s.temperatures.iter().filter(|t| t.is_cpu).collect()
}

fn find<'a>(s: &'a Sample, chip: &str, label: &str) -> Option<&'a Temperature> {
    s.temperatures
        .iter()
        .find(|t| t.chip_name == chip && t.label == label)
}

fn used_bytes(s: &Sample) -> u64 {
    let m = s.memory.as_ref().expect("memory");
    m.total_bytes - m.available_bytes
}

fn flags_now(word: u32) -> Vec<&'static str> {
    throttle::active_now(word).map(|f| f.name).collect()
}

fn flags_since_boot(word: u32) -> Vec<&'static str> {
    throttle::occurred_since_boot(word)
        .map(|f| f.name)
        .collect()
}

#[test]
fn pi3_is_under_volted_and_its_arm_clock_is_capped() {
    let (sensors, s) = sample_of("pi3");
    assert_eq!(
        cpu_temp(&s),
        (
            TemperatureSource::ThermalZone,
            "0",
            "cpu-thermal",
            "",
            62_838
        )
    );
    // The zone's hwmon twin is reported (node_exporter shows both) but not
    // counted as a second CPU reading.
    let twin = find(&s, "cpu_thermal", "").expect("hwmon twin");
    assert_eq!(twin.device, "thermal_thermal_zone0");
    assert_eq!(cpu_marked(&s).len(), 1);

    let t = s.throttling.as_ref().expect("throttling");
    assert_eq!(t.source(), ThrottlingSource::Mailbox);
    assert_eq!(t.get_throttled, 0x50005);
    assert_eq!(flags_now(t.get_throttled), ["under_voltage", "throttled"]);
    assert_eq!(
        flags_since_boot(t.get_throttled),
        ["under_voltage", "throttled"]
    );
    assert!(t.under_voltage_alarm, "rpi_volt in0_lcrit_alarm is 1");

    let cpu = s.cpu.as_ref().expect("cpu");
    assert_eq!(cpu.logical_cpus, 4);
    // cpufreq claims 1.2 GHz; the firmware says it is really running at 600 MHz.
    assert!(cpu.cores.iter().all(|c| c.frequency_hertz == 1_200_000_000));
    assert_eq!(cpu.measured_arm_clock_hertz, 600_000_000);

    assert_eq!(used_bytes(&s), (944_268 - 501_280) * 1024);
    assert!(
        s.pressure.is_none(),
        "Raspberry Pi OS kernels run without psi=1"
    );

    let facts = sensors.facts();
    assert_eq!(facts.board_model, "Raspberry Pi 3 Model B Rev 1.2");
    assert_eq!(facts.hostname, "pi3-worker");
    assert_eq!(facts.kernel_version, "6.6.51+rpt-rpi-v7");
    assert_eq!(facts.os_name, "Raspbian GNU/Linux 12 (bookworm)");
    assert_eq!(facts.boot_time_unix_seconds, 1_763_813_477);
    assert_eq!(facts.arch, std::env::consts::ARCH);
    assert_eq!(
        facts.capabilities,
        [Capability::Telemetry, Capability::PiThrottling]
    );
}

#[test]
fn pi4_is_healthy() {
    let (sensors, s) = sample_of("pi4");
    assert_eq!(
        cpu_temp(&s),
        (
            TemperatureSource::ThermalZone,
            "0",
            "cpu-thermal",
            "",
            48_686
        )
    );
    let t = s.throttling.as_ref().expect("throttling");
    assert_eq!(t.get_throttled, 0);
    assert!(flags_now(0).is_empty());
    assert!(!t.under_voltage_alarm);
    let cpu = s.cpu.as_ref().unwrap();
    assert_eq!(cpu.logical_cpus, 4);
    assert_eq!(cpu.measured_arm_clock_hertz, 1_800_000_000);
    assert_eq!(used_bytes(&s), (3_880_184 - 2_790_212) * 1024);
    assert!(s.pressure.is_none());
    assert_eq!(
        sensors.facts().board_model,
        "Raspberry Pi 4 Model B Rev 1.5"
    );
    assert_eq!(sensors.facts().os_name, "Debian GNU/Linux 12 (bookworm)");
    // /proc/uptime and /proc/loadavg
    assert_eq!(s.uptime_seconds, 1_209_611.27);
    assert_eq!(s.load.as_ref().unwrap().load5, 0.52);
}

#[test]
fn pi5_is_hot_and_at_its_soft_temperature_limit() {
    let (sensors, s) = sample_of("pi5");
    assert_eq!(
        cpu_temp(&s),
        (
            TemperatureSource::ThermalZone,
            "0",
            "cpu-thermal",
            "",
            81_650
        )
    );
    let t = s.throttling.as_ref().unwrap();
    assert_eq!(t.get_throttled, 0x80008);
    assert_eq!(flags_now(t.get_throttled), ["soft_temp_limit"]);
    assert_eq!(flags_since_boot(t.get_throttled), ["soft_temp_limit"]);
    // The RP1 I/O chip's sensor is reported under node_exporter's chip name,
    // and is not the CPU.
    let rp1 = find(&s, "rp1_adc", "").expect("rp1_adc");
    assert_eq!(rp1.device, "1000120000_pcie_1f000c8000_adc");
    assert_eq!(rp1.sensor, "temp1");
    assert_eq!(rp1.millicelsius, 57_340);
    assert!(!rp1.is_cpu);
    // The fan and the voltage monitor have no temperatures.
    assert!(
        s.temperatures
            .iter()
            .all(|t| t.chip_name != "pwmfan" && t.chip_name != "rpi_volt")
    );
    let cpu = s.cpu.as_ref().unwrap();
    assert!(cpu.cores.iter().all(|c| c.frequency_hertz == 2_400_000_000));
    assert_eq!(cpu.measured_arm_clock_hertz, 1_500_000_000);
    assert_eq!(
        sensors.facts().board_model,
        "Raspberry Pi 5 Model B Rev 1.0"
    );
    assert!(s.pressure.is_none());
}

#[test]
fn banana_pi_m5_reports_cpu_not_ddr_and_has_pressure() {
    let (sensors, s) = sample_of("bpi-m5");
    assert_eq!(
        cpu_temp(&s),
        (
            TemperatureSource::ThermalZone,
            "0",
            "cpu-thermal",
            "",
            52_400
        )
    );
    let ddr = find(&s, "ddr-thermal", "").expect("ddr zone");
    assert_eq!(
        (ddr.device.as_str(), ddr.millicelsius, ddr.is_cpu),
        ("1", 50_600, false)
    );
    assert_eq!(cpu_marked(&s).len(), 1);
    assert!(s.throttling.is_none(), "not a Raspberry Pi");
    let p = s.pressure.as_ref().expect("Debian kernels have PSI");
    let cpu_some = p.cpu_some.as_ref().unwrap();
    assert_eq!(cpu_some.avg10_percent, 0.52);
    assert_eq!(cpu_some.total_seconds, 4_122.334_123);
    assert_eq!(p.memory_full.as_ref().unwrap().total_seconds, 0.811_23);
    assert_eq!(p.io_full.as_ref().unwrap().avg60_percent, 0.18);
    let facts = sensors.facts();
    assert_eq!(facts.board_model, "Banana Pi BPI-M5");
    assert_eq!(facts.capabilities, [Capability::Telemetry]);
    let cpu = s.cpu.as_ref().unwrap();
    assert_eq!(cpu.logical_cpus, 4);
    assert_eq!(cpu.measured_arm_clock_hertz, 0);
    assert_eq!(cpu.cores[3].frequency_hertz, 1_908_000_000);
}

#[test]
fn intel_nuc_picks_the_package_sensor_not_zone_zero() {
    let (sensors, s) = sample_of("x86-intel");
    assert_eq!(
        cpu_temp(&s),
        (
            TemperatureSource::Hwmon,
            "platform_coretemp_0",
            "coretemp",
            "Package id 0",
            47_000
        )
    );
    let marked = cpu_marked(&s);
    assert_eq!(marked.len(), 1);
    assert_eq!(marked[0].sensor, "temp1");
    // Zone 0 is the motherboard's acpitz, reported but not the CPU.
    let zone0 = s.temperatures.iter().find(|t| t.device == "0").unwrap();
    assert_eq!((zone0.chip_name.as_str(), zone0.is_cpu), ("acpitz", false));
    assert!(!find(&s, "x86_pkg_temp", "").unwrap().is_cpu);
    let nvme = find(&s, "nvme", "Composite").expect("nvme");
    assert_eq!(
        (nvme.device.as_str(), nvme.millicelsius, nvme.is_cpu),
        ("nvme_nvme0", 38_850, false)
    );
    // The Wi-Fi card's zone and its hwmon twin cannot be read: simply absent.
    assert!(s.temperatures.iter().all(|t| t.chip_name != "iwlwifi_1"));
    assert!(s.temperatures.iter().all(|t| t.device != "2"));
    assert_eq!(find(&s, "coretemp", "Core 3").unwrap().millicelsius, 46_000);

    let cpu = s.cpu.as_ref().unwrap();
    assert_eq!(cpu.logical_cpus, 8);
    assert_eq!(cpu.cores[2].frequency_hertz, 4_100_000_000);
    assert!(s.throttling.is_none());
    assert!(s.pressure.is_some());
    assert_eq!(used_bytes(&s), (16_215_668 - 13_900_120) * 1024);
    let facts = sensors.facts();
    assert_eq!(facts.board_model, "Intel(R) Client Systems NUC10i5FNH");
    assert_eq!(facts.kernel_version, "6.1.0-26-amd64");
}

#[test]
fn ryzen_picks_tctl_and_names_the_board_not_the_placeholder() {
    let (sensors, s) = sample_of("x86-amd");
    assert_eq!(
        cpu_temp(&s),
        (
            TemperatureSource::Hwmon,
            "pci0000:00_0000:00:18_3",
            "k10temp",
            "Tctl",
            62_750
        )
    );
    assert_eq!(cpu_marked(&s).len(), 1);
    // The hotter per-chiplet sensors are reported, not taken for the CPU.
    assert!(!find(&s, "k10temp", "Tccd1").unwrap().is_cpu);
    assert_eq!(find(&s, "k10temp", "Tccd2").unwrap().sensor, "temp4");
    assert_eq!(s.cpu.as_ref().unwrap().logical_cpus, 24);
    let facts = sensors.facts();
    assert_eq!(
        facts.board_model,
        "ASUSTeK COMPUTER INC. ROG STRIX B550-F GAMING"
    );
    assert_eq!(facts.os_name, "Ubuntu 24.04.1 LTS");
    assert!(s.pressure.is_some());
}

#[test]
fn every_board_reports_the_filesystem_and_uptime() {
    for board in ["pi3", "pi4", "pi5", "bpi-m5", "x86-intel", "x86-amd"] {
        let (sensors, s) = sample_of(board);
        let fs = s.root_filesystem.as_ref().expect(board);
        assert_eq!(fs.mountpoint, "/");
        assert!(
            fs.size_bytes > 0 && fs.available_bytes <= fs.free_bytes,
            "{board}"
        );
        assert!(s.uptime_seconds > 0.0, "{board}");
        assert!(
            s.load.is_some() && s.memory.is_some() && s.cpu.is_some(),
            "{board}"
        );
        assert_eq!((s.seq, s.timestamp_ms), (1, 1_763_900_000_000));
        // Only the Wi-Fi zone and its hwmon twin are unreadable.
        let expected = if board == "x86-intel" { 2 } else { 0 };
        assert_eq!(sensors.problems_reported(), expected, "{board}");
    }
}

/// Copies a fixture tree into a temporary directory, symlinks included, so a
/// test can change files between samples.
fn copy_fixture(board: &str) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let (src, dst) = (entry.path(), to.join(entry.file_name()));
            let kind = entry.file_type().unwrap();
            if kind.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
            } else if kind.is_dir() {
                copy(&src, &dst);
            } else {
                std::fs::copy(&src, &dst).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&fixture_root(board), dir.path());
    dir
}

/// Adds `add` (user, idle ticks) per core to every cpu line of /proc/stat.
fn advance_stat(root: &Path, add: &[(u64, u64)]) {
    let path = root.join("proc/stat");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut total = (0, 0);
    for &(u, i) in add {
        total.0 += u;
        total.1 += i;
    }
    let out: Vec<String> = text
        .lines()
        .map(|line| {
            let Some(rest) = line.strip_prefix("cpu") else {
                return line.to_string();
            };
            let (name, counters) = rest.split_once(' ').unwrap();
            let (du, di) = if name.is_empty() {
                total
            } else {
                add[name.parse::<usize>().unwrap()]
            };
            let mut v: Vec<u64> = counters
                .split_whitespace()
                .map(|w| w.parse().unwrap())
                .collect();
            v[0] += du;
            v[3] += di;
            let nums: Vec<String> = v.iter().map(u64::to_string).collect();
            format!("cpu{name} {}", nums.join(" "))
        })
        .collect();
    std::fs::write(&path, out.join("\n") + "\n").unwrap();
}

#[test]
fn second_sample_reports_usage_since_the_first() {
    let dir = copy_fixture("pi4");
    let mut sensors = Sensors::new(SysRoot::at(dir.path()));
    let first = sensors.sample(1, 0);
    // The first sample's usage is the average since boot.
    let since_boot = first.cpu.unwrap().usage_percent;
    assert!(since_boot > 2.0 && since_boot < 5.0, "{since_boot}");

    // One core 75% busy for a second, the other three idle.
    advance_stat(dir.path(), &[(75, 25), (0, 100), (0, 100), (0, 100)]);
    let second = sensors.sample(2, 1000);
    let cpu = second.cpu.unwrap();
    assert_eq!(cpu.cores[0].usage_percent, 75.0);
    assert_eq!(cpu.cores[1].usage_percent, 0.0);
    assert_eq!(cpu.usage_percent, 18.75);

    // Nothing ran: 0%, not the average since boot.
    let third = sensors.sample(3, 2000);
    assert_eq!(third.cpu.unwrap().usage_percent, 0.0);
}

/// Log lines written while `f` runs.
fn captured_logs(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buf.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn garbage_leaves_that_field_out_once_logged_and_the_rest_in() {
    let dir = copy_fixture("x86-intel");
    let root = dir.path();
    std::fs::write(root.join("proc/meminfo"), "MemTotal: lots\n\0\0\0").unwrap();
    std::fs::write(root.join("proc/loadavg"), "").unwrap();
    std::fs::write(
        root.join("sys/devices/platform/coretemp.0/hwmon/hwmon4/temp1_input"),
        "hot\n",
    )
    .unwrap();
    let mut samples = Vec::new();
    let logs = captured_logs(|| {
        let mut sensors = Sensors::new(SysRoot::at(root));
        for seq in 1..=5 {
            samples.push(sensors.sample(seq, 0));
        }
    });
    for s in &samples {
        assert!(s.memory.is_none() && s.load.is_none());
        assert!(s.cpu.is_some() && s.pressure.is_some() && s.root_filesystem.is_some());
        // Package id 0 is unreadable: the next best CPU sensor is the
        // package thermal zone, never acpitz.
        assert_eq!(
            cpu_temp(s),
            (
                TemperatureSource::ThermalZone,
                "3",
                "x86_pkg_temp",
                "",
                46_000
            )
        );
        assert!(find(s, "coretemp", "Core 0").is_some());
    }
    assert_eq!(logs.matches("proc/meminfo").count(), 1, "{logs}");
    assert_eq!(logs.matches("proc/loadavg").count(), 1, "{logs}");
    assert_eq!(
        logs.matches("temp1_input: expected integer").count(),
        1,
        "{logs}"
    );
    // The Wi-Fi zone that cannot be read is mentioned once, too.
    assert_eq!(logs.matches("thermal_zone2/temp").count(), 1, "{logs}");
}

#[test]
fn garbage_in_proc_stat_leaves_cpu_out_without_panicking() {
    let dir = copy_fixture("pi3");
    std::fs::write(dir.path().join("proc/stat"), "cpu  1 2 x 4\ncpu0 1\n").unwrap();
    let mut sensors = Sensors::new(SysRoot::at(dir.path()));
    let s = sensors.sample(1, 0);
    assert!(s.cpu.is_none());
    assert!(s.memory.is_some() && s.throttling.is_some());
    assert_eq!(sensors.facts().boot_time_unix_seconds, 0);
}

#[test]
fn a_removed_drive_disappears_and_a_new_one_is_found() {
    let dir = copy_fixture("x86-intel");
    let root = dir.path();
    let mut sensors = Sensors::new(SysRoot::at(root));
    assert!(find(&sensors.sample(1, 0), "nvme", "Composite").is_some());

    std::fs::remove_dir_all(root.join("sys/devices/pci0000:00/0000:00:1d.0")).unwrap();
    std::fs::remove_file(root.join("sys/class/hwmon/hwmon1")).unwrap();
    let logs = captured_logs(|| {
        for seq in 2..=5 {
            let s = sensors.sample(seq, 0);
            assert!(find(&s, "nvme", "Composite").is_none());
            assert!(find(&s, "coretemp", "Package id 0").is_some());
        }
    });
    // Unplugging a drive is not a fault: no warning.
    assert!(!logs.contains("hwmon1"), "{logs}");

    // A drive plugged in later is found at the next periodic discovery.
    let nvme = root.join("sys/devices/pci0000:00/0000:00:1d.4/0000:3b:00.0/nvme/nvme1/hwmon5");
    std::fs::create_dir_all(&nvme).unwrap();
    std::fs::write(nvme.join("name"), "nvme\n").unwrap();
    std::fs::write(nvme.join("temp1_input"), "40850\n").unwrap();
    std::fs::write(nvme.join("temp1_label"), "Composite\n").unwrap();
    std::os::unix::fs::symlink("../../nvme1", nvme.join("device")).unwrap();
    std::os::unix::fs::symlink(
        "../../devices/pci0000:00/0000:00:1d.4/0000:3b:00.0/nvme/nvme1/hwmon5",
        root.join("sys/class/hwmon/hwmon5"),
    )
    .unwrap();
    let found = (6..6 + u64::from(nodewarden_agent::sensors::REDISCOVER_EVERY))
        .map(|seq| sensors.sample(seq, 0))
        .find_map(|s| find(&s, "nvme", "Composite").map(|t| (t.device.clone(), t.millicelsius)));
    assert_eq!(found, Some(("nvme_nvme1".to_string(), 40_850)));
}

#[test]
fn without_the_mailbox_a_pi_falls_back_to_the_rpi_volt_alarm() {
    let dir = copy_fixture("pi3");
    let root = dir.path();
    std::fs::remove_file(root.join("dev/vcio.get_throttled")).unwrap();
    let alarm = root.join(
        "sys/devices/platform/soc/soc:firmware/raspberrypi-hwmon/hwmon/hwmon1/in0_lcrit_alarm",
    );
    let mut sensors = Sensors::new(SysRoot::at(root));
    assert_eq!(sensors.facts().capabilities, [Capability::Telemetry]);

    let t = sensors.sample(1, 0).throttling.unwrap();
    assert_eq!(t.source(), ThrottlingSource::HwmonRpiVolt);
    assert!(t.under_voltage_alarm);
    assert_eq!(
        t.get_throttled,
        throttle::UNDER_VOLTAGE | (throttle::UNDER_VOLTAGE << 16)
    );

    // The alarm clears; the agent remembers it happened.
    std::fs::write(&alarm, "0\n").unwrap();
    let s = sensors.sample(2, 0);
    let t = s.throttling.unwrap();
    assert!(!t.under_voltage_alarm);
    assert_eq!(flags_now(t.get_throttled), Vec::<&str>::new());
    assert_eq!(flags_since_boot(t.get_throttled), ["under_voltage"]);
    assert_eq!(s.cpu.unwrap().measured_arm_clock_hertz, 0);
}

#[test]
fn a_broken_pressure_file_leaves_only_its_own_lines_out() {
    let dir = copy_fixture("bpi-m5");
    std::fs::write(dir.path().join("proc/pressure/io"), "nonsense\n").unwrap();
    let mut sensors = Sensors::new(SysRoot::at(dir.path()));
    let p = sensors.sample(1, 0).pressure.unwrap();
    assert!(p.cpu_some.is_some() && p.memory_full.is_some());
    assert!(p.io_some.is_none() && p.io_full.is_none());
}

#[test]
fn the_configured_filesystem_is_reported_under_its_name() {
    let dir = copy_fixture("pi4");
    std::fs::create_dir_all(dir.path().join("var/lib/rancher")).unwrap();
    let mut sensors = Sensors::with_filesystem(SysRoot::at(dir.path()), "/var/lib/rancher");
    let fs = sensors.sample(1, 0).root_filesystem.unwrap();
    assert_eq!(fs.mountpoint, "/var/lib/rancher");
    assert!(fs.size_bytes > 0);
    let mut missing = Sensors::with_filesystem(SysRoot::at(dir.path()), "/mnt/gone");
    assert!(missing.sample(1, 0).root_filesystem.is_none());
}

#[test]
fn the_real_host_gives_cpu_memory_load_uptime_and_facts() {
    let mut sensors = Sensors::new(SysRoot::host());
    let first = sensors.sample(1, 0);
    let s = sensors.sample(2, 0);
    let cpu = s.cpu.as_ref().expect("cpu");
    let parallelism = std::thread::available_parallelism().unwrap().get() as u32;
    assert!(
        cpu.logical_cpus >= parallelism,
        "{} < {parallelism}",
        cpu.logical_cpus
    );
    assert!((0.0..=100.0).contains(&cpu.usage_percent));
    let m = s.memory.as_ref().expect("memory");
    assert!(m.total_bytes > 0 && m.available_bytes <= m.total_bytes);
    assert!(s.uptime_seconds >= first.uptime_seconds && s.uptime_seconds > 0.0);
    assert!(s.load.is_some() && s.root_filesystem.is_some());
    let facts = sensors.facts();
    assert!(!facts.kernel_version.is_empty() && !facts.hostname.is_empty());
    assert!(facts.boot_time_unix_seconds > 1_000_000_000);
}

#[test]
fn pressure_is_read_again_only_after_the_kernels_two_second_period() {
    let dir = copy_fixture("bpi-m5");
    let cpu = dir.path().join("proc/pressure/cpu");
    let mut sensors = Sensors::new(SysRoot::at(dir.path()));
    let first = sensors.sample(1, 0).pressure.unwrap().cpu_some.unwrap();
    std::fs::write(
        &cpu,
        "some avg10=42.00 avg60=1.00 avg300=1.00 total=99000000\n",
    )
    .unwrap();
    // Within PSI_FREQ the kernel has not recomputed its averages: the last
    // reading stands.
    let again = sensors.sample(2, 0).pressure.unwrap().cpu_some.unwrap();
    assert_eq!(again, first);
    std::thread::sleep(std::time::Duration::from_millis(2000));
    let later = sensors.sample(3, 0).pressure.unwrap().cpu_some.unwrap();
    assert_eq!(later.avg10_percent, 42.0);
    assert_eq!(later.total_seconds, 99.0);
}
