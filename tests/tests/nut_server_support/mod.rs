//! A collector with its NUT server on, one agent reading a simulated
//! Megatec UPS named `rack`, and helpers to talk NUT to it: Debian's
//! clients (upsc, upscmd, upsrw, upsmon) and raw lines.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // test code

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use nodewarden_agent::ups::sim::megatec::{MegatecDialect, MegatecResponder};
use nodewarden_agent::ups::sim::{SimHandle, SimUps};
use nodewarden_tests::{Collector, Proc, eventually, free_port};
use tempfile::TempDir;

/// The programs these tests run (Debian nut-client, python3-nut).
pub const CLIENTS: &[&str] = &[
    "/usr/bin/upsc",
    "/usr/bin/upscmd",
    "/usr/bin/upsrw",
    "/usr/bin/upslog",
    "/lib/nut/upsmon",
    "/usr/lib/python3/dist-packages/PyNUT.py",
];

pub const ADMIN: (&str, &str) = ("admin", "s3cret");

/// The collector's `[nut_server]` for these tests; `tuning` adds keys.
pub fn nut_config(port: u16, tuning: &str) -> String {
    format!(
        "[nut_server]\nlisten = \"127.0.0.1:{port}\"\n{tuning}\n\
         [nut_server.alias]\nups = \"rack\"\n\
         [[nut_server.user]]\nname = \"monuser\"\npassword = \"secret\"\nupsmon = \"secondary\"\n\
         [[nut_server.user]]\nname = \"{}\"\npassword = \"{}\"\nupsmon = \"primary\"\n\
         instcmds = [\"test.battery.start.quick\", \"beeper.toggle\"]\n",
        ADMIN.0, ADMIN.1
    )
}

pub struct Rig {
    pub dir: TempDir,
    pub sim: SimHandle,
    pub collector: Collector,
    pub agent: Proc,
    pub nut_port: u16,
}

impl Rig {
    /// Starts it all and waits until upsc reads `rack` on line.
    pub async fn start(tuning: &str) -> Rig {
        nodewarden_tests::setup::require("nutclients", CLIENTS);
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("ups0");
        let sim = SimUps::spawn(MegatecResponder::new(MegatecDialect::default()), &link).unwrap();
        let nut_port = free_port();
        let collector = Collector::start_with(
            dir.path(),
            free_port(),
            free_port(),
            &nut_config(nut_port, tuning),
        )
        .await;
        let agent = nodewarden_tests::start_ups_agent(dir.path(), &collector, &link, "1s");
        let rig = Rig {
            dir,
            sim,
            collector,
            agent,
            nut_port,
        };
        let ups = rig.ups("rack");
        eventually(Duration::from_secs(30), "upsc reads rack on line", || {
            let ups = ups.clone();
            async move { upsc(&[&ups, "ups.status"]).filter(|s| s.contains("OL")) }
        })
        .await;
        rig
    }

    /// "name@127.0.0.1:port".
    pub fn ups(&self, name: &str) -> String {
        format!("{name}@127.0.0.1:{}", self.nut_port)
    }

    /// A raw connection to the NUT server.
    pub fn connect(&self) -> NutLine {
        NutLine::from_std(TcpStream::connect(("127.0.0.1", self.nut_port)).unwrap())
    }
}

/// upsc's stdout when it succeeded, else None.
pub fn upsc(args: &[&str]) -> Option<String> {
    let out = Command::new("upsc").args(args).output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A program's stdout and stderr together, and whether it succeeded.
pub fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program).args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// One NUT client connection, line by line.
pub struct NutLine {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl NutLine {
    /// Wraps a connected socket.
    pub fn from_std(s: TcpStream) -> NutLine {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        NutLine {
            reader: BufReader::new(s.try_clone().unwrap()),
            stream: s,
        }
    }

    /// Sends `line` and returns the first reply line (without newline);
    /// "" when the server closed the connection.
    pub fn say(&mut self, line: &str) -> String {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        self.read()
    }

    pub fn read(&mut self) -> String {
        let mut reply = String::new();
        match self.reader.read_line(&mut reply) {
            Ok(_) => reply.trim_end().to_string(),
            Err(e) => format!("<{e}>"),
        }
    }
}
