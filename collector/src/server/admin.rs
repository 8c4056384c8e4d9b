//! The Admin service: what the CLI asks.

use std::sync::Arc;
use std::time::Duration;

use nodewarden_proto::v1::admin_server::Admin;
use nodewarden_proto::v1::{
    Command, CommandState, EventsRequest, EventsResponse, GetNodeRequest, HistoryPoint,
    HistoryRequest, HistoryResponse, ListNodesRequest, ListNodesResponse, ListUpsRequest,
    ListUpsResponse, NodeInfo, RunUpsCommandRequest, RunUpsCommandResponse, UpsCommand, command,
};
use tonic::{Request, Response, Status};

use super::auth::{Permission, require};
use super::nut::instcmd;
use crate::cluster::health::{HealthView, annotate};
use crate::state::hub::Hub;
use nodewarden_common::clock::now_ms;

pub struct AdminService {
    hub: Arc<Hub>,
    health: Option<HealthView>,
}

impl AdminService {
    pub fn new(hub: Arc<Hub>) -> Self {
        AdminService { hub, health: None }
    }

    /// Adds what nodewarden set on each node in Kubernetes to the answers.
    pub fn with_health(mut self, view: HealthView) -> Self {
        self.health = Some(view);
        self
    }

    fn annotated(&self, mut info: NodeInfo) -> NodeInfo {
        if let Some(v) = &self.health {
            annotate(v, &mut info);
        }
        info
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn list_nodes(
        &self,
        _: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        Ok(Response::new(ListNodesResponse {
            nodes: self
                .hub
                .node_infos()
                .into_iter()
                .map(|n| self.annotated(n))
                .collect(),
        }))
    }

    async fn get_node(
        &self,
        request: Request<GetNodeRequest>,
    ) -> Result<Response<NodeInfo>, Status> {
        let name = request.into_inner().name;
        self.hub
            .node_info(&name)
            .map(|n| Response::new(self.annotated(n)))
            .ok_or_else(|| {
                Status::not_found(format!("no node named `{name}` (see `nodewarden nodes`)"))
            })
    }

    async fn history(
        &self,
        request: Request<HistoryRequest>,
    ) -> Result<Response<HistoryResponse>, Status> {
        let r = request.into_inner();
        if self.hub.node_info(&r.node).is_none() {
            return Err(Status::not_found(format!(
                "no node named `{}` (see `nodewarden nodes`)",
                r.node
            )));
        }
        let until = if r.until_ms == 0 {
            now_ms()
        } else {
            r.until_ms
        };
        if r.since_ms > until {
            return Err(Status::invalid_argument("since is after until"));
        }
        let store = self.hub.store().clone();
        let (node, metric) = (r.node.clone(), r.metric.clone());
        let h = tokio::task::spawn_blocking(move || {
            store.history(&node, &metric, r.since_ms, until, r.max_points)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(HistoryResponse {
            node: r.node,
            metric: r.metric,
            unit: h.unit.to_string(),
            resolution_ms: h.resolution_ms,
            points: h
                .points
                .into_iter()
                .map(|(timestamp_ms, value, min, max)| HistoryPoint {
                    timestamp_ms,
                    value,
                    min,
                    max,
                })
                .collect(),
            available_metrics: h.available_metrics,
        }))
    }

    async fn events(
        &self,
        request: Request<EventsRequest>,
    ) -> Result<Response<EventsResponse>, Status> {
        let r = request.into_inner();
        let limit = if r.limit == 0 { 1000 } else { r.limit };
        let store = self.hub.store().clone();
        let events = tokio::task::spawn_blocking(move || {
            let node = (!r.node.is_empty()).then_some(r.node);
            store.events(r.since_ms, node.as_deref(), limit)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(EventsResponse { events }))
    }

    async fn list_ups(
        &self,
        request: Request<ListUpsRequest>,
    ) -> Result<Response<ListUpsResponse>, Status> {
        let name = request.into_inner().name;
        let ups: Vec<_> = self
            .hub
            .ups_infos()
            .into_iter()
            .filter(|u| name.is_empty() || u.status.as_ref().is_some_and(|s| s.ups_name == name))
            .collect();
        if !name.is_empty() && ups.is_empty() {
            return Err(Status::not_found(format!(
                "no UPS named `{name}` (see `nodewarden ups`)"
            )));
        }
        Ok(Response::new(ListUpsResponse { ups }))
    }

    async fn run_ups_command(
        &self,
        request: Request<RunUpsCommandRequest>,
    ) -> Result<Response<RunUpsCommandResponse>, Status> {
        require(&request, Permission::Operate)?;
        let r = request.into_inner();
        let action = UPS_COMMANDS
            .contains(&r.command.as_str())
            .then(|| instcmd::action(&r.command))
            .flatten()
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "`{}` is not a command `nodewarden ups` runs; it runs {} (only the power sequence cycles the UPS)",
                    r.command,
                    UPS_COMMANDS.join(", ")
                ))
            })?;
        let (node, ups_name) = self.resolve_ups(&r.ups)?;
        let command = Command {
            command_id: self.hub.new_command_id(),
            dry_run: false,
            action: Some(command::Action::Ups(UpsCommand {
                ups_name,
                action: Some(action),
            })),
        };
        let result = self
            .hub
            .send_command(&node, command, UPS_COMMAND_TIMEOUT)
            .await
            .map_err(|e| Status::unavailable(format!("{node}: {e}")))?;
        let ok = matches!(
            CommandState::try_from(result.state),
            Ok(CommandState::Accepted | CommandState::Done)
        );
        Ok(Response::new(RunUpsCommandResponse {
            ok,
            message: result.message,
            node,
        }))
    }
}

/// What `nodewarden ups` may run: tests and the beeper. Cutting the output
/// is the power sequence's alone.
const UPS_COMMANDS: [&str; 4] = [
    "test.battery.start.quick",
    "test.battery.start.deep",
    "test.battery.stop",
    "beeper.toggle",
];

/// How long a UPS command waits for the agent's answer.
const UPS_COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

impl AdminService {
    /// The agent and its UPS name for `ups`: `node/name`, or a name only
    /// one agent reads.
    fn resolve_ups(&self, ups: &str) -> Result<(String, String), Status> {
        let (node, name) = match ups.split_once('/') {
            Some((n, u)) => (Some(n), u),
            None => (None, ups),
        };
        let found: Vec<(String, String)> = self
            .hub
            .ups_infos()
            .into_iter()
            .filter_map(|u| Some((u.node, u.status?.ups_name)))
            .filter(|(n, u)| u == name && node.is_none_or(|want| want == n))
            .collect();
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Status::not_found(format!(
                "no UPS named `{ups}` (see `nodewarden ups`)"
            ))),
            _ => Err(Status::failed_precondition(format!(
                "more than one agent reads a UPS named `{name}`: say which, as node/{name}"
            ))),
        }
    }
}
