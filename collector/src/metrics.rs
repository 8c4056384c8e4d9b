//! Placeholder: the full Prometheus exposition replaces this at merge.
use nodewarden_proto::v1::{NodeInfo, UpsInfo};

pub fn render(nodes: &[NodeInfo], _ups: &[UpsInfo], _now_ms: i64) -> String {
    let mut s = String::from(
        "# HELP nodewarden_node_up Whether the node's agent is connected.\n# TYPE nodewarden_node_up gauge\n",
    );
    for n in nodes {
        s.push_str(&format!(
            "nodewarden_node_up{{node=\"{}\"}} {}\n",
            n.name,
            u8::from(n.online)
        ));
    }
    s
}
