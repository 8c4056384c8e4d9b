//! Trust end to end, over real TLS on loopback with real processes: who may
//! join, stream and command, and what each refusal looks like.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nodewarden_proto::v1::agent_link_client::AgentLinkClient;
use nodewarden_proto::v1::{AgentMessage, GetNodeRequest, Hello, ListNodesRequest, agent_message};
use nodewarden_tests::{
    Collector, Proc, admin, agent_state_dir, agent_tls, eventually, free_port, join, join_with,
    start_agent, tls_channel,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(dir: &Path) -> rustls::RootCertStore {
    let ca = CertificateDer::from_pem_file(Collector::pki_dir(dir).join("ca.pem")).unwrap();
    let mut r = rustls::RootCertStore::empty();
    r.add(ca).unwrap();
    r
}

fn h2(mut c: rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
    c.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(c)
}

/// Trusts the real collector but presents no certificate.
fn no_certificate(dir: &Path) -> Arc<rustls::ClientConfig> {
    h2(rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(dir))
        .with_no_client_auth())
}

fn node_params(
    node: &str,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node);
    p.distinguished_name = dn;
    p.subject_alt_names = vec![SanType::URI(
        format!("nodewarden:node:{node}").try_into().unwrap(),
    )];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.not_before = not_before;
    p.not_after = not_after;
    p
}

/// Presents a certificate for `node` signed by `issuer`.
fn client_with(
    dir: &Path,
    node: &str,
    issuer: &Issuer<'_, KeyPair>,
    valid: (time::OffsetDateTime, time::OffsetDateTime),
) -> Arc<rustls::ClientConfig> {
    let key = KeyPair::generate().unwrap();
    let cert = node_params(node, valid.0, valid.1)
        .signed_by(&key, issuer)
        .unwrap();
    h2(rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(dir))
        .with_client_auth_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap())
}

fn our_ca(dir: &Path) -> Issuer<'static, KeyPair> {
    let pki = Collector::pki_dir(dir);
    let key = KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).unwrap()).unwrap();
    Issuer::from_ca_cert_pem(&std::fs::read_to_string(pki.join("ca.pem")).unwrap(), key).unwrap()
}

fn another_ca() -> Issuer<'static, KeyPair> {
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "nodewarden CA");
    p.distinguished_name = dn;
    Issuer::new(p, KeyPair::generate().unwrap())
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

/// Opens an AgentLink stream saying Hello as `node`; Ok once Welcome came.
async fn hello_as(url: &str, config: Arc<rustls::ClientConfig>, node: &str) -> Result<(), String> {
    let channel = tls_channel(url, config).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(AgentMessage {
        body: Some(agent_message::Body::Hello(Hello {
            node_name: node.into(),
            instance_id: 7,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut client = AgentLinkClient::new(channel);
    let mut inbound = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    match inbound.message().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("closed".into()),
        Err(s) => Err(format!("{:?}: {}", s.code(), s.message())),
    }
}

async fn node_names(c: &Collector) -> Vec<String> {
    let mut a = admin(&c.socket()).await.unwrap();
    a.list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes
        .into_iter()
        .map(|n| n.name)
        .collect()
}

async fn collector_log_says(c: &Collector, what: &str) {
    for _ in 0..50 {
        if c.proc.log_text().contains(what) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the collector's log never said {what:?}:\n{}",
        c.proc.log_text()
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_without_a_good_certificate_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Collector::start(d, free_port(), free_port()).await;

    // No certificate: TLS succeeds (Join needs that), the stream does not.
    let err = hello_as(&c.url(), no_certificate(d), "intruder")
        .await
        .unwrap_err();
    assert!(
        err.starts_with("Unauthenticated: a client certificate is required"),
        "{err}"
    );

    // Signed by another CA that copies our CA's name: refused at the handshake.
    let err = hello_as(
        &c.url(),
        client_with(
            d,
            "forged",
            &another_ca(),
            (now() - days(1), now() + days(1)),
        ),
        "forged",
    )
    .await
    .unwrap_err();
    assert!(!err.is_empty());
    collector_log_says(
        &c,
        "TLS handshake refused: invalid peer certificate: BadSignature",
    )
    .await;

    // Our CA, but expired.
    let err = hello_as(
        &c.url(),
        client_with(d, "old", &our_ca(d), (now() - days(100), now() - days(10))),
        "old",
    )
    .await
    .unwrap_err();
    assert!(!err.is_empty());
    collector_log_says(
        &c,
        "TLS handshake refused: invalid peer certificate: certificate expired",
    )
    .await;

    // Plaintext HTTP/2 to the TLS port: no gRPC answer at all.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", c.port))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3));
    let refused = match plain.connect().await {
        Err(_) => true,
        Ok(ch) => AgentLinkClient::new(ch)
            .session(tokio_stream::iter(Vec::<AgentMessage>::new()))
            .await
            .is_err(),
    };
    assert!(refused, "a plaintext client got a stream");
    collector_log_says(&c, "TLS handshake refused").await;

    // None of them got anything stored.
    assert!(
        node_names(&c).await.is_empty(),
        "{:?}",
        node_names(&c).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cannot_speak_for_another_node() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Collector::start(d, free_port(), free_port()).await;
    join(d, "worker-a", &c.url());
    let err = hello_as(&c.url(), agent_tls(d, "worker-a"), "server-1")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "PermissionDenied: this certificate belongs to node `worker-a`, not `server-1`"
    );
    collector_log_says(
        &c,
        "refusing stream: Hello names another node than the certificate",
    )
    .await;
    assert!(node_names(&c).await.is_empty());
    // Its own name works.
    hello_as(&c.url(), agent_tls(d, "worker-a"), "worker-a")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_is_cut_off_at_once_and_refused_after() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Collector::start(d, free_port(), free_port()).await;
    let agent = start_agent(d, "gone", &c.url(), "1s", &[]);
    let seq = || async {
        let mut a = admin(&c.socket()).await.ok()?;
        a.get_node(GetNodeRequest {
            name: "gone".into(),
        })
        .await
        .ok()?
        .into_inner()
        .latest
        .map(|s| s.seq)
    };
    eventually(Duration::from_secs(20), "samples from gone", || async {
        seq().await.filter(|s| *s >= 2)
    })
    .await;

    let out = c.cli(&["nodes", "remove", "gone"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("node gone removed: 1 certificate(s) revoked"),
        "{text}"
    );
    collector_log_says(&c, "closing stream: node removed, certificate revoked").await;

    // The agent keeps trying; every try is refused at the handshake, and no
    // sample arrives any more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = seq().await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        seq().await.unwrap(),
        after,
        "samples still stored after removal"
    );
    collector_log_says(&c, "invalid peer certificate: Revoked").await;
    let log = agent.log_text();
    assert!(log.contains("refused this node's certificate"), "{log}");
    let err = hello_as(&c.url(), agent_tls(d, "gone"), "gone")
        .await
        .unwrap_err();
    assert!(!err.is_empty());

    // Revocation survives a collector restart.
    drop(c);
    let c = Collector::start(d, free_port(), free_port()).await;
    let err = hello_as(&c.url(), agent_tls(d, "gone"), "gone")
        .await
        .unwrap_err();
    assert!(!err.is_empty());
    collector_log_says(&c, "invalid peer certificate: Revoked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_up_expired_and_wrong_tokens_join_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Collector::start(d, free_port(), free_port()).await;
    let addr = c.url();

    let once = c.cli(&["token", "create", "--uses", "1"]);
    let once = String::from_utf8_lossy(&once.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    let first = join_with(&d.join("a.toml"), &d.join("a"), "node-a", &addr, &once);
    assert!(first.status.success(), "{first:?}");
    let replay = join_with(&d.join("b.toml"), &d.join("b"), "node-b", &addr, &once);
    assert!(!replay.status.success());
    let stderr = String::from_utf8_lossy(&replay.stderr);
    assert!(
        stderr.contains("the collector refused to join this node: join token refused"),
        "{stderr}"
    );
    assert!(!d.join("b").join("node.pem").exists());
    collector_log_says(&c, "join refused: token used up").await;

    let short = c.cli(&["token", "create", "--ttl", "1s"]);
    let short = String::from_utf8_lossy(&short.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = join_with(&d.join("c.toml"), &d.join("c"), "node-c", &addr, &short);
    assert!(!late.status.success());
    collector_log_says(&c, "join refused: token expired").await;

    // A revoked token, and a guessed secret.
    let listed = String::from_utf8_lossy(&c.cli(&["token", "list"]).stdout).to_string();
    assert!(
        !listed.contains(once.rsplit('.').next().unwrap()),
        "token list shows a secret"
    );
    let good = c.token();
    let guessed = format!("{}.{}", good.rsplit_once('.').unwrap().0, "00".repeat(16));
    let out = join_with(&d.join("d.toml"), &d.join("d"), "node-d", &addr, &guessed);
    assert!(!out.status.success());
    collector_log_says(&c, "join refused: wrong secret").await;
    let id = good.rsplit("::").next().unwrap().split('.').next().unwrap();
    assert!(c.cli(&["token", "revoke", id]).status.success());
    let out = join_with(&d.join("e.toml"), &d.join("e"), "node-e", &addr, &good);
    assert!(!out.status.success());
    collector_log_says(&c, "join refused: no such token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_collector_cannot_enrol_or_command_an_agent() {
    let real_dir = tempfile::tempdir().unwrap();
    let rogue_dir = tempfile::tempdir().unwrap();
    let real = Collector::start(real_dir.path(), free_port(), free_port()).await;
    let rogue = Collector::start(rogue_dir.path(), free_port(), free_port()).await;
    let d = real_dir.path();

    // Joining the rogue with the real collector's token: its CA is not the one
    // the token names.
    let out = join_with(
        &d.join("x.toml"),
        &d.join("x"),
        "pi-1",
        &rogue.url(),
        &real.token(),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not hold the CA named in the join token (CA fingerprint mismatch)"),
        "{stderr}"
    );
    assert!(!d.join("x").join("node.pem").exists());

    // An agent joined to the real collector, pointed at the rogue: it never
    // opens a stream there, so the rogue has nothing to send commands on.
    join(d, "pi-2", &real.url());
    let agent = start_agent(d, "pi-2", &rogue.url(), "1s", &[]);
    eventually(Duration::from_secs(10), "the agent's refusal", || async {
        agent
            .log_text()
            .contains("is not signed by the CA this node joined")
            .then_some(())
    })
    .await;
    assert!(!rogue.proc.log_text().contains("agent connected"));
    assert!(node_names(&rogue).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_secrets_are_private_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Collector::start(d, free_port(), free_port()).await;
    join(d, "pi-1", &c.url());
    let pki = Collector::pki_dir(d);
    assert_eq!(mode(&pki), 0o700);
    for f in ["ca.key", "server.key", "tokens.json", "certs.json"] {
        assert_eq!(mode(&pki.join(f)), 0o600, "{f}");
    }
    let state = agent_state_dir(d, "pi-1");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("node.key")), 0o600);
    // The token's secret is nowhere on the collector's disk.
    let secret = c.token().rsplit('.').next().unwrap().to_string();
    for e in std::fs::read_dir(&pki).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(&secret));
    }
    // init again refuses to replace the CA.
    let out = std::process::Command::new(nodewarden_tests::bin("nodewarden"))
        .args(["init", "--config"])
        .arg(Collector::config_path(d))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a CA"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_mistakes_get_messages_that_say_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let mut c = Collector::start(d, port, free_port()).await;
    let token = c.token();

    // Nothing listening there.
    let out = join_with(
        &d.join("a.toml"),
        &d.join("a"),
        "pi",
        &format!("127.0.0.1:{}", free_port()),
        &token,
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("(connection refused): is the collector running there"),
        "{e}"
    );
    // A name that does not resolve.
    let out = join_with(
        &d.join("a.toml"),
        &d.join("a"),
        "pi",
        "no-such-collector.invalid:7150",
        &token,
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("cannot resolve `no-such-collector.invalid`"),
        "{e}"
    );
    // Plaintext.
    let out = join_with(
        &d.join("a.toml"),
        &d.join("a"),
        "pi",
        &format!("http://127.0.0.1:{port}"),
        &token,
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("is plaintext; the agent link is TLS only"),
        "{e}"
    );

    // A collector certificate without the address dialled, then one not
    // valid yet (this node's clock behind): re-sign server.pem with our CA.
    let pki = Collector::pki_dir(d);
    let ca_pem = std::fs::read_to_string(pki.join("ca.pem")).unwrap();
    let reissue = |names: Vec<SanType>, from: time::OffsetDateTime| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.subject_alt_names = names;
        p.not_before = from;
        p.not_after = from + days(30);
        let cert = p.signed_by(&key, &our_ca(d)).unwrap();
        std::fs::write(pki.join("server.pem"), format!("{}{ca_pem}", cert.pem())).unwrap();
        std::fs::write(pki.join("server.key"), key.serialize_pem()).unwrap();
    };
    c.proc.stop();
    reissue(
        vec![SanType::DnsName("collector.example".try_into().unwrap())],
        now() - days(1),
    );
    c = Collector::start(d, port, free_port()).await;
    let out = join_with(&d.join("a.toml"), &d.join("a"), "pi", &c.url(), &token);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("is not valid for `127.0.0.1`, the address dialled; it names DnsName(\"collector.example\")")
            || e.contains("is not valid for `127.0.0.1`, the address dialled; it names collector.example"),
        "{e}"
    );
    assert!(e.contains("nodewarden cert reissue --san 127.0.0.1"), "{e}");

    c.proc.stop();
    reissue(
        vec![SanType::IpAddress("127.0.0.1".parse().unwrap())],
        now() + time::Duration::hours(3),
    );
    c = Collector::start(d, port, free_port()).await;
    let out = join_with(&d.join("a.toml"), &d.join("a"), "pi", &c.url(), &token);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("the clocks differ by about 2 hours")
            || e.contains("the clocks differ by about 3 hours"),
        "{e}"
    );
    assert!(e.contains("timedatectl set-ntp true"), "{e}");
    drop(c);
}

#[test]
fn an_agent_config_with_http_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "node_name = \"pi\"\n\ncollector = \"http://10.0.0.2:7150\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(nodewarden_tests::bin("nodewarden-agent"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("agent.toml:3:1: key `collector`"), "{e}");
    assert!(e.contains("write `https://10.0.0.2:7150`"), "{e}");
}

/// A join token admits new nodes; it does not let its holder take over the
/// name (and so the commands and history) of a node that already joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cannot_take_over_a_joined_nodes_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Collector::start(d, free_port(), free_port()).await;
    let addr = c.url();
    let token = c.cli(&["token", "create", "--uses", "5"]);
    let token = String::from_utf8_lossy(&token.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();

    let first = join_with(&d.join("a.toml"), &d.join("a"), "pi-1", &addr, &token);
    assert!(first.status.success(), "{first:?}");
    let thief = join_with(&d.join("b.toml"), &d.join("b"), "pi-1", &addr, &token);
    assert!(!thief.status.success(), "{thief:?}");
    let stderr = String::from_utf8_lossy(&thief.stderr);
    assert!(
        stderr.contains("already holds a valid certificate")
            && stderr.contains("nodewarden nodes remove pi-1"),
        "{stderr}"
    );
    assert!(!d.join("b").join("node.pem").exists());

    // The operator's way to re-join a reinstalled node: remove it, then join.
    assert!(c.cli(&["nodes", "remove", "pi-1"]).status.success());
    let again = join_with(&d.join("b.toml"), &d.join("b"), "pi-1", &addr, &token);
    assert!(again.status.success(), "{again:?}");
}

/// Whoever may open the admin socket may read; only root, the collector's
/// own user and the admin group may operate (remove nodes, tokens, drills).
/// The caller is told apart by SO_PEERCRED, so this runs the real CLI as an
/// unprivileged uid (setpriv, util-linux).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_may_query_but_not_operate() {
    use std::os::unix::fs::PermissionsExt;
    if !std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    {
        panic!("this test switches to uid 65534 and must run as root (the test command does)");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Collector::start(d, free_port(), free_port()).await;
    join(d, "pi-1", &c.url());
    // Let uid 65534 reach the socket, as group membership would in a package.
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(c.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(nodewarden_tests::bin("nodewarden"))
            .arg("--socket")
            .arg(c.socket())
            .args(args)
            .output()
            .unwrap()
    };

    let read = as_nobody(&["nodes", "--json"]);
    assert!(read.status.success(), "{read:?}");
    let removed = as_nobody(&["nodes", "remove", "pi-1"]);
    assert!(!removed.status.success(), "{removed:?}");
    let stderr = String::from_utf8_lossy(&removed.stderr);
    assert!(
        stderr.contains("uid 65534 may only read") && stderr.contains("Operate"),
        "{stderr}"
    );
    // So may drills, arming, holds and UPS commands: operators' actions.
    for action in [
        &["drill"][..],
        &["power", "arm"],
        &["power", "disarm"],
        &["power", "hold"],
        &["power", "resume"],
        &["ups", "test", "rack"],
        &["ups", "beeper", "rack"],
    ] {
        let out = as_nobody(action);
        assert!(!out.status.success(), "{action:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("may only read"),
            "{action:?}: {out:?}"
        );
    }
    // pi-1 still holds its certificate: the refused removal changed nothing.
    let token = c.cli(&["token", "create"]);
    let token = String::from_utf8_lossy(&token.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    let thief = join_with(&d.join("x.toml"), &d.join("x"), "pi-1", &c.url(), &token);
    assert!(!thief.status.success(), "{thief:?}");
    // Root may operate.
    assert!(c.cli(&["nodes", "remove", "pi-1"]).status.success());
}

/// Installed and started before `nodewarden init` (the package's postinst
/// does that): the collector neither exits nor crash-loops into systemd's
/// start limit. It tells systemd it is waiting (STATUS=, READY=1 and the
/// watchdog), and starts serving by itself once `init` has run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_started_before_init_waits_for_it_then_serves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (port, metrics_port) = (free_port(), free_port());
    Collector::write_config(d, port, metrics_port, "1s", "");
    let notify = std::os::unix::net::UnixDatagram::bind(d.join("notify.sock")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut serve = Proc::spawn(
        std::process::Command::new(nodewarden_tests::bin("nodewarden"))
            .args(["serve", "--config"])
            .arg(Collector::config_path(d))
            .env("NOTIFY_SOCKET", d.join("notify.sock")),
        d.join("serve.log"),
    );
    let mut said = String::new();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    while std::time::Instant::now() < end && !said.contains("WATCHDOG=1") {
        if let Ok(n) = notify.recv(&mut buf) {
            said.push_str(&String::from_utf8_lossy(&buf[..n]));
            said.push('\n');
        }
    }
    assert!(
        said.contains("STATUS=waiting for `nodewarden init`: no CA in") && said.contains("READY=1"),
        "{said}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "the collector exited before init: {}",
        serve.log_text()
    );
    assert!(
        serve.log_text().contains("no CA in"),
        "{}",
        serve.log_text()
    );
    Collector::run_init(d);
    let socket = d.join("admin.sock");
    eventually(Duration::from_secs(15), "the collector serving", || {
        let socket = socket.clone();
        async move { admin(&socket).await.ok() }
    })
    .await;
    assert!(serve.log_text().contains("the CA is there: starting"));
}
