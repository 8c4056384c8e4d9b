//! The collector's certificate authority: `nodewarden init`, join tokens,
//! node certificates and their revocation.
//!
//! Everything lives in `<data_dir>/pki/` (mode 0700): `ca.pem`, `ca.key`,
//! `server.pem` (the collector's certificate followed by the CA, so a joining
//! agent can check the CA against the hash in its token), `server.key`,
//! `tokens.json` (SHA-256 of each secret, never the secret) and `certs.json`
//! (every node certificate issued, with its revocation flag). Keys and token
//! hashes are 0600.

pub mod files;
pub mod tls;
pub mod token;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use self::token::{JoinToken, StoredToken, TokenRefused, TokenStore};

/// Node certificates live 90 days; agents renew after two thirds of that.
pub const NODE_CERT_DAYS: i64 = 90;
/// The CA and the collector's own certificate: rotate with `nodewarden init --force`
/// (CA, every node re-joins) or `nodewarden cert reissue` (server certificate only).
pub const CA_YEARS: i64 = 10;
/// Certificates start this long in the past, so a node whose clock is a little
/// behind still accepts them.
const BACKDATE_SECS: i64 = 3600;
/// SAN URI prefix that binds a node name into its certificate.
pub const NODE_URI_PREFIX: &str = "nodewarden:node:";

/// What went wrong with the PKI files or a signing request.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no CA in {0}: run `nodewarden init` on the collector first (it creates the CA, the collector's certificate and a join token)"
    )]
    NotInitialized(PathBuf),
    #[error(
        "{0} already holds a CA; every joined node trusts it. `nodewarden init --force` replaces it (all nodes must join again); `nodewarden cert reissue --san NAME` only re-issues the collector's certificate"
    )]
    Exists(PathBuf),
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("certificate: {0}")]
    Cert(String),
    #[error("refused: {0}")]
    Refused(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_err(e: impl std::fmt::Display) -> PkiError {
    PkiError::Cert(e.to_string())
}

/// File names inside the PKI directory.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub dir: PathBuf,
}

impl PkiPaths {
    /// The PKI directory of a collector whose data dir is `data_dir`.
    pub fn of_data_dir(data_dir: &Path) -> PkiPaths {
        PkiPaths {
            dir: data_dir.join("pki"),
        }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    pub fn tokens(&self) -> PathBuf {
        self.dir.join("tokens.json")
    }
    pub fn certs(&self) -> PathBuf {
        self.dir.join("certs.json")
    }
}

/// One node certificate the CA issued.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IssuedCert {
    /// Hex of the serial number's bytes.
    pub serial: String,
    pub node: String,
    pub issued_ms: i64,
    pub not_after_ms: i64,
    pub revoked: bool,
}

/// Every node certificate issued (the revocation list is the revoked ones).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CertRegistry {
    pub certs: Vec<IssuedCert>,
}

/// What `nodewarden init` made.
#[derive(Debug)]
pub struct InitReport {
    pub token: String,
    pub ca_hash: String,
    pub server_names: Vec<String>,
}

/// A freshly signed node certificate.
#[derive(Debug, Clone)]
pub struct NodeCert {
    pub pem: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
}

use nodewarden_common::clock::now_ms;

fn offset(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Cert("no randomness from the OS".into()))?;
    // Positive, and never a leading zero byte that DER would strip.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(io(path))
}

fn first_cert(path: &Path, pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| PkiError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::Parse {
            path: path.to_path_buf(),
            message: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// The names and addresses agents may dial: hostname, `hostname.local`,
/// FQDN-looking names from /etc/hosts, every interface address, loopback,
/// plus `extra`.
pub fn default_server_names(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |n: String| {
        let n = n.trim().to_string();
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim().to_string();
    if !host.is_empty() {
        add(host.clone());
        // The name avahi-daemon publishes for this host (its first label),
        // which agents on Raspberry Pi OS boards commonly dial.
        if let Some(label) = host.split('.').next() {
            add(format!("{label}.local"));
        }
        // The FQDN is what /etc/hosts maps the hostname to.
        if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
            for line in hosts.lines() {
                let line = line.split('#').next().unwrap_or("");
                let fields: Vec<&str> = line.split_whitespace().skip(1).collect();
                if fields
                    .iter()
                    .any(|f| *f == host || f.starts_with(&format!("{host}.")))
                {
                    for f in fields {
                        if f.starts_with(&format!("{host}.")) {
                            add(f.to_string());
                        }
                    }
                }
            }
        }
    }
    add("localhost".into());
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(addr) = a.address else { continue };
            let ip: Option<IpAddr> = if let Some(v4) = addr.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            };
            if let Some(ip) = ip {
                // Link-local v6 needs a zone to dial, and nobody dials it.
                if let IpAddr::V6(v6) = ip
                    && (v6.segments()[0] & 0xffc0) == 0xfe80
                {
                    continue;
                }
                add(ip.to_string());
            }
        }
    }
    add("127.0.0.1".into());
    add("::1".into());
    for e in extra {
        add(e.clone());
    }
    names
}

fn server_params(names: &[String], now: i64) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "nodewarden collector");
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| PkiError::Cert(format!("`{n}` is not a valid DNS name: {e}"))),
        })
        .collect::<Result<_, _>>()?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = offset(now - BACKDATE_SECS * 1000);
    params.not_after = offset(now + CA_YEARS * 365 * 86_400_000);
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn write_server_cert(
    paths: &PkiPaths,
    issuer: &Issuer<'_, KeyPair>,
    ca_pem: &str,
    names: &[String],
    now: i64,
) -> Result<(), PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
    let cert = server_params(names, now)?
        .signed_by(&key, issuer)
        .map_err(cert_err)?;
    files::write(
        &paths.server_key(),
        key.serialize_pem().as_bytes(),
        files::PRIVATE,
    )
    .map_err(io(&paths.server_key()))?;
    // The CA travels with the server certificate: a joining agent has only
    // its hash.
    let chain = format!("{}{}", cert.pem(), ca_pem);
    files::write(&paths.server_cert(), chain.as_bytes(), files::PUBLIC)
        .map_err(io(&paths.server_cert()))
}

/// `nodewarden init`: a new CA, the collector's certificate for `names`, and
/// a first join token (24 h, unlimited uses).
pub fn init(paths: &PkiPaths, names: &[String], force: bool) -> Result<InitReport, PkiError> {
    if paths.ca_key().exists() && !force {
        return Err(PkiError::Exists(paths.dir.clone()));
    }
    files::private_dir(&paths.dir).map_err(io(&paths.dir))?;
    let now = now_ms();
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "nodewarden CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = offset(now - BACKDATE_SECS * 1000);
    params.not_after = offset(now + CA_YEARS * 365 * 86_400_000);
    params.serial_number = Some(random_serial()?);
    let ca_cert = params.self_signed(&ca_key).map_err(cert_err)?;
    let ca_pem = ca_cert.pem();
    let ca_hash = token::sha256_hex(ca_cert.der());
    files::write(
        &paths.ca_key(),
        ca_key.serialize_pem().as_bytes(),
        files::PRIVATE,
    )
    .map_err(io(&paths.ca_key()))?;
    files::write(&paths.ca_cert(), ca_pem.as_bytes(), files::PUBLIC)
        .map_err(io(&paths.ca_cert()))?;
    let issuer = Issuer::new(params, ca_key);
    write_server_cert(paths, &issuer, &ca_pem, names, now)?;
    // A new CA makes every old token and certificate meaningless.
    let mut tokens = TokenStore::default();
    let (stored, secret) = tokens
        .create(now, token::DEFAULT_TTL_MS, None, "created by init".into())
        .map_err(|_| PkiError::Cert("no randomness from the OS".into()))?;
    save_json(&paths.tokens(), &tokens)?;
    save_json(&paths.certs(), &CertRegistry::default())?;
    Ok(InitReport {
        token: JoinToken {
            ca_hash: ca_hash.clone(),
            id: stored.id,
            secret,
        }
        .to_string(),
        ca_hash,
        server_names: names.to_vec(),
    })
}

/// `nodewarden cert reissue`: a new collector certificate from the same CA.
pub fn reissue_server(paths: &PkiPaths, names: &[String]) -> Result<(), PkiError> {
    let (issuer, ca_pem, _) = load_issuer(paths)?;
    write_server_cert(paths, &issuer, &ca_pem, names, now_ms())
}

fn load_issuer(
    paths: &PkiPaths,
) -> Result<(Issuer<'static, KeyPair>, String, CertificateDer<'static>), PkiError> {
    if !paths.ca_key().exists() {
        return Err(PkiError::NotInitialized(paths.dir.clone()));
    }
    let ca_pem = read(&paths.ca_cert())?;
    let ca_der = first_cert(&paths.ca_cert(), &ca_pem)?.remove(0);
    let key_pem = read(&paths.ca_key())?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Parse {
        path: paths.ca_key(),
        message: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_der(&ca_der, key).map_err(|e| PkiError::Parse {
        path: paths.ca_cert(),
        message: e.to_string(),
    })?;
    Ok((issuer, ca_pem, ca_der))
}

fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), PkiError> {
    let text = serde_json::to_vec_pretty(value).map_err(cert_err)?;
    files::write(path, &text, files::PRIVATE).map_err(io(path))
}

fn load_json<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<T, PkiError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| PkiError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

struct State {
    tokens: TokenStore,
    certs: CertRegistry,
}

/// The loaded CA, as the running collector uses it.
pub struct Authority {
    paths: PkiPaths,
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    ca_hash: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key_pem: String,
    state: Mutex<State>,
    /// Serials (hex) of revoked certificates, read on every handshake.
    revoked: Arc<RwLock<HashSet<String>>>,
    /// Node names as they are removed, so their live streams close.
    removed: tokio::sync::broadcast::Sender<String>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("dir", &self.paths.dir)
            .field("ca_hash", &self.ca_hash)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Authority {
    /// Loads the CA written by `nodewarden init`.
    pub fn load(paths: &PkiPaths) -> Result<Authority, PkiError> {
        let (issuer, ca_pem, ca_der) = load_issuer(paths)?;
        let server_pem = read(&paths.server_cert())?;
        let server_chain = first_cert(&paths.server_cert(), &server_pem)?;
        let server_key_pem = read(&paths.server_key())?;
        let tokens: TokenStore = load_json(&paths.tokens())?;
        let certs: CertRegistry = load_json(&paths.certs())?;
        let revoked = certs
            .certs
            .iter()
            .filter(|c| c.revoked)
            .map(|c| c.serial.clone())
            .collect();
        Ok(Authority {
            paths: paths.clone(),
            ca_hash: token::sha256_hex(&ca_der),
            issuer,
            ca_pem,
            ca_der,
            server_chain,
            server_key_pem,
            state: Mutex::new(State { tokens, certs }),
            revoked: Arc::new(RwLock::new(revoked)),
            removed: tokio::sync::broadcast::channel(16).0,
        })
    }

    /// Hex SHA-256 of the CA certificate: what join tokens carry.
    pub fn ca_hash(&self) -> &str {
        &self.ca_hash
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The collector's certificate chain (leaf, then CA).
    pub fn server_chain(&self) -> &[CertificateDer<'static>] {
        &self.server_chain
    }

    /// The collector's private key.
    pub fn server_key(&self) -> Result<PrivateKeyDer<'static>, PkiError> {
        use rustls::pki_types::pem::PemObject;
        PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).map_err(|e| PkiError::Parse {
            path: self.paths.server_key(),
            message: e.to_string(),
        })
    }

    /// The revoked serials, shared with the TLS client verifier.
    pub fn revoked(&self) -> Arc<RwLock<HashSet<String>>> {
        self.revoked.clone()
    }

    /// Whether the certificate with this serial (hex) was revoked.
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.revoked
            .read()
            .map(|r| r.contains(serial))
            .unwrap_or(true)
    }

    /// Node names as `remove_node` revokes them.
    pub fn removals(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.removed.subscribe()
    }

    /// Creates a join token; returns it whole (the only time the secret is shown).
    pub fn create_token(
        &self,
        ttl_ms: i64,
        uses: Option<u32>,
        description: String,
    ) -> Result<(String, StoredToken), PkiError> {
        let mut state = lock(&self.state);
        let mut tokens = state.tokens.clone();
        let (stored, secret) = tokens
            .create(now_ms(), ttl_ms, uses, description)
            .map_err(|_| PkiError::Cert("no randomness from the OS".into()))?;
        save_json(&self.paths.tokens(), &tokens)?;
        state.tokens = tokens;
        let text = JoinToken {
            ca_hash: self.ca_hash.clone(),
            id: stored.id.clone(),
            secret,
        }
        .to_string();
        Ok((text, stored))
    }

    /// Every token (hashes only).
    pub fn tokens(&self) -> Vec<StoredToken> {
        lock(&self.state).tokens.tokens.clone()
    }

    /// Deletes a token; false if there was none.
    pub fn revoke_token(&self, id: &str) -> Result<bool, PkiError> {
        let mut state = lock(&self.state);
        let mut tokens = state.tokens.clone();
        let found = tokens.revoke(id);
        save_json(&self.paths.tokens(), &tokens)?;
        state.tokens = tokens;
        Ok(found)
    }

    /// Checks and spends a token credential (`<id>.<secret>`).
    pub fn redeem(&self, credential: &str) -> Result<String, TokenRefused> {
        let (id, secret) =
            token::split_credential(credential).map_err(|_| TokenRefused::Unknown)?;
        let mut state = lock(&self.state);
        let mut tokens = state.tokens.clone();
        tokens.redeem(&id, &secret, now_ms())?;
        // A use that cannot be recorded is not granted: a one-time token must
        // not work twice after a restart.
        if save_json(&self.paths.tokens(), &tokens).is_err() {
            return Err(TokenRefused::Unknown);
        }
        state.tokens = tokens;
        Ok(id)
    }

    /// Signs a node certificate for the key in `csr_der`, binding `node`.
    /// Nothing else in the request is trusted: only its key (whose possession
    /// the request's signature proves).
    pub fn sign_node(&self, csr_der: &[u8], node: &str) -> Result<NodeCert, PkiError> {
        let csr = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(
            csr_der.to_vec(),
        ))
        .map_err(|e| PkiError::Refused(format!("bad certificate signing request: {e}")))?;
        let now = now_ms();
        let not_before = now - BACKDATE_SECS * 1000;
        let not_after = now + NODE_CERT_DAYS * 86_400_000;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node);
        params.distinguished_name = dn;
        let uri = format!("{NODE_URI_PREFIX}{node}");
        params.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(cert_err)?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = offset(not_before);
        params.not_after = offset(not_after);
        let serial = random_serial()?;
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(cert_err)?;
        let mut state = lock(&self.state);
        let mut certs = state.certs.clone();
        // Expired entries are of no further use to anyone.
        certs.certs.retain(|c| c.not_after_ms > now);
        certs.certs.push(IssuedCert {
            serial: serial_hex,
            node: node.to_string(),
            issued_ms: now,
            not_after_ms: not_after,
            revoked: false,
        });
        save_json(&self.paths.certs(), &certs)?;
        state.certs = certs;
        Ok(NodeCert {
            pem: cert.pem(),
            not_before_ms: not_before,
            not_after_ms: not_after,
        })
    }

    /// A certificate of `node` that is neither revoked nor expired, if any.
    pub fn live_cert(&self, node: &str) -> Option<IssuedCert> {
        let now = now_ms();
        lock(&self.state)
            .certs
            .certs
            .iter()
            .find(|c| c.node == node && !c.revoked && c.not_after_ms > now)
            .cloned()
    }

    /// Revokes every certificate of `node` and closes its live stream.
    /// Returns how many were revoked.
    pub fn remove_node(&self, node: &str) -> Result<u32, PkiError> {
        let mut state = lock(&self.state);
        let mut certs = state.certs.clone();
        let mut n = 0;
        let mut serials = Vec::new();
        for c in certs
            .certs
            .iter_mut()
            .filter(|c| c.node == node && !c.revoked)
        {
            c.revoked = true;
            serials.push(c.serial.clone());
            n += 1;
        }
        save_json(&self.paths.certs(), &certs)?;
        state.certs = certs;
        if let Ok(mut r) = self.revoked.write() {
            r.extend(serials);
        }
        let _ = self.removed.send(node.to_string());
        Ok(n)
    }
}

/// The node name bound into a certificate this CA issued, and its serial (hex).
pub fn node_identity(cert: &CertificateDer<'_>) -> Option<(String, String)> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, x509) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let serial = hex::encode(x509.raw_serial());
    let san = x509.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::URI(uri) => uri
            .strip_prefix(NODE_URI_PREFIX)
            .map(|node| (node.to_string(), serial.clone())),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_name_avahi_publishes_for_this_host_is_in_the_certificate() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let label = host.trim().split('.').next().unwrap().to_string();
        let names = super::default_server_names(&[]);
        assert!(names.contains(&format!("{label}.local")), "{names:?}");
        assert!(names.contains(&"localhost".to_string()), "{names:?}");
    }
}
