//! A UPS reading as NUT variables: the names upsc prints, each value
//! formatted as the NUT driver for the same protocol formats it, so a
//! client moved from NUT's upsd to nodewarden sees the same text.

use std::collections::BTreeMap;

use nodewarden_proto::v1::UpsStatus;

/// How one NUT driver writes numbers: `nutdrv_qx` (Megatec) and
/// `riello_ser` (GPSER) differ; values read from a NUT server keep the
/// shortest form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Qx,
    Riello,
    Plain,
}

impl Style {
    fn of(driver: &str) -> Style {
        match driver {
            "megatec" => Style::Qx,
            "gpser" => Style::Riello,
            _ => Style::Plain,
        }
    }
}

/// The NUT driver name a client expects in `driver.name`.
fn nut_driver(driver: &str) -> &str {
    match driver {
        "megatec" => "nutdrv_qx",
        "gpser" => "riello_ser",
        "nut" => "upsd",
        other => other,
    }
}

/// Decimal places per variable and driver style (nutdrv_qx's and
/// riello_ser's format strings); None is the shortest exact form.
fn decimals(var: &str, style: Style) -> Option<usize> {
    match (style, var) {
        (Style::Plain, _) => None,
        (_, "battery.voltage") => Some(2),
        (Style::Qx, "input.voltage" | "output.voltage" | "input.frequency") => Some(1),
        (Style::Qx, "ups.temperature" | "battery.voltage.nominal") => Some(1),
        (Style::Qx, "input.current.nominal") => Some(1),
        (Style::Riello, "input.frequency" | "output.frequency") => Some(2),
        _ => Some(0),
    }
}

fn number(value: f64, places: Option<usize>) -> String {
    match places {
        Some(p) => format!("{value:.p$}"),
        None if value.fract() == 0.0 && value.abs() < 1e15 => format!("{value:.0}"),
        None => format!("{value}"),
    }
}

/// A UPS's own text (model, firmware) as one reply-safe line: a newline in
/// a value would end the reply line early.
pub fn printable(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Every variable the reading holds, by NUT name, in upsd's (sorted) order.
pub fn nut_vars(status: &UpsStatus) -> BTreeMap<String, String> {
    let identity = status.identity.clone().unwrap_or_default();
    let style = Style::of(&identity.driver);
    let mut vars = BTreeMap::new();
    let mut num = |name: &str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            vars.insert(name.to_string(), number(v, decimals(name, style)));
        }
    };
    num("battery.charge", status.battery_charge_percent);
    num("battery.runtime", status.battery_runtime_seconds);
    num("battery.voltage", status.battery_voltage_volts);
    num("input.frequency", status.input_frequency_hertz);
    num("input.voltage", status.input_voltage_volts);
    num("output.voltage", status.output_voltage_volts);
    num("ups.load", status.load_percent);
    num("ups.temperature", status.temperature_celsius);
    if let Some(r) = &status.ratings {
        num("input.voltage.nominal", r.input_voltage_volts);
        num("output.voltage.nominal", r.output_voltage_volts);
        num("input.current.nominal", r.current_amperes);
        num("battery.voltage.nominal", r.battery_voltage_volts);
        num("input.frequency.nominal", r.frequency_hertz);
        num("ups.power.nominal", r.power_va);
        num("ups.realpower.nominal", r.real_power_watts);
    }
    let mut text = |name: &str, v: &str| {
        if !v.is_empty() {
            vars.insert(name.to_string(), printable(v));
        }
    };
    // device.* only, as NUT 2.8's drivers publish them (ups.mfr and
    // ups.model are the older names upsc no longer shows from nutdrv_qx).
    text("device.mfr", &identity.manufacturer);
    text("device.model", &identity.model);
    text("device.serial", &identity.serial_number);
    text("ups.firmware", &identity.firmware);
    text("driver.name", nut_driver(&identity.driver));
    text("driver.parameter.port", &identity.port);
    text("driver.version", env!("CARGO_PKG_VERSION"));
    text("device.type", "ups");
    text("ups.status", &status.status.join(" "));
    vars
}

/// upsd's DESC text for the variables served here (NUT's cmdvartab).
pub fn var_desc(var: &str) -> Option<&'static str> {
    Some(match var {
        "battery.charge" => "Battery charge (percent of full)",
        "battery.runtime" => "Battery runtime (seconds)",
        "battery.voltage" => "Battery voltage (V)",
        "battery.voltage.nominal" => "Nominal battery voltage (V)",
        "device.mfr" => "Description unavailable",
        "device.model" => "Description unavailable",
        "input.frequency" => "Input line frequency (Hz)",
        "input.voltage" => "Input voltage (V)",
        "input.voltage.nominal" => "Nominal input voltage (V)",
        "output.voltage" => "Output voltage (V)",
        "ups.load" => "Load on UPS (percent of full)",
        "ups.status" => "UPS status",
        "ups.temperature" => "UPS temperature (degrees C)",
        _ => return None,
    })
}

/// upsd's CMDDESC text for the commands agents run.
pub fn cmd_desc(cmd: &str) -> Option<&'static str> {
    Some(match cmd {
        "beeper.toggle" => "Toggle the UPS beeper",
        "shutdown.return" => "Turn off the load and return when power is back",
        "shutdown.stayoff" => "Turn off the load and remain off",
        "shutdown.stop" => "Stop a shutdown in progress",
        "test.battery.start.deep" => "Start a deep battery test",
        "test.battery.start.quick" => "Start a quick battery test",
        "test.battery.stop" => "Stop the battery test",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodewarden_proto::v1::{UpsIdentity, UpsRatings};

    fn reading(driver: &str) -> UpsStatus {
        UpsStatus {
            ups_name: "riello".into(),
            communication_ok: true,
            status: vec!["OL".into(), "CHRG".into()],
            input_voltage_volts: Some(230.0),
            input_frequency_hertz: Some(50.0),
            load_percent: Some(23.0),
            battery_voltage_volts: Some(27.4),
            battery_charge_percent: Some(100.0),
            battery_runtime_seconds: Some(1800.0),
            identity: Some(UpsIdentity {
                manufacturer: "Riello".into(),
                model: "iDialog".into(),
                driver: driver.into(),
                port: "/dev/ttyUSB0".into(),
                ..Default::default()
            }),
            ratings: Some(UpsRatings {
                input_voltage_volts: Some(230.0),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn megatec_values_print_as_nutdrv_qx_prints_them() {
        let v = nut_vars(&reading("megatec"));
        assert_eq!(v["ups.status"], "OL CHRG");
        assert_eq!(v["input.voltage"], "230.0");
        assert_eq!(v["battery.voltage"], "27.40");
        assert_eq!(v["ups.load"], "23");
        assert_eq!(v["battery.charge"], "100");
        assert_eq!(v["driver.name"], "nutdrv_qx");
        assert_eq!(v["device.model"], "iDialog");
        assert!(
            !v.contains_key("ups.temperature"),
            "absent readings stay absent"
        );
    }

    #[test]
    fn gpser_values_print_as_riello_ser_prints_them() {
        let v = nut_vars(&reading("gpser"));
        assert_eq!(v["input.voltage"], "230");
        assert_eq!(v["input.frequency"], "50.00");
        assert_eq!(v["driver.name"], "riello_ser");
    }
}
