//! Which UPSes the NUT server serves and under what names, pure: every UPS
//! the agents read, by its name in the agent's config, or `node-name` when
//! two agents use the same name; aliases resolve to these.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::state::hub::LiveUps;

use super::session::Served;
use super::vars::{nut_vars, printable};

/// Server-side state a catalog adds to the agents' readings.
#[derive(Debug, Default)]
pub struct Marks {
    /// Served names with FSD raised.
    pub fsd: HashSet<String>,
    /// Logged-in sessions per served name.
    pub logins: HashMap<String, usize>,
}

/// The served UPSes, sorted by name.
pub fn catalog(live: Vec<LiveUps>, marks: &Marks) -> Vec<Served> {
    let mut count: HashMap<String, usize> = HashMap::new();
    for l in &live {
        *count.entry(l.status.ups_name.clone()).or_default() += 1;
    }
    let mut served: Vec<Served> = live
        .into_iter()
        .map(|l| {
            let s = l.status;
            let name = if count[&s.ups_name] > 1 {
                format!("{}-{}", l.node, s.ups_name)
            } else {
                s.ups_name.clone()
            };
            let model = s.identity.as_ref().map(|i| i.model.as_str()).unwrap_or("");
            let desc = if model.is_empty() {
                format!("read by {}", l.node)
            } else {
                printable(&format!("{model} read by {}", l.node))
            };
            Served {
                fsd: marks.fsd.contains(&name),
                numlogins: marks.logins.get(&name).copied().unwrap_or(0),
                fresh: l.online && s.communication_ok,
                vars: nut_vars(&s),
                // Command names become bare words in LIST CMD.
                commands: s
                    .supported_commands
                    .iter()
                    .filter(|c| !c.is_empty() && c.chars().all(|c| c.is_ascii_graphic()))
                    .cloned()
                    .collect(),
                agent_ups: s.ups_name,
                node: l.node,
                desc,
                name,
            }
        })
        .collect();
    served.sort_by(|a, b| a.name.cmp(&b.name));
    served
}

/// The UPS `name` names: a served name in any case (upsd compares with
/// strcasecmp), else an alias.
pub fn resolve<'a>(
    served: &'a [Served],
    aliases: &BTreeMap<String, String>,
    name: &str,
) -> Option<&'a Served> {
    let by_name = |n: &str| served.iter().find(|s| s.name.eq_ignore_ascii_case(n));
    by_name(name).or_else(|| {
        aliases
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(name))
            .and_then(|(_, target)| by_name(target))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodewarden_proto::v1::UpsStatus;

    fn live(node: &str, ups: &str, online: bool) -> LiveUps {
        LiveUps {
            node: node.into(),
            online,
            status: UpsStatus {
                ups_name: ups.into(),
                communication_ok: true,
                status: vec!["OL".into()],
                ..Default::default()
            },
        }
    }

    #[test]
    fn names_clash_only_when_two_agents_share_one() {
        let s = catalog(
            vec![
                live("a", "eaton", true),
                live("b", "riello", true),
                live("c", "riello", false),
            ],
            &Marks::default(),
        );
        let names: Vec<&str> = s.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["b-riello", "c-riello", "eaton"]);
        assert!(!s[1].fresh, "an agent that is gone makes its UPS stale");
    }

    #[test]
    fn aliases_and_case_resolve() {
        let s = catalog(vec![live("a", "riello", true)], &Marks::default());
        let aliases = BTreeMap::from([("ups".to_string(), "riello".to_string())]);
        assert_eq!(
            resolve(&s, &aliases, "UPS").map(|u| u.name.as_str()),
            Some("riello")
        );
        assert_eq!(
            resolve(&s, &aliases, "Riello").map(|u| u.name.as_str()),
            Some("riello")
        );
        assert!(resolve(&s, &aliases, "qnapups").is_none());
    }
}
