//! hwmon chips: /sys/class/hwmon/hwmonN/{name,tempM_input,tempM_label}, and
//! the Raspberry Pi `rpi_volt` under-voltage alarm.

use std::path::{Path, PathBuf};

use nodewarden_proto::v1::{Temperature, TemperatureSource};

use super::log_once::LogOnce;
use super::reader::Reader;
use super::thermal::read_millicelsius;
use crate::sysroot::SysRoot;

/// One temperature input found at discovery.
#[derive(Debug, Clone, PartialEq)]
pub struct HwmonTemp {
    /// The chip as node_exporter names it ("platform_coretemp_0").
    pub chip: String,
    /// The chip's `name` file ("coretemp", "k10temp", "cpu_thermal").
    pub name: String,
    /// File stem ("temp1").
    pub sensor: String,
    /// `tempM_label`, empty if none.
    pub label: String,
    pub input: PathBuf,
}

/// What discovery found under /sys/class/hwmon.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Hwmon {
    pub temps: Vec<HwmonTemp>,
    /// `in0_lcrit_alarm` of the `rpi_volt` chip (Raspberry Pi firmware's
    /// under-voltage alarm), if present.
    pub rpi_volt_alarm: Option<PathBuf>,
}

/// Lists every hwmon temperature input, ordered by hwmon and sensor number.
pub fn discover(root: &SysRoot, reader: &mut Reader, log: &LogOnce) -> Hwmon {
    let mut found = Hwmon::default();
    let Ok(entries) = std::fs::read_dir(root.join("/sys/class/hwmon")) else {
        return found;
    };
    let mut chips: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let n = e
                .file_name()
                .to_str()?
                .strip_prefix("hwmon")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    chips.sort_by_key(|(n, _)| *n);
    for (_, dir) in chips {
        let name = reader.line(&dir.join("name"), log).unwrap_or_default();
        let chip = chip_name(&dir, &name);
        if name == "rpi_volt" {
            let alarm = dir.join("in0_lcrit_alarm");
            if alarm.is_file() {
                found.rpi_volt_alarm = Some(alarm);
            }
        }
        let mut inputs = temp_inputs(&dir);
        // Kernels before 3.x kept the attributes on the parent device.
        if inputs.is_empty() {
            inputs = temp_inputs(&dir.join("device"));
        }
        for (_, sensor, input) in inputs {
            let label_path = input.with_file_name(format!("{sensor}_label"));
            let label = if label_path.is_file() {
                reader.line(&label_path, log).unwrap_or_default()
            } else {
                String::new()
            };
            found.temps.push(HwmonTemp {
                chip: chip.clone(),
                name: name.clone(),
                sensor,
                label,
                input,
            });
        }
    }
    found
}

/// The `tempM_input` files of one directory, by M.
fn temp_inputs(dir: &Path) -> Vec<(u32, String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut inputs: Vec<(u32, String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let file_name = e.file_name();
            let sensor = file_name.to_str()?.strip_suffix("_input")?;
            let n: u32 = sensor.strip_prefix("temp")?.parse().ok()?;
            Some((n, sensor.to_string(), e.path()))
        })
        .collect();
    inputs.sort_by_key(|(n, _, _)| *n);
    inputs
}

/// node_exporter's chip label: from the resolved `device` link, the parent
/// directory and the device directory, cleaned and joined by `_`
/// ("/sys/devices/platform/coretemp.0" → "platform_coretemp_0"); without a
/// device, the cleaned `name`; else the cleaned hwmonN directory name.
pub fn chip_name(hwmon_dir: &Path, name: &str) -> String {
    if let Ok(device) = std::fs::canonicalize(hwmon_dir.join("device")) {
        let dev_name = device.file_name().and_then(|n| n.to_str()).map(clean_name);
        let dev_type = device
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .map(clean_name);
        match (dev_type, dev_name) {
            (Some(t), Some(n)) if !t.is_empty() && !n.is_empty() => return format!("{t}_{n}"),
            (_, Some(n)) if !n.is_empty() => return n,
            _ => {}
        }
    }
    let cleaned = clean_name(name);
    if !cleaned.is_empty() {
        return cleaned;
    }
    let real = std::fs::canonicalize(hwmon_dir).unwrap_or_else(|_| hwmon_dir.to_path_buf());
    real.file_name()
        .and_then(|n| n.to_str())
        .map(clean_name)
        .unwrap_or_default()
}

/// Lower-case, every character outside [a-z0-9:_] turned into `_`, `_`
/// trimmed from both ends (node_exporter's cleanMetricName).
pub fn clean_name(raw: &str) -> String {
    let lowered: String = raw
        .trim_end_matches('\n')
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    lowered.trim_matches('_').to_string()
}

/// Reads each discovered input; an unreadable one is left out.
pub fn read(temps: &[HwmonTemp], reader: &mut Reader, log: &LogOnce, out: &mut Vec<Temperature>) {
    for t in temps {
        if let Some(millicelsius) = read_millicelsius(&t.input, reader, log) {
            out.push(Temperature {
                source: TemperatureSource::Hwmon as i32,
                device: t.chip.clone(),
                chip_name: t.name.clone(),
                sensor: t.sensor.clone(),
                label: t.label.clone(),
                millicelsius,
                is_cpu: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_names_like_node_exporter() {
        assert_eq!(clean_name("coretemp.0"), "coretemp_0");
        assert_eq!(clean_name("0000:00:18.3"), "0000:00:18_3");
        assert_eq!(clean_name("raspberrypi-hwmon"), "raspberrypi_hwmon");
        assert_eq!(clean_name("soc@107c000000"), "soc_107c000000");
        assert_eq!(clean_name("-Tctl-\n"), "tctl");
    }
}
