//! `nodewarden nodes`: one line per node.

use nodewarden_proto::v1::NodeInfo;

use super::{format_uptime, kube_summary, node_health, or_dash, throttle_summary};
use crate::cli::format::{format_ago, format_bytes_of};
use crate::cli::readings::memory_used_bytes;
use crate::cli::style::{Align, Level, Style, Table, truncate};

/// Columns left out, in this order, until the table fits the terminal:
/// identity is one `node NAME` away, health is what this table is for.
/// (`K8S`, what nodewarden set in Kubernetes, is one `node NAME` away too.)
const NARROW_DROP_ORDER: [&str; 5] = ["K8S", "MODEL", "ARCH", "ROLE", "UPTIME"];

/// The `nodes` table, sorted by name, all columns.
pub fn render_nodes(nodes: &[NodeInfo], now_ms: i64, style: Style) -> String {
    render_nodes_to_fit(nodes, now_ms, style, usize::MAX)
}

/// The `nodes` table without the less important columns when it would be
/// wider than `width`.
pub fn render_nodes_to_fit(nodes: &[NodeInfo], now_ms: i64, style: Style, width: usize) -> String {
    if nodes.is_empty() {
        return "no nodes have connected yet\n".to_owned();
    }
    let mut sorted: Vec<&NodeInfo> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("ROLE", Align::Left),
        ("MODEL", Align::Left),
        ("ARCH", Align::Left),
        ("CPU TEMP", Align::Right),
        ("THROTTLE", Align::Left),
        ("CPU", Align::Right),
        ("MEMORY", Align::Right),
        ("UPTIME", Align::Right),
        ("LAST SEEN", Align::Right),
        ("STATE", Align::Left),
        ("K8S", Align::Left),
    ]);
    for node in sorted {
        table.row(node_row(node, now_ms, style));
    }
    for column in NARROW_DROP_ORDER {
        if table.width() <= width {
            break;
        }
        table.remove_column(column);
    }
    table.render(style)
}

fn node_row(node: &NodeInfo, now_ms: i64, style: Style) -> Vec<String> {
    let dash = || "-".to_owned();
    // An offline node's last sample is history, not state: the table shows
    // what is true now, `node NAME` shows the last sample with its age.
    let live = node.latest.as_ref().filter(|_| node.online);
    let health = node_health(node);

    let temp = health
        .temperature
        .map_or_else(dash, |(c, level)| style.paint(level, &format!("{c:.1} °C")));
    let throttle = match (live.and_then(|s| s.throttling.as_ref()), health.throttle) {
        (Some(t), Some((_, level))) => style.paint(level, &throttle_summary(t)),
        _ => dash(),
    };
    let cpu = live
        .and_then(|s| s.cpu.as_ref())
        .map_or_else(dash, |c| format!("{:.0} %", c.usage_percent));
    let memory = match (live.and_then(|s| s.memory.as_ref()), health.memory) {
        (Some(m), Some((_, level))) => {
            style.paint(level, &format_bytes_of(memory_used_bytes(m), m.total_bytes))
        }
        _ => dash(),
    };
    let uptime = live.map_or_else(dash, |s| format_uptime(s.uptime_seconds));
    let state = if node.online {
        "online".to_owned()
    } else {
        style.paint(Level::Critical, "offline")
    };
    let (k8s, k8s_level) = kube_summary(&node.kube_conditions, &node.kube_taints);
    let k8s = style.paint(k8s_level, &truncate(&k8s, 48));
    vec![
        style.paint(health.worst, &node.name),
        or_dash(&node.role),
        or_dash(&truncate(&node.board_model, 28)),
        or_dash(&node.arch),
        temp,
        throttle,
        cpu,
        memory,
        uptime,
        format_ago(node.last_seen_ms, now_ms),
        state,
        k8s,
    ]
}
