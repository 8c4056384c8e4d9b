//! Which temperature is "the CPU's": chosen by zone type, hwmon chip name and
//! label, never by index (zone 0 on x86 is usually `acpitz`, a motherboard
//! sensor). Only the best kind of reading present is marked, so a thermal
//! zone and its hwmon twin (`cpu-thermal` / `cpu_thermal`) or `x86_pkg_temp`
//! and coretemp's `Package id 0` are never both counted.

use nodewarden_proto::v1::{Temperature, TemperatureSource};

/// Readings outside this range are a disconnected or broken sensor, not a
/// CPU temperature anyone should act on.
const PLAUSIBLE_MILLICELSIUS: std::ops::RangeInclusive<i32> = -40_000..=150_000;

/// How good a CPU temperature `t` is; lower is better, `None` if it is not
/// one at all.
fn rank(t: &Temperature) -> Option<u8> {
    if !PLAUSIBLE_MILLICELSIUS.contains(&t.millicelsius) {
        return None;
    }
    let hwmon = t.source == TemperatureSource::Hwmon as i32;
    let zone = t.source == TemperatureSource::ThermalZone as i32;
    let name = t.chip_name.as_str();
    if hwmon && matches!(name, "k10temp" | "zenpower") {
        // AMD: Tdie is the real die temperature; Tctl is the control value,
        // offset on some older Ryzen/Threadripper parts; Tccd1..12 are
        // per-chiplet. An unlabelled temp1 on old kernels is Tctl.
        return match t.label.as_str() {
            "Tdie" => Some(0),
            "Tctl" | "" => Some(1),
            _ => None,
        };
    }
    if hwmon && name == "coretemp" {
        // Intel: one "Package id N" per socket ("Physical id N" on old
        // kernels); "Core N" are per core.
        let package = t.label.starts_with("Package id ") || t.label.starts_with("Physical id ");
        return package.then_some(2);
    }
    if zone && name == "x86_pkg_temp" {
        return Some(3);
    }
    let cpu_thermal = name.starts_with("cpu") && name.contains("thermal");
    if zone && cpu_thermal {
        // Raspberry Pi 3/4/5 and Amlogic: "cpu-thermal".
        return Some(4);
    }
    if hwmon && cpu_thermal {
        // The hwmon twin of a cpu-thermal zone ("cpu_thermal"): only used
        // when the zone itself could not be read.
        return Some(5);
    }
    None
}

/// Sets `is_cpu` on every reading of the best kind present (one per socket
/// on multi-socket machines), and clears it on the rest.
pub fn mark_cpu(temps: &mut [Temperature]) {
    let best = temps.iter().filter_map(rank).min();
    for t in temps.iter_mut() {
        t.is_cpu = best.is_some() && rank(t) == best;
    }
}

/// The hottest reading marked as a CPU temperature.
pub fn hottest_cpu(temps: &[Temperature]) -> Option<&Temperature> {
    temps
        .iter()
        .filter(|t| t.is_cpu)
        .max_by_key(|t| t.millicelsius)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(kind: &str, milli: i32) -> Temperature {
        Temperature {
            source: TemperatureSource::ThermalZone as i32,
            chip_name: kind.into(),
            millicelsius: milli,
            ..Default::default()
        }
    }

    fn hwmon(name: &str, label: &str, milli: i32) -> Temperature {
        Temperature {
            source: TemperatureSource::Hwmon as i32,
            chip_name: name.into(),
            label: label.into(),
            millicelsius: milli,
            ..Default::default()
        }
    }

    fn marked(temps: &[Temperature]) -> Vec<(&str, &str)> {
        temps
            .iter()
            .filter(|t| t.is_cpu)
            .map(|t| (t.chip_name.as_str(), t.label.as_str()))
            .collect()
    }

    #[test]
    fn prefers_package_sensors_and_never_acpitz() {
        let mut t = vec![
            zone("acpitz", 95_000),
            zone("x86_pkg_temp", 50_000),
            hwmon("coretemp", "Package id 0", 51_000),
            hwmon("coretemp", "Core 0", 49_000),
            hwmon("nvme", "Composite", 70_000),
        ];
        mark_cpu(&mut t);
        assert_eq!(marked(&t), [("coretemp", "Package id 0")]);
        assert_eq!(hottest_cpu(&t).unwrap().millicelsius, 51_000);
        // Without coretemp loaded, the package zone is next best.
        t.retain(|x| x.chip_name != "coretemp");
        mark_cpu(&mut t);
        assert_eq!(marked(&t), [("x86_pkg_temp", "")]);
    }

    #[test]
    fn amd_prefers_tdie_then_tctl_never_ccds() {
        let mut t = vec![
            hwmon("k10temp", "Tctl", 70_000),
            hwmon("k10temp", "Tccd1", 80_000),
        ];
        mark_cpu(&mut t);
        assert_eq!(marked(&t), [("k10temp", "Tctl")]);
        t.push(hwmon("k10temp", "Tdie", 60_000));
        mark_cpu(&mut t);
        assert_eq!(marked(&t), [("k10temp", "Tdie")]);
    }

    #[test]
    fn zone_wins_over_its_hwmon_twin_and_ddr_is_not_cpu() {
        let mut t = vec![
            zone("cpu-thermal", 55_000),
            zone("ddr-thermal", 60_000),
            hwmon("cpu_thermal", "", 55_000),
            hwmon("ddr_thermal", "", 60_000),
        ];
        mark_cpu(&mut t);
        assert_eq!(marked(&t), [("cpu-thermal", "")]);
        t.remove(0);
        mark_cpu(&mut t);
        assert_eq!(marked(&t), [("cpu_thermal", "")]);
    }

    #[test]
    fn implausible_values_are_not_cpu_temperatures() {
        let mut t = vec![zone("cpu-thermal", 200_000)];
        mark_cpu(&mut t);
        assert!(hottest_cpu(&t).is_none());
    }
}
