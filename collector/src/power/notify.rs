//! Announcing power events: an exec hook (NUT NOTIFYCMD style, the event in
//! NODEWARDEN_* environment variables) and a webhook (JSON POST).
//!
//! `Notifier::send` never waits: events go into a bounded queue that one
//! task empties, retrying each sink with backoff. When the queue is full the
//! oldest event is dropped (and logged): the sequence is never held up by a
//! slow hook.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use nodewarden_common::backoff::Backoff;
use serde::Serialize;
use tokio::sync::Notify;

use super::config::NotifyConfig;
use super::machine::NoticeKind;

/// First retry delay; doubles per attempt.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest wait between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// One event as hooks see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// What happened (serialized as its word: on_battery, shutdown_started,
    /// poweroff_sent, node_down, ups_cycle, mains_returned, ...).
    pub event: NoticeKind,
    /// Power domain.
    pub domain: String,
    /// UPS name.
    pub ups: String,
    /// Node concerned, or empty.
    pub node: String,
    /// One line for people.
    pub message: String,
    /// Unix ms.
    pub timestamp_ms: i64,
    /// Part of a drill, not a real outage.
    pub drill: bool,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Notification>,
    dropped: u64,
}

/// Hands events to the hooks without blocking.
#[derive(Clone)]
pub struct Notifier {
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    capacity: usize,
    active: bool,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("capacity", &self.capacity)
            .field("active", &self.active)
            .finish()
    }
}

impl Notifier {
    /// Starts the delivery task (none when no hook is configured).
    pub fn spawn(config: NotifyConfig) -> Notifier {
        let active = !config.exec.is_empty() || !config.webhook.is_empty();
        let n = Notifier {
            queue: Arc::new(Mutex::new(Queue::default())),
            wake: Arc::new(Notify::new()),
            capacity: config.queue.max(1),
            active,
        };
        if active {
            tokio::spawn(deliver(n.clone(), config));
        }
        n
    }

    /// Queues `event`; drops the oldest queued one when full.
    pub fn send(&self, event: Notification) {
        if !self.active {
            return;
        }
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.items.len() >= self.capacity
                && let Some(old) = q.items.pop_front()
            {
                q.dropped += 1;
                tracing::warn!(
                    event = %old.event,
                    dropped = q.dropped,
                    "notification queue full ({}): dropped the oldest event: {}",
                    self.capacity,
                    old.message
                );
            }
            q.items.push_back(event);
        }
        self.wake.notify_one();
    }

    async fn next(&self) -> Notification {
        loop {
            if let Some(n) = self
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .items
                .pop_front()
            {
                return n;
            }
            self.wake.notified().await;
        }
    }
}

async fn deliver(n: Notifier, config: NotifyConfig) {
    loop {
        let event = n.next().await;
        if !config.exec.is_empty() {
            retry(&config, "exec hook", &event, || run_exec(&config, &event)).await;
        }
        if !config.webhook.is_empty() {
            retry(&config, "webhook", &event, || post(&config, &event)).await;
        }
    }
}

async fn retry<F, Fut>(config: &NotifyConfig, what: &str, event: &Notification, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut backoff = Backoff::with(BACKOFF_START, BACKOFF_MAX, Duration::ZERO);
    for i in 1..=config.attempts.max(1) {
        match tokio::time::timeout(config.timeout, attempt()).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => tracing::warn!(event = %event.event, "{what} attempt {i} failed: {e}"),
            Err(_) => tracing::warn!(event = %event.event, "{what} attempt {i} timed out"),
        }
        if i < config.attempts {
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
    tracing::error!(
        event = %event.event,
        "{what}: giving up on `{}` after {} attempts",
        event.message,
        config.attempts
    );
}

async fn run_exec(config: &NotifyConfig, e: &Notification) -> Result<(), String> {
    let (program, args) = config
        .exec
        .split_first()
        .ok_or_else(|| "no program".to_string())?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("NODEWARDEN_EVENT", e.event.as_str())
        .env("NODEWARDEN_DOMAIN", &e.domain)
        .env("NODEWARDEN_UPS", &e.ups)
        .env("NODEWARDEN_NODE", &e.node)
        .env("NODEWARDEN_MESSAGE", &e.message)
        .env("NODEWARDEN_TIMESTAMP_MS", e.timestamp_ms.to_string())
        .env("NODEWARDEN_DRILL", if e.drill { "1" } else { "0" })
        // NUT's names, so upsmon NOTIFYCMD scripts work unchanged.
        .env("NOTIFYTYPE", e.event.as_str().to_uppercase())
        .env("UPSNAME", &e.ups)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let status = cmd
        .status()
        .await
        .map_err(|err| format!("cannot run {program}: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} exited with {status}"))
    }
}

async fn post(config: &NotifyConfig, e: &Notification) -> Result<(), String> {
    let uri: hyper::Uri = config
        .webhook
        .parse()
        .map_err(|err| format!("bad webhook URL: {err}"))?;
    let host = uri.host().ok_or("webhook URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|err| format!("cannot connect to {host}:{port}: {err}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|err| err.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let body = serde_json::to_vec(e).map_err(|err| err.to_string())?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "nodewarden")
        .body(Full::new(Bytes::from(body)))
        .map_err(|err| err.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| err.to_string())?;
    let status = response.status();
    // Read the body so the connection closes cleanly.
    let _ = response.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("webhook answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;

    fn event(kind: NoticeKind, node: &str) -> Notification {
        Notification {
            event: kind,
            domain: "main".into(),
            ups: "riello".into(),
            node: node.into(),
            message: format!("{kind} on {node}"),
            timestamp_ms: 1_700_000_000_000,
            drill: false,
        }
    }

    fn config() -> NotifyConfig {
        NotifyConfig {
            timeout: Duration::from_secs(5),
            attempts: 4,
            ..Default::default()
        }
    }

    async fn wait_for(path: &std::path::Path, lines: usize) -> String {
        for _ in 0..200 {
            if let Ok(t) = std::fs::read_to_string(path)
                && t.lines().count() >= lines
            {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[tokio::test]
    async fn exec_hook_gets_the_event_in_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "echo \"$NODEWARDEN_EVENT|$NODEWARDEN_DOMAIN|$NODEWARDEN_UPS|$NODEWARDEN_NODE|$NODEWARDEN_MESSAGE|$NOTIFYTYPE|$UPSNAME|$1\" >> {}",
            out.display()
        );
        let n = Notifier::spawn(NotifyConfig {
            exec: vec![
                "/bin/sh".into(),
                "-c".into(),
                script,
                "hook".into(),
                "arg1".into(),
            ],
            ..config()
        });
        n.send(event(NoticeKind::PoweroffSent, "w1"));
        n.send(event(NoticeKind::NodeDown, "w2"));
        let text = wait_for(&out, 2).await;
        assert_eq!(
            text,
            "poweroff_sent|main|riello|w1|poweroff_sent on w1|POWEROFF_SENT|riello|arg1\n\
             node_down|main|riello|w2|node_down on w2|NODE_DOWN|riello|arg1\n"
        );
    }

    #[tokio::test]
    async fn a_failing_hook_is_retried_then_the_next_event_goes_through() {
        let dir = tempfile::tempdir().unwrap();
        let tries = dir.path().join("tries");
        // Fails twice, then succeeds: counts its runs in a file.
        let script = format!(
            "echo x >> {t}; [ $(wc -l < {t}) -ge 3 ]",
            t = tries.display()
        );
        let n = Notifier::spawn(NotifyConfig {
            exec: vec!["/bin/sh".into(), "-c".into(), script],
            ..config()
        });
        n.send(event(NoticeKind::OnBattery, ""));
        n.send(event(NoticeKind::MainsReturned, ""));
        let text = wait_for(&tries, 4).await;
        assert_eq!(
            text.lines().count(),
            4,
            "3 tries for the first, 1 for the second"
        );
    }

    #[tokio::test]
    async fn a_hung_hook_never_blocks_send_and_the_oldest_is_dropped() {
        let n = Notifier::spawn(NotifyConfig {
            exec: vec!["/bin/sleep".into(), "30".into()],
            queue: 3,
            attempts: 1,
            ..config()
        });
        let start = std::time::Instant::now();
        for i in 0..100 {
            n.send(event(NoticeKind::OnBattery, &format!("e{i}")));
        }
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
        let q = n.queue.lock().unwrap();
        let kept: Vec<&str> = q.items.iter().map(|e| e.node.as_str()).collect();
        assert_eq!(kept, ["e97", "e98", "e99"]);
        assert!(q.dropped >= 96, "{}", q.dropped);
    }

    #[tokio::test]
    async fn webhook_receives_json_and_is_retried_after_a_500() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, String, serde_json::Value)>();
        let count = Arc::new(std::sync::atomic::AtomicU32::new(0));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let tx = tx.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let tx = tx.clone();
                            let count = count.clone();
                            async move {
                                let path = req.uri().path().to_string();
                                let ctype = req
                                    .headers()
                                    .get("content-type")
                                    .map(|v| v.to_str().unwrap().to_string())
                                    .unwrap_or_default();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let json: serde_json::Value =
                                    serde_json::from_slice(&body).unwrap();
                                let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                tx.send((path, ctype, json)).unwrap();
                                let status = if n == 0 { 500 } else { 200 };
                                Ok::<_, Infallible>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        let n = Notifier::spawn(NotifyConfig {
            webhook: format!("http://{addr}/hooks/power?x=1"),
            ..config()
        });
        n.send(event(NoticeKind::ShutdownStarted, ""));
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let second = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first, second, "the same event again after the 500");
        assert_eq!(first.0, "/hooks/power");
        assert_eq!(first.1, "application/json");
        assert_eq!(first.2["event"], "shutdown_started");
        assert_eq!(first.2["ups"], "riello");
        assert_eq!(first.2["drill"], false);
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), rx.recv())
                .await
                .is_err(),
            "no third delivery after the 200"
        );
    }
}
