//! The named series derived from one agent `Sample`: what `nodewarden history`
//! plots, what the store keeps and rolls up.
//!
//! A field the agent could not read produces no point at all, so a chart shows
//! a hole instead of a zero that looks like a real reading.

use std::borrow::Cow;

use nodewarden_proto::v1::{Sample, Temperature, UpsStatus};

/// A well-known metric: its name, unit and a one-line description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricInfo {
    /// Name as the CLI and the store know it.
    pub name: &'static str,
    /// Unit of its values ("celsius", "percent", "bytes", "hertz", "seconds", "volts", "").
    pub unit: &'static str,
    /// One line for `nodewarden history --help` and the docs.
    pub description: &'static str,
}

const fn info(name: &'static str, unit: &'static str, description: &'static str) -> MetricInfo {
    MetricInfo {
        name,
        unit,
        description,
    }
}

/// Every fixed metric name, plus the patterns of the per-sensor and per-UPS ones.
pub const WELL_KNOWN: &[MetricInfo] = &[
    info(
        "cpu_temp",
        "celsius",
        "hottest temperature the agent judged to be the CPU's",
    ),
    info("cpu_usage", "percent", "busy share of all cores"),
    info(
        "cpu_freq",
        "hertz",
        "mean scaling_cur_freq over cores (ignores Pi firmware throttling)",
    ),
    info(
        "arm_clock",
        "hertz",
        "ARM clock measured by the Pi firmware (reflects throttling)",
    ),
    info("load1", "", "1-minute load average"),
    info("load5", "", "5-minute load average"),
    info("load15", "", "15-minute load average"),
    info(
        "mem_used",
        "bytes",
        "memory in use: MemTotal - MemAvailable",
    ),
    info("mem_available", "bytes", "MemAvailable"),
    info("mem_total", "bytes", "MemTotal"),
    info("swap_used", "bytes", "SwapTotal - SwapFree"),
    info("rootfs_used", "bytes", "root filesystem used (size - free)"),
    info(
        "rootfs_available",
        "bytes",
        "root filesystem free to unprivileged users",
    ),
    info("uptime", "seconds", "seconds since boot"),
    info(
        "throttled",
        "",
        "raw Pi get_throttled word (bit 0 under-voltage now, 16-19 since boot)",
    ),
    info(
        "under_voltage",
        "",
        "1 while the Pi is under-volted now, else 0",
    ),
    info(
        "cpu_pressure",
        "percent",
        "PSI cpu some avg10 (absent without psi=1)",
    ),
    info("memory_pressure", "percent", "PSI memory some avg10"),
    info("io_pressure", "percent", "PSI io some avg10"),
    info(
        "temp.<chip>.<label|sensor|zone>",
        "celsius",
        "every thermal zone and hwmon temperature, e.g. temp.cpu-thermal.0, temp.coretemp.Package_id_0",
    ),
    info(
        "ups.<name>.battery_charge",
        "percent",
        "UPS battery charge (read by the agent that owns the UPS)",
    ),
    info(
        "ups.<name>.battery_runtime",
        "seconds",
        "UPS estimated runtime on battery",
    ),
    info("ups.<name>.load", "percent", "UPS output load"),
    info(
        "ups.<name>.input_voltage",
        "volts",
        "UPS input (mains) voltage",
    ),
];

/// The unit of a metric name ("" when unitless or unknown).
pub fn unit_of(metric: &str) -> &'static str {
    if metric.starts_with("temp.") {
        return "celsius";
    }
    if let Some(rest) = metric.strip_prefix("ups.") {
        return match rest.rsplit('.').next() {
            Some("battery_charge" | "load") => "percent",
            Some("battery_runtime") => "seconds",
            Some("input_voltage") => "volts",
            _ => "",
        };
    }
    WELL_KNOWN
        .iter()
        .find(|m| m.name == metric)
        .map_or("", |m| m.unit)
}

/// Every series point one sample carries, by metric name.
pub fn series_of(sample: &Sample) -> Vec<(Cow<'static, str>, f64)> {
    let mut out: Vec<(Cow<'static, str>, f64)> = Vec::with_capacity(32);
    let mut push = |name: Cow<'static, str>, value: f64| {
        if value.is_finite() {
            out.push((name, value));
        }
    };

    let cpu_temp = sample
        .temperatures
        .iter()
        .filter(|t| t.is_cpu)
        .map(|t| f64::from(t.millicelsius) / 1000.0)
        .fold(None, |hottest: Option<f64>, t| {
            Some(hottest.map_or(t, |h| h.max(t)))
        });
    if let Some(t) = cpu_temp {
        push("cpu_temp".into(), t);
    }
    if let Some(cpu) = &sample.cpu {
        push("cpu_usage".into(), f64::from(cpu.usage_percent));
        let freqs: Vec<f64> = cpu
            .cores
            .iter()
            .filter(|c| c.frequency_hertz > 0)
            .map(|c| c.frequency_hertz as f64)
            .collect();
        if !freqs.is_empty() {
            push(
                "cpu_freq".into(),
                freqs.iter().sum::<f64>() / freqs.len() as f64,
            );
        }
        if cpu.measured_arm_clock_hertz > 0 {
            push("arm_clock".into(), cpu.measured_arm_clock_hertz as f64);
        }
    }
    if let Some(load) = &sample.load {
        push("load1".into(), load.load1);
        push("load5".into(), load.load5);
        push("load15".into(), load.load15);
    }
    if let Some(mem) = &sample.memory
        && mem.total_bytes > 0
    {
        push(
            "mem_used".into(),
            mem.total_bytes.saturating_sub(mem.available_bytes) as f64,
        );
        push("mem_available".into(), mem.available_bytes as f64);
        push("mem_total".into(), mem.total_bytes as f64);
        push(
            "swap_used".into(),
            mem.swap_total_bytes.saturating_sub(mem.swap_free_bytes) as f64,
        );
    }
    if let Some(fs) = &sample.root_filesystem
        && fs.size_bytes > 0
    {
        push(
            "rootfs_used".into(),
            fs.size_bytes.saturating_sub(fs.free_bytes) as f64,
        );
        push("rootfs_available".into(), fs.available_bytes as f64);
    }
    if sample.uptime_seconds > 0.0 {
        push("uptime".into(), sample.uptime_seconds);
    }
    if let Some(th) = &sample.throttling {
        push("throttled".into(), f64::from(th.get_throttled));
        let now = th.get_throttled & 1 != 0 || th.under_voltage_alarm;
        push("under_voltage".into(), if now { 1.0 } else { 0.0 });
    }
    if let Some(p) = &sample.pressure {
        let lines = [
            ("cpu_pressure", &p.cpu_some),
            ("memory_pressure", &p.memory_some),
            ("io_pressure", &p.io_some),
        ];
        for (name, line) in lines {
            if let Some(line) = line {
                push(name.into(), f64::from(line.avg10_percent));
            }
        }
    }

    let mut temp_names: Vec<String> = Vec::with_capacity(sample.temperatures.len());
    for t in &sample.temperatures {
        let mut name = temperature_name(t, false);
        if temp_names.contains(&name) {
            // Two chips with one name (two NVMe drives): the device tells them apart.
            name = temperature_name(t, true);
        }
        push(Cow::Owned(name.clone()), f64::from(t.millicelsius) / 1000.0);
        temp_names.push(name);
    }

    for ups in &sample.ups {
        ups_series(ups, &mut push);
    }
    out
}

/// The series of one UPS status (also fed from pushed status changes).
pub fn ups_series_of(status: &UpsStatus) -> Vec<(Cow<'static, str>, f64)> {
    let mut out = Vec::with_capacity(4);
    ups_series(status, &mut |name, value: f64| {
        if value.is_finite() {
            out.push((name, value));
        }
    });
    out
}

fn ups_series(ups: &UpsStatus, push: &mut impl FnMut(Cow<'static, str>, f64)) {
    if ups.ups_name.is_empty() || !ups.communication_ok {
        // Stale last-good values would draw a flat line through an outage.
        return;
    }
    let name = sanitize(&ups.ups_name);
    let fields = [
        ("battery_charge", ups.battery_charge_percent),
        ("battery_runtime", ups.battery_runtime_seconds),
        ("load", ups.load_percent),
        ("input_voltage", ups.input_voltage_volts),
    ];
    for (field, value) in fields {
        if let Some(v) = value {
            push(Cow::Owned(format!("ups.{name}.{field}")), v);
        }
    }
}

fn temperature_name(t: &Temperature, with_device: bool) -> String {
    let chip = if t.chip_name.is_empty() {
        "unknown"
    } else {
        &t.chip_name
    };
    let which = [&t.label, &t.sensor, &t.device]
        .into_iter()
        .find(|s| !s.is_empty())
        .map_or("0", String::as_str);
    if with_device && !t.device.is_empty() {
        format!(
            "temp.{}.{}.{}",
            sanitize(chip),
            sanitize(&t.device),
            sanitize(which)
        )
    } else {
        format!("temp.{}.{}", sanitize(chip), sanitize(which))
    }
}

/// Metric names are typed on command lines: no spaces, no dots inside a part.
fn sanitize(part: &str) -> String {
    part.trim()
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '.' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use nodewarden_proto::v1::{
        Cpu, CpuCore, Filesystem, LoadAverage, Memory, Pressure, PressureLine, Temperature,
        TemperatureSource, Throttling,
    };

    use super::*;

    fn value(points: &[(Cow<'static, str>, f64)], name: &str) -> Option<f64> {
        points.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    fn pi4_sample() -> Sample {
        Sample {
            seq: 7,
            timestamp_ms: 1_700_000_000_000,
            temperatures: vec![
                Temperature {
                    source: TemperatureSource::ThermalZone as i32,
                    device: "0".into(),
                    chip_name: "cpu-thermal".into(),
                    millicelsius: 51_121,
                    is_cpu: true,
                    ..Default::default()
                },
                Temperature {
                    source: TemperatureSource::Hwmon as i32,
                    device: "nvme_nvme0".into(),
                    chip_name: "nvme".into(),
                    sensor: "temp1".into(),
                    label: "Composite".into(),
                    millicelsius: 38_850,
                    ..Default::default()
                },
                Temperature {
                    source: TemperatureSource::Hwmon as i32,
                    device: "nvme_nvme1".into(),
                    chip_name: "nvme".into(),
                    sensor: "temp1".into(),
                    label: "Composite".into(),
                    millicelsius: 41_000,
                    ..Default::default()
                },
            ],
            cpu: Some(Cpu {
                usage_percent: 12.5,
                cores: vec![
                    CpuCore {
                        id: 0,
                        frequency_hertz: 1_500_000_000,
                        ..Default::default()
                    },
                    CpuCore {
                        id: 1,
                        frequency_hertz: 600_000_000,
                        ..Default::default()
                    },
                ],
                logical_cpus: 2,
                measured_arm_clock_hertz: 600_169_920,
            }),
            load: Some(LoadAverage {
                load1: 0.52,
                load5: 0.31,
                load15: 0.2,
            }),
            memory: Some(Memory {
                total_bytes: 8_000_000_000,
                available_bytes: 6_000_000_000,
                free_bytes: 5_000_000_000,
                swap_total_bytes: 100,
                swap_free_bytes: 60,
                ..Default::default()
            }),
            pressure: None,
            uptime_seconds: 3600.5,
            root_filesystem: Some(Filesystem {
                mountpoint: "/".into(),
                size_bytes: 32_000,
                available_bytes: 10_000,
                free_bytes: 12_000,
            }),
            throttling: Some(Throttling {
                get_throttled: 0x5_0005,
                ..Default::default()
            }),
            ups: vec![UpsStatus {
                ups_name: "riello".into(),
                communication_ok: true,
                battery_charge_percent: Some(97.0),
                input_voltage_volts: Some(229.5),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn series_of_a_pi_sample_derives_every_reading() {
        let points = series_of(&pi4_sample());
        assert_eq!(value(&points, "cpu_temp"), Some(51.121));
        assert_eq!(value(&points, "cpu_usage"), Some(12.5));
        assert_eq!(value(&points, "cpu_freq"), Some(1_050_000_000.0));
        assert_eq!(value(&points, "arm_clock"), Some(600_169_920.0));
        assert_eq!(value(&points, "load1"), Some(0.52));
        assert_eq!(value(&points, "mem_used"), Some(2_000_000_000.0));
        assert_eq!(value(&points, "swap_used"), Some(40.0));
        assert_eq!(value(&points, "rootfs_used"), Some(20_000.0));
        assert_eq!(value(&points, "rootfs_available"), Some(10_000.0));
        assert_eq!(value(&points, "uptime"), Some(3600.5));
        assert_eq!(value(&points, "throttled"), Some(f64::from(0x5_0005u32)));
        assert_eq!(value(&points, "under_voltage"), Some(1.0));
        assert_eq!(value(&points, "temp.cpu-thermal.0"), Some(51.121));
        assert_eq!(value(&points, "temp.nvme.Composite"), Some(38.85));
        assert_eq!(value(&points, "temp.nvme.nvme_nvme1.Composite"), Some(41.0));
        assert_eq!(value(&points, "ups.riello.battery_charge"), Some(97.0));
        assert_eq!(value(&points, "ups.riello.input_voltage"), Some(229.5));
        assert_eq!(value(&points, "ups.riello.load"), None);
        // psi=1 is off on Pi kernels: no pressure point, not a zero.
        assert_eq!(value(&points, "cpu_pressure"), None);
        let names: Vec<&str> = points.iter().map(|(n, _)| n.as_ref()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate names in {names:?}");
    }

    #[test]
    fn absent_fields_produce_no_points() {
        let sample = Sample {
            seq: 1,
            timestamp_ms: 1,
            ..Default::default()
        };
        assert!(series_of(&sample).is_empty());
        let x86 = Sample {
            cpu: Some(Cpu {
                usage_percent: 3.0,
                cores: vec![CpuCore::default()],
                ..Default::default()
            }),
            pressure: Some(Pressure {
                cpu_some: Some(PressureLine {
                    avg10_percent: 0.25,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..sample
        };
        let points = series_of(&x86);
        assert_eq!(value(&points, "cpu_freq"), None);
        assert_eq!(value(&points, "arm_clock"), None);
        assert_eq!(value(&points, "throttled"), None);
        assert_eq!(value(&points, "cpu_pressure"), Some(0.25));
        assert_eq!(value(&points, "io_pressure"), None);
    }

    #[test]
    fn ups_without_communication_draws_no_stale_points() {
        let status = UpsStatus {
            ups_name: "riello".into(),
            communication_ok: false,
            battery_charge_percent: Some(50.0),
            ..Default::default()
        };
        assert!(ups_series_of(&status).is_empty());
    }

    #[test]
    fn units_follow_the_names() {
        assert_eq!(unit_of("cpu_temp"), "celsius");
        assert_eq!(unit_of("temp.coretemp.Package_id_0"), "celsius");
        assert_eq!(unit_of("mem_used"), "bytes");
        assert_eq!(unit_of("ups.riello.battery_runtime"), "seconds");
        assert_eq!(unit_of("ups.riello.input_voltage"), "volts");
        assert_eq!(unit_of("load1"), "");
        assert_eq!(unit_of("no_such_metric"), "");
    }
}
