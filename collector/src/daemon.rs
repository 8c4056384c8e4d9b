//! The composition root of the collector daemon: opens the store and the
//! live state, binds the agent link (TCP), the admin API (Unix socket),
//! /metrics (HTTP) and the NUT server (TCP, opt-in), starts the group-commit writer, the power orchestrator
//! with its real ports and the housekeeping timer, and stops them in order.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nodewarden_proto::v1::admin_server::AdminServer;
use nodewarden_proto::v1::join_server::JoinServer;
use nodewarden_proto::v1::power_server::PowerServer;
use nodewarden_proto::v1::trust_admin_server::TrustAdminServer;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};

use crate::config::CollectorConfig;
use crate::pki::{Authority, PkiError, PkiPaths};
use crate::server::nut::NutServer;
use crate::server::{admin, auth, http, link, trust};
use crate::state::{hub, writer};
use crate::store::{Retention, Store};

use nodewarden_common::clock::now_ms;

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the store in {dir}: {source}")]
    Store {
        dir: String,
        source: crate::store::StoreError,
    },
    #[error("cannot listen on {what} {addr}: {source}{hint}")]
    Listen {
        what: &'static str,
        addr: String,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("{0}")]
    Pki(#[from] PkiError),
    #[error("{0}")]
    Other(String),
}

/// Addresses actually bound (ports may have been 0), and the live hub.
#[derive(Debug, Clone)]
pub struct Bound {
    pub link: std::net::SocketAddr,
    pub metrics: Option<std::net::SocketAddr>,
    /// The NUT server, when `[nut_server] listen` is set.
    pub nut: Option<std::net::SocketAddr>,
    /// Live node state; `Hub::send_command` reaches connected agents.
    pub hub: Arc<hub::Hub>,
}

fn bind_unix(path: &Path) -> Result<UnixListener, ServeError> {
    let err = |source: std::io::Error, hint| ServeError::Listen {
        what: "admin socket",
        addr: path.display().to_string(),
        source,
        hint,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(e, "; create the directory or set admin_socket"))?;
    }
    // A socket file left by a previous run that nobody answers on is stale.
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err(
                std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another collector is answering there",
                ),
                "",
            ));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|e| err(e, ""))?;
    // root:nodewarden 0660 in packages; the group gets the CLI.
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660));
    Ok(listener)
}

type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// The agent link speaks TLS only: each accepted connection does its
/// handshake on its own task (a slow or hostile client holds up nobody), and
/// only finished handshakes reach tonic.
fn tls_accept(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) -> ReceiverStream<Result<TlsStream, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("agent link accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::warn!(%peer, "TLS handshake refused: {e}"),
                    Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// What the daemon shares between its services: the store, the live node
/// state on top of it, and the CA.
struct Core {
    store: Arc<Store>,
    hub: Arc<hub::Hub>,
    authority: Arc<Authority>,
    tls: Arc<rustls::ServerConfig>,
    /// What the health loop set on each node, for `nodewarden nodes`.
    health: crate::cluster::health::HealthView,
}

/// Opens (creating if need be) the data directory, the store, the hub and
/// the CA.
fn open_core(config: &CollectorConfig) -> Result<Core, ServeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| ServeError::Store {
        dir: config.data_dir.display().to_string(),
        source: crate::store::StoreError::DataDir {
            dir: config.data_dir.clone(),
            source: e,
        },
    })?;
    let retention = Retention {
        raw: config.retention.raw,
        rollup: config.retention.rollup,
    };
    let store =
        Arc::new(
            Store::open(&config.data_dir, retention).map_err(|source| ServeError::Store {
                dir: config.data_dir.display().to_string(),
                source,
            })?,
        );
    let hub = Arc::new(hub::Hub::new(store.clone(), config.events.clone()));
    let authority = Arc::new(Authority::load(&PkiPaths::of_data_dir(&config.data_dir))?);
    let tls = crate::pki::tls::server_config(&authority)?;
    Ok(Core {
        store,
        hub,
        authority,
        tls,
        health: crate::cluster::health::new_view(),
    })
}

/// The daemon's sockets, bound before any service starts.
struct Listeners {
    link: TcpListener,
    link_addr: std::net::SocketAddr,
    admin: UnixListener,
    metrics: Option<TcpListener>,
    metrics_addr: Option<std::net::SocketAddr>,
    nut: Option<TcpListener>,
}

/// Binds the agent link, the admin socket and (unless disabled) /metrics.
async fn bind_listeners(config: &CollectorConfig) -> Result<Listeners, ServeError> {
    let link = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            what: "agent link",
            addr: config.listen.to_string(),
            source,
            hint: "; is another collector running? change `listen`",
        })?;
    let link_addr = link
        .local_addr()
        .map_err(|e| ServeError::Other(e.to_string()))?;
    let admin = bind_unix(&config.admin_socket)?;
    let metrics = if config.metrics_listen.is_empty() {
        None
    } else {
        Some(
            TcpListener::bind(&config.metrics_listen)
                .await
                .map_err(|source| ServeError::Listen {
                    what: "metrics",
                    addr: config.metrics_listen.clone(),
                    source,
                    hint: "; change `metrics_listen` (empty disables /metrics)",
                })?,
        )
    };
    let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
    let nut =
        match config.nut_server.listen {
            None => None,
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| {
                ServeError::Listen {
                    what: "NUT server",
                    addr: addr.to_string(),
                    source,
                    hint: "; is NUT's upsd running there? stop it or change `nut_server.listen`",
                }
            })?),
        };
    Ok(Listeners {
        link,
        link_addr,
        admin,
        metrics,
        metrics_addr,
        nut,
    })
}

/// The agent link and the join service, over TLS, until `shutdown`.
fn spawn_link_server(
    core: &Core,
    listener: TcpListener,
    write_tx: mpsc::Sender<writer::WriteItem>,
    shutdown: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
    let link_service = link::AgentLinkRoute::new(link::LinkService::new(
        core.hub.clone(),
        write_tx,
        shutdown.clone(),
        core.authority.clone(),
    ));
    let join_service = JoinServer::new(trust::JoinService::new(core.authority.clone()));
    let tls_incoming = tls_accept(listener, core.tls.clone(), shutdown.clone());
    let mut stop = shutdown.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(20)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(link_service)
            .add_service(join_service)
            .serve_with_incoming_shutdown(tls_incoming, async move {
                let _ = stop.changed().await;
            }),
    )
}

/// The admin API (queries, trust, power) on the Unix socket, until `shutdown`.
fn spawn_admin_server(
    config: &CollectorConfig,
    core: &Core,
    listener: UnixListener,
    power: crate::power::orchestrator::PowerHandle,
    shutdown: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
    let admin_service = AdminServer::new(
        admin::AdminService::new(core.hub.clone()).with_health(core.health.clone()),
    );
    let trust_admin_service = TrustAdminServer::new(trust::TrustAdminService::new(
        core.authority.clone(),
        core.hub.clone(),
    ));
    let power_service = PowerServer::new(
        crate::server::power::PowerService::new(power, config.power.enabled)
            .with_health(core.health.clone()),
    );
    let policy = auth::Policy::new(&config.admin_group);
    let mut stop = shutdown.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(tonic::service::InterceptorLayer::new(move |r| {
                policy.stamp(r)
            }))
            .add_service(admin_service)
            .add_service(trust_admin_service)
            .add_service(power_service)
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                let _ = stop.changed().await;
            }),
    )
}

/// How often a collector waiting for `nodewarden init` looks for the CA.
const INIT_POLL: Duration = Duration::from_secs(2);

/// A collector installed before `nodewarden init` waits for the CA instead
/// of failing until systemd gives up on it: it says so in the journal and in
/// `systemctl status`, keeps systemd's watchdog fed, and starts on its own
/// once `init` has run. False if it was told to stop first.
async fn wait_for_init(config: &CollectorConfig, shutdown: &mut watch::Receiver<bool>) -> bool {
    let paths = PkiPaths::of_data_dir(&config.data_dir);
    let mut said = false;
    loop {
        match Authority::load(&paths) {
            Err(e @ PkiError::NotInitialized(_)) => {
                if !said {
                    said = true;
                    tracing::warn!("{e}; waiting for it (checked every {INIT_POLL:?})");
                    let status = format!(
                        "waiting for `nodewarden init`: no CA in {} yet",
                        config.data_dir.display()
                    );
                    let _ = nodewarden_common::sd_notify::notify_status(&status);
                    // Ready to systemd (it would kill a start that takes
                    // this long), not to agents: nothing listens yet.
                    let _ = nodewarden_common::sd_notify::notify_ready();
                }
                let _ = nodewarden_common::sd_notify::notify_watchdog();
                tokio::select! {
                    () = tokio::time::sleep(INIT_POLL) => {}
                    _ = shutdown.changed() => return false,
                }
            }
            // Loaded, or a real problem `open_core` reports.
            _ => {
                if said {
                    tracing::info!("the CA is there: starting");
                    let _ = nodewarden_common::sd_notify::notify_status("starting");
                }
                return true;
            }
        }
    }
}

/// Runs the collector until `shutdown` turns true. `ready` receives the bound
/// addresses once every listener is up.
pub async fn serve(
    config: CollectorConfig,
    mut shutdown: watch::Receiver<bool>,
    ready: Option<tokio::sync::oneshot::Sender<Bound>>,
) -> Result<(), ServeError> {
    if !wait_for_init(&config, &mut shutdown).await {
        return Ok(());
    }
    let core = open_core(&config)?;
    let hub = core.hub.clone();

    let (write_tx, write_rx) = mpsc::channel(writer::QUEUE_DEPTH);
    let writer_task = tokio::spawn(writer::run(
        core.store.clone(),
        write_rx,
        writer::Cadence {
            commit: config.commit_interval,
            sync: config.sync_interval,
        },
        hub.on_battery(),
        shutdown.clone(),
    ));

    let listeners = bind_listeners(&config).await?;
    let (link_addr, metrics_addr) = (listeners.link_addr, listeners.metrics_addr);
    let power = spawn_power(&config, hub.clone(), shutdown.clone()).await;
    let link_server = spawn_link_server(&core, listeners.link, write_tx.clone(), &shutdown);
    let page = crate::server::web::Web::new(
        hub.clone(),
        Some(power.clone()),
        config.power.enabled,
        &config.web,
    );
    let admin_server = spawn_admin_server(&config, &core, listeners.admin, power, &shutdown);
    if let Some(l) = listeners.metrics {
        tokio::spawn(http::serve(l, hub.clone(), page, shutdown.clone()));
    }
    let nut_addr = listeners.nut.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(l) = listeners.nut {
        let tls = crate::pki::tls::plain_server_config(&core.authority)?;
        let server = NutServer::new(config.nut_server.clone(), hub.clone(), Some(tls));
        tokio::spawn(server.run(l, shutdown.clone()));
    }
    spawn_health(&config, &core, shutdown.clone()).await;
    let offline_after = config.offline_after.as_millis() as i64;
    let housekeeping = spawn_housekeeping(hub.clone(), offline_after, shutdown.clone());

    tracing::info!(link = %link_addr, admin = %config.admin_socket.display(), metrics = ?metrics_addr, nut = ?nut_addr, data = %config.data_dir.display(), "collector ready");
    if let Some(ready) = ready {
        let _ = ready.send(Bound {
            link: link_addr,
            metrics: metrics_addr,
            nut: nut_addr,
            hub: hub.clone(),
        });
    }

    let _ = nodewarden_common::sd_notify::notify_ready();

    let _ = shutdown.changed().await;
    tracing::info!("shutting down");
    let _ = nodewarden_common::sd_notify::notify_stopping();
    // Streams were told to end; an agent that does not hang up is not waited for.
    if tokio::time::timeout(Duration::from_secs(5), link_server)
        .await
        .is_err()
    {
        tracing::warn!("some agent streams did not close within 5 s");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), admin_server).await;
    let _ = housekeeping.await;
    drop(write_tx);
    // The writer commits what it holds once every stream has let go.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
    let h = hub.clone();
    let _ = tokio::task::spawn_blocking(move || {
        h.checkpoint();
        // The checkpoint commits without a sync of its own (store::apply).
        if let Err(e) = h.store().sync() {
            tracing::warn!("cannot sync the store at shutdown: {e}");
        }
    })
    .await;
    let _ = std::fs::remove_file(&config.admin_socket);
    Ok(())
}

/// The registry checkpoint (every node's record) is written this often, and
/// at shutdown. Only a restart reads it, and a restart marks every node
/// offline until it reconnects: rewriting the nodes table every minute cost
/// SD card writes for nothing (docs/storage.md).
const CHECKPOINT_EVERY_S: u64 = 600;
/// Retention is applied this often: raw samples then live at most this much
/// longer than `retention.raw`, and each prune rewrites the oldest pages.
const PRUNE_EVERY_S: u64 = 3600;

/// Housekeeping, once a second: the systemd watchdog, silent nodes, the
/// registry checkpoint and retention.
fn spawn_housekeeping(
    hub: Arc<hub::Hub>,
    offline_after: i64,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            n += 1;
            // The systemd watchdog (a no-op outside systemd).
            let _ = nodewarden_common::sd_notify::notify_watchdog();
            hub.mark_silent(now_ms(), offline_after);
            if n.is_multiple_of(CHECKPOINT_EVERY_S) {
                let h = hub.clone();
                let _ = tokio::task::spawn_blocking(move || h.checkpoint()).await;
            }
            if n % PRUNE_EVERY_S == 1 {
                let store = hub.store().clone();
                match tokio::task::spawn_blocking(move || store.prune(now_ms())).await {
                    Ok(Err(e)) => tracing::warn!("retention pruning failed: {e}"),
                    Err(e) => tracing::warn!("retention pruning task failed: {e}"),
                    Ok(Ok(())) => {}
                }
            }
        }
    })
}

/// Starts the node-health loop (conditions, events, labels) when a
/// Kubernetes API is configured; without one there is nothing to tell.
async fn spawn_health(config: &CollectorConfig, core: &Core, shutdown: watch::Receiver<bool>) {
    use crate::cluster::health;
    if !config.node_health.any() {
        return;
    }
    let cluster = match crate::cluster::KubeCluster::connect(&config.kubernetes).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!("no Kubernetes API: node conditions and labels are not written: {e}");
            return;
        }
    };
    let l = health::HealthLoop {
        cluster,
        hub: core.hub.clone(),
        authority: core.authority.clone(),
        settings: config.node_health.clone(),
        domains: config
            .power
            .domains
            .iter()
            .map(|d| health::labels::PowerDomain {
                name: crate::power::config::domain_name(d),
                ups: d.ups.clone(),
                owner: d.owner.clone(),
                nodes: d.nodes.clone(),
            })
            .collect(),
        view: core.health.clone(),
    };
    health::spawn(l, shutdown);
}

/// Starts the power-loss orchestrator with the real ports. A Kubernetes API
/// that cannot be reached is not fatal: the sequence then powers off without
/// cordon and drain, and says why in the log and in `nodewarden plan`.
async fn spawn_power(
    config: &CollectorConfig,
    hub: Arc<hub::Hub>,
    shutdown: watch::Receiver<bool>,
) -> crate::power::orchestrator::PowerHandle {
    use crate::power::adapters::{HubAgents, KubePort};
    use crate::power::orchestrator::Ports;
    let cluster = match crate::cluster::KubeCluster::connect(&config.kubernetes).await {
        Ok(c) => Ok(c),
        Err(e) => {
            if config.power.enabled {
                tracing::warn!(
                    "no Kubernetes API: the power sequence will not cordon or drain: {e}"
                );
            }
            Err(e)
        }
    };
    let events = config.node_health.events;
    let agents = HubAgents::new(hub.clone(), config.power.agent_confirm_timeout)
        .with_late_wait(
            config
                .power
                .agent_confirm_timeout
                .max(config.power.servers_timeout),
        )
        .with_events(cluster.as_ref().ok().filter(|_| events).cloned());
    let ports = Ports {
        cluster: Arc::new(KubePort::new(cluster).with_events(events)),
        agents: Arc::new(agents),
        store: hub.store().clone(),
        live: hub,
    };
    crate::power::orchestrator::spawn(config.power.clone(), ports, shutdown)
}
