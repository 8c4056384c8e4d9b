//! The systemd notification protocol (sd_notify(3)), in pure Rust.
//!
//! The units in `packaging/systemd/` are `Type=notify` with `WatchdogSec=`:
//! systemd counts a daemon as started only once it says `READY=1`, and
//! restarts it when the `WATCHDOG=1` pings stop. Each message is one datagram
//! to the Unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract name
//! written with a leading `@`). Outside systemd the variable is unset and
//! every call here is a cheap no-op that returns `Ok(false)`.
//!
//! Typical use in a daemon:
//! ```no_run
//! use nodewarden_common::sd_notify;
//! // ... config loaded, sockets bound ...
//! sd_notify::notify_ready()?;
//! if let Some(every) = sd_notify::watchdog_interval() {
//!     // ping at half the interval, from the loop that proves liveness
//!     let _ping_every = every / 2;
//! }
//! // ... on SIGTERM:
//! sd_notify::notify_stopping()?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Environment variable systemd sets to the notification socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// Environment variable with the watchdog interval in microseconds.
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
/// Environment variable naming the process the watchdog is meant for.
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// A send that blocks longer than this means systemd is wedged; the daemon
/// must not wedge with it.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Tells systemd the daemon is up (`READY=1`). `Ok(false)`: not under systemd.
pub fn notify_ready() -> io::Result<bool> {
    notify("READY=1")
}

/// Pings the watchdog (`WATCHDOG=1`). `Ok(false)`: not under systemd.
pub fn notify_watchdog() -> io::Result<bool> {
    notify("WATCHDOG=1")
}

/// Tells systemd a clean shutdown has begun (`STOPPING=1`).
pub fn notify_stopping() -> io::Result<bool> {
    notify("STOPPING=1")
}

/// Sets the one-line status `systemctl status` shows (`STATUS=...`).
pub fn notify_status(status: &str) -> io::Result<bool> {
    notify(&status_message(status))
}

/// Sends `state` (newline-separated `KEY=VALUE` assignments) to
/// `$NOTIFY_SOCKET`. `Ok(false)` when the variable is unset or empty.
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(socket) if !socket.is_empty() => send_to(&socket, state).map(|()| true),
        _ => Ok(false),
    }
}

/// The watchdog interval systemd expects pings within (ping at half of it),
/// or `None` when there is no watchdog for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var(WATCHDOG_USEC).ok();
    let pid = std::env::var(WATCHDOG_PID).ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// [`watchdog_interval`] from explicit values: a `WATCHDOG_PID` naming
/// another process means the watchdog is not ours (a child that inherited
/// the environment must not ping for its parent).
pub fn watchdog_interval_from(
    usec: Option<&str>,
    pid: Option<&str>,
    my_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok()? != my_pid
    {
        return None;
    }
    match usec?.trim().parse::<u64>().ok()? {
        0 => None,
        us => Some(Duration::from_micros(us)),
    }
}

/// Sends one notification datagram to `socket`: an absolute path, or `@name`
/// for a socket in the abstract namespace.
pub fn send_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let address = socket_address(socket)?;
    let sock = UnixDatagram::unbound()?;
    sock.set_write_timeout(Some(SEND_TIMEOUT))?;
    let sent = sock.send_to_addr(state.as_bytes(), &address).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot notify systemd at {}: {e}", socket.to_string_lossy()),
        )
    })?;
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "systemd notification truncated: {sent} of {} bytes",
                state.len()
            ),
        ));
    }
    Ok(())
}

fn socket_address(socket: &OsStr) -> io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(socket),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{NOTIFY_SOCKET}={} is neither an absolute path nor an @abstract name",
                socket.to_string_lossy()
            ),
        )),
    }
}

/// `STATUS=` takes one line: a newline would start a new assignment.
fn status_message(status: &str) -> String {
    let line: String = status
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("STATUS={line}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn receive(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_each_message_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();

        send_to(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(receive(&listener), "READY=1");
        send_to(path.as_os_str(), "WATCHDOG=1").unwrap();
        assert_eq!(receive(&listener), "WATCHDOG=1");
        send_to(path.as_os_str(), &status_message("3 agents\nconnected")).unwrap();
        assert_eq!(receive(&listener), "STATUS=3 agents connected");
    }

    #[test]
    fn sends_to_an_abstract_socket_written_with_at() {
        let name = format!("nodewarden-sd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();

        send_to(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(receive(&listener), "STOPPING=1");
    }

    #[test]
    fn missing_socket_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody-listens");
        let err = send_to(path.as_os_str(), "READY=1").unwrap_err();
        assert!(err.to_string().contains("nobody-listens"), "{err}");
    }

    #[test]
    fn relative_socket_name_is_rejected() {
        let err = send_to(OsStr::new("run/notify"), "READY=1").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("run/notify"), "{err}");
    }

    #[test]
    fn watchdog_interval_is_for_this_process_only() {
        let me = 4242;
        assert_eq!(
            watchdog_interval_from(Some("30000000"), None, me),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("4242"), me),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("17"), me),
            None
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("x"), me),
            None
        );
        assert_eq!(watchdog_interval_from(Some("0"), None, me), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, me), None);
        assert_eq!(watchdog_interval_from(None, Some("4242"), me), None);
    }

    /// Runs one test of this binary in a child process with `env` set, the
    /// way systemd starts a daemon; std's `set_var` would be unsafe here.
    fn run_child(test: &str, env: &[(&str, &OsStr)]) {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", test, "--test-threads=1"])
            .env_remove(NOTIFY_SOCKET)
            .env_remove(WATCHDOG_USEC)
            .env_remove(WATCHDOG_PID)
            .env("NODEWARDEN_SD_NOTIFY_CHILD", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    #[test]
    fn child_reads_notify_socket_from_the_environment() {
        if std::env::var_os("NODEWARDEN_SD_NOTIFY_CHILD").is_some() {
            assert!(notify_ready().unwrap());
            assert!(notify_status("sampling").unwrap());
            assert!(notify_watchdog().unwrap());
            assert!(notify_stopping().unwrap());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        run_child(
            "sd_notify::tests::child_reads_notify_socket_from_the_environment",
            &[(NOTIFY_SOCKET, path.as_os_str())],
        );
        let got: Vec<String> = (0..4).map(|_| receive(&listener)).collect();
        assert_eq!(
            got,
            ["READY=1", "STATUS=sampling", "WATCHDOG=1", "STOPPING=1"]
        );
    }

    #[test]
    fn child_without_systemd_sends_nothing() {
        if std::env::var_os("NODEWARDEN_SD_NOTIFY_CHILD").is_some() {
            assert!(!notify_ready().unwrap());
            assert!(!notify_watchdog().unwrap());
            assert_eq!(watchdog_interval(), None);
            return;
        }
        run_child("sd_notify::tests::child_without_systemd_sends_nothing", &[]);
    }

    #[test]
    fn child_reads_watchdog_interval_from_the_environment() {
        if std::env::var_os("NODEWARDEN_SD_NOTIFY_CHILD").is_some() {
            assert_eq!(watchdog_interval(), Some(Duration::from_millis(1500)));
            return;
        }
        run_child(
            "sd_notify::tests::child_reads_watchdog_interval_from_the_environment",
            &[(WATCHDOG_USEC, OsStr::new("1500000"))],
        );
    }
}
