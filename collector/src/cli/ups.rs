//! `nodewarden ups [NAME]`: each UPS with its status in plain words.

use std::fmt::Write as _;
use std::time::Duration;

use nodewarden_common::units::format_duration;
use nodewarden_common::ups::UpsFlags;
use nodewarden_proto::v1::{UpsInfo, UpsStatus};

use super::format::{format_ago, format_timestamp};
use super::readings::ups_status_meaning;
use super::style::{Align, Level, Style, Table};

/// How worrying a set of status tokens is: on battery, low battery, overload
/// or forced shutdown need action; replace battery or bypass need a look.
pub fn status_level(status: &UpsStatus) -> Level {
    if !status.communication_ok {
        return Level::Critical;
    }
    let flags = UpsFlags::from_tokens(&status.status);
    if flags.alarming() {
        Level::Critical
    } else if flags.notable() {
        Level::Warning
    } else {
        Level::Normal
    }
}

/// "OL CHRG": the raw tokens, as NUT users know them.
fn tokens(status: &UpsStatus) -> String {
    if status.status.is_empty() {
        "?".to_owned()
    } else {
        status.status.join(" ")
    }
}

/// "on line (mains), charging": the tokens in words.
pub fn status_words(status: &UpsStatus) -> String {
    status
        .status
        .iter()
        .map(|t| ups_status_meaning(t).map_or_else(|| t.clone(), str::to_owned))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "~85 %" when estimated from battery voltage, "85 %" when reported.
pub fn charge(status: &UpsStatus) -> Option<String> {
    status.battery_charge_percent.map(|c| {
        let mark = if status.battery_charge_estimated {
            "~"
        } else {
            ""
        };
        format!("{mark}{c:.0} %")
    })
}

/// "~12m00s" when estimated from charge and load.
pub fn runtime(status: &UpsStatus) -> Option<String> {
    status
        .battery_runtime_seconds
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| {
            let mark = if status.battery_runtime_estimated {
                "~"
            } else {
                ""
            };
            format!("{mark}{}", format_duration(Duration::from_secs_f64(s)))
        })
}

fn opt(value: Option<f64>, unit: &str, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$} {unit}"))
}

/// One paragraph about a UPS, used by `node NAME`.
pub fn render_ups_summary(status: &UpsStatus, style: Style) -> String {
    let mut out = String::new();
    let level = status_level(status);
    let mut line = format!("{} {}", tokens(status), status_words(status));
    if !status.communication_ok {
        line = format!("communication lost ({})", status.communication_error);
    }
    let _ = writeln!(
        out,
        "  {:<14} {}",
        status.ups_name,
        style.paint(level, &line)
    );
    let mut facts = Vec::new();
    if let Some(c) = charge(status) {
        facts.push(format!("charge {c}"));
    }
    if let Some(r) = runtime(status) {
        facts.push(format!("runtime {r}"));
    }
    if let Some(l) = status.load_percent {
        facts.push(format!("load {l:.0} %"));
    }
    if !facts.is_empty() {
        let _ = writeln!(out, "  {:<14} {}", "", facts.join(", "));
    }
    out
}

/// The `ups` table.
pub fn render_ups_list(ups: &[UpsInfo], now_ms: i64, style: Style) -> String {
    if ups.is_empty() {
        return "no UPS is configured on any connected agent\n".to_owned();
    }
    let mut table = Table::new(&[
        ("UPS", Align::Left),
        ("NODE", Align::Left),
        ("STATUS", Align::Left),
        ("CHARGE", Align::Right),
        ("RUNTIME", Align::Right),
        ("LOAD", Align::Right),
        ("IN", Align::Right),
        ("OUT", Align::Right),
        ("CHANGED", Align::Right),
        ("MEANING", Align::Left),
    ]);
    let mut sorted: Vec<&UpsInfo> = ups.iter().collect();
    sorted.sort_by(|a, b| ups_name(a).cmp(ups_name(b)).then(a.node.cmp(&b.node)));
    for info in sorted {
        let Some(s) = &info.status else { continue };
        let level = status_level(s);
        let (status, meaning) = if s.communication_ok {
            (tokens(s), status_words(s))
        } else {
            ("COMM LOST".to_owned(), s.communication_error.clone())
        };
        table.row(vec![
            s.ups_name.clone(),
            info.node.clone(),
            style.paint(level, &status),
            charge(s).unwrap_or_else(|| "-".to_owned()),
            runtime(s).unwrap_or_else(|| "-".to_owned()),
            opt(s.load_percent, "%", 0),
            opt(s.input_voltage_volts, "V", 0),
            opt(s.output_voltage_volts, "V", 0),
            format_ago(info.last_change_ms, now_ms),
            meaning,
        ]);
    }
    let mut out = table.render(style);
    if ups
        .iter()
        .filter_map(|u| u.status.as_ref())
        .any(|s| s.battery_charge_estimated || s.battery_runtime_estimated)
    {
        out.push_str("~ estimated (the UPS does not report it)\n");
    }
    out
}

fn ups_name(info: &UpsInfo) -> &str {
    info.status.as_ref().map_or("", |s| s.ups_name.as_str())
}

/// `ups NAME`: one UPS in full.
pub fn render_ups_detail(info: &UpsInfo, now_ms: i64, style: Style) -> String {
    let mut out = String::new();
    let Some(s) = &info.status else {
        let _ = writeln!(out, "no status received yet from node {}", info.node);
        return out;
    };
    let field = |out: &mut String, key: &str, value: &str| {
        let _ = writeln!(out, "  {key:<16} {value}");
    };
    let _ = writeln!(out, "{} (read by {})", style.bold(&s.ups_name), info.node);
    out.push_str(&style.bold("Status"));
    out.push('\n');
    let level = status_level(s);
    for token in &s.status {
        let meaning = ups_status_meaning(token).unwrap_or("not a NUT status word");
        field(&mut out, token, &style.paint(level, meaning));
    }
    if s.communication_ok {
        field(&mut out, "communication", "ok");
    } else {
        field(
            &mut out,
            "communication",
            &style.paint(
                Level::Critical,
                &format!(
                    "lost: {} (values below are the last good ones)",
                    s.communication_error
                ),
            ),
        );
    }
    if info.last_change_ms > 0 {
        field(
            &mut out,
            "last change",
            &format!(
                "{} ({})",
                format_ago(info.last_change_ms, now_ms),
                format_timestamp(info.last_change_ms)
            ),
        );
    }
    field(&mut out, "read", &format_ago(s.timestamp_ms, now_ms));

    out.push_str(&style.bold("Battery"));
    out.push('\n');
    let estimated = |flag: bool| if flag { " (estimated)" } else { "" };
    if let Some(c) = charge(s) {
        field(
            &mut out,
            "charge",
            &format!("{c}{}", estimated(s.battery_charge_estimated)),
        );
    }
    if let Some(r) = runtime(s) {
        field(
            &mut out,
            "runtime",
            &format!("{r}{}", estimated(s.battery_runtime_estimated)),
        );
    }
    field(&mut out, "voltage", &opt(s.battery_voltage_volts, "V", 1));

    out.push_str(&style.bold("Power"));
    out.push('\n');
    field(&mut out, "load", &opt(s.load_percent, "%", 0));
    field(&mut out, "input", &opt(s.input_voltage_volts, "V", 1));
    field(&mut out, "output", &opt(s.output_voltage_volts, "V", 1));
    field(
        &mut out,
        "frequency",
        &opt(s.input_frequency_hertz, "Hz", 1),
    );
    field(
        &mut out,
        "temperature",
        &opt(s.temperature_celsius, "°C", 1),
    );

    if let Some(id) = &s.identity {
        out.push_str(&style.bold("Identity"));
        out.push('\n');
        for (key, value) in [
            ("manufacturer", &id.manufacturer),
            ("model", &id.model),
            ("firmware", &id.firmware),
            ("serial", &id.serial_number),
            ("driver", &id.driver),
            ("port", &id.port),
        ] {
            if !value.is_empty() {
                field(&mut out, key, value);
            }
        }
    }
    if let Some(r) = &s.ratings {
        let ratings: Vec<String> = [
            (r.power_va, "VA"),
            (r.real_power_watts, "W"),
            (r.input_voltage_volts, "V in"),
            (r.output_voltage_volts, "V out"),
            (r.battery_voltage_volts, "V battery"),
            (r.current_amperes, "A"),
            (r.frequency_hertz, "Hz"),
        ]
        .into_iter()
        .filter_map(|(v, unit)| v.map(|v| format!("{v:.0} {unit}")))
        .collect();
        if !ratings.is_empty() {
            field(&mut out, "ratings", &ratings.join(", "));
        }
    }
    if !s.supported_commands.is_empty() {
        field(&mut out, "commands", &s.supported_commands.join(" "));
    }
    out
}

/// `nodewarden ups test|beeper NAME`: the command through the agent that
/// reads the UPS; its answer, or why it was refused.
pub async fn run_command(
    client: &mut nodewarden_proto::v1::admin_client::AdminClient<tonic::transport::Channel>,
    action: &super::UpsAction,
    view: &super::View,
    out: &mut impl std::io::Write,
) -> Result<(), super::CliError> {
    let (ups, command) = action.command();
    let request = nodewarden_proto::v1::RunUpsCommandRequest {
        ups: ups.to_string(),
        command: command.to_string(),
    };
    let r = client.run_ups_command(request).await?.into_inner();
    if view.json {
        let v = serde_json::to_value(&r).map_err(std::io::Error::from)?;
        return super::write_json(out, &v);
    }
    let text = format!("{command} on {ups} (agent {}): {}", r.node, r.message);
    if !r.ok {
        return Err(super::CliError::Refused(text));
    }
    writeln!(out, "{text}")?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use nodewarden_proto::v1::UpsIdentity;

    use super::*;

    pub const NOW_MS: i64 = 1_795_430_000_000;

    /// A Riello on battery with an estimated runtime, read by "nuc".
    pub fn on_battery() -> UpsInfo {
        UpsInfo {
            node: "nuc".into(),
            last_change_ms: NOW_MS - 42_000,
            status: Some(UpsStatus {
                ups_name: "riello".into(),
                timestamp_ms: NOW_MS - 800,
                communication_ok: true,
                status: vec!["OB".into(), "DISCHRG".into()],
                input_voltage_volts: Some(0.0),
                output_voltage_volts: Some(229.8),
                input_frequency_hertz: Some(50.0),
                load_percent: Some(23.0),
                battery_voltage_volts: Some(12.9),
                battery_charge_percent: Some(87.0),
                battery_charge_estimated: false,
                battery_runtime_seconds: Some(720.0),
                battery_runtime_estimated: true,
                temperature_celsius: Some(31.5),
                identity: Some(UpsIdentity {
                    manufacturer: "Riello".into(),
                    model: "iPlug 800".into(),
                    driver: "gpser".into(),
                    port: "/dev/ttyACM0".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn list_says_what_the_tokens_mean_and_marks_estimates() {
        let mut lost = on_battery();
        lost.node = "pi4".into();
        if let Some(s) = lost.status.as_mut() {
            s.ups_name = "apc".into();
            s.communication_ok = false;
            s.communication_error = "no reply to Q1 within 1 s (3 tries)".into();
            s.status = vec!["OL".into()];
        }
        let out = render_ups_list(&[on_battery(), lost], NOW_MS, Style::COLOR);
        let riello = out
            .lines()
            .find(|l| l.starts_with("riello"))
            .unwrap_or_default();
        assert!(riello.contains("\x1b[31mOB DISCHRG\x1b[0m"), "{riello:?}");
        assert!(riello.contains("on battery, discharging"), "{riello}");
        assert!(
            riello.contains("87 %") && riello.contains("~12m00s"),
            "{riello}"
        );
        assert!(riello.contains("42s ago"), "{riello}");
        let apc = out
            .lines()
            .find(|l| l.starts_with("apc"))
            .unwrap_or_default();
        assert!(
            apc.contains("COMM LOST") && apc.contains("no reply to Q1"),
            "{apc}"
        );
        assert!(out.contains("~ estimated"));
    }

    #[test]
    fn detail_shows_everything() {
        let out = render_ups_detail(&on_battery(), NOW_MS, Style::PLAIN);
        for expected in [
            "riello (read by nuc)",
            "OB               on battery",
            "runtime          ~12m00s (estimated)",
            "charge           87 %\n",
            "output           229.8 V",
            "frequency        50.0 Hz",
            "temperature      31.5 °C",
            "model            iPlug 800",
            "port             /dev/ttyACM0",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in\n{out}");
        }
    }
}
