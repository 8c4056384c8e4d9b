//! Debian's real upsd and a real NUT driver, run from a private config
//! directory on a free loopback port, killed when dropped.
#![allow(clippy::expect_used)] // test code: a panic is the failure report
#![allow(dead_code)] // each test file uses its own part of the helpers

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The user upsd.users grants commands and SET to.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "s3cret";

pub struct Nut {
    pub dir: TempDir,
    pub port: u16,
    pub ups: String,
    driver_name: String,
    driver: Option<Child>,
    upsd: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Nut {
    /// Writes ups.conf (one UPS `ups` served by `driver` with `options`),
    /// upsd.conf and upsd.users, then starts the driver and upsd.
    pub fn start(ups: &str, driver: &str, options: &str) -> Nut {
        nodewarden_tests::setup::require("nut", nodewarden_tests::setup::NUT);
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        fs::create_dir(dir.path().join("state")).expect("state dir");
        fs::write(dir.path().join("nut.conf"), "MODE=standalone\n").expect("nut.conf");
        fs::write(
            dir.path().join("ups.conf"),
            format!("[{ups}]\n  driver = {driver}\n{options}\n  desc = \"nodewarden test\"\n"),
        )
        .expect("ups.conf");
        fs::write(
            dir.path().join("upsd.conf"),
            format!("LISTEN 127.0.0.1 {port}\n"),
        )
        .expect("upsd.conf");
        fs::write(
            dir.path().join("upsd.users"),
            format!(
                "[{ADMIN_USER}]\n  password = {ADMIN_PASSWORD}\n  instcmds = ALL\n  actions = SET\n\
                 [watcher]\n  password = watch\n  upsmon secondary\n"
            ),
        )
        .expect("upsd.users");
        let mut nut = Nut {
            dir,
            port,
            ups: ups.to_string(),
            driver_name: driver.to_string(),
            driver: None,
            upsd: None,
        };
        nut.start_driver();
        nut.start_upsd();
        nut
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// "ups@127.0.0.1:port".
    pub fn addr(&self) -> String {
        format!("{}@127.0.0.1:{}", self.ups, self.port)
    }

    fn command(&self, program: &str, log: &str) -> Command {
        let mut c = Command::new(program);
        let state = self.path("state");
        c.env("NUT_CONFPATH", self.dir.path())
            .env("NUT_STATEPATH", &state)
            .env("NUT_ALTPIDPATH", &state)
            .stdin(Stdio::null())
            .stdout(fs::File::create(self.path(log)).expect("log"))
            .stderr(fs::File::create(self.path(&format!("{log}.err"))).expect("log"));
        c
    }

    pub fn start_driver(&mut self) {
        let program = format!("/lib/nut/{}", self.driver_name);
        let child = self
            .command(&program, "driver.log")
            .args(["-a", &self.ups, "-u", "root", "-F"])
            .spawn()
            .expect("start the NUT driver");
        self.driver = Some(child);
    }

    pub fn stop_driver(&mut self) {
        if let Some(mut c) = self.driver.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn start_upsd(&mut self) {
        let child = self
            .command("/lib/nut/upsd", "upsd.log")
            .args(["-u", "root", "-F"])
            .spawn()
            .expect("start upsd");
        self.upsd = Some(child);
        self.wait_listening();
    }

    pub fn stop_upsd(&mut self) {
        if let Some(mut c) = self.upsd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "upsd did not listen:\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// Both programs' output, for failure messages.
    pub fn logs(&self) -> String {
        ["driver.log", "driver.log.err", "upsd.log", "upsd.log.err"]
            .iter()
            .map(|f| {
                format!(
                    "--- {f}\n{}",
                    fs::read_to_string(self.path(f)).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for Nut {
    fn drop(&mut self) {
        self.stop_upsd();
        self.stop_driver();
    }
}

/// Polls `check` every 200 ms until it gives Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(Duration::from_millis(200));
    }
}
