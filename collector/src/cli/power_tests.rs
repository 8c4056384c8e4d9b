//! What `power` and `plan` print about nodewarden's marks in Kubernetes.

use nodewarden_proto::v1::{
    DomainPlan, GetPowerResponse, KubeCondition, PlanResponse, PowerDomain, PowerNode,
};

use super::{render_plan, render_power};
use crate::cli::style::Style;

fn condition(kind: &str, status: &str) -> KubeCondition {
    KubeCondition {
        r#type: kind.into(),
        status: status.into(),
        ..Default::default()
    }
}

/// pi under-volted and tainted, w1 healthy, s1 without node health data.
fn members() -> Vec<PowerNode> {
    let node = |name: &str, role: &str| PowerNode {
        name: name.into(),
        role: role.into(),
        connected: true,
        ..Default::default()
    };
    let mut pi = node("pi", "worker");
    pi.kube_conditions = vec![
        condition("UnderVoltage", "True"),
        condition("HighTemperature", "False"),
    ];
    pi.kube_taints = vec!["nodewarden.io/under-voltage:PreferNoSchedule".into()];
    let mut w1 = node("w1", "worker");
    w1.kube_conditions = vec![condition("UnderVoltage", "False")];
    vec![pi, w1, node("s1", "server")]
}

fn row<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.trim_start().starts_with(name))
        .unwrap_or_else(|| panic!("no row for {name} in\n{out}"))
}

#[test]
fn power_shows_nodewardens_conditions_and_taints_per_node() {
    let r = GetPowerResponse {
        enabled: true,
        domains: vec![PowerDomain {
            name: "main".into(),
            phase: "on_mains".into(),
            nodes: members(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let out = render_power(&r, 0, Style::PLAIN);
    assert!(out.contains("KUBERNETES"), "{out}");
    assert!(
        row(&out, "pi ").ends_with("UnderVoltage,tainted(1)"),
        "{out}"
    );
    assert!(row(&out, "w1 ").ends_with("ok"), "{out}");
    assert!(row(&out, "s1 ").ends_with('-'), "{out}");
}

#[test]
fn power_without_node_health_has_no_kubernetes_column() {
    let mut nodes = members();
    for n in &mut nodes {
        n.kube_conditions.clear();
        n.kube_taints.clear();
    }
    let r = GetPowerResponse {
        domains: vec![PowerDomain {
            name: "main".into(),
            nodes,
            ..Default::default()
        }],
        ..Default::default()
    };
    assert!(!render_power(&r, 0, Style::PLAIN).contains("KUBERNETES"));
}

#[test]
fn plan_names_only_the_nodes_kubernetes_was_told_are_in_trouble() {
    let r = PlanResponse {
        domains: vec![DomainPlan {
            domain: "main".into(),
            members: members(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let out = render_plan(&r, Style::PLAIN);
    assert!(
        out.contains(
            "  in Kubernetes: pi UnderVoltage,tainted(1) (taints nodewarden.io/under-voltage:PreferNoSchedule)\n"
        ),
        "{out}"
    );
    assert!(!out.contains("in Kubernetes: w1"), "{out}");
    assert!(!out.contains("in Kubernetes: s1"), "{out}");
}
