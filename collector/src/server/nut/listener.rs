//! The NUT server's sockets: accepts clients up to `max_clients`, reads
//! bounded lines with a deadline, hands each to its [`Session`], and does
//! what the session asks (STARTTLS, logins, FSD, instant commands on the
//! owning agent). One task per client: a slow or hostile one holds up
//! nobody, and nothing here takes the hub's lock for longer than a copy.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::catalog::{Marks, catalog, resolve};
use super::config::NutServerConfig;
use super::instcmd::{self, Tracking};
use super::protocol::{MAX_LINE, NutError, split_words};
use super::session::{Effect, Policy, Served, Session, View};
use crate::server::auth_limit::AuthLimiter;
use crate::state::hub::Hub;
use crate::state::nut_hosts::FollowedUps;
use nodewarden_common::clock::now_ms;

/// The server's shared state.
pub struct NutServer {
    config: NutServerConfig,
    hub: Arc<Hub>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    marks: Mutex<Marks>,
    /// Logged-in client addresses per served name (LIST CLIENT).
    clients: Mutex<HashMap<String, Vec<(u64, SocketAddr)>>>,
    limiter: Mutex<AuthLimiter>,
    tracking: Arc<Tracking>,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for NutServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NutServer")
            .field("listen", &self.config.listen)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicked holder left plain data behind; keep serving it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A session's view: the catalog copied once per command.
struct Snapshot<'a> {
    server: &'a NutServer,
    served: Vec<Served>,
}

impl View for Snapshot<'_> {
    fn ups(&self, name: &str) -> Option<Served> {
        resolve(&self.served, &self.server.config.alias, name).cloned()
    }
    fn all(&self) -> Vec<Served> {
        self.served.clone()
    }
    fn clients(&self, name: &str) -> Vec<String> {
        lock(&self.server.clients)
            .get(name)
            .map(|v| v.iter().map(|(_, a)| a.ip().to_string()).collect())
            .unwrap_or_default()
    }
    fn tracking(&self, id: &str) -> String {
        self.server.tracking.get(id)
    }
}

enum LineRead {
    Line(Vec<u8>),
    Eof,
    TooLong,
}

/// Reads one line of at most MAX_LINE bytes, without buffering more.
async fn read_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> std::io::Result<LineRead> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if line.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line(line)
            });
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if line.len() > MAX_LINE {
            return Ok(LineRead::TooLong);
        }
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(LineRead::Line(line));
        }
    }
}

/// How one phase of a connection ended.
enum Outcome<S> {
    Closed,
    StartTls(S),
}

impl NutServer {
    pub fn new(
        config: NutServerConfig,
        hub: Arc<Hub>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Arc<Self> {
        Arc::new(NutServer {
            limiter: Mutex::new(AuthLimiter::new(config.auth_failures_per_minute)),
            slots: Arc::new(Semaphore::new(config.max_clients)),
            tls: tls
                .filter(|_| config.starttls)
                .map(tokio_rustls::TlsAcceptor::from),
            config,
            hub,
            marks: Mutex::new(Marks::default()),
            clients: Mutex::new(HashMap::new()),
            tracking: Arc::new(Tracking::default()),
        })
    }

    /// What `peer` sees now: the catalog, with FSD on every UPS once the
    /// power sequence raised it for this host.
    fn snapshot(&self, peer: IpAddr) -> Snapshot<'_> {
        let live = self.hub.ups_live();
        let mut served = catalog(live, &lock(&self.marks));
        if self.hub.nut_hosts().fsd_for(peer) {
            for s in &mut served {
                s.fsd = true;
            }
        }
        Snapshot {
            server: self,
            served,
        }
    }

    /// Accepts clients until `shutdown`.
    pub async fn run(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let mut next_id = 0u64;
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("NUT server accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                // Closed at once: the client sees a reset, not a hang.
                tracing::debug!(%peer, "NUT server full ({} clients): closed", self.config.max_clients);
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            next_id += 1;
            let id = next_id;
            let server = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                server.connection(id, tcp, peer, stop).await;
                drop(permit);
            });
        }
    }

    async fn connection(
        self: Arc<Self>,
        id: u64,
        tcp: TcpStream,
        peer: SocketAddr,
        stop: watch::Receiver<bool>,
    ) {
        let mut session = Session::default();
        let outcome = self
            .converse(id, peer, &mut session, tcp, stop.clone())
            .await;
        if let Outcome::StartTls(tcp) = outcome {
            // Boxed: TLS state is several KiB, and most clients never ask
            // for it; every idle plain client would otherwise carry it.
            Box::pin(self.tls_phase(id, peer, &mut session, tcp, stop)).await;
        }
        self.logout(id, peer, &session);
    }

    async fn tls_phase(
        &self,
        id: u64,
        peer: SocketAddr,
        session: &mut Session,
        tcp: TcpStream,
        stop: watch::Receiver<bool>,
    ) {
        let Some(acceptor) = &self.tls else {
            return;
        };
        match tokio::time::timeout(self.config.idle_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                session.tls = true;
                let _ = self.converse(id, peer, session, tls, stop).await;
            }
            Ok(Err(e)) => tracing::info!(%peer, "NUT client's TLS handshake failed: {e}"),
            Err(_) => tracing::info!(%peer, "NUT client's TLS handshake timed out"),
        }
    }

    fn logout(&self, id: u64, peer: SocketAddr, session: &Session) {
        if let Some(ups) = session.login() {
            self.hub.nut_hosts().logout(peer.ip(), now_ms());
            if let Some(n) = lock(&self.marks).logins.get_mut(ups) {
                *n = n.saturating_sub(1);
            }
            if let Some(v) = lock(&self.clients).get_mut(ups) {
                v.retain(|(c, _)| *c != id);
            }
            tracing::info!(
                user = session.username().unwrap_or(""),
                ups,
                "NUT client logged out"
            );
        }
    }

    /// Reads commands until the client leaves, errs, idles, or asks for TLS.
    async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        id: u64,
        peer: SocketAddr,
        session: &mut Session,
        stream: S,
        mut stop: watch::Receiver<bool>,
    ) -> Outcome<S> {
        // Command lines are short (upsd's longest are ~100 bytes); a longer one
        // is read in several fills. The buffer is per client, so it stays small.
        let mut reader = BufReader::with_capacity(256, stream);
        let idle = self.config.idle_timeout;
        loop {
            let read = tokio::select! {
                r = tokio::time::timeout(idle, read_line(&mut reader)) => r,
                _ = stop.changed() => return Outcome::Closed,
            };
            let line = match read {
                Ok(Ok(LineRead::Line(l))) => l,
                Ok(Ok(LineRead::TooLong)) => {
                    tracing::info!(%peer, "NUT client sent a line over {MAX_LINE} bytes: closed");
                    return Outcome::Closed;
                }
                Ok(Ok(LineRead::Eof)) | Ok(Err(_)) => return Outcome::Closed,
                Err(_) => {
                    tracing::debug!(%peer, "NUT client idle for {idle:?}: closed");
                    return Outcome::Closed;
                }
            };
            let (lines, effect) = self.answer(peer, session, &line);
            let mut out = String::new();
            for l in &lines {
                out.push_str(l);
                out.push('\n');
            }
            let mut extra = String::new();
            match effect {
                Some(Effect::Close) => {
                    let _ = self.write(reader.get_mut(), &out).await;
                    return Outcome::Closed;
                }
                Some(Effect::StartTls) => {
                    if self.write(reader.get_mut(), &out).await.is_err() {
                        return Outcome::Closed;
                    }
                    return Outcome::StartTls(reader.into_inner());
                }
                // Boxed: few commands have effects, and INSTCMD's future
                // is large.
                Some(other) => extra = Box::pin(self.apply(id, peer, session, other)).await,
                None => {}
            }
            out.push_str(&extra);
            if self.write(reader.get_mut(), &out).await.is_err() {
                return Outcome::Closed;
            }
        }
    }

    /// The session's reply to one raw line.
    fn answer(
        &self,
        peer: SocketAddr,
        session: &mut Session,
        line: &[u8],
    ) -> (Vec<String>, Option<Effect>) {
        let words = match std::str::from_utf8(line).ok().map(split_words) {
            Some(Ok(w)) => w,
            _ => return (vec![NutError::InvalidArgument.line()], None),
        };
        let policy = Policy {
            users: &self.config.users,
            starttls: self.tls.is_some(),
            auth_blocked: lock(&self.limiter).blocked(peer.ip(), Instant::now()),
        };
        let step = session.handle(&words, &self.snapshot(peer.ip()), &policy);
        (step.lines, step.effect)
    }

    /// Writes with the idle deadline: a client that never reads is dropped.
    async fn write<W: AsyncWrite + Unpin>(&self, w: &mut W, text: &str) -> std::io::Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(self.config.idle_timeout, async {
            w.write_all(text.as_bytes()).await?;
            w.flush().await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// Carries out an effect; returns any further reply lines.
    async fn apply(
        &self,
        id: u64,
        peer: SocketAddr,
        session: &mut Session,
        effect: Effect,
    ) -> String {
        let user = session.username().unwrap_or("").to_string();
        match effect {
            Effect::Login(ups) => {
                *lock(&self.marks).logins.entry(ups.clone()).or_default() += 1;
                lock(&self.clients)
                    .entry(ups.clone())
                    .or_default()
                    .push((id, peer));
                if let Some(served) = self.snapshot(peer.ip()).ups(&ups) {
                    let follows = FollowedUps {
                        owner: served.node,
                        ups: served.agent_ups,
                    };
                    self.hub
                        .nut_hosts()
                        .login(peer.ip(), follows, &user, now_ms());
                }
                tracing::info!(%peer, user, ups, "NUT client logged in");
            }
            Effect::Fsd(ups) => {
                lock(&self.marks).fsd.insert(ups.clone());
                tracing::warn!(%peer, user, ups, "NUT client raised FSD");
            }
            Effect::AuthFailed => {
                let now = Instant::now();
                if lock(&self.limiter).failed(peer.ip(), now) {
                    tracing::warn!(
                        %peer,
                        user,
                        "NUT: {} wrong passwords from this address in a minute; refusing its checks for the rest of it",
                        self.config.auth_failures_per_minute
                    );
                } else {
                    tracing::info!(%peer, user, "NUT: wrong user name or password");
                }
            }
            Effect::Tracking(on) => session.tracking = on,
            Effect::Instcmd { ups, cmd, tracking } => {
                tracing::info!(%peer, user, ups = ups.name, cmd, "NUT instant command");
                return instcmd::run(
                    &self.hub,
                    &self.tracking,
                    &ups,
                    &cmd,
                    tracking,
                    self.config.instcmd_timeout,
                )
                .await;
            }
            Effect::Close | Effect::StartTls => {}
        }
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::state::hub::Hub;
    use crate::store::{Retention, Store};

    /// Every connected client holds its task's future: the TLS phase and
    /// the effects are boxed so an idle plain client stays small (it was
    /// 5 KiB before; the nut_clients bench measures the whole process).
    #[tokio::test]
    async fn an_idle_client_costs_little() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, peer) = l.accept().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            raw: Duration::from_secs(7200),
            rollup: Duration::from_secs(86400),
        };
        let store = Arc::new(Store::open(dir.path(), retention).unwrap());
        let hub = Arc::new(Hub::new(store, Default::default()));
        let server = super::NutServer::new(Default::default(), hub, None);
        let (_stop, rx) = tokio::sync::watch::channel(false);
        let task = server.clone().connection(1, tcp, peer, rx);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 2048, "a client's task is {size} bytes");
    }
}
