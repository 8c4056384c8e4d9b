//! The `nodewarden` query commands: talk to the collector's Admin API on its
//! Unix socket and print tables, charts or JSON.
//!
//! Rendering is pure (`nodes`, `ups`, `history`, `chart`, `events`, `json`
//! turn protocol messages into text); this module only parses the command
//! line, connects, asks, and writes.

pub mod chart;
pub mod events;
pub mod format;
pub mod history;
pub mod json;
pub mod nodes;
pub mod power;
pub mod readings;
pub mod style;
pub mod trust;
pub mod ups;

#[cfg(test)]
mod tests;

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use nodewarden_common::units::parse_duration;
use nodewarden_proto::v1::admin_client::AdminClient;
use nodewarden_proto::v1::{
    EventsRequest, GetNodeRequest, HistoryRequest, ListNodesRequest, ListUpsRequest,
};
use tonic::transport::{Channel, Endpoint};

use self::history::HistoryLayout;
use self::style::Style;

/// Where the collector listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/nodewarden/admin.sock";
/// Environment variable that overrides [`DEFAULT_SOCKET`].
pub const SOCKET_ENV: &str = "NODEWARDEN_SOCKET";
/// Events asked for at most (the API's own default).
const EVENTS_LIMIT: u32 = 1000;
/// Rows of the history chart.
const CHART_HEIGHT: usize = 10;
/// A collector that takes longer than this to answer is stuck, not slow.
const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// Long histories are big; allow more than tonic's 4 MiB default.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

pub(crate) fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// A query against the running collector.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum QueryCommand {
    /// Every node: temperature, throttling, CPU, memory, uptime, state.
    Nodes {
        #[command(subcommand)]
        action: Option<trust::NodesAction>,
    },
    /// One node in full: sensors, throttle bits, cores, memory, disk, UPS.
    Node {
        /// Node name, as in `nodewarden nodes`.
        name: String,
    },
    /// One metric of one node over time, as a chart and a table.
    History {
        /// Node name.
        node: String,
        /// Metric name (cpu_temp, cpu_usage, mem_used, load1, temp.<chip>.<sensor>,
        /// ups.<name>.battery_charge, ...); an unknown
        /// name lists the ones this node has.
        metric: String,
        /// How far back to start (500ms, 5s, 10m, 48h, 30d).
        #[arg(long, default_value = "1h", value_parser = duration_arg)]
        since: Duration,
        /// How far back to stop; default now.
        #[arg(long, value_parser = duration_arg)]
        until: Option<Duration>,
        /// Points to ask for; default twice the chart's width in columns.
        #[arg(long, value_name = "N")]
        points: Option<u32>,
        /// Table rows to show; more points are merged (min/mean/max kept).
        #[arg(long, value_name = "N", default_value_t = 12)]
        table_rows: usize,
    },
    /// The events log: nodes coming and going, throttling, UPS changes.
    Events {
        /// How far back to look.
        #[arg(long, default_value = "24h", value_parser = duration_arg)]
        since: Duration,
        /// Only events about this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Every UPS, or one in full; `test` and `beeper` run a command on it.
    #[command(args_conflicts_with_subcommands = true)]
    Ups {
        /// UPS name from the agent's config.
        name: Option<String>,
        #[command(subcommand)]
        action: Option<UpsAction>,
    },
    /// Each power domain: UPS state, phase, what is happening, this event's
    /// timeline; `arm`, `disarm`, `hold` and `resume` change what it may do.
    Power {
        #[command(subcommand)]
        action: Option<PowerAction>,
    },
    /// What would happen if power failed now: order, pods to evict, blocking
    /// PDBs, estimated time against the battery, config warnings.
    Plan,
    /// Rehearse the power-loss sequence on the real cluster: every poweroff
    /// and UPS command is a dry run, reported as it happens.
    Drill {
        /// Really cordon the nodes (and uncordon them at the end).
        #[arg(long)]
        cordon: bool,
        /// Start from a simulated on-battery UPS, so the grace and the
        /// thresholds are rehearsed too.
        #[arg(long)]
        simulated_ups: bool,
        /// Only this power domain.
        #[arg(long)]
        domain: Option<String>,
    },
}

/// What `nodewarden power` changes (the admin permission).
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum PowerAction {
    /// Let the sequence run on the next power cut. Refused while `plan`
    /// has errors; records who armed it and when.
    Arm,
    /// Only observe: record and show what the sequence would do.
    Disarm,
    /// Hold a running sequence before the point of no return: drains stop,
    /// nothing is powered off, until `resume`, mains returns, or the
    /// battery is down to what the last stages need.
    Hold {
        /// Only this power domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Carry on with a held sequence.
    Resume {
        /// Only this power domain.
        #[arg(long)]
        domain: Option<String>,
    },
}

/// A command on one UPS, through the agent that reads it (the admin
/// permission).
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum UpsAction {
    /// Start a battery test (NUT's test.battery.start.quick; `--deep` for
    /// test.battery.start.deep, `--stop` for test.battery.stop).
    Test {
        /// The UPS, as `nodewarden ups` lists it (node/name when two agents
        /// use the same name).
        name: String,
        /// A deep test (runs the battery down far further).
        #[arg(long, conflicts_with = "stop")]
        deep: bool,
        /// Stop a running test.
        #[arg(long)]
        stop: bool,
    },
    /// Toggle the beeper (NUT's beeper.toggle).
    Beeper {
        /// The UPS.
        name: String,
    },
}

impl UpsAction {
    /// The UPS and the NUT command name.
    pub fn command(&self) -> (&str, &'static str) {
        match self {
            UpsAction::Test {
                name, stop: true, ..
            } => (name, "test.battery.stop"),
            UpsAction::Test {
                name, deep: true, ..
            } => (name, "test.battery.start.deep"),
            UpsAction::Test { name, .. } => (name, "test.battery.start.quick"),
            UpsAction::Beeper { name } => (name, "beeper.toggle"),
        }
    }
}

impl QueryCommand {
    fn is_power(&self) -> bool {
        matches!(
            self,
            QueryCommand::Power { .. } | QueryCommand::Plan | QueryCommand::Drill { .. }
        )
    }
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// When stdout is a terminal and NO_COLOR is not set.
    #[default]
    Auto,
    /// Always (overrides NO_COLOR).
    Always,
    /// Never.
    Never,
}

/// Options shared by every query command.
#[derive(Debug, Clone, PartialEq, Eq, Default, clap::Args)]
pub struct QueryOptions {
    /// The collector's Admin socket [default: $NODEWARDEN_SOCKET, else
    /// /run/nodewarden/admin.sock].
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print the answer as JSON (stable keys with units) for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Colour trouble red and yellow.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

impl QueryOptions {
    /// The socket to use: --socket, then $NODEWARDEN_SOCKET, then the default.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .or_else(|| std::env::var_os(SOCKET_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
    }
}

/// Everything a query can fail with, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The socket file is not there.
    #[error(
        "cannot connect to {}: no such socket; is the collector running? \
         (`systemctl status nodewarden`), or pass --socket / set {SOCKET_ENV}",
        path.display()
    )]
    SocketMissing {
        /// The socket tried.
        path: PathBuf,
    },
    /// Not allowed to open the socket.
    #[error(
        "cannot connect to {}: permission denied; add your user to group nodewarden \
         (`sudo usermod -aG nodewarden $USER`, then log in again) or use sudo",
        path.display()
    )]
    PermissionDenied {
        /// The socket tried.
        path: PathBuf,
    },
    /// The socket file exists but nobody answers: a collector that died.
    #[error(
        "cannot connect to {}: nothing is listening (stale socket); \
         the collector is not running: `systemctl status nodewarden`",
        path.display()
    )]
    NotListening {
        /// The socket tried.
        path: PathBuf,
    },
    /// Any other connection failure.
    #[error("cannot connect to {}: {reason}", path.display())]
    Connect {
        /// The socket tried.
        path: PathBuf,
        /// What went wrong, from the OS or tonic.
        reason: String,
    },
    /// The collector answered with an error.
    #[error("the collector says: {0}")]
    Rpc(String),
    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),
    /// Nothing by that name; the message lists what exists.
    #[error("{0}")]
    NotFound(String),
    /// The collector (or the agent, or the UPS) would not do it; the text
    /// says why and what stands in the way.
    #[error("{0}")]
    Refused(String),
    /// stdout could not be written.
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        let message = if status.message().is_empty() {
            format!("{:?}", status.code())
        } else {
            status.message().to_owned()
        };
        match status.code() {
            tonic::Code::Unimplemented => Self::Rpc(format!(
                "{message} (is the collector older than this CLI? compare `nodewarden --version`)"
            )),
            tonic::Code::DeadlineExceeded => Self::Rpc(format!(
                "no answer within {}s; the collector may be overloaded or stuck",
                RPC_TIMEOUT.as_secs()
            )),
            _ => Self::Rpc(message),
        }
    }
}

/// Classifies a failed connection by the OS error underneath tonic's.
fn connect_error(path: &Path, error: &(dyn std::error::Error + 'static)) -> CliError {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            let path = path.to_path_buf();
            return match io.kind() {
                io::ErrorKind::NotFound => CliError::SocketMissing { path },
                io::ErrorKind::PermissionDenied => CliError::PermissionDenied { path },
                io::ErrorKind::ConnectionRefused => CliError::NotListening { path },
                _ => CliError::Connect {
                    path,
                    reason: io.to_string(),
                },
            };
        }
        source = e.source();
    }
    CliError::Connect {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

/// Connects to the collector's Admin API on a Unix socket.
pub async fn connect(socket: &Path) -> Result<AdminClient<Channel>, CliError> {
    Ok(AdminClient::new(connect_channel(socket).await?)
        .max_decoding_message_size(MAX_RESPONSE_BYTES))
}

/// A channel to the collector's admin socket (Admin and Power services).
pub async fn connect_channel(socket: &Path) -> Result<Channel, CliError> {
    let text = socket.to_str().ok_or_else(|| CliError::Connect {
        path: socket.to_path_buf(),
        reason: "the path is not valid UTF-8".to_owned(),
    })?;
    let endpoint = Endpoint::from_shared(format!("unix:{text}"))
        .map_err(|e| connect_error(socket, &e))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(RPC_TIMEOUT);
    endpoint
        .connect()
        .await
        .map_err(|e| connect_error(socket, &e))
}

/// How to present answers.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// JSON instead of tables.
    pub json: bool,
    /// Colour or not.
    pub style: Style,
    /// Terminal width in columns.
    pub width: usize,
    /// "Now", unix ms (for ages and history windows).
    pub now_ms: i64,
}

impl View {
    /// Decides colour and width from the options and the environment.
    pub fn from_environment(opts: &QueryOptions) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            json: opts.json,
            style: Style {
                color: use_color(opts.color, no_color, io::stdout().is_terminal()),
            },
            width: terminal_width(std::env::var("COLUMNS").ok().as_deref()),
            now_ms: now_ms(),
        }
    }
}

/// Colour when asked to, or by default on a terminal unless NO_COLOR is set
/// (an explicit --color always wins over NO_COLOR, as no-color.org asks).
pub fn use_color(choice: ColorChoice, no_color: bool, stdout_is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !no_color && stdout_is_terminal,
    }
}

/// Width from $COLUMNS, else 80; absurdly narrow values are ignored.
pub fn terminal_width(columns: Option<&str>) -> usize {
    columns
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|w| *w >= 40)
        .unwrap_or(80)
}

use nodewarden_common::clock::now_ms;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn write_json(out: &mut impl Write, value: &serde_json::Value) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// Runs one query and prints the answer; the exit code says whether it worked.
pub async fn run(cmd: QueryCommand, opts: QueryOptions) -> ExitCode {
    if let QueryCommand::Nodes {
        action: Some(trust::NodesAction::Remove { name }),
    } = &cmd
    {
        return trust::run(trust::TrustCommand::RemoveNode(name.clone()), &opts).await;
    }
    let view = View::from_environment(&opts);
    let result = async {
        let channel = connect_channel(&opts.socket_path()).await?;
        let stdout = io::stdout();
        let mut out = io::BufWriter::new(stdout.lock());
        if cmd.is_power() {
            let mut client = nodewarden_proto::v1::power_client::PowerClient::new(channel);
            power::execute(&mut client, &cmd, &view, &mut out).await?;
        } else {
            let mut client =
                AdminClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
            execute(&mut client, &cmd, &view, &mut out).await?;
        }
        out.flush()?;
        Ok::<(), CliError>(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `nodewarden events | head` is not an error.
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nodewarden: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Asks the collector and writes the answer to `out`.
pub async fn execute(
    client: &mut AdminClient<Channel>,
    cmd: &QueryCommand,
    view: &View,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match cmd {
        QueryCommand::Nodes {
            action: Some(trust::NodesAction::Remove { .. }),
        } => Err(CliError::Usage(
            "node removal goes through the TrustAdmin service (`run`)".into(),
        )),
        QueryCommand::Nodes { action: None } => query_nodes(client, view, out).await,
        QueryCommand::Node { name } => query_node(client, name, view, out).await,
        QueryCommand::History {
            node,
            metric,
            since,
            until,
            points,
            table_rows,
        } => {
            let query = HistoryQuery {
                node,
                metric,
                since: *since,
                until: *until,
                points: *points,
                table_rows: *table_rows,
            };
            query_history(client, &query, view, out).await
        }
        QueryCommand::Events { since, node } => {
            query_events(client, *since, node.as_deref(), view, out).await
        }
        QueryCommand::Ups {
            action: Some(action),
            ..
        } => ups::run_command(client, action, view, out).await,
        QueryCommand::Ups { name, action: None } => {
            query_ups(client, name.as_deref(), view, out).await
        }
        QueryCommand::Power { .. } | QueryCommand::Plan | QueryCommand::Drill { .. } => {
            Err(CliError::Usage(
                "power commands use the Power service (cli::power::execute)".to_owned(),
            ))
        }
    }
}

/// `nodes`: the table, fitted to the terminal.
async fn query_nodes(
    client: &mut AdminClient<Channel>,
    view: &View,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let list = client.list_nodes(ListNodesRequest {}).await?.into_inner();
    if view.json {
        return write_json(out, &json::nodes(&list.nodes));
    }
    let table = nodes::render_nodes_to_fit(&list.nodes, view.now_ms, view.style, view.width);
    out.write_all(table.as_bytes())?;
    Ok(())
}

/// `node NAME`: one node in full, or the names known when there is no such node.
async fn query_node(
    client: &mut AdminClient<Channel>,
    name: &str,
    view: &View,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let request = GetNodeRequest {
        name: name.to_owned(),
    };
    let node = match client.get_node(request).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == tonic::Code::NotFound => {
            let known = client.list_nodes(ListNodesRequest {}).await?.into_inner();
            let mut names: Vec<String> = known.nodes.into_iter().map(|n| n.name).collect();
            names.sort();
            return Err(CliError::NotFound(format!(
                "no node named `{name}`; known nodes: {}",
                list_or(&names, "none yet")
            )));
        }
        Err(status) => return Err(status.into()),
    };
    if view.json {
        return write_json(out, &json::node(&node));
    }
    out.write_all(nodes::render_node(&node, view.now_ms, view.style).as_bytes())?;
    Ok(())
}

/// "a, b, c", or `none` for an empty list (in "not found" messages).
fn list_or(names: &[String], none: &str) -> String {
    if names.is_empty() {
        none.to_owned()
    } else {
        names.join(", ")
    }
}

/// The arguments of `history`.
struct HistoryQuery<'a> {
    node: &'a str,
    metric: &'a str,
    since: Duration,
    until: Option<Duration>,
    points: Option<u32>,
    table_rows: usize,
}

/// `history NODE METRIC`: chart and table, or the metrics the node has.
async fn query_history(
    client: &mut AdminClient<Channel>,
    query: &HistoryQuery<'_>,
    view: &View,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let HistoryQuery {
        node,
        metric,
        since,
        until,
        points,
        table_rows,
    } = *query;
    if until.is_some_and(|u| u >= since) {
        return Err(CliError::Usage(
            "--until must be more recent than --since (both are durations ago)".to_owned(),
        ));
    }
    let since_ms = view.now_ms - ms(since);
    let until_ms = until.map_or(view.now_ms, |u| view.now_ms - ms(u));
    let max_points = points
        .unwrap_or_else(|| u32::try_from(chart::plot_columns(view.width) * 2).unwrap_or(u32::MAX));
    let response = client
        .history(HistoryRequest {
            node: node.to_owned(),
            metric: metric.to_owned(),
            since_ms,
            until_ms: if until.is_some() { until_ms } else { 0 },
            max_points,
        })
        .await?
        .into_inner();
    let unknown = !response.available_metrics.is_empty();
    if view.json {
        write_json(out, &json::history(&response))?;
    } else if !unknown {
        let layout = HistoryLayout {
            since_ms,
            until_ms,
            width: view.width,
            chart_height: CHART_HEIGHT,
            table_rows,
        };
        out.write_all(history::render_history(&response, layout, view.style).as_bytes())?;
    }
    if unknown {
        let text = history::render_unknown_metric(&response, metric);
        return Err(CliError::NotFound(text.trim_end().to_owned()));
    }
    Ok(())
}

/// `events`: the log, newest [`EVENTS_LIMIT`] at most.
async fn query_events(
    client: &mut AdminClient<Channel>,
    since: Duration,
    node: Option<&str>,
    view: &View,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let response = client
        .events(EventsRequest {
            since_ms: view.now_ms - ms(since),
            node: node.unwrap_or_default().to_owned(),
            limit: EVENTS_LIMIT,
        })
        .await?
        .into_inner();
    if view.json {
        return write_json(out, &json::events(&response.events));
    }
    out.write_all(events::render_events(&response.events, view.style).as_bytes())?;
    if response.events.len() >= EVENTS_LIMIT as usize {
        writeln!(
            out,
            "only the newest {EVENTS_LIMIT} events are shown; narrow --since or --node for older ones"
        )?;
    }
    Ok(())
}

/// `ups [NAME]`: the table, or one UPS in full, or the names known.
async fn query_ups(
    client: &mut AdminClient<Channel>,
    name: Option<&str>,
    view: &View,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let request = ListUpsRequest {
        name: name.unwrap_or_default().to_owned(),
    };
    let list = client.list_ups(request).await?.into_inner().ups;
    if let Some(name) = name
        && list.is_empty()
    {
        let all = client
            .list_ups(ListUpsRequest::default())
            .await?
            .into_inner()
            .ups;
        let mut names: Vec<String> = all
            .into_iter()
            .filter_map(|u| u.status.map(|s| s.ups_name))
            .collect();
        names.sort();
        names.dedup();
        return Err(CliError::NotFound(format!(
            "no UPS named `{name}`; known: {}",
            list_or(&names, "none")
        )));
    }
    if view.json {
        return write_json(out, &json::ups(&list));
    }
    if name.is_some() {
        for info in &list {
            out.write_all(ups::render_ups_detail(info, view.now_ms, view.style).as_bytes())?;
        }
    } else {
        out.write_all(ups::render_ups_list(&list, view.now_ms, view.style).as_bytes())?;
    }
    Ok(())
}
