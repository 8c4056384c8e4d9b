use nodewarden_proto::v1::{Event, PowerDomain, PowerTimelineEntry, Severity};

use super::*;
use crate::cli::nodes::tests::{NOW_MS, cluster};
use crate::cli::style::Style;
use crate::server::web::trend::Trend;
use crate::server::web::view;
use crate::state::hub::LiveUps;

fn overview() -> Overview {
    let on_battery = crate::cli::ups::tests::on_battery();
    let ups = LiveUps {
        node: on_battery.node.clone(),
        online: true,
        status: on_battery.status.clone().unwrap(),
    };
    let events = vec![Event {
        timestamp_ms: NOW_MS - 40_000,
        subject: "riello".into(),
        kind: "ups_on_battery".into(),
        severity: Severity::Critical as i32,
        message: "riello on battery <mains lost>".into(),
    }];
    Overview {
        nodes: cluster()
            .iter()
            .map(|n| view::node_tile(n, Trend::Rising(2.5), NOW_MS))
            .collect(),
        ups: vec![view::ups_tile(&ups, &events, NOW_MS)],
        domains: vec![view::domain_box(
            &PowerDomain {
                name: "rack".into(),
                ups: "riello".into(),
                owner: "nuc".into(),
                phase: "on_battery".into(),
                phase_since_ms: NOW_MS - 65_000,
                now: "waiting 2m before the sequence".into(),
                timeline: vec![
                    PowerTimelineEntry {
                        at_ms: NOW_MS - 65_000,
                        text: "mains lost".into(),
                    },
                    PowerTimelineEntry {
                        at_ms: NOW_MS - 5_000,
                        text: "cordon pi4".into(),
                    },
                ],
                ..Default::default()
            },
            NOW_MS,
        )],
        power_enabled: true,
        observing: false,
        events: events.iter().map(view::event_row).collect(),
    }
}

/// The text of the element with `id`, tags stripped.
fn text_of(html: &str, id: &str) -> String {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let open = html[..start].rfind('<').unwrap();
    let tag: String = html[open + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let end = start + html[start..].find(&format!("</{tag}>")).unwrap();
    let mut out = String::new();
    let mut in_tag = false;
    for c in html[open..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[test]
fn overview_lists_each_node_with_the_temperature_the_cli_shows() {
    let o = overview();
    let html = overview_html(&o);
    let table = crate::cli::nodes::render_nodes(&cluster(), NOW_MS, Style::PLAIN);
    for (name, temp) in [("pi4", "82.3 °C"), ("pi5", "71.0 °C"), ("nuc", "52.0 °C")] {
        let tile = text_of(&html, &format!("node-{name}"));
        assert!(tile.contains(temp), "{name}: {tile}");
        let row = table.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(row.contains(temp), "the CLI shows {temp} for {name}: {row}");
    }
    assert!(html.contains("<h2>Nodes (4)</h2>"));
}

fn overview_html(o: &Overview) -> String {
    super::overview(o)
}

#[test]
fn trouble_is_written_in_words_not_only_colour() {
    let html = overview_html(&overview());
    let pi4 = text_of(&html, "node-pi4");
    assert!(
        pi4.contains("critical"),
        "82.3 °C and under-voltage now: {pi4}"
    );
    assert!(pi4.contains("now: under-voltage"), "{pi4}");
    assert!(pi4.contains("↑ rising 2.5 °C"), "{pi4}");
    let pi5 = text_of(&html, "node-pi5");
    assert!(pi5.contains("since boot: throttled"), "{pi5}");
    assert!(pi5.contains("warning"), "{pi5}");
    let banana = text_of(&html, "node-banana");
    assert!(
        banana.contains("offline") && banana.contains("critical"),
        "{banana}"
    );
    assert!(
        !banana.contains("90.0"),
        "no stale temperature offline: {banana}"
    );
    let nuc = text_of(&html, "node-nuc");
    assert!(nuc.contains("15/16 GiB (warning)"), "{nuc}");
    assert!(html.contains("class=\"tile lv-critical\" id=\"node-pi4\""));
}

#[test]
fn ups_tile_says_on_battery_with_its_readings_and_last_events() {
    let html = overview_html(&overview());
    let ups = text_of(&html, "ups-nuc-riello");
    for want in [
        "on battery",
        "critical",
        "87 %",
        "~12m00s",
        "23 %",
        "0 V",
        "nuc now",
        "riello on battery &lt;mains lost&gt;",
    ] {
        assert!(ups.contains(want), "{want}: {ups}");
    }
    assert!(
        html.contains("riello on battery &lt;mains lost&gt;"),
        "escaped"
    );
}

#[test]
fn power_domain_shows_phase_and_timeline_like_the_cli() {
    let html = overview_html(&overview());
    let rack = text_of(&html, "domain-rack");
    assert!(rack.contains("on battery for 1m05s (warning)"), "{rack}");
    assert!(rack.contains("waiting 2m before the sequence"), "{rack}");
    assert!(rack.contains("+0ms mains lost"), "{rack}");
    assert!(rack.contains("+1m00s cordon pi4"), "{rack}");
    let events = text_of(&html, "events-log");
    assert!(
        events.contains("critical") && events.contains("riello"),
        "{events}"
    );
}

#[test]
fn page_has_no_inline_script_or_style_and_escapes_names() {
    let mut o = overview();
    o.nodes[0].name = "<script>alert(1)</script>".into();
    o.nodes[0].board = "\" onmouseover=\"x".into();
    let html = overview_html(&o);
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the external script"
    );
    assert!(html.contains("<script src=\"/assets/live.js\" defer></script>"));
    assert!(!html.contains("style=") && !html.contains("<style"));
    assert!(!html.contains(" onmouseover=\"x"));
    assert!(html.contains("/node/%3Cscript%3Ealert%281%29%3C%2Fscript%3E"));
}

#[test]
fn empty_cluster_says_so_and_every_tile_sits_in_its_section() {
    let html = overview_html(&Overview::default());
    for text in [
        "no nodes have connected yet",
        "no UPS reported yet",
        "no power domain yet",
        "power sequence disabled",
        "no events yet",
    ] {
        assert!(html.contains(text), "{text}");
    }
    for t in tiles(&overview()) {
        assert!(t.html.contains(&format!("id=\"{}\"", t.id)), "{}", t.id);
    }
}

#[test]
fn an_unarmed_sequence_says_it_only_observes() {
    let armed = overview_html(&overview());
    assert!(!armed.contains("observing, not armed"), "{armed}");
    let observing = overview_html(&Overview {
        observing: true,
        ..overview()
    });
    assert!(
        text_of(&observing, "power-observing").contains("nodewarden power arm"),
        "{observing}"
    );
    // With the sequence disabled that line would mislead: it is not shown.
    let disabled = overview_html(&Overview {
        observing: true,
        power_enabled: false,
        ..overview()
    });
    assert!(!disabled.contains("observing, not armed"), "{disabled}");
}
