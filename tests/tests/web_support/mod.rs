//! The Python WebDriver scripts beside this file, run from a test: each
//! talks over stdin/stdout (READY, then what it saw, an empty line at the
//! end) and exits 1 with the reason on stderr when a check fails.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // test code

use std::io::{BufRead, BufReader, Lines, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};

/// A running script.
pub struct Script {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every line it printed so far.
    pub said: Vec<String>,
}

impl Script {
    /// Starts `web_support/<name>` with `args`.
    pub fn start(name: &str, args: &[&str]) -> Script {
        let path = format!("{}/tests/web_support/{name}", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new("/usr/bin/python3")
            .arg(path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Script {
            child,
            stdin,
            lines,
            said: Vec::new(),
        }
    }

    /// Its next line ("" once it has ended).
    pub fn next_line(&mut self) -> String {
        let line = self.lines.next().and_then(Result::ok).unwrap_or_default();
        self.said.push(line.clone());
        line
    }

    /// Tells it something happened.
    pub fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
    }

    /// Reads to its end; its exit status and what it wrote on stderr.
    pub fn finish(mut self) -> (ExitStatus, String, Vec<String>) {
        while !self.next_line().is_empty() {}
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (self.child.wait().unwrap(), stderr, self.said)
    }
}
