use std::path::Path;

use nodewarden_proto::v1::{PowerOff as PowerOffCmd, ShutdownReturn, UpsCommand, ups_command};

use super::*;

fn hook(dir: &Path) -> (Arc<PowerOff>, std::path::PathBuf) {
    let ran = dir.join("ran");
    let script = dir.join("hook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$NODEWARDEN_COMMAND_ID\" >> {}\n",
            ran.display()
        ),
    )
    .unwrap();
    let argv = vec!["/bin/sh".to_string(), script.display().to_string()];
    (Arc::new(PowerOff::new(argv, &dir.join("state"))), ran)
}

fn poweroff(id: u64, dry_run: bool) -> Command {
    Command {
        command_id: id,
        dry_run,
        action: Some(command::Action::PowerOff(PowerOffCmd {
            reason: "test".into(),
        })),
    }
}

fn executor(p: Arc<PowerOff>) -> (Arc<Executor>, mpsc::Receiver<Reply>) {
    let (tx, rx) = mpsc::channel(16);
    (Arc::new(Executor::new(p, Vec::new(), tx)), rx)
}

#[tokio::test]
async fn poweroff_is_confirmed_before_the_action_runs_and_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let (p, ran) = hook(dir.path());
    let (ex, mut replies) = executor(p);
    let e = ex.clone();
    let task = tokio::spawn(async move { e.handle(poweroff(5, false)).await });

    let accepted = replies.recv().await.unwrap();
    assert_eq!(accepted.result.state, CommandState::Accepted as i32);
    // Nothing has run while the confirm is not on the wire yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ran.exists(), "the action ran before its confirm was sent");
    accepted.sent.unwrap().send(()).unwrap();
    let done = replies.recv().await.unwrap().result;
    assert_eq!(done.state, CommandState::Done as i32, "{}", done.message);
    task.await.unwrap();

    // The collector resends the same id, then a new one: neither runs again.
    ex.handle(poweroff(5, false)).await;
    ex.handle(poweroff(6, false)).await;
    for _ in 0..2 {
        let r = replies.recv().await.unwrap().result;
        assert_eq!(r.state, CommandState::Done as i32);
        assert!(r.message.contains("not running it again"), "{}", r.message);
    }
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "5\n");
}

#[tokio::test]
async fn dry_run_poweroff_reports_the_command_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (p, ran) = hook(dir.path());
    let (ex, mut replies) = executor(p);
    ex.handle(poweroff(9, true)).await;
    let r = replies.recv().await.unwrap().result;
    assert_eq!(r.state, CommandState::Done as i32);
    assert!(
        r.message.starts_with("dry run: would run: /bin/sh "),
        "{}",
        r.message
    );
    assert!(!ran.exists());
    // A dry run does not use up the id.
    let e = ex.clone();
    let t = tokio::spawn(async move { e.handle(poweroff(9, false)).await });
    let a = replies.recv().await.unwrap();
    assert_eq!(a.result.state, CommandState::Accepted as i32);
    drop(a.sent);
    assert_eq!(
        replies.recv().await.unwrap().result.state,
        CommandState::Done as i32
    );
    t.await.unwrap();
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "9\n");
}

#[tokio::test]
async fn ups_command_on_a_node_without_ups_fails_with_where_to_send_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut replies) = executor(hook(dir.path()).0);
    ex.handle(Command {
        command_id: 3,
        dry_run: false,
        action: Some(command::Action::Ups(UpsCommand {
            ups_name: String::new(),
            action: Some(ups_command::Action::ShutdownReturn(ShutdownReturn {
                off_delay_seconds: 30,
                restore_delay_seconds: 600,
            })),
        })),
    })
    .await;
    let r = replies.recv().await.unwrap().result;
    assert_eq!(r.state, CommandState::Failed as i32);
    assert!(r.message.contains("this node has no UPS"), "{}", r.message);
}

#[tokio::test]
async fn commands_this_agent_does_not_know_are_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let (ex, mut replies) = executor(hook(dir.path()).0);
    ex.handle(Command {
        command_id: 4,
        dry_run: false,
        action: None,
    })
    .await;
    let r = replies.recv().await.unwrap().result;
    assert_eq!(r.state, CommandState::Unsupported as i32);
    assert_eq!(r.command_id, 4);
}

/// A poweroff whose first action fails with `first_exit` and whose fallback
/// exits with `fallback_exit`, as the collector sees it: ACCEPTED, then the
/// final state and message.
async fn poweroff_with_fallback(first_exit: u8, fallback_exit: u8) -> (CommandState, String) {
    let dir = tempfile::tempdir().unwrap();
    let sh = |body: String| vec!["/bin/sh".to_string(), "-c".to_string(), body];
    let p = PowerOff::new(
        sh(format!("echo 'logind said no' >&2; exit {first_exit}")),
        &dir.path().join("state"),
    )
    .with_fallback(Some(sh(format!("echo fallback >&2; exit {fallback_exit}"))));
    let (ex, mut replies) = executor(Arc::new(p));
    let task = tokio::spawn(async move { ex.handle(poweroff(12, false)).await });
    let accepted = replies.recv().await.unwrap();
    assert_eq!(accepted.result.state, CommandState::Accepted as i32);
    drop(accepted.sent);
    let last = replies.recv().await.unwrap().result;
    task.await.unwrap();
    (CommandState::try_from(last.state).unwrap(), last.message)
}

#[tokio::test]
async fn a_failed_poweroff_falls_back_before_reporting() {
    let (state, message) = poweroff_with_fallback(1, 0).await;
    assert_eq!(state, CommandState::Done, "{message}");
    assert!(message.contains("logind said no"), "{message}");

    let (state, message) = poweroff_with_fallback(1, 1).await;
    assert_eq!(state, CommandState::Failed, "{message}");
    assert!(
        message.contains("logind said no"),
        "names the first: {message}"
    );
    assert!(
        message.contains("; then /bin/sh -c"),
        "and the fallback: {message}"
    );
    assert!(
        message.contains("systemd-logind"),
        "with what to check: {message}"
    );
}
