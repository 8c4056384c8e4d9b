//! Live updates: one task renders the overview's tiles when the hub
//! reports a change (a UPS status, a connect) or every two seconds
//! (samples, the power timeline), and publishes only the tiles that
//! changed. Every browser follows the same published changes over a
//! server-sent-events stream, so a connected browser costs a channel
//! receiver and a connection, not a copy of the page.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::{Bytes, Frame};
use tokio::sync::{Notify, broadcast, mpsc, watch};

use super::render::Tile;

/// How often tiles are re-rendered without a hub event.
pub const TICK: Duration = Duration::from_secs(2);
/// Hub events this close together are rendered once.
const COALESCE: Duration = Duration::from_millis(50);
/// A comment line this often keeps proxies from closing an idle stream.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Batches of changes a slow browser may fall behind before it is sent
/// every tile again.
const BACKLOG: usize = 16;

/// The published tiles and the changes to them.
#[derive(Debug)]
pub struct Live {
    current: Mutex<Arc<Vec<Tile>>>,
    changes: broadcast::Sender<Arc<Vec<Tile>>>,
    /// A browser connected while nothing was rendered: render now.
    wake: Notify,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            current: Mutex::new(Arc::new(Vec::new())),
            changes: broadcast::channel(BACKLOG).0,
            wake: Notify::new(),
        }
    }
}

/// The tiles of `new` that differ from `old`, plus each tile of `old` that
/// is gone (as a tile with empty HTML: remove it).
pub fn diff(old: &[Tile], new: &[Tile]) -> Vec<Tile> {
    let before: HashMap<&str, &str> = old
        .iter()
        .map(|t| (t.id.as_str(), t.html.as_str()))
        .collect();
    let after: HashMap<&str, ()> = new.iter().map(|t| (t.id.as_str(), ())).collect();
    let mut changed: Vec<Tile> = new
        .iter()
        .filter(|t| before.get(t.id.as_str()) != Some(&t.html.as_str()))
        .cloned()
        .collect();
    changed.extend(
        old.iter()
            .filter(|t| !after.contains_key(t.id.as_str()))
            .map(|t| Tile {
                id: t.id.clone(),
                within: t.within,
                html: String::new(),
            }),
    );
    changed
}

/// One server-sent event per tile: `event: tile` and a JSON object
/// `{id, within, html}` on one data line (JSON escapes the newlines).
pub fn sse_frames(tiles: &[Tile]) -> String {
    let mut out = String::new();
    for t in tiles {
        let data = serde_json::json!({"id": t.id, "within": t.within, "html": t.html});
        out.push_str("event: tile\ndata: ");
        out.push_str(&data.to_string());
        out.push_str("\n\n");
    }
    out
}

impl Live {
    /// Browsers following the stream now.
    pub fn followers(&self) -> usize {
        self.changes.receiver_count()
    }

    fn current(&self) -> Arc<Vec<Tile>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes `tiles` current and sends what changed to every follower.
    pub fn publish(&self, tiles: Vec<Tile>) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let changed = diff(&current, &tiles);
        // Stored before it is sent: a browser that subscribes, then reads
        // the current tiles, misses nothing (it may get a change twice).
        *current = Arc::new(tiles);
        if !changed.is_empty() {
            let _ = self.changes.send(Arc::new(changed));
        }
    }

    /// Nobody follows: forget the tiles, so the next follower gets all.
    pub fn forget(&self) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(Vec::new());
    }

    /// Waits for a hub event, a new follower or the tick, whichever first.
    pub async fn next_render<T: Clone>(&self, events: &mut broadcast::Receiver<T>) {
        tokio::select! {
            r = events.recv() => {
                if !matches!(r, Err(broadcast::error::RecvError::Closed)) {
                    tokio::time::sleep(COALESCE).await;
                    while events.try_recv().is_ok() {}
                } else {
                    tokio::time::sleep(TICK).await;
                }
            }
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }

    /// A new follower's event stream: every current tile, then each
    /// change, until the browser leaves or the collector stops.
    pub fn follow(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> mpsc::Receiver<Result<Frame<Bytes>, Infallible>> {
        let (tx, rx) = mpsc::channel(4);
        let mut changes = self.changes.subscribe();
        let first = self.current();
        if first.is_empty() {
            self.wake.notify_one();
        }
        let live = self.clone();
        tokio::spawn(async move {
            let send = |text: String| {
                let tx = tx.clone();
                async move { tx.send(Ok(Frame::data(Bytes::from(text)))).await.is_ok() }
            };
            // `retry` makes the browser reconnect after a second, not three.
            if !send(format!("retry: 1000\n\n{}", sse_frames(&first))).await {
                return;
            }
            drop(first);
            let mut keepalive = tokio::time::interval(KEEPALIVE);
            keepalive.tick().await;
            loop {
                let text = tokio::select! {
                    r = changes.recv() => match r {
                        Ok(changed) => sse_frames(&changed),
                        Err(broadcast::error::RecvError::Lagged(_)) => sse_frames(&live.current()),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = keepalive.tick() => ": keepalive\n\n".to_owned(),
                    _ = shutdown.changed() => return,
                };
                if !send(text).await {
                    return;
                }
            }
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(id: &str, html: &str) -> Tile {
        Tile {
            id: id.into(),
            within: "sec-nodes",
            html: html.into(),
        }
    }

    #[test]
    fn diff_sends_changed_and_new_tiles_and_removes_gone_ones() {
        let old = [tile("a", "1"), tile("b", "2"), tile("c", "3")];
        let new = [tile("a", "1"), tile("b", "2!"), tile("d", "4")];
        assert_eq!(
            diff(&old, &new),
            vec![tile("b", "2!"), tile("d", "4"), tile("c", "")]
        );
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn frames_are_one_json_data_line_per_tile() {
        let text = sse_frames(&[tile("ups-a-b", "<p>\nline\n\"x\"</p>")]);
        assert_eq!(text.matches("\n\n").count(), 1, "{text}");
        let data = text.strip_prefix("event: tile\ndata: ").unwrap().trim_end();
        assert!(!data.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["id"], "ups-a-b");
        assert_eq!(v["within"], "sec-nodes");
        assert_eq!(v["html"], "<p>\nline\n\"x\"</p>");
    }

    #[tokio::test]
    async fn a_follower_gets_every_tile_then_only_changes() {
        let live = Arc::new(Live::default());
        live.publish(vec![tile("a", "1"), tile("b", "2")]);
        let (_stop, shutdown) = watch::channel(false);
        let mut rx = live.follow(shutdown);
        let first = rx.recv().await.unwrap().unwrap().into_data().unwrap();
        let first = String::from_utf8(first.to_vec()).unwrap();
        assert!(first.starts_with("retry: 1000"));
        assert_eq!(first.matches("event: tile").count(), 2);
        assert_eq!(live.followers(), 1);
        live.publish(vec![tile("a", "1"), tile("b", "on battery")]);
        let next = rx.recv().await.unwrap().unwrap().into_data().unwrap();
        let next = String::from_utf8(next.to_vec()).unwrap();
        assert_eq!(next.matches("event: tile").count(), 1);
        assert!(next.contains("on battery"));
    }
}
