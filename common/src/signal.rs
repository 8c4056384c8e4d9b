//! Waiting for the signal that stops a daemon (SIGTERM from systemd, SIGINT
//! from Ctrl-C), shared by the agent and the collector.

/// Returns when SIGTERM or SIGINT arrives.
pub async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
