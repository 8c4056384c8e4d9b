//! The `Power` gRPC service on the admin socket: `nodewarden power`, `plan`
//! and `drill` ask it.

use std::pin::Pin;

use super::auth::{Permission, caller_name, require};
use nodewarden_proto::v1::power_server::Power;
use nodewarden_proto::v1::{
    ArmRequest, DomainPlan as PlanMsg, DrillEvent, DrillRequest, GetPowerRequest, GetPowerResponse,
    HoldRequest, NodeDrainPlan as DrainMsg, PlanRequest, PlanResponse, PlanStage, PodEvictionPlan,
    PowerActionResponse, PowerArm, PowerBudget, PowerDomain, PowerNode, PowerTimelineEntry,
    PowerUpsState, UpsDelays,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::cluster::health::{HealthView, annotate_power_node};
use crate::power::machine::{CordonState, Machine, NodeProgress, PowerState, Role, TimelineEntry};
use crate::power::orchestrator::{
    ActionReply, ArmState, DomainPlan, DrillOptions, DrillUpdate, PowerHandle, describe,
};

/// Answers the CLI from the running orchestrator.
#[derive(Debug, Clone)]
pub struct PowerService {
    handle: PowerHandle,
    enabled: bool,
    health: Option<HealthView>,
}

impl PowerService {
    /// `enabled`: `[power] enabled` from the config.
    pub fn new(handle: PowerHandle, enabled: bool) -> Self {
        PowerService {
            handle,
            enabled,
            health: None,
        }
    }

    /// Adds what nodewarden set on each node in Kubernetes to the answers.
    pub fn with_health(mut self, view: HealthView) -> Self {
        self.health = Some(view);
        self
    }

    fn annotated<'a>(&self, nodes: impl Iterator<Item = &'a mut PowerNode>) {
        if let Some(view) = &self.health {
            nodes.for_each(|n| annotate_power_node(view, n));
        }
    }
}

fn role_str(r: Role) -> (&'static str, u32) {
    match r {
        Role::Worker => ("worker", 0),
        Role::Server => ("server", 0),
        Role::External { order } => ("external", order),
    }
}

fn entry(e: &TimelineEntry) -> PowerTimelineEntry {
    PowerTimelineEntry {
        at_ms: e.at_ms,
        text: e.text.clone(),
    }
}

fn node_msg(name: &str, role: Role, connected: bool, p: Option<&NodeProgress>) -> PowerNode {
    let (role, external_order) = role_str(role);
    let mut n = PowerNode {
        name: name.to_string(),
        role: role.into(),
        connected,
        external_order,
        ..Default::default()
    };
    if let Some(p) = p {
        n.cordon = match (&p.cordon, p.uncordoned) {
            (_, true) => "uncordoned".into(),
            (None, _) => String::new(),
            (Some(CordonState::Pending), _) => "pending".into(),
            (
                Some(CordonState::Done {
                    was_cordoned: false,
                }),
                _,
            ) => "cordoned".into(),
            (Some(CordonState::Done { was_cordoned: true }), _) => "already_cordoned".into(),
            (Some(CordonState::Failed(e)), _) => format!("failed: {e}"),
        };
        n.drain = match (&p.drain, p.draining) {
            (_, true) => "draining".into(),
            (Some(Ok(s)), _) => s.clone(),
            (Some(Err(e)), _) => format!("failed: {e}"),
            (None, _) => String::new(),
        };
        n.power = match &p.power {
            PowerState::Waiting => "waiting".into(),
            PowerState::Sent { .. } => "sent".into(),
            PowerState::Confirmed => "confirmed".into(),
            PowerState::Gone => "gone".into(),
            // Offline when the event began: never expected to take part.
            PowerState::NotConnected if p.skipped => "skipped: offline".into(),
            PowerState::NotConnected => "failed: agent not connected".into(),
            PowerState::Failed(e) => format!("failed: {e}"),
        };
    }
    n
}

/// The wire form of one domain.
pub fn domain_msg(m: &Machine) -> PowerDomain {
    let connected = |n: &str| m.connected.get(n).copied().unwrap_or(false);
    let nodes = m
        .members
        .iter()
        .map(|x| node_msg(&x.name, x.role, connected(&x.name), m.nodes.get(&x.name)))
        .collect();
    PowerDomain {
        name: m.spec.name.clone(),
        ups: m.spec.ups.clone(),
        owner: m.spec.owner.clone(),
        phase: m.phase.as_str().into(),
        phase_since_ms: m.phase_since_ms,
        now: describe(m),
        reason: m.reason.clone(),
        ups_state: Some(match &m.ups {
            Some(u) => PowerUpsState {
                known: true,
                communication_ok: u.comm_ok,
                on_battery: u.on_battery,
                low_battery: u.low_battery,
                battery_charge_percent: u.charge_percent,
                battery_runtime_ms: u.runtime_ms,
                on_battery_since_ms: m.on_battery_since_ms.unwrap_or(0),
            },
            None => PowerUpsState::default(),
        }),
        nodes,
        timeline: m.timeline.iter().map(entry).collect(),
        deadline_ms: m.deadline_ms.unwrap_or(0),
        held_by: m.hold.as_ref().map(|h| h.by.clone()).unwrap_or_default(),
        held_since_ms: m.hold.as_ref().map_or(0, |h| h.since_ms),
    }
}

fn plan_msg(d: DomainPlan) -> PlanMsg {
    PlanMsg {
        domain: d.domain,
        ups: d.ups,
        owner: d.owner,
        battery_runtime_ms: d.runtime_ms,
        members: d
            .members
            .iter()
            .map(|x| node_msg(&x.name, x.role, false, None))
            .collect(),
        stages: d
            .stages
            .into_iter()
            .map(|s| PlanStage {
                label: s.label,
                nodes: s.nodes,
                timeout_ms: s.timeout_ms,
                skipped: s.skipped,
            })
            .collect(),
        drain: d
            .drain
            .into_iter()
            .map(|n| DrainMsg {
                node: n.node,
                skipped: n.skipped,
                pods: n
                    .pods
                    .into_iter()
                    .map(|p| PodEvictionPlan {
                        namespace: p.namespace,
                        name: p.name,
                        grace_seconds: p.grace_seconds,
                        blocked_by: p.blocked_by.unwrap_or_default(),
                    })
                    .collect(),
            })
            .collect(),
        drain_error: d.drain_error.unwrap_or_default(),
        drain_estimate_ms: d.drain_estimate_ms,
        total_estimate_ms: d.total_estimate_ms,
        warnings: d.warnings,
        errors: d.errors,
        budget: Some(PowerBudget {
            cordon_ms: d.budget.cordon_ms,
            drain_ms: d.budget.drain_ms,
            ups_command_ms: d.budget.ups_command_ms,
            halt_ms: d.budget.halt_ms,
            reserve_ms: d.budget.reserve_ms,
            runtime_ms: d.budget.runtime_ms,
        }),
        ups_delays: Some(UpsDelays {
            configured_off_ms: d.ups_delays.configured_off_ms,
            configured_restore_ms: d.ups_delays.configured_restore_ms,
            effective_off_ms: d.ups_delays.effective_off_ms,
            effective_restore_ms: d.ups_delays.effective_restore_ms,
            driver: d.ups_delays.driver,
            off_need_ms: d.ups_delays.off_need_ms,
        }),
    }
}

fn arm_msg(a: &ArmState) -> PowerArm {
    PowerArm {
        armed: a.is_armed(),
        by: a.by.clone(),
        at_ms: a.at_ms,
        by_config: a.by_config,
    }
}

fn action_msg(r: ActionReply) -> PowerActionResponse {
    PowerActionResponse {
        ok: r.ok,
        message: r.message,
        problems: r.problems,
    }
}

type DrillStream = Pin<Box<dyn Stream<Item = Result<DrillEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Power for PowerService {
    async fn get_power(
        &self,
        request: Request<GetPowerRequest>,
    ) -> Result<Response<GetPowerResponse>, Status> {
        require(&request, Permission::Read)?;
        let mut domains: Vec<PowerDomain> = self
            .handle
            .domains()
            .iter()
            .map(|d| domain_msg(&d.machine))
            .collect();
        self.annotated(domains.iter_mut().flat_map(|d| d.nodes.iter_mut()));
        Ok(Response::new(GetPowerResponse {
            domains,
            enabled: self.enabled,
            arm: Some(arm_msg(&self.handle.arm_state())),
        }))
    }

    async fn plan(&self, request: Request<PlanRequest>) -> Result<Response<PlanResponse>, Status> {
        require(&request, Permission::Read)?;
        let plan = self
            .handle
            .plan()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut domains: Vec<PlanMsg> = plan.domains.into_iter().map(plan_msg).collect();
        self.annotated(domains.iter_mut().flat_map(|d| d.members.iter_mut()));
        Ok(Response::new(PlanResponse {
            domains,
            warnings: plan.warnings,
        }))
    }

    async fn arm(
        &self,
        request: Request<ArmRequest>,
    ) -> Result<Response<PowerActionResponse>, Status> {
        require(&request, Permission::Operate)?;
        let by = caller_name(&request);
        let reply = self
            .handle
            .arm(request.into_inner().armed, by)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(action_msg(reply)))
    }

    async fn hold(
        &self,
        request: Request<HoldRequest>,
    ) -> Result<Response<PowerActionResponse>, Status> {
        require(&request, Permission::Operate)?;
        let by = caller_name(&request);
        let r = request.into_inner();
        let domain = (!r.domain.is_empty()).then_some(r.domain);
        let reply = self
            .handle
            .hold(domain, r.hold, by)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(action_msg(reply)))
    }

    type DrillStream = DrillStream;

    async fn drill(
        &self,
        request: Request<DrillRequest>,
    ) -> Result<Response<Self::DrillStream>, Status> {
        // A drill sends (dry-run) commands to every agent and, with --cordon,
        // really cordons nodes: an operator's action, not a query.
        require(&request, Permission::Operate)?;
        let r = request.into_inner();
        let mut rx = self
            .handle
            .drill(DrillOptions {
                domain: (!r.domain.is_empty()).then_some(r.domain),
                cordon: r.cordon,
                simulated_ups: r.simulated_ups,
            })
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let stream = async_stream(move |tx| async move {
            while let Some(u) = rx.recv().await {
                let (ev, done) = match u {
                    DrillUpdate::Step(domain, e) => (
                        DrillEvent {
                            domain,
                            entry: Some(entry(&e)),
                            done: false,
                        },
                        false,
                    ),
                    DrillUpdate::Done => (
                        DrillEvent {
                            done: true,
                            ..Default::default()
                        },
                        true,
                    ),
                };
                if tx.send(Ok(ev)).await.is_err() || done {
                    break;
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task (no extra crate for generators).
fn async_stream<F, Fut>(f: F) -> DrillStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<DrillEvent, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
#[path = "power_tests.rs"]
mod tests;
