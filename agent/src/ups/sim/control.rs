//! Scripting a running simulation from another process: a Unix socket that
//! takes one command per line and answers one or more lines.
//!
//! ```text
//! mains off | mains on       cut or restore mains
//! load <percent>             set the load
//! charge <percent>           set the battery charge
//! silent on | silent off     stop answering entirely (cable pulled)
//! noise <bytes>              put that many noise bytes before each reply
//! delay <ms>                 delay each reply
//! status                     key=value lines of the state, then "ok"
//! effects                    commands received so far, one a line, then "ok"
//! ```
//!
//! Every command is answered "ok" or "error: <why>". Try it with
//! `socat - UNIX-CONNECT:/tmp/ups0.ctl` or `echo 'mains off' | nc -UN ...`.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{SimEffect, SimState};

/// Applies one control line; returns the reply (without the final newline).
pub fn apply_line(line: &str, state: &mut SimState, effects: &[SimEffect]) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let on_off = |w: Option<&&str>| match w.copied() {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        other => Err(format!(
            "error: want on or off, got {}",
            other.unwrap_or("nothing")
        )),
    };
    let number = |w: Option<&&str>, max: f64| -> Result<f64, String> {
        let w = w.copied().unwrap_or("");
        match w.parse::<f64>() {
            Ok(v) if v.is_finite() && (0.0..=max).contains(&v) => Ok(v),
            _ => Err(format!("error: `{w}` is not a number in 0..{max}")),
        }
    };
    let result: Result<String, String> = match words.first().copied() {
        Some("mains") => on_off(words.get(1)).map(|v| {
            state.mains = v;
            "ok".into()
        }),
        Some("silent") => on_off(words.get(1)).map(|v| {
            state.silent = v;
            "ok".into()
        }),
        Some("load") => number(words.get(1), 200.0).map(|v| {
            state.load_percent = v;
            "ok".into()
        }),
        Some("charge") => number(words.get(1), 100.0).map(|v| {
            state.charge_percent = v;
            "ok".into()
        }),
        Some("noise") => number(words.get(1), 200.0).map(|v| {
            state.noise_bytes = v as usize;
            "ok".into()
        }),
        Some("delay") => number(words.get(1), 60_000.0).map(|v| {
            state.reply_delay_ms = v as u64;
            "ok".into()
        }),
        Some("status") => Ok(format!("{}ok", describe(state))),
        Some("effects") => Ok(effects
            .iter()
            .map(|e| format!("{e:?}\n"))
            .chain(std::iter::once("ok".to_string()))
            .collect()),
        Some(other) => Err(format!(
            "error: unknown command `{other}` (mains, load, charge, silent, noise, delay, status, effects)"
        )),
        None => Err("error: empty line".into()),
    };
    result.unwrap_or_else(|e| e)
}

/// The state as key=value lines.
pub fn describe(s: &SimState) -> String {
    let opt = |v: Option<f64>| {
        v.map(|v| format!("{v:.1}"))
            .unwrap_or_else(|| "none".into())
    };
    format!(
        "mains={}\ncharge={:.1}\nload={:.1}\nlow_battery={}\noutput_off={}\nshutdown_in={}\nrestore_after={}\ntesting={}\nbeeper={}\nsilent={}\nnoise={}\ndelay_ms={}\n",
        s.mains,
        s.charge_percent,
        s.load_percent,
        s.low_battery(),
        s.output_off,
        opt(s.shutdown_in_seconds),
        opt(s.restore_after_seconds),
        s.testing,
        s.beeper_on,
        s.silent,
        s.noise_bytes,
        s.reply_delay_ms,
    )
}

/// The socket server thread; stops and removes the socket when dropped.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Listens at `path` (a stale socket there is replaced) and answers each
    /// line with `handle`.
    pub fn start(
        path: &Path,
        handle: impl Fn(&str) -> String + Send + 'static,
    ) -> io::Result<Self> {
        if std::fs::symlink_metadata(path).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_socket()
        }) {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ups-sim-control".into())
            .spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                            let mut out = match stream.try_clone() {
                                Ok(o) => o,
                                Err(_) => continue,
                            };
                            for line in BufReader::new(stream).lines() {
                                let Ok(line) = line else { break };
                                if line.trim().is_empty() {
                                    continue;
                                }
                                if writeln!(out, "{}", handle(line.trim())).is_err() {
                                    break;
                                }
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_change_the_state() {
        let mut s = SimState::default();
        assert_eq!(apply_line("mains off", &mut s, &[]), "ok");
        assert!(!s.mains);
        assert_eq!(apply_line("load 60", &mut s, &[]), "ok");
        assert_eq!(s.load_percent, 60.0);
        assert_eq!(apply_line("charge 30", &mut s, &[]), "ok");
        assert_eq!(apply_line("silent on", &mut s, &[]), "ok");
        assert!(s.silent);
        assert_eq!(apply_line("noise 5", &mut s, &[]), "ok");
        assert_eq!(s.noise_bytes, 5);
        assert_eq!(apply_line("delay 1500", &mut s, &[]), "ok");
        assert_eq!(s.reply_delay_ms, 1500);
        let st = apply_line("status", &mut s, &[]);
        assert!(
            st.contains("mains=false\n") && st.contains("charge=30.0\n") && st.ends_with("ok"),
            "{st}"
        );
        assert!(apply_line("charge 130", &mut s, &[]).starts_with("error:"));
        assert!(apply_line("mains maybe", &mut s, &[]).starts_with("error:"));
        assert!(apply_line("explode", &mut s, &[]).contains("unknown command"));
        let e = apply_line("effects", &mut s, &[SimEffect::CancelShutdown]);
        assert_eq!(e, "CancelShutdown\nok");
    }
}
