//! The board labels nodewarden keeps on each node (like Node Feature
//! Discovery, for what it cannot see), and the power domains nodes are on.
//! Pure.

use std::collections::BTreeMap;

use nodewarden_common::ups::UpsFlags;
use nodewarden_proto::v1::NodeInfo;

/// A configured power domain as the labels need it: the composition root
/// builds these from `[[power.domain]]`, so this module does not reach into
/// the power sequence (which itself uses `cluster`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PowerDomain {
    /// The domain's name (`nodewarden.io/ups`).
    pub name: String,
    /// The UPS's name at its agent.
    pub ups: String,
    /// The node whose agent reads it.
    pub owner: String,
    /// The nodes it powers (besides the owner).
    pub nodes: Vec<String>,
}
use crate::state::hub::LiveUps;

/// The board: `raspberry-pi-4-model-b`, `banana-pi-m5`, `x86-64`.
pub const LABEL_BOARD: &str = "nodewarden.io/board";
/// Memory, whole GiB rounded (a "4 GB" Pi reports 3.7 GiB: `4`).
pub const LABEL_MEMORY_GIB: &str = "nodewarden.io/memory-gib";
/// The power domain (UPS) the node is on.
pub const LABEL_UPS: &str = "nodewarden.io/ups";
/// The board reports the firmware's throttle flags: `true`/`false`.
pub const LABEL_THROTTLING_CAPABLE: &str = "nodewarden.io/throttling-capable";
/// Every label nodewarden owns: it sets and removes these and no others.
pub const OUR_LABELS: [&str; 4] = [
    LABEL_BOARD,
    LABEL_MEMORY_GIB,
    LABEL_UPS,
    LABEL_THROTTLING_CAPABLE,
];

/// A valid label value (at most 63 characters of `[a-z0-9._-]`, starting
/// and ending alphanumeric), or None when nothing of `raw` survives.
pub fn label_value(raw: &str) -> Option<String> {
    let mut out = String::new();
    for ch in raw.chars().flat_map(char::to_lowercase) {
        let keep = ch.is_ascii_alphanumeric() || ch == '.' || ch == '_';
        let c = if keep { ch } else { '-' };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.truncate(63);
    let trimmed = out.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// Single-board computer families whose device-tree model names the board.
const SBC_FAMILIES: [&str; 7] = [
    "raspberry pi",
    "banana pi",
    "orange pi",
    "radxa",
    "odroid",
    "pine64",
    "libre computer",
];

/// The board name from the agent's model string and architecture. An SBC's
/// device-tree model names the board; on x86 the DMI name is a mainboard
/// product, so the label says the architecture.
pub fn board(model: &str, arch: &str) -> Option<String> {
    let lower = model.to_lowercase();
    let sbc = SBC_FAMILIES.iter().any(|f| lower.starts_with(f));
    if !sbc && matches!(arch, "x86_64" | "amd64") {
        return Some("x86-64".into());
    }
    // "Raspberry Pi 4 Model B Rev 1.5": the revision is not the board.
    let model = match model.rfind(" Rev ") {
        Some(i) => &model[..i],
        None => model,
    };
    let value = label_value(model)?;
    // "Banana Pi BPI-M5": the vendor's prefix says "Banana Pi" twice.
    Some(value.replacen("banana-pi-bpi-", "banana-pi-", 1))
}

/// The labels nodewarden wants on a node; a label it owns that is missing
/// from the map is to be removed.
pub fn desired(node: &NodeInfo, domain: Option<&str>) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    if let Some(b) = board(&node.board_model, &node.arch) {
        out.insert(LABEL_BOARD, b);
    }
    let total = node
        .latest
        .as_ref()
        .and_then(|s| s.memory.as_ref())
        .map_or(0, |m| m.total_bytes);
    if total > 0 {
        let gib = (total as f64 / f64::from(1u32 << 30)).round().max(1.0);
        out.insert(LABEL_MEMORY_GIB, format!("{gib:.0}"));
    }
    if let Some(d) = domain.and_then(label_value) {
        out.insert(LABEL_UPS, d);
    }
    if node.latest.is_some() {
        out.insert(
            LABEL_THROTTLING_CAPABLE,
            super::rules::throttling_capable(node).to_string(),
        );
    }
    out
}

/// Each node's power domain and whether its UPS is on battery now. With no
/// `[[power.domain]]`, the one UPS the collector hears of powers every node
/// (the power sequence's default); with two or more and no domains, none.
pub fn domains(
    configured: &[PowerDomain],
    nodes: &[NodeInfo],
    ups: &[LiveUps],
) -> BTreeMap<String, (String, bool)> {
    let on_battery = |owner: &str, name: &str| {
        ups.iter()
            .filter(|u| u.node == owner && (name.is_empty() || u.status.ups_name == name))
            .any(|u| UpsFlags::from_tokens(&u.status.status).on_battery)
    };
    let mut out = BTreeMap::new();
    if configured.is_empty() {
        if let [only] = ups {
            let ob = UpsFlags::from_tokens(&only.status.status).on_battery;
            for n in nodes {
                out.insert(n.name.clone(), (only.status.ups_name.clone(), ob));
            }
        }
        return out;
    }
    for d in configured {
        let ob = on_battery(&d.owner, &d.ups);
        for n in d.nodes.iter().chain(std::iter::once(&d.owner)) {
            out.insert(n.clone(), (d.name.clone(), ob));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use nodewarden_proto::v1::{Memory, Sample, UpsStatus};

    use super::*;

    #[test]
    fn boards_are_named_as_users_say_them() {
        let b = |m, a| board(m, a).unwrap();
        assert_eq!(
            b("Raspberry Pi 4 Model B Rev 1.5", "aarch64"),
            "raspberry-pi-4-model-b"
        );
        assert_eq!(
            b("Raspberry Pi 5 Model B Rev 1.0", "aarch64"),
            "raspberry-pi-5-model-b"
        );
        assert_eq!(b("Banana Pi BPI-M5", "aarch64"), "banana-pi-m5");
        assert_eq!(b("ROG STRIX B550-F GAMING", "x86_64"), "x86-64");
        // A fixture tree read on an x86 test machine still names its board.
        assert_eq!(
            b("Raspberry Pi 3 Model B Rev 1.2", "x86_64"),
            "raspberry-pi-3-model-b"
        );
        assert_eq!(b("Some Board", "riscv64"), "some-board");
        assert_eq!(board("", "aarch64"), None);
    }

    #[test]
    fn label_values_are_valid_whatever_comes_in() {
        assert_eq!(
            label_value("  --Weird/Board (v2)!! ").unwrap(),
            "weird-board-v2"
        );
        assert_eq!(label_value("///"), None);
        let long = label_value(&"a".repeat(100)).unwrap();
        assert_eq!(long.len(), 63);
        let edge = label_value(&format!("{}-x", "b".repeat(62))).unwrap();
        assert!(edge.len() <= 63 && edge.ends_with('b'), "{edge}");
    }

    #[test]
    fn memory_is_rounded_to_what_the_box_says() {
        let n = NodeInfo {
            latest: Some(Sample {
                memory: Some(Memory {
                    total_bytes: 3_974_000_000,
                    ..Memory::default()
                }),
                ..Sample::default()
            }),
            ..NodeInfo::default()
        };
        let l = desired(&n, Some("Riello 800"));
        assert_eq!(l[LABEL_MEMORY_GIB], "4");
        assert_eq!(l[LABEL_UPS], "riello-800");
        assert_eq!(l[LABEL_THROTTLING_CAPABLE], "false");
        assert!(!l.contains_key(LABEL_BOARD));
    }

    fn live(node: &str, name: &str, tokens: &[&str]) -> LiveUps {
        LiveUps {
            node: node.into(),
            online: true,
            status: UpsStatus {
                ups_name: name.into(),
                status: tokens.iter().map(|t| t.to_string()).collect(),
                ..UpsStatus::default()
            },
        }
    }

    #[test]
    fn one_ups_powers_every_node_unless_domains_say_otherwise() {
        let nodes: Vec<NodeInfo> = ["a", "b"]
            .iter()
            .map(|n| NodeInfo {
                name: n.to_string(),
                ..NodeInfo::default()
            })
            .collect();
        let d = domains(&[], &nodes, &[live("a", "riello", &["OB", "DISCHRG"])]);
        assert_eq!(d["b"], ("riello".to_string(), true));
        let two = [live("a", "u1", &["OL"]), live("b", "u2", &["OB"])];
        assert!(domains(&[], &nodes, &two).is_empty());
        let conf = [PowerDomain {
            name: "rack".into(),
            ups: "u2".into(),
            owner: "b".into(),
            nodes: vec!["a".into()],
        }];
        let d = domains(&conf, &nodes, &two);
        assert_eq!(d["a"], ("rack".to_string(), true));
        assert_eq!(d["b"], ("rack".to_string(), true));
    }
}
