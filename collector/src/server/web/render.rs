//! HTML from the view model: pure functions, no I/O. Every tile carries
//! its level as a word ("critical", "warning") besides its colour, so the
//! page reads without colour; every tile has a stable id so the live
//! script can swap it for a fresh one.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::cli::style::Level;

use super::view::{DomainBox, EventRow, NodeTile, Overview, UpsTile};

/// `text` safe in HTML text and in double-quoted attributes; borrowed when
/// there is nothing to escape (nearly always: the overview calls this
/// ~20 times per tile, 200,000 times for 10,000 nodes).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `name` made safe as a URL path segment.
pub fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn level_word(level: Level) -> &'static str {
    match level {
        Level::Normal => "ok",
        Level::Warning => "warning",
        Level::Critical => "critical",
    }
}

/// A value with its level: a class for colour and, when not ok, the word.
fn leveled(text: &str, level: Level) -> String {
    match level {
        Level::Normal => escape(text).into_owned(),
        _ => format!(
            "<span class=\"lv-{w}\">{} <small>({w})</small></span>",
            escape(text),
            w = level_word(level)
        ),
    }
}

/// One `<dt>`/`<dd>` pair; the value is already HTML.
fn pair(out: &mut String, label: &str, html: &str) {
    let _ = write!(out, "<dt>{label}</dt><dd>{html}</dd>");
}

/// The element id of a node's tile.
pub fn node_id(name: &str) -> String {
    format!("node-{}", path_segment(name))
}

/// A node's tile.
pub fn node_tile(t: &NodeTile) -> String {
    let mut s = String::with_capacity(900);
    let state = if t.online { "online" } else { "offline" };
    let _ = write!(
        s,
        "<article class=\"tile lv-{lv}\" id=\"{id}\" data-node=\"{name}\"><h3><a href=\"/node/{seg}\">{name}</a> <span class=\"badge\">{state}</span> <span class=\"badge\">{lv}</span></h3><dl>",
        lv = level_word(t.level),
        id = node_id(&t.name),
        seg = path_segment(&t.name),
        name = escape(&t.name),
    );
    pair(&mut s, "board", &escape(or_dash(&t.board)));
    pair(&mut s, "role", &escape(or_dash(&t.role)));
    if !t.online {
        let why = if t.offline_reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", escape(&t.offline_reason))
        };
        pair(
            &mut s,
            "last seen",
            &format!("{}{why}", escape(&t.last_seen)),
        );
    }
    let temp = match &t.temperature {
        Some((text, level)) => {
            let trend = t.trend.words().map_or_else(String::new, |w| {
                format!(" <span class=\"trend\">{}</span>", escape(&w))
            });
            format!(
                "<span class=\"temp\">{}</span>{trend}",
                leveled(text, *level)
            )
        }
        None => "-".into(),
    };
    pair(&mut s, "CPU temp", &temp);
    let throttle = if !t.online {
        "-".to_owned()
    } else if t.throttle_now.is_empty() && t.throttle_since_boot.is_empty() {
        "none".to_owned()
    } else {
        let mut parts = Vec::new();
        if !t.throttle_now.is_empty() {
            parts.push(format!("now: {}", t.throttle_now.join(", ")));
        }
        if !t.throttle_since_boot.is_empty() {
            parts.push(format!("since boot: {}", t.throttle_since_boot.join(", ")));
        }
        leveled(&parts.join("; "), t.throttle_level)
    };
    pair(&mut s, "throttling", &throttle);
    pair(&mut s, "CPU", &escape(t.cpu.as_deref().unwrap_or("-")));
    let memory = t
        .memory
        .as_ref()
        .map_or_else(|| "-".to_owned(), |(m, l)| leveled(m, *l));
    pair(&mut s, "memory", &memory);
    pair(&mut s, "load", &escape(t.load.as_deref().unwrap_or("-")));
    s.push_str("</dl></article>");
    s
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

/// The element id of a UPS tile.
pub fn ups_id(u: &UpsTile) -> String {
    format!("ups-{}-{}", path_segment(&u.node), path_segment(&u.name))
}

/// A UPS's tile.
pub fn ups_tile(u: &UpsTile) -> String {
    let mut s = String::with_capacity(900);
    let _ = write!(
        s,
        "<article class=\"tile lv-{lv}\" id=\"{id}\"><h3>UPS {name} <span class=\"badge\">{lv}</span></h3><dl>",
        lv = level_word(u.level),
        id = ups_id(u),
        name = escape(&u.name),
    );
    pair(
        &mut s,
        "status",
        &format!(
            "<span class=\"ups-status\">{}</span>",
            leveled(&u.status, u.level)
        ),
    );
    fn dash(v: &Option<String>) -> Cow<'_, str> {
        escape(v.as_deref().unwrap_or("-"))
    }
    pair(&mut s, "charge", &dash(&u.charge));
    pair(&mut s, "runtime", &dash(&u.runtime));
    pair(&mut s, "load", &dash(&u.load));
    pair(&mut s, "input", &dash(&u.input_voltage));
    let agent = if u.agent_online {
        ""
    } else {
        " (agent offline)"
    };
    pair(
        &mut s,
        "read by",
        &format!("{} {}{agent}", escape(&u.node), escape(&u.read_ago)),
    );
    s.push_str("</dl>");
    if !u.events.is_empty() {
        s.push_str("<ul class=\"recent\">");
        for (time, message) in &u.events {
            let _ = write!(
                s,
                "<li><time>{}</time> {}</li>",
                escape(time),
                escape(message)
            );
        }
        s.push_str("</ul>");
    }
    s.push_str("</article>");
    s
}

/// The element id of a power domain's box.
pub fn domain_id(d: &DomainBox) -> String {
    format!("domain-{}", path_segment(&d.name))
}

/// A power domain: phase, what runs now and, during a sequence, its timeline.
pub fn domain_box(d: &DomainBox) -> String {
    let mut s = String::with_capacity(600);
    let _ = write!(
        s,
        "<article class=\"tile wide lv-{lv}\" id=\"{id}\"><h3>domain {name}</h3><dl>",
        lv = level_word(d.phase_level),
        id = domain_id(d),
        name = escape(&d.name),
    );
    pair(
        &mut s,
        "UPS",
        &format!("{}: {}", escape(&d.ups), escape(&d.ups_state)),
    );
    let phase = format!("{} for {}", d.phase.replace('_', " "), d.phase_for);
    pair(
        &mut s,
        "phase",
        &format!(
            "<span class=\"phase\">{}</span>",
            leveled(&phase, d.phase_level)
        ),
    );
    pair(&mut s, "now", &escape(&d.now));
    if !d.reason.is_empty() {
        pair(&mut s, "why", &escape(&d.reason));
    }
    s.push_str("</dl>");
    if !d.nodes.is_empty() {
        s.push_str("<ul class=\"members\">");
        for n in &d.nodes {
            let _ = write!(s, "<li>{}</li>", escape(n));
        }
        s.push_str("</ul>");
    }
    if !d.timeline.is_empty() {
        s.push_str("<h4>timeline</h4><ol class=\"timeline\">");
        for (time, offset, text) in &d.timeline {
            let _ = write!(
                s,
                "<li><time>{}</time> <span class=\"offset\">{}</span> {}</li>",
                escape(time),
                escape(offset),
                escape(text)
            );
        }
        s.push_str("</ol>");
    }
    s.push_str("</article>");
    s
}

/// The events log as one block (id `events-log`).
pub fn events_log(events: &[EventRow]) -> String {
    if events.is_empty() {
        return "<div id=\"events-log\"><p>no events yet</p></div>".into();
    }
    let mut s = String::from("<div id=\"events-log\"><ol class=\"events\">");
    for e in events {
        let _ = write!(
            s,
            "<li class=\"lv-{}\"><time>{}</time> <span class=\"sev\">{}</span> <b>{}</b> {}</li>",
            level_word(e.level),
            escape(&e.time),
            e.severity,
            escape(&e.subject),
            escape(&e.message)
        );
    }
    s.push_str("</ol></div>");
    s
}

/// A live-updated piece of the overview: its id, the container it sits in
/// and its HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    /// The element id.
    pub id: String,
    /// The id of the container it belongs in.
    pub within: &'static str,
    /// Its HTML (one element with `id`).
    pub html: String,
}

impl Tile {
    /// A one-line note standing in for an empty list ("no UPS reported yet").
    fn note(id: &str, within: &'static str, text: &str) -> Tile {
        Tile {
            id: id.into(),
            within,
            html: format!("<p id=\"{id}\">{}</p>", escape(text)),
        }
    }
}

/// Every tile of the overview, in page order.
pub fn tiles(o: &Overview) -> Vec<Tile> {
    let mut v = Vec::with_capacity(o.nodes.len() + o.ups.len() + 8);
    let notes = [
        (
            !o.power_enabled,
            "power-off",
            "sec-power",
            "power sequence disabled ([power] enabled = false): UPS events are only recorded",
        ),
        (
            o.power_enabled && o.observing,
            "power-observing",
            "sec-power",
            "observing, not armed: a power cut is recorded with what the sequence would do, \
             nothing is drained or powered off (`nodewarden power arm` on the server arms it)",
        ),
        (
            o.domains.is_empty(),
            "power-none",
            "sec-power",
            "no power domain yet",
        ),
    ];
    for (show, id, within, text) in notes {
        if show {
            v.push(Tile::note(id, within, text));
        }
    }
    v.extend(o.domains.iter().map(|d| Tile {
        id: domain_id(d),
        within: "sec-power",
        html: domain_box(d),
    }));
    if o.ups.is_empty() {
        v.push(Tile::note("ups-none", "sec-ups", "no UPS reported yet"));
    }
    v.extend(o.ups.iter().map(|u| Tile {
        id: ups_id(u),
        within: "sec-ups",
        html: ups_tile(u),
    }));
    if o.nodes.is_empty() {
        v.push(Tile::note(
            "nodes-none",
            "sec-nodes",
            "no nodes have connected yet",
        ));
    }
    v.extend(o.nodes.iter().map(|n| Tile {
        id: node_id(&n.name),
        within: "sec-nodes",
        html: node_tile(n),
    }));
    v.push(Tile {
        id: "events-log".into(),
        within: "sec-events",
        html: events_log(&o.events),
    });
    v
}

/// The document around `body`: one stylesheet, one deferred script, no
/// inline script or style (the CSP forbids both).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/assets/style.css\">\
<script src=\"/assets/live.js\" defer></script></head><body>\
<header><h1><a href=\"/\">nodewarden</a></h1>\
<p id=\"live-status\" class=\"live\">static page: reload to refresh</p></header>\
<main>{body}</main><footer>read-only; actions stay on the admin socket (<code>nodewarden</code> CLI)</footer></body></html>\n",
        title = escape(title)
    )
}

/// The overview page.
pub fn overview(o: &Overview) -> String {
    let sections = [
        ("sec-power", "Power"),
        ("sec-ups", "UPS"),
        ("sec-nodes", "Nodes"),
        ("sec-events", "Events"),
    ];
    let tiles = tiles(o);
    let mut body = String::with_capacity(tiles.iter().map(|t| t.html.len()).sum::<usize>() + 1024);
    for (id, heading) in sections {
        let count = match id {
            "sec-nodes" => format!(" ({})", o.nodes.len()),
            _ => String::new(),
        };
        let _ = write!(
            body,
            "<section><h2>{heading}{count}</h2><div class=\"tiles\" id=\"{id}\">"
        );
        for t in tiles.iter().filter(|t| t.within == id) {
            body.push_str(&t.html);
        }
        body.push_str("</div></section>");
    }
    page("nodewarden", &body)
}

#[cfg(test)]
mod tests;
