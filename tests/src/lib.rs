//! Support for the end-to-end tests: real `nodewarden` and `nodewarden-agent`
//! processes on loopback, talked to through the real Admin API.
//!
//! The binaries are the ones cargo built next to the test executable
//! (`target/debug`); the test command builds them first (`cargo build --workspace --bins`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fakekube;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodewarden_proto::v1::admin_client::AdminClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// Path of a workspace binary built next to this test executable.
pub fn bin(name: &str) -> PathBuf {
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

/// A collector on loopback with its own data dir and socket.
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

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts (or restarts, keeping data) a collector in `dir`.
    pub async fn start(dir: &Path, port: u16, metrics_port: u16) -> Collector {
        let mut f = std::fs::File::create(Self::config_path(dir)).unwrap();
        writeln!(
            f,
            "listen = \"127.0.0.1:{port}\"\nadmin_socket = \"{}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
             data_dir = \"{}\"\ncommit_interval = \"100ms\"\noffline_after = \"5s\"",
            dir.join("admin.sock").display(),
            dir.join("data").display()
        )
        .unwrap();
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
}

/// An agent process reading this machine (or a fixture tree).
pub fn start_agent(
    dir: &Path,
    name: &str,
    collector: &str,
    interval: &str,
    extra: &[&str],
) -> Proc {
    let log = dir.join(format!("agent-{name}.log"));
    let mut cmd = Command::new(bin("nodewarden-agent"));
    cmd.arg("--config")
        .arg(dir.join("no-agent-config.toml"))
        .args([
            "--collector",
            collector,
            "--node-name",
            name,
            "--sample-interval",
            interval,
        ])
        .args(extra);
    // An absent explicit config is an error, so give it an empty one.
    std::fs::write(dir.join("no-agent-config.toml"), "").unwrap();
    Proc::spawn(&mut cmd, log)
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
