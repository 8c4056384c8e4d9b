//! The agent's Multicast DNS fallback against the real avahi-daemon, the
//! responder a collector host on Raspberry Pi OS runs. Each test runs on a
//! thread of its own moved into a private network namespace (so nothing
//! reaches a real network and no avahi-daemon of the host answers): a veth
//! pair, avahi on one end publishing `k3s-server.local` from a hosts file,
//! and the agent's resolver sending its query to 224.0.0.251 as on a board.
//! Needs root (a network namespace), avahi-daemon and iproute2, which
//! tests/setup/install-test-tools.sh installs (scripts/test.sh runs it before
//! any test: a test never installs, two at once would fight over apt's lock).
#![allow(clippy::expect_used)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodewarden_agent::mdns;
use nodewarden_agent::trust;

/// Where avahi's interface sits; the published name points at `SERVER_V4`,
/// which is on the loopback interface so something can listen there.
const AVAHI_ADDR: &str = "10.77.0.1/24";
const SERVER_V4: &str = "10.77.0.20";
const SERVER_V6: &str = "fd00:77::20";

/// Debian's avahi-daemon; `NODEWARDEN_TEST_AVAHI_DAEMON` names another
/// (and lets the missing-daemon message be tried without uninstalling it).
fn avahi_daemon() -> PathBuf {
    std::env::var_os("NODEWARDEN_TEST_AVAHI_DAEMON")
        .map_or_else(|| PathBuf::from("/usr/sbin/avahi-daemon"), PathBuf::from)
}

/// Fails, naming the setup script, when avahi-daemon or `ip` is missing.
fn require_tools() {
    const SETUP: &str = "sudo sh tests/setup/install-test-tools.sh avahi";
    let daemon = avahi_daemon();
    assert!(
        daemon.is_file(),
        "{} not found: this test runs the real avahi-daemon. Install the test tools first, \
         as scripts/test.sh does: {SETUP}",
        daemon.display()
    );
    assert!(
        Command::new("ip").arg("-V").output().is_ok(),
        "`ip` (iproute2) not found. Install the test tools first, as scripts/test.sh does: {SETUP}"
    );
}

fn ip(args: &str) {
    let out = Command::new("ip")
        .args(args.split(' '))
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// avahi-daemon in its own mount namespace (its pid file and socket in a
/// private /run, our hosts file as /etc/avahi/hosts), killed on drop.
struct Avahi {
    child: Child,
    dir: tempfile::TempDir,
}

impl Avahi {
    fn start() -> Avahi {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("avahi-daemon.conf"),
            "[server]\nhost-name=nwtest-avahi\ndomain-name=local\nuse-ipv4=yes\nuse-ipv6=no\n\
             allow-interfaces=nw0\nenable-dbus=no\n\
             [wide-area]\nenable-wide-area=no\n\
             [publish]\npublish-hinfo=no\npublish-workstation=no\npublish-aaaa-on-ipv4=yes\n",
        )
        .expect("write config");
        // As an operator would publish the collector's name (the same lines
        // as in /etc/hosts), an IPv6 address besides the IPv4 one.
        std::fs::write(
            dir.path().join("hosts"),
            format!("{SERVER_V6} k3s-server.local\n{SERVER_V4} k3s-server.local\n"),
        )
        .expect("write hosts");
        let log = std::fs::File::create(dir.path().join("log")).expect("log file");
        let child = Command::new("unshare")
            .args(["--mount", "sh", "-ec"])
            .arg(
                "mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /etc/avahi; \
                 cp \"$0/hosts\" /etc/avahi/hosts; \
                 exec \"$1\" -f \"$0/avahi-daemon.conf\" --no-drop-root --no-chroot --no-rlimits --no-proc-title",
            )
            .arg(dir.path())
            .arg(avahi_daemon())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start avahi-daemon");
        let mut avahi = Avahi { child, dir };
        avahi.wait_for("successfully established", 2);
        avahi
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Waits until the log says `what` `times` times: both static records
    /// probed and announced, so avahi answers for them.
    fn wait_for(&mut self, what: &str, times: usize) {
        let start = Instant::now();
        while self.log().matches(what).count() < times {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("avahi-daemon exited ({status}):\n{}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "avahi-daemon did not publish k3s-server.local within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Avahi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `test` on a thread of its own in a new network namespace holding a
/// veth pair nw0-nw1 (avahi on nw0) and avahi-daemon, on a tokio runtime
/// whose sockets are all in that namespace.
fn with_avahi<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    require_tools();
    let thread = std::thread::spawn(move || {
        // Only this thread moves (a network namespace is per thread); the
        // processes it starts and the threads it spawns start in it.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect(
            "a private network namespace needs root (CAP_SYS_ADMIN): run as root, as scripts/test.sh does",
        );
        ip("link set lo up");
        ip("link add nw0 type veth peer name nw1");
        ip(&format!("addr add {AVAHI_ADDR} dev nw0"));
        ip("link set nw0 up");
        ip("link set nw1 up");
        ip(&format!("addr add {SERVER_V4}/32 dev lo"));
        let _avahi = Avahi::start();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(test());
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn avahi_answers_the_agents_query_for_a_local_name() {
    with_avahi(|| async {
        let addrs = mdns::resolve_local("K3S-Server.local", 7443)
            .await
            .expect("avahi answers");
        let want: Vec<SocketAddr> = vec![
            format!("{SERVER_V4}:7443").parse().unwrap(),
            format!("[{SERVER_V6}]:7443").parse().unwrap(),
        ];
        assert_eq!(addrs, want, "IPv4 first, then IPv6");
        // The NUT client's blocking lookup takes the same way round the
        // system resolver, which knows nothing of .local here.
        let addrs = mdns::lookup_host_blocking("k3s-server.local.", 3493).expect("resolves");
        assert_eq!(addrs[0], format!("{SERVER_V4}:3493").parse().unwrap());
    });
}

#[test]
fn a_name_nobody_publishes_fails_naming_both_resolvers() {
    with_avahi(|| async {
        let start = Instant::now();
        let err = mdns::lookup_host("absent-box.local", 7150)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot resolve `absent-box.local`"), "{err}");
        assert!(err.contains("the system resolver: "), "{err}");
        assert!(
            err.contains("no Multicast DNS answer for `absent-box.local` within 3 s"),
            "{err}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    });
}

#[test]
fn the_agent_dials_the_collector_address_avahi_publishes() {
    with_avahi(|| async {
        let listener = tokio::net::TcpListener::bind((SERVER_V4, 0))
            .await
            .expect("listen on the published address");
        let port = listener.local_addr().unwrap().port();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let url = format!("https://k3s-server.local:{port}");
        let connect = tokio::spawn(async move { trust::connect(&url, Arc::new(config)).await });
        let (tcp, from) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("the agent connects within 10 s")
            .expect("accept");
        assert_eq!(
            from.ip().to_string(),
            SERVER_V4,
            "dialled from the namespace"
        );
        // No collector here, only the proof the agent came to the right
        // address: it gets no TLS answer and says so.
        drop(tcp);
        let err = connect.await.unwrap().unwrap_err().to_string();
        assert!(
            err.contains(&format!("cannot connect to k3s-server.local:{port}")),
            "{err}"
        );
    });
}
