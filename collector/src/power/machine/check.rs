//! Checks a caller runs on a domain's description before trusting it: a
//! collector node that is not one of the domain's nodes would be planned as
//! an ordinary node and go down with the servers, not last.

use super::{DomainSpec, Member};

/// Why a domain's description cannot run as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// `collector_node` names no node of the domains checked.
    #[error(
        "key `power.collector_node`: `{node}` is not a node of power domain {} (its nodes: {}); set it to the name this node's agent and Kubernetes use, or the collector's own node goes down with the others instead of last",
        domains.join(", "),
        if nodes.is_empty() { "none yet".to_string() } else { nodes.join(", ") }
    )]
    CollectorNodeUnknown {
        /// The configured (or host) name.
        node: String,
        /// The domains checked.
        domains: Vec<String>,
        /// Their nodes.
        nodes: Vec<String>,
    },
}

impl DomainSpec {
    /// The collector's node, if set, is one of `members`.
    pub fn validate(&self, members: &[Member]) -> Result<(), SpecError> {
        validate_collector_node(&[(self, members)])
    }
}

/// The collector's node is a node of one of `domains` (it runs on one UPS;
/// every domain's spec names it). Domains whose spec names none are skipped.
pub fn validate_collector_node(domains: &[(&DomainSpec, &[Member])]) -> Result<(), SpecError> {
    let Some(node) = domains
        .iter()
        .find_map(|(spec, _)| spec.collector_node.clone())
    else {
        return Ok(());
    };
    let known = domains
        .iter()
        .flat_map(|(_, members)| members.iter())
        .any(|m| m.name == node);
    if known {
        return Ok(());
    }
    let mut nodes: Vec<String> = domains
        .iter()
        .flat_map(|(_, members)| members.iter().map(|m| m.name.clone()))
        .collect();
    nodes.sort();
    nodes.dedup();
    Err(SpecError::CollectorNodeUnknown {
        node,
        domains: domains
            .iter()
            .map(|(s, _)| format!("`{}`", s.name))
            .collect(),
        nodes,
    })
}
