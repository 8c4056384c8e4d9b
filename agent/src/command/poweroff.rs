//! Powering this node off, exactly once.
//!
//! The collector may send the same poweroff twice (a retry, or a restarted
//! collector resending its persisted command id), and standalone mode may
//! decide the same thing on its own. Whatever asks first runs the configured
//! action; everyone after gets told it is already under way. Ids that ran are
//! also written to a small file in /run (tmpfs: no SD-card wear, and empty
//! again after the reboot), so a restarted agent does not run one again.
//!
//! With the default action (logind over D-Bus), a failure (polkit denied,
//! logind busy) is tried once more through `systemctl poweroff`, which the
//! same polkit grant allows, before the poweroff is reported failed. A
//! configured hook gets no fallback: it may be a drill's logging hook that
//! must never power the machine off.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

/// Default action: logind's PowerOff(interactive=false) over D-Bus, allowed
/// for user nodewarden by the polkit rule the package installs.
pub const DEFAULT_POWEROFF: [&str; 8] = [
    "busctl",
    "call",
    "org.freedesktop.login1",
    "/org/freedesktop/login1",
    "org.freedesktop.login1.Manager",
    "PowerOff",
    "b",
    "false",
];

/// Tried when the default action fails: systemctl asks logind the same
/// through its own client code. `-i`: an inhibitor lock (a `systemd-inhibit`
/// around a backup) must not keep a node up on a dying battery; the polkit
/// rule grants power-off-ignore-inhibit for it.
pub const FALLBACK_POWEROFF: [&str; 4] = ["systemctl", "--no-ask-password", "-i", "poweroff"];

/// Logind's own answer to "may this user power off?", asked at start.
const CAN_POWER_OFF: [&str; 6] = [
    "busctl",
    "call",
    "org.freedesktop.login1",
    "/org/freedesktop/login1",
    "org.freedesktop.login1.Manager",
    "CanPowerOff",
];

/// What an operator can do when no action powered the node off.
const POLKIT_HINT: &str = "polkit did not allow it: install polkitd (Debian 11: policykit-1) and the nodewarden polkit rule (docs/install.md)";
const INHIBIT_HINT: &str = "an inhibitor lock blocks it (`systemd-inhibit --list`): install the nodewarden polkit rule, which grants power-off-ignore-inhibit (docs/install.md)";
const LOGIND_HINT: &str = "check that systemd-logind runs (`busctl status org.freedesktop.login1`) and its journal (`journalctl -u systemd-logind`)";

/// Default directory for the record of ids that ran (systemd's
/// RuntimeDirectory=nodewarden-agent).
pub const DEFAULT_RUN_DIR: &str = "/run/nodewarden-agent";

/// The id standalone mode uses: the collector's ids start far above it.
pub const STANDALONE_ID: u64 = 0;

/// How long the action may take: logind answers at once; a hook that hangs
/// must not hold the id forever.
const ACTION_TIMEOUT: Duration = Duration::from_secs(60);

const STATE_FILE: &str = "poweroff-ids";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Progress {
    Idle,
    Running { id: u64 },
    Issued { id: u64, message: String },
    Failed { id: u64 },
}

/// What a request to power off found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// This caller runs the action now (then calls `run`).
    Run,
    /// Some poweroff is running now; nothing more to do.
    InProgress { id: u64 },
    /// Some poweroff already ran successfully.
    Issued { id: u64, message: String },
    /// This id ran in an earlier life of this agent (the state file says).
    RanBefore,
}

/// The configured poweroff action and what has become of it.
#[derive(Debug)]
pub struct PowerOff {
    argv: Vec<String>,
    fallback: Option<Vec<String>>,
    state_file: PathBuf,
    ran: Mutex<HashSet<u64>>,
    progress: Mutex<Progress>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PowerOff {
    /// `argv` is the command line to run; `state_dir` keeps the ids that ran.
    /// The default action falls back to `FALLBACK_POWEROFF`.
    pub fn new(argv: Vec<String>, state_dir: &Path) -> Self {
        let default = argv.iter().eq(DEFAULT_POWEROFF.iter());
        let fallback = default.then(|| FALLBACK_POWEROFF.map(String::from).to_vec());
        let state_file = state_dir.join(STATE_FILE);
        let ran = match std::fs::read_to_string(&state_file) {
            Ok(text) => text
                .lines()
                .filter_map(|l| l.split_whitespace().next()?.parse().ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => {
                tracing::warn!(
                    "cannot read {}: {e}; poweroff ids from before a restart are unknown",
                    state_file.display()
                );
                HashSet::new()
            }
        };
        PowerOff {
            argv,
            fallback,
            state_file,
            ran: Mutex::new(ran),
            progress: Mutex::new(Progress::Idle),
        }
    }

    /// Replaces the action tried when the first one fails (None: none).
    pub fn with_fallback(mut self, fallback: Option<Vec<String>>) -> Self {
        self.fallback = fallback;
        self
    }

    /// The command line, as a user would type it.
    pub fn command_line(&self) -> String {
        shell_words(&self.argv)
    }

    /// The id of a poweroff running or done in this agent's life, if any.
    pub fn under_way(&self) -> Option<u64> {
        match &*lock(&self.progress) {
            Progress::Running { id } | Progress::Issued { id, .. } => Some(*id),
            Progress::Idle | Progress::Failed { .. } => None,
        }
    }

    /// Decides whether `id` runs the action, and if so marks it running and
    /// records the id before anything else happens.
    pub fn begin(&self, id: u64) -> Begin {
        let mut progress = lock(&self.progress);
        match &*progress {
            Progress::Running { id } => return Begin::InProgress { id: *id },
            Progress::Issued { id, message } => {
                return Begin::Issued {
                    id: *id,
                    message: message.clone(),
                };
            }
            // A failed action powered nothing off: a new id may try again.
            Progress::Failed { id: failed } if *failed == id => {
                return Begin::Issued {
                    id,
                    message: "this command already ran and failed".into(),
                };
            }
            Progress::Idle | Progress::Failed { .. } => {}
        }
        if lock(&self.ran).contains(&id) {
            return Begin::RanBefore;
        }
        *progress = Progress::Running { id };
        lock(&self.ran).insert(id);
        self.remember(id);
        Begin::Run
    }

    fn remember(&self, id: u64) {
        use std::io::Write;
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.state_file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.state_file)?;
            writeln!(f, "{id} {}", nodewarden_common::clock::now_ms())
        };
        if let Err(e) = write() {
            // The poweroff still happens; only a restarted agent would not
            // know this id ran.
            tracing::warn!(
                "cannot record poweroff {id} in {}: {e}; set [commands] state_dir to a writable directory",
                self.state_file.display()
            );
        }
    }

    /// Runs the action for `id` (after `begin` said Run), and the fallback
    /// if it fails. Ok: what ran; Err: why each failed, and what to do.
    pub async fn run(&self, id: u64, reason: &str) -> Result<String, String> {
        let outcome = match execute(&self.argv, id, reason).await {
            Ok(message) => Ok(message),
            Err(first) => self.fall_back(id, reason, first).await,
        };
        match &outcome {
            Ok(_) => tracing::info!(
                command_id = id,
                "poweroff issued; systemd will stop this agent"
            ),
            Err(message) => tracing::error!(command_id = id, "poweroff failed: {message}"),
        }
        *lock(&self.progress) = match &outcome {
            Ok(message) => Progress::Issued {
                id,
                message: message.clone(),
            },
            Err(_) => Progress::Failed { id },
        };
        outcome
    }

    async fn fall_back(&self, id: u64, reason: &str, first: String) -> Result<String, String> {
        let Some(fallback) = &self.fallback else {
            return Err(match hint(&first) {
                Some(hint) => format!("{first}; {hint}"),
                None => first,
            });
        };
        tracing::warn!(
            command_id = id,
            "{first}; trying {} instead",
            shell_words(fallback)
        );
        match execute(fallback, id, reason).await {
            Ok(message) => Ok(format!("{message} (after {first})")),
            Err(second) => {
                let hint = hint(&first).or(hint(&second)).unwrap_or(LOGIND_HINT);
                Err(format!("{first}; then {second}; {hint}"))
            }
        }
    }
}

/// Runs one action: Ok says what ran, Err what went wrong (with its stderr).
async fn execute(argv: &[String], id: u64, reason: &str) -> Result<String, String> {
    let line = shell_words(argv);
    let Some((program, args)) = argv.split_first() else {
        return Err("[commands] poweroff is empty".into());
    };
    tracing::warn!(
        command_id = id,
        "powering this node off: {reason}; running {line}"
    );
    let child = tokio::process::Command::new(program)
        .args(args)
        .env("NODEWARDEN_COMMAND_ID", id.to_string())
        .env("NODEWARDEN_REASON", reason)
        .env("NODEWARDEN_AGENT_PID", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {line}: {e}"))?;
    let out = match tokio::time::timeout(ACTION_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(format!("{line} failed: {e}")),
        Err(_) => return Err(format!("{line} did not finish within 60 s")),
    };
    if out.status.success() {
        return Ok(format!("ran {line}"));
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let mut message = format!("{line} exited with {}", out.status);
    if !stderr.is_empty() {
        message.push_str(": ");
        message.push_str(&stderr);
    }
    Err(message)
}

/// The fix for a failure, read from what logind, polkit or systemctl said.
fn hint(failure: &str) -> Option<&'static str> {
    if failure.contains("Access denied") || failure.contains("authentication required") {
        Some(POLKIT_HINT)
    } else if failure.contains("inhibit") {
        Some(INHIBIT_HINT)
    } else {
        None
    }
}

/// Whether this node can power off with `poweroff` (the configured command
/// line), asked at start so a node that could not says so then rather than
/// in a power cut: logind's CanPowerOff as this agent's user ("yes",
/// "challenge", "no", "na", or "unknown" when logind did not answer), or
/// "custom" for a configured command logind has no say in. Logged with its
/// fix; the collector shows it in `nodes` and `plan`.
pub async fn can_power_off(poweroff: &[String]) -> String {
    if !poweroff.iter().eq(DEFAULT_POWEROFF.iter()) {
        return "custom".into();
    }
    ask_can_power_off()
        .await
        .unwrap_or_else(|| "unknown".into())
}

async fn ask_can_power_off() -> Option<String> {
    let argv = CAN_POWER_OFF.map(String::from);
    let line = shell_words(&argv);
    let out = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let answer = match tokio::time::timeout(Duration::from_secs(10), out).await {
        Ok(Ok(out)) if out.status.success() => {
            can_power_off_answer(&String::from_utf8_lossy(&out.stdout)).map(str::to_string)
        }
        Ok(Ok(out)) => {
            tracing::warn!(
                "cannot ask logind whether this node may power off ({line} exited with {}: {}); {LOGIND_HINT}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Ok(Err(e)) => {
            tracing::warn!(
                "cannot ask logind whether this node may power off ({line}: {e}); {LOGIND_HINT}"
            );
            return None;
        }
        Err(_) => {
            tracing::warn!("logind did not answer CanPowerOff within 10 s; {LOGIND_HINT}");
            return None;
        }
    };
    match answer.as_deref() {
        Some("yes") => tracing::info!("logind: this node may power off (CanPowerOff: yes)"),
        Some(other) => tracing::warn!(
            "logind: CanPowerOff is \"{other}\", so a power cut cannot power this node off; {POLKIT_HINT}"
        ),
        None => tracing::warn!("logind's CanPowerOff answer was not understood"),
    }
    answer
}

/// The string in busctl's reply to CanPowerOff (`s "yes"`).
fn can_power_off_answer(stdout: &str) -> Option<&str> {
    stdout
        .trim()
        .strip_prefix("s \"")?
        .strip_suffix('"')
        .filter(|a| !a.is_empty())
}

/// Joins argv for a log line or report, quoting what a shell would split.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(dir: &Path, body: &str) -> Vec<String> {
        let script = dir.join("hook.sh");
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        vec!["/bin/sh".into(), script.display().to_string()]
    }

    #[tokio::test]
    async fn runs_once_per_agent_and_passes_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ran");
        let argv = hook(
            dir.path(),
            &format!(
                "echo \"$NODEWARDEN_COMMAND_ID|$NODEWARDEN_REASON|$NODEWARDEN_AGENT_PID\" >> {}",
                out.display()
            ),
        );
        let p = PowerOff::new(argv, dir.path());
        assert_eq!(p.under_way(), None);
        assert_eq!(p.begin(41), Begin::Run);
        assert_eq!(p.under_way(), Some(41));
        // While it runs, the same or another id does not run it again.
        assert_eq!(p.begin(41), Begin::InProgress { id: 41 });
        assert_eq!(p.begin(42), Begin::InProgress { id: 41 });
        let msg = p.run(41, "battery low").await.unwrap();
        assert!(msg.starts_with("ran /bin/sh"), "{msg}");
        assert!(matches!(p.begin(42), Begin::Issued { id: 41, .. }));
        let ran = std::fs::read_to_string(&out).unwrap();
        assert_eq!(ran, format!("41|battery low|{}\n", std::process::id()));
    }

    #[tokio::test]
    async fn a_restarted_agent_does_not_run_an_id_again() {
        let dir = tempfile::tempdir().unwrap();
        let argv = hook(dir.path(), "exit 0");
        let first = PowerOff::new(argv.clone(), dir.path());
        assert_eq!(first.begin(7), Begin::Run);
        first.run(7, "x").await.unwrap();
        drop(first);
        let second = PowerOff::new(argv, dir.path());
        assert_eq!(second.begin(7), Begin::RanBefore);
        // A new id from a new decision is a new poweroff.
        assert_eq!(second.begin(8), Begin::Run);
    }

    #[tokio::test]
    async fn a_failed_action_reports_why_and_a_new_id_may_retry() {
        let dir = tempfile::tempdir().unwrap();
        let argv = hook(dir.path(), "echo 'Access denied' >&2; exit 1");
        let p = PowerOff::new(argv, dir.path());
        assert_eq!(p.begin(1), Begin::Run);
        let err = p.run(1, "x").await.unwrap_err();
        assert!(err.contains("exit status: 1"), "{err}");
        assert!(err.contains("polkit"), "{err}");
        assert!(matches!(p.begin(1), Begin::Issued { id: 1, .. }));
        assert_eq!(p.begin(2), Begin::Run);
    }

    #[tokio::test]
    async fn an_unwritable_state_dir_does_not_stop_the_poweroff() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let p = PowerOff::new(hook(dir.path(), "exit 0"), &blocker.join("sub"));
        assert_eq!(p.begin(3), Begin::Run);
        assert!(p.run(3, "x").await.is_ok());
    }

    #[test]
    fn only_the_default_action_falls_back_to_systemctl() {
        let dir = tempfile::tempdir().unwrap();
        let default = PowerOff::new(DEFAULT_POWEROFF.map(String::from).to_vec(), dir.path());
        assert_eq!(
            default.fallback.as_deref().map(shell_words).as_deref(),
            Some("systemctl --no-ask-password -i poweroff")
        );
        // A hook (a drill's logging hook) must never end in a real poweroff.
        assert_eq!(
            PowerOff::new(hook(dir.path(), "exit 0"), dir.path()).fallback,
            None
        );
    }

    #[tokio::test]
    async fn a_failed_action_falls_back_and_the_fallback_powers_off() {
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("fallback-ran");
        let first = hook(
            dir.path(),
            "echo 'Failed to call PowerOff: Connection timed out' >&2; exit 1",
        );
        let script = dir.path().join("fallback.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$NODEWARDEN_COMMAND_ID\" > {}\n",
                ran.display()
            ),
        )
        .unwrap();
        let second = vec!["/bin/sh".to_string(), script.display().to_string()];
        let p = PowerOff::new(first, dir.path()).with_fallback(Some(second));
        assert_eq!(p.begin(9), Begin::Run);
        let msg = p.run(9, "battery low").await.unwrap();
        assert!(msg.starts_with("ran /bin/sh"), "{msg}");
        assert!(msg.contains("fallback.sh"), "says what powered off: {msg}");
        assert!(
            msg.contains("Connection timed out"),
            "and why the first did not: {msg}"
        );
        assert_eq!(std::fs::read_to_string(&ran).unwrap(), "9\n");
        assert!(matches!(p.begin(10), Begin::Issued { id: 9, .. }));
    }

    #[tokio::test]
    async fn both_actions_failing_names_both_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let first = hook(dir.path(), "echo 'Call failed: Access denied' >&2; exit 1");
        let second = vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo 'inhibited' >&2; exit 3".into(),
        ];
        let p = PowerOff::new(first, dir.path()).with_fallback(Some(second));
        assert_eq!(p.begin(4), Begin::Run);
        let err = p.run(4, "x").await.unwrap_err();
        assert!(
            err.contains("hook.sh exited with exit status: 1: Call failed: Access denied"),
            "{err}"
        );
        assert!(err.contains("; then /bin/sh -c"), "{err}");
        assert!(err.contains("exit status: 3: inhibited"), "{err}");
        assert!(err.ends_with(POLKIT_HINT), "{err}");
        // Nothing powered off: a new id may try again.
        assert_eq!(p.begin(5), Begin::Run);

        // Nothing recognisable in either: the hint points at logind.
        let p = PowerOff::new(hook(dir.path(), "exit 1"), dir.path())
            .with_fallback(Some(hook(dir.path(), "exit 2")));
        assert_eq!(p.begin(6), Begin::Run);
        let err = p.run(6, "x").await.unwrap_err();
        assert!(err.ends_with(LOGIND_HINT), "{err}");
    }

    #[test]
    fn logind_can_power_off_answers_are_read() {
        assert_eq!(can_power_off_answer("s \"yes\"\n"), Some("yes"));
        assert_eq!(can_power_off_answer("s \"challenge\""), Some("challenge"));
        assert_eq!(can_power_off_answer("s \"\""), None);
        assert_eq!(can_power_off_answer("b true"), None);
        assert_eq!(
            hint("Operation inhibited by \"backup\""),
            Some(INHIBIT_HINT)
        );
        assert_eq!(hint("Access denied"), Some(POLKIT_HINT));
        assert_eq!(hint("timed out"), None);
    }

    #[test]
    fn command_lines_are_quoted_like_a_shell() {
        let argv: Vec<String> = ["busctl", "call", "a b", "it's"].map(String::from).to_vec();
        assert_eq!(shell_words(&argv), r"busctl call 'a b' 'it'\''s'");
    }
}
