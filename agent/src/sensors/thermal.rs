//! Thermal zones: /sys/class/thermal/thermal_zoneN/{type,temp}.

use std::io;
use std::path::PathBuf;

use nodewarden_proto::v1::{Temperature, TemperatureSource};

use super::log_once::LogOnce;
use super::reader::Reader;
use crate::sysroot::SysRoot;

/// One zone found at discovery.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// The N of thermal_zoneN, as node_exporter's `zone` label has it.
    pub number: String,
    /// The zone's `type` ("cpu-thermal", "acpitz", "x86_pkg_temp").
    pub kind: String,
    pub temp: PathBuf,
}

/// Lists the zones whose type is readable, ordered by number.
pub fn discover(root: &SysRoot, reader: &mut Reader, log: &LogOnce) -> Vec<Zone> {
    let class = root.join("/sys/class/thermal");
    let Ok(entries) = std::fs::read_dir(&class) else {
        // No thermal class at all (containers, some x86 desktops): normal.
        return Vec::new();
    };
    let mut zones: Vec<(u32, Zone)> = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(number) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix("thermal_zone"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(order) = number.parse::<u32>() else {
            continue;
        };
        let dir = entry.path();
        let Some(kind) = reader.line(&dir.join("type"), log) else {
            continue;
        };
        zones.push((
            order,
            Zone {
                number: number.to_string(),
                kind,
                temp: dir.join("temp"),
            },
        ));
    }
    zones.sort_by_key(|(order, _)| *order);
    zones.into_iter().map(|(_, z)| z).collect()
}

/// Reads each zone's temperature; an unreadable zone is left out.
pub fn read(zones: &[Zone], reader: &mut Reader, log: &LogOnce, out: &mut Vec<Temperature>) {
    for zone in zones {
        if let Some(millicelsius) = read_millicelsius(&zone.temp, reader, log) {
            out.push(Temperature {
                source: TemperatureSource::ThermalZone as i32,
                device: zone.number.clone(),
                chip_name: zone.kind.clone(),
                sensor: String::new(),
                label: String::new(),
                millicelsius,
                is_cpu: false,
            });
        }
    }
}

/// Reads a millidegree file (thermal zone `temp` or hwmon `tempN_input`).
/// Sensors that are asleep answer EINVAL, ENODATA or EAGAIN, and hot-plugged
/// ones vanish; those are expected and noted at debug level only.
pub fn read_millicelsius(
    path: &std::path::Path,
    reader: &mut Reader,
    log: &LogOnce,
) -> Option<i32> {
    let text = match reader.try_text(path) {
        Ok(text) => text,
        Err(e) => {
            match e.raw_os_error() {
                Some(libc::EINVAL | libc::ENODATA | libc::EAGAIN) => log.not_ready(path, &e),
                // A device went away (an NVMe drive unplugged, a module
                // unloaded): find the sensors again, no alarm.
                _ if e.kind() == io::ErrorKind::NotFound => {
                    reader.saw_missing = true;
                    log.not_ready(path, &e);
                }
                _ => log.read_failed(path, &e),
            }
            return None;
        }
    };
    match text.trim().parse::<i32>() {
        Ok(v) => Some(v),
        Err(_) => {
            log.garbage(path, "expected integer millidegrees Celsius");
            None
        }
    }
}
