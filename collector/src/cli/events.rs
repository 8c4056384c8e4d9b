//! `nodewarden events`: the events log, oldest first.

use nodewarden_proto::v1::{Event, Severity};

use super::format::format_timestamp;
use super::style::{Align, Level, Style, Table};

/// Lower-case severity name, as in JSON output.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Unspecified => "unknown",
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// How worrying an event severity is.
pub fn severity_level(severity: Severity) -> Level {
    match severity {
        Severity::Critical => Level::Critical,
        Severity::Warning => Level::Warning,
        Severity::Info | Severity::Unspecified => Level::Normal,
    }
}

/// The events table.
pub fn render_events(events: &[Event], style: Style) -> String {
    if events.is_empty() {
        return "no events in this window\n".to_owned();
    }
    let mut table = Table::new(&[
        ("TIME (UTC)", Align::Left),
        ("SEVERITY", Align::Left),
        ("SUBJECT", Align::Left),
        ("MESSAGE", Align::Left),
    ]);
    for e in events {
        let severity = e.severity();
        table.row(vec![
            format_timestamp(e.timestamp_ms),
            style.paint(severity_level(severity), severity_name(severity)),
            e.subject.clone(),
            e.message.clone(),
        ]);
    }
    table.render(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_are_coloured_and_messages_kept() {
        let event = |ms, severity: Severity, subject: &str, message: &str| Event {
            timestamp_ms: ms,
            subject: subject.into(),
            kind: "x".into(),
            severity: severity as i32,
            message: message.into(),
        };
        let out = render_events(
            &[
                event(1_795_430_000_000, Severity::Info, "pi5", "online"),
                event(
                    1_795_430_060_000,
                    Severity::Critical,
                    "pi4",
                    "under-voltage detected",
                ),
                event(
                    1_795_430_120_000,
                    Severity::Warning,
                    "pi4",
                    "throttling started",
                ),
            ],
            Style::COLOR,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[1].starts_with("2026-11-23 10:33:20Z  info"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].contains("\x1b[31mcritical\x1b[0m  pi4      under-voltage detected"),
            "{:?}",
            lines[2]
        );
        assert!(
            lines[3].contains("\x1b[33mwarning\x1b[0m"),
            "{:?}",
            lines[3]
        );
    }
}
