//! This node's identity and the TLS link: `join` (a key made here, a
//! certificate from the collector in exchange for a join token), the mutual
//! TLS connection every stream runs over, and renewal before expiry.
//!
//! Files in the state dir (0700): `ca.pem`, `node.pem`, `node.key` (0600,
//! never leaves the node), `node.json` (name and validity, so no X.509 parser
//! is needed to know when to renew).

mod error;
pub mod verify;

pub use error::TrustError;

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nodewarden_proto::join_token::JoinToken;
use nodewarden_proto::v1::join_client::JoinClient;
use nodewarden_proto::v1::{JoinRequest, JoinResponse, RenewRequest};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint, Uri};

/// Default port of the collector's agent link.
pub const DEFAULT_PORT: u16 = 7150;

/// What `join` knows about the certificate it stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertInfo {
    pub node: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
}

impl CertInfo {
    /// When to renew: two thirds into the validity.
    pub fn renew_at_ms(&self) -> i64 {
        self.not_before_ms + (self.not_after_ms - self.not_before_ms) * 2 / 3
    }
}

/// Paths of this node's identity.
#[derive(Debug, Clone)]
pub struct Identity {
    pub dir: PathBuf,
}

impl Identity {
    /// The identity kept in `dir`.
    pub fn at(dir: &Path) -> Identity {
        Identity {
            dir: dir.to_path_buf(),
        }
    }
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("node.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("node.key")
    }
    pub fn info_path(&self) -> PathBuf {
        self.dir.join("node.json")
    }

    /// Name and validity of the stored certificate, if this node has joined.
    pub fn info(&self) -> Option<CertInfo> {
        let bytes = std::fs::read(self.info_path()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The mutual-TLS client config: trust only our CA, present our cert.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TrustError> {
        let not_joined = |path: PathBuf| move |source| TrustError::NotJoined { path, source };
        let ca = CertificateDer::from_pem_file(self.ca()).map_err(not_joined(self.ca()))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(self.cert())
            .map_err(not_joined(self.cert()))?
            .collect::<Result<_, _>>()
            .map_err(not_joined(self.cert()))?;
        let key = PrivateKeyDer::from_pem_file(self.key()).map_err(not_joined(self.key()))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).map_err(|source| TrustError::BadCertificate {
            path: self.ca(),
            source,
        })?;
        let mut config = ClientConfig::builder_with_provider(verify::provider())
            .with_safe_default_protocol_versions()
            .map_err(TrustError::Tls)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|source| TrustError::BadCertificate {
                path: self.cert(),
                source,
            })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    fn store(
        &self,
        key_pem: Option<&str>,
        answer: &JoinResponse,
        node: &str,
    ) -> Result<(), TrustError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| TrustError::CreateDir {
                dir: self.dir.clone(),
                source,
            })?;
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        if let Some(key_pem) = key_pem {
            write_file(&self.key(), key_pem.as_bytes(), 0o600)?;
        }
        write_file(&self.cert(), answer.certificate_pem.as_bytes(), 0o644)?;
        write_file(&self.ca(), answer.ca_pem.as_bytes(), 0o644)?;
        let info = CertInfo {
            node: node.to_string(),
            not_before_ms: answer.not_before_ms,
            not_after_ms: answer.not_after_ms,
        };
        let json = serde_json::to_vec_pretty(&info).map_err(TrustError::Info)?;
        write_file(&self.info_path(), &json, 0o644)
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TrustError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|source| TrustError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// `https://host:port` from what a user typed: `host`, `host:port` or an
/// https URL. A plaintext URL is refused.
pub fn collector_url(addr: &str) -> Result<String, TrustError> {
    let addr = addr.trim().trim_end_matches('/');
    if addr.starts_with("http://") {
        return Err(TrustError::Plaintext {
            addr: addr.to_owned(),
        });
    }
    let rest = addr.strip_prefix("https://").unwrap_or(addr);
    if rest.is_empty() || rest.contains('/') {
        return Err(TrustError::NotHostPort {
            addr: addr.to_owned(),
        });
    }
    let has_port = if rest.starts_with('[') {
        rest.contains("]:")
    } else {
        rest.matches(':').count() == 1
    };
    let host_port = if has_port {
        rest.to_string()
    } else if rest.contains(':') && !rest.starts_with('[') {
        // A bare IPv6 address.
        format!("[{rest}]:{DEFAULT_PORT}")
    } else {
        format!("{rest}:{DEFAULT_PORT}")
    };
    Ok(format!("https://{host_port}"))
}

/// Host (as dialled, for the certificate check) and port of an https URL.
fn host_port(url: &str) -> Result<(String, u16), TrustError> {
    let uri: Uri = url.parse().map_err(|source| TrustError::BadUrl {
        url: url.to_owned(),
        source,
    })?;
    if uri.scheme_str() != Some("https") {
        return Err(TrustError::NotHttps {
            url: url.to_owned(),
        });
    }
    let host = uri
        .host()
        .ok_or_else(|| TrustError::NoHost {
            url: url.to_owned(),
        })?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, uri.port_u16().unwrap_or(DEFAULT_PORT)))
}

/// Describes an error and its sources, our TLS explanations first.
fn describe(e: &std::io::Error, host: &str, port: u16) -> String {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return verify::explain(tls, host);
    }
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => format!(
            "nothing accepts connections at {host}:{port} (connection refused): is the collector running there, and is the address right?"
        ),
        std::io::ErrorKind::TimedOut => format!(
            "no answer from {host}:{port} within 5 s: wrong address, or a firewall drops the port"
        ),
        _ => format!("cannot connect to {host}:{port}: {e}"),
    }
}

/// A channel to the collector over TLS with `config`. Every connection goes
/// through our own connector, so no path exists that skips TLS.
pub async fn connect(url: &str, config: Arc<ClientConfig>) -> Result<Channel, TrustError> {
    connect_watched(url, config, TlsVerdict::default()).await
}

/// [`connect`], noting the collector's TLS verdict in `verdict`.
pub async fn connect_watched(
    url: &str,
    config: Arc<ClientConfig>,
    verdict: TlsVerdict,
) -> Result<Channel, TrustError> {
    let (host, port) = host_port(url)?;
    let server_name =
        ServerName::try_from(host.clone()).map_err(|source| TrustError::BadHostName {
            host: host.clone(),
            source,
        })?;
    let connector = tokio_rustls::TlsConnector::from(config);
    // tonic refuses an https:// endpoint without its own TLS layer; ours is
    // in the connector below, which every connection goes through, so the
    // URI tonic sees only names the HTTP/2 :scheme.
    let authority = url.trim_start_matches("https://");
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|source| TrustError::BadEndpoint {
            url: url.to_owned(),
            source,
        })?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let (h, p) = (host.clone(), port);
    let result = endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let (host, connector, server_name) =
                (h.clone(), connector.clone(), server_name.clone());
            let verdict = verdict.clone();
            async move {
                // A `.local` name falls back to our own Multicast DNS query:
                // the static musl build has no nss-mdns to resolve it.
                let addrs = crate::mdns::lookup_host(&host, p).await.map_err(|e| {
                    std::io::Error::other(if crate::mdns::is_local_name(&host) {
                        e.to_string()
                    } else {
                        format!("{e}: check the name, or use the collector's IP address")
                    })
                })?;
                let mut last = std::io::Error::other(format!("`{host}` resolves to no address"));
                for addr in addrs {
                    match tokio::time::timeout(
                        Duration::from_secs(5),
                        tokio::net::TcpStream::connect(addr),
                    )
                    .await
                    {
                        Ok(Ok(tcp)) => {
                            let _ = tcp.set_nodelay(true);
                            let tls = connector
                                .connect(server_name, tcp)
                                .await
                                .map_err(|e| std::io::Error::other(describe(&e, &host, p)))?;
                            return Ok(hyper_util::rt::TokioIo::new(Watched {
                                inner: tls,
                                verdict,
                                host,
                            }));
                        }
                        Ok(Err(e)) => last = std::io::Error::other(describe(&e, &host, p)),
                        Err(_) => {
                            last = std::io::Error::other(describe(
                                &std::io::Error::from(std::io::ErrorKind::TimedOut),
                                &host,
                                p,
                            ))
                        }
                    }
                }
                Err(last)
            }
        }))
        .await;
    result.map_err(|source| TrustError::Connect {
        detail: innermost(&source),
        source,
    })
}

/// Our connector's message is the last source in tonic's chain; the layers
/// above it only say "transport error".
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// A failed call, told through the TLS error underneath when there is one:
/// with TLS 1.3 the collector refuses a client certificate only after the
/// handshake, so the refusal shows up on the first call, not on connect.
pub fn explain_status(status: &tonic::Status, url: &str) -> String {
    let host = host_port(url).map(|(h, _)| h).unwrap_or_default();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return verify::explain(tls, &host);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return verify::explain(tls, &host);
        }
        source = e.source();
    }
    status.message().to_string()
}

/// The last TLS error the collector's side of a connection caused, e.g. an
/// alert refusing our certificate, which hyper reports only as a broken pipe.
pub type TlsVerdict = Arc<std::sync::Mutex<Option<String>>>;

/// A TLS stream that notes the TLS errors it reads into a [`TlsVerdict`].
struct Watched {
    inner: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    verdict: TlsVerdict,
    host: String,
}

impl Watched {
    fn note(&self, e: &std::io::Error) {
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            self.note_tls(tls);
        }
    }

    fn note_tls(&self, tls: &rustls::Error) {
        if let Ok(mut v) = self.verdict.lock() {
            *v = Some(verify::explain(tls, &self.host));
        }
    }

    /// After a failed write: the collector may have refused our certificate
    /// with an alert and closed before this side read it (a busy machine
    /// writes the first request first), and then the write's reset is all
    /// hyper reports. Linux hands out data queued before a reset, so the
    /// alert can still be read; but tokio's readiness for the socket may lag
    /// the reset (its reactor has not run yet), so ask the kernel directly.
    fn look_for_alert<T>(&mut self, written: &std::task::Poll<std::io::Result<T>>) {
        if !matches!(written, std::task::Poll::Ready(Err(_)))
            || self.verdict.lock().map(|v| v.is_some()).unwrap_or(true)
        {
            return;
        }
        let (tcp, tls) = self.inner.get_mut();
        let mut raw = [0u8; 4096];
        let socket = socket2::SockRef::from(&*tcp);
        // The socket is non-blocking (tokio's): this never waits.
        let n = match std::io::Read::read(&mut &*socket, &mut raw) {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        if tls.read_tls(&mut &raw[..n]).is_err() {
            return;
        }
        if let Err(e) = tls.process_new_packets() {
            self.note_tls(&e);
        }
    }
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Err(e)) = &r {
            self.note(e);
        }
        r
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.look_for_alert(&r);
        r
    }
    // Passed through so h2 writes a frame's header and its payload in one
    // call: one TLS record and one system call instead of two per message
    // (h2 splits payloads over 1 KiB into a second write when the stream
    // says it has no vectored writes).
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.look_for_alert(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.look_for_alert(&r);
        r
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A new key and a signing request for `node`'s certificate.
fn key_and_csr(node: &str) -> Result<(String, Vec<u8>), TrustError> {
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(TrustError::Key)?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, node);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(TrustError::SigningRequest)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

/// `nodewarden-agent join`: makes a key here, proves the token, checks the
/// collector by the CA hash in the token, stores the certificate. Returns
/// the https URL to put in the config.
pub async fn join(
    addr: &str,
    token: &str,
    node: &str,
    identity: &Identity,
) -> Result<(String, CertInfo), TrustError> {
    let token = JoinToken::parse(token).map_err(TrustError::Token)?;
    let url = collector_url(addr)?;
    let mut config = ClientConfig::builder_with_provider(verify::provider())
        .with_safe_default_protocol_versions()
        .map_err(TrustError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verify::FingerprintVerifier::new(
            &token.ca_hash,
        )))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let channel = connect(&url, Arc::new(config)).await?;
    let (key_pem, csr_der) = key_and_csr(node)?;
    let answer = JoinClient::new(channel)
        .join(JoinRequest {
            token: token.credential(),
            node_name: node.to_string(),
            csr_der,
        })
        .await
        .map_err(|s| TrustError::JoinRefused(Box::new(s)))?
        .into_inner();
    // The CA it hands back must be the one the token named.
    let ca = CertificateDer::from_pem_slice(answer.ca_pem.as_bytes())
        .map_err(TrustError::UnreadableCa)?;
    if verify::sha256_hex(ca.as_ref()) != token.ca_hash {
        return Err(TrustError::CaMismatch);
    }
    identity.store(Some(&key_pem), &answer, node)?;
    let info = identity.info().ok_or_else(|| TrustError::ReadBack {
        path: identity.info_path(),
    })?;
    Ok((url, info))
}

/// Asks for a fresh certificate over mutual TLS with the current one. The
/// key is new too: a renewal also rotates the key.
pub async fn renew(url: &str, identity: &Identity) -> Result<CertInfo, TrustError> {
    let info = identity.info().ok_or(TrustError::NotJoinedYet)?;
    let channel = connect(url, identity.client_config()?).await?;
    let (key_pem, csr_der) = key_and_csr(&info.node)?;
    let answer = JoinClient::new(channel)
        .renew(RenewRequest { csr_der })
        .await
        .map_err(|s| TrustError::RenewRefused(Box::new(s)))?
        .into_inner();
    identity.store(Some(&key_pem), &answer, &info.node)?;
    identity.info().ok_or_else(|| TrustError::ReadBack {
        path: identity.info_path(),
    })
}

/// Renews the certificate whenever two thirds of its life have passed; runs
/// until `shutdown`. A failure is retried hourly (the old certificate still
/// works for the remaining third).
pub async fn renew_forever(
    url: String,
    identity: Identity,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let wait = match identity.info() {
            Some(info) => {
                let now = nodewarden_common::clock::now_ms();
                Duration::from_millis((info.renew_at_ms() - now).max(0) as u64)
            }
            None => return,
        };
        // Sleep in chunks: a suspended board's monotonic clock stands still.
        let chunk = wait.min(Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep(chunk) => {}
            _ = shutdown.changed() => return,
        }
        if chunk < wait {
            continue;
        }
        match renew(&url, &identity).await {
            Ok(info) => tracing::info!(valid_until_ms = info.not_after_ms, "certificate renewed"),
            Err(e) => {
                tracing::warn!("certificate renewal failed: {e}; retrying in 1 h");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// After `join` as root: the files belong to the `nodewarden` user the
/// service runs as (when it exists), or the agent could not read its key.
pub fn hand_to_service_user(identity: &Identity) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let Ok(Some(user)) = nix::unistd::User::from_name("nodewarden") else {
        return;
    };
    let (uid, gid) = (Some(user.uid), Some(user.gid));
    let _ = nix::unistd::chown(&identity.dir, uid, gid);
    for p in [
        identity.ca(),
        identity.cert(),
        identity.key(),
        identity.info_path(),
    ] {
        let _ = nix::unistd::chown(&p, uid, gid);
    }
}

/// Sets `key = "value"` in a TOML config text, replacing a top-level line or
/// adding one before the first table; comments and everything else stay.
pub fn set_config_key(text: &str, key: &str, value: &str) -> String {
    let quoted = format!("{key} = {}", toml_string(value));
    let mut out = Vec::new();
    let mut done = false;
    let mut in_table = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') && !in_table {
            in_table = true;
            if !done {
                out.push(quoted.clone());
                done = true;
            }
        }
        if !in_table
            && !done
            && trimmed
                .split_once('=')
                .is_some_and(|(k, _)| k.trim() == key)
        {
            out.push(quoted.clone());
            done = true;
            continue;
        }
        out.push(line.to_string());
    }
    if !done {
        out.push(quoted);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

fn toml_string(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_addresses_become_https_urls() {
        assert_eq!(collector_url("10.0.0.2").unwrap(), "https://10.0.0.2:7150");
        assert_eq!(collector_url("srv:9000").unwrap(), "https://srv:9000");
        assert_eq!(collector_url("https://srv:1/").unwrap(), "https://srv:1");
        assert_eq!(collector_url("::1").unwrap(), "https://[::1]:7150");
        assert!(
            collector_url("http://srv:7150")
                .unwrap_err()
                .to_string()
                .contains("plaintext")
        );
    }

    #[test]
    fn config_keys_are_set_in_place() {
        let text = "# c\ncollector = \"http://x\"\nnode_name = \"a\"\n[[ups]]\nname = \"u\"\n";
        let t = set_config_key(text, "collector", "https://y:1");
        assert!(t.contains("collector = \"https://y:1\""), "{t}");
        assert!(!t.contains("http://x"));
        let t = set_config_key(&t, "state_dir", "/s");
        let ups = t.find("[[ups]]").unwrap();
        assert!(t.find("state_dir").unwrap() < ups, "{t}");
        assert_eq!(t.matches("name = \"u\"").count(), 1);
    }
}
