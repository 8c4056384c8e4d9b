//! Support for the end-to-end tests: real `nodewarden` and `nodewarden-agent`
//! processes on loopback, talked to through the real Admin API.
//!
//! The binaries are the ones cargo built next to the test executable
//! (`target/debug`); the test command builds them first (`cargo build --workspace --bins`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fakekube;
pub mod setup;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodewarden_proto::v1::admin_client::AdminClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// Path of a workspace binary built next to this test executable.
///
/// `NODEWARDEN_TEST_AGENT` names another agent binary for every test that
/// runs one (the packaged static musl build, say).
pub fn bin(name: &str) -> PathBuf {
    if name == "nodewarden-agent"
        && let Some(agent) = std::env::var_os("NODEWARDEN_TEST_AGENT")
    {
        return PathBuf::from(agent);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}

/// A TCP port free right now on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns Some, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A process that is killed when dropped; its stderr goes to a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .env("NODEWARDEN_LOG", "info")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child, log }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        // SAFETY-free: kill(2) through libc is a plain syscall wrapper.
        let pid = self.child.id() as i32;
        unsafe_free_kill(pid, libc::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(10) {
                self.kill_hard();
                panic!(
                    "process {pid} ignored SIGTERM for 10 s; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill_hard();
        }
    }
}

fn unsafe_free_kill(pid: i32, signal: i32) {
    // `kill` from util-linux keeps this crate free of unsafe code.
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// The harness's collectors commit every 100 ms, each commit durable and
/// acked at once unless a test asks for a longer `sync_interval`.
const TEST_SYNC: &str = "100ms";

/// A copy of the board fixture tree `board` (`pi4`, `x86-amd`, ...) in
/// `dir`, for an agent's `--sysroot` that a test may change.
pub fn copy_board(dir: &Path, board: &str) -> PathBuf {
    let to = dir.join(board);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/boards")
        .join(board);
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&fixture)
        .arg(&to)
        .status()
        .unwrap();
    assert!(copied.success(), "cp -a {}", fixture.display());
    to
}

/// In a copied `pi4` tree: hwmon's rpi_volt under-voltage alarm ("1\n" sets it).
pub const PI4_UNDER_VOLTAGE_ALARM: &str =
    "sys/devices/platform/soc/soc:firmware/raspberrypi-hwmon/hwmon/hwmon1/in0_lcrit_alarm";

/// A collector on loopback with its own data dir and socket. Its PKI
/// (`nodewarden init`) is made on first start; the join token is kept in
/// `<dir>/join-token` for [`start_agent`] and [`join`].
pub struct Collector {
    pub proc: Proc,
    pub dir: PathBuf,
    pub port: u16,
    pub metrics_port: u16,
}

impl Collector {
    pub fn config_path(dir: &Path) -> PathBuf {
        dir.join("collector.toml")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    /// The agent link's address (TLS only).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// `<dir>/data/pki`: ca.pem, ca.key, server.pem, server.key, tokens.json, certs.json.
    pub fn pki_dir(dir: &Path) -> PathBuf {
        dir.join("data").join("pki")
    }

    /// The join token `nodewarden init` printed (24 h, unlimited uses).
    pub fn token(&self) -> String {
        token_of(&self.dir)
    }

    /// Writes the config and runs `nodewarden init` unless the PKI exists.
    /// Returns init's stdout ("" when it already existed).
    pub fn init(dir: &Path, port: u16, metrics_port: u16) -> String {
        Self::init_with(dir, port, metrics_port, "")
    }

    /// `init` with `extra` TOML (tables such as `[power]`) after the base keys.
    pub fn init_with(dir: &Path, port: u16, metrics_port: u16, extra: &str) -> String {
        Self::init_synced(dir, port, metrics_port, TEST_SYNC, extra)
    }

    /// `init_with`, the commits made durable (and acked) every `sync`
    /// instead of at each 100 ms commit.
    pub fn init_synced(
        dir: &Path,
        port: u16,
        metrics_port: u16,
        sync: &str,
        extra: &str,
    ) -> String {
        Self::write_config(dir, port, metrics_port, sync, extra);
        if Self::pki_dir(dir).join("ca.key").exists() {
            return String::new();
        }
        Self::run_init(dir)
    }

    /// `init_synced` without the init: the tests' collector.toml.
    pub fn write_config(dir: &Path, port: u16, metrics_port: u16, sync: &str, extra: &str) {
        let mut f = std::fs::File::create(Self::config_path(dir)).unwrap();
        writeln!(
            f,
            "listen = \"127.0.0.1:{port}\"\nadmin_socket = \"{}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
             data_dir = \"{}\"\ncommit_interval = \"100ms\"\nsync_interval = \"{sync}\"\noffline_after = \"5s\"",
            dir.join("admin.sock").display(),
            dir.join("data").display()
        )
        .unwrap();
        writeln!(f, "{extra}").unwrap();
    }

    /// `nodewarden init` with the config in `dir`; keeps the token it
    /// printed in `<dir>/join-token` and returns its stdout.
    pub fn run_init(dir: &Path) -> String {
        let out = Command::new(bin("nodewarden"))
            .arg("init")
            .arg("--config")
            .arg(Self::config_path(dir))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "nodewarden init failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = stdout
            .lines()
            .find(|l| l.starts_with("NW1::"))
            .unwrap_or_else(|| panic!("no token in init's output:\n{stdout}"));
        std::fs::write(dir.join("join-token"), token).unwrap();
        stdout
    }

    /// Starts (or restarts, keeping data and PKI) a collector in `dir`.
    pub async fn start(dir: &Path, port: u16, metrics_port: u16) -> Collector {
        Self::start_with(dir, port, metrics_port, "").await
    }

    /// `start` with `extra` TOML appended to the collector's config.
    pub async fn start_with(dir: &Path, port: u16, metrics_port: u16, extra: &str) -> Collector {
        Self::start_synced(dir, port, metrics_port, TEST_SYNC, extra).await
    }

    /// `start_with`, the commits made durable (and acked) every `sync`.
    pub async fn start_synced(
        dir: &Path,
        port: u16,
        metrics_port: u16,
        sync: &str,
        extra: &str,
    ) -> Collector {
        Self::init_synced(dir, port, metrics_port, sync, extra);
        let log = dir.join(format!(
            "collector-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let proc = Proc::spawn(
            Command::new(bin("nodewarden"))
                .arg("serve")
                .arg("--config")
                .arg(Self::config_path(dir)),
            log,
        );
        let c = Collector {
            proc,
            dir: dir.to_path_buf(),
            port,
            metrics_port,
        };
        let socket = c.socket();
        eventually(
            Duration::from_secs(15),
            "the collector's admin socket",
            || {
                let socket = socket.clone();
                async move { admin(&socket).await.ok() }
            },
        )
        .await;
        c
    }

    /// `cli`, as (exit status success, stdout then stderr).
    pub fn cli_text(&self, args: &[&str]) -> (bool, String) {
        let out = self.cli(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Runs the `nodewarden` CLI against this collector's socket.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin("nodewarden"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .unwrap()
    }
}

/// The token `nodewarden init` printed for the collector in `dir`.
pub fn token_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("join-token")).unwrap_or_else(|_| {
        panic!(
            "no join token in {}: start the collector first",
            dir.display()
        )
    })
}

/// Where the agent called `name` keeps its identity.
pub fn agent_state_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("agent-{name}"))
}

/// The agent `name`'s config file (join writes `collector` and `state_dir` in it).
pub fn agent_config(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("agent-{name}.toml"))
}

/// Runs `nodewarden-agent --config CONFIG join ADDR TOKEN --node-name NAME
/// --state-dir STATE` and returns what it did, success or not.
pub fn join_with(
    config: &Path,
    state: &Path,
    name: &str,
    addr: &str,
    token: &str,
) -> std::process::Output {
    Command::new(bin("nodewarden-agent"))
        .arg("--config")
        .arg(config)
        .args(["join", addr, token, "--node-name", name, "--state-dir"])
        .arg(state)
        .env("NODEWARDEN_LOG", "warn")
        .output()
        .unwrap()
}

/// Joins agent `name` to the collector at `collector` (an https URL) with the
/// token in `dir`; panics with join's output if it fails.
pub fn join(dir: &Path, name: &str, collector: &str) {
    let addr = collector.trim_start_matches("https://");
    let out = join_with(
        &agent_config(dir, name),
        &agent_state_dir(dir, name),
        name,
        addr,
        &token_of(dir),
    );
    assert!(
        out.status.success(),
        "join of {name} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Debian's upsmon (`-p -F`, extra `args` after) in a private mount
/// namespace: NUT 2.8.0's upsmon keeps its PID file in /run/nut whatever
/// NUT_PIDPATH says, and a second one refuses to start while the first
/// lives, so each gets its own tmpfs /run/nut. Set NUT_CONFPATH and the
/// state paths on the returned command.
pub fn upsmon_command(args: &[&str]) -> Command {
    let mut upsmon = Command::new("unshare");
    upsmon
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mkdir -p /run/nut && mount -t tmpfs tmpfs /run/nut && exec \"$0\" \"$@\"",
            "/lib/nut/upsmon",
            "-p",
            "-F",
        ])
        .args(args);
    upsmon
}

/// Debian's upsmon as a secondary (`monuser`/`secret`, as the tests' NUT
/// server users are) watching `target` (`ups@host:port`), polling every
/// second, with a SHUTDOWNCMD that writes the Unix ns it ran at to
/// `<dir>/shutdown-ran`. Its files and log are in `dir`.
pub struct Upsmon {
    pub proc: Proc,
    pub ran: PathBuf,
}

impl Upsmon {
    pub fn secondary(dir: &Path, target: &str) -> Upsmon {
        std::fs::create_dir_all(dir).unwrap();
        let ran = dir.join("shutdown-ran");
        std::fs::write(dir.join("nut.conf"), "MODE=netclient\n").unwrap();
        std::fs::write(
            dir.join("upsmon.conf"),
            format!(
                "MONITOR {target} 1 monuser secret secondary\nMINSUPPLIES 1\n\
                 SHUTDOWNCMD \"/bin/sh -c 'date +%s%N > {}'\"\n\
                 POLLFREQ 1\nPOLLFREQALERT 1\nDEADTIME 15\nFINALDELAY 0\nHOSTSYNC 5\n\
                 POWERDOWNFLAG {}\n",
                ran.display(),
                dir.join("killpower").display()
            ),
        )
        .unwrap();
        let proc = Proc::spawn(
            upsmon_command(&["-D"])
                .env("NUT_CONFPATH", dir)
                .env("NUT_PIDPATH", dir)
                .env("NUT_STATEPATH", dir)
                .env("NUT_ALTPIDPATH", dir),
            dir.join("upsmon.log"),
        );
        Upsmon { proc, ran }
    }

    /// When its SHUTDOWNCMD ran (Unix ns), if it has.
    pub fn shutdown_at_ns(&self) -> Option<u128> {
        std::fs::read_to_string(&self.ran)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

/// An agent `ups-host` reading one Megatec UPS `rack` on `link` (a
/// simulator's pty), polled every second, joined to `collector` first.
pub fn start_ups_agent(
    dir: &Path,
    collector: &Collector,
    link: &Path,
    sample_interval: &str,
) -> Proc {
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "collector = \"{}\"\nnode_name = \"ups-host\"\nsample_interval = \"{sample_interval}\"\n\n\
             [[ups]]\nname = \"rack\"\nprotocol = \"megatec\"\nport = \"{}\"\npoll_interval = \"1s\"\n",
            collector.url(),
            link.display()
        ),
    )
    .unwrap();
    let joined = join_with(
        &config,
        &dir.join("agent-state"),
        "ups-host",
        &collector.url(),
        &collector.token(),
    );
    assert!(joined.status.success(), "{joined:?}");
    Proc::spawn(
        Command::new(bin("nodewarden-agent"))
            .arg("--config")
            .arg(&config),
        dir.join("agent.log"),
    )
}

/// An agent process reading this machine (or a fixture tree). Joins first
/// (with the token in `dir`) unless `name` has joined already.
pub fn start_agent(
    dir: &Path,
    name: &str,
    collector: &str,
    interval: &str,
    extra: &[&str],
) -> Proc {
    start_agent_env(dir, name, collector, interval, extra, &[])
}

/// [`start_agent`] with these environment variables set (e.g. a `PATH` with
/// stand-ins for systemctl or busctl first).
pub fn start_agent_env(
    dir: &Path,
    name: &str,
    collector: &str,
    interval: &str,
    extra: &[&str],
    env: &[(&str, String)],
) -> Proc {
    if !agent_state_dir(dir, name).join("node.pem").exists() {
        join(dir, name, collector);
    }
    let log = dir.join(format!("agent-{name}.log"));
    // The harness's collector calls a node offline after 5 s of silence
    // (short, for test speed): each sample goes as taken unless the test
    // asks for batches, so silence means a stopped or frozen agent.
    let send_each = if extra.contains(&"--send-interval") {
        &[][..]
    } else {
        &["--send-interval", "1s"][..]
    };
    let mut cmd = Command::new(bin("nodewarden-agent"));
    cmd.arg("--config")
        .arg(agent_config(dir, name))
        .args([
            "--collector",
            collector,
            "--node-name",
            name,
            "--sample-interval",
            interval,
        ])
        .args(send_each)
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    Proc::spawn(&mut cmd, log)
}

/// Mutual-TLS client config of a joined agent, for tests that speak the
/// protocol themselves.
pub fn agent_tls(dir: &Path, name: &str) -> std::sync::Arc<rustls::ClientConfig> {
    nodewarden_agent::trust::Identity::at(&agent_state_dir(dir, name))
        .client_config()
        .unwrap()
}

/// A channel to the collector over TLS with `config` (no plaintext path).
pub async fn tls_channel(
    url: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Result<Channel, String> {
    nodewarden_agent::trust::connect(url, config)
        .await
        .map_err(|e| e.to_string())
}

/// Admin API client over the collector's Unix socket.
pub async fn admin(socket: &Path) -> Result<AdminClient<Channel>, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::try_from("http://localhost")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await?;
    Ok(AdminClient::new(channel))
}
