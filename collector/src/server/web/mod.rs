//! The read-only web status page on the `metrics_listen` listener: an
//! overview of nodes, UPSes, power domains and events, a page per node
//! with history charts, and live tile updates over server-sent events.
//!
//! `view` turns live state into words and levels by the CLI's rules,
//! `render`, `chart` and `node_page` turn those into HTML (pure), `live`
//! publishes changed tiles to browsers, `auth` decides who may read, and
//! this file is the thin hyper glue. It may import `state` (the hub),
//! `store` (history and events), `power::orchestrator` (domain views) and
//! `cli`'s pure formatting and health rules; nothing here changes the
//! cluster: only GET and HEAD are answered.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use nodewarden_common::clock::now_ms;
use tokio::sync::watch;

use crate::cli::readings::cpu_temperature_celsius;
use crate::power::orchestrator::PowerHandle;
use crate::state::hub::Hub;

pub mod assets;
pub mod auth;
pub mod chart;
pub mod config;
pub mod live;
pub mod node_page;
pub mod render;
pub mod trend;
pub mod view;

pub use config::WebConfig;

/// Every response's body: whole pages and the event stream alike.
pub type Body = BoxBody<Bytes, Infallible>;

/// Events shown in the log (newest first).
const EVENTS_SHOWN: u32 = 50;

/// The page's shared state: where it reads from and who may read.
pub struct Web {
    hub: Arc<Hub>,
    power: Option<PowerHandle>,
    power_enabled: bool,
    access: auth::Access,
    /// One password check at a time: each is 100,000 PBKDF2 rounds, and
    /// guessers from many addresses must not take every core from the
    /// agents' streams and the power sequence.
    hashing: tokio::sync::Semaphore,
    trends: Mutex<trend::Trends>,
    live: Arc<live::Live>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web").finish_non_exhaustive()
    }
}

impl Web {
    /// The page over `hub` and (when running) the power orchestrator.
    pub fn new(
        hub: Arc<Hub>,
        power: Option<PowerHandle>,
        power_enabled: bool,
        config: &WebConfig,
    ) -> Arc<Self> {
        Arc::new(Web {
            hub,
            power,
            power_enabled,
            access: auth::Access::new(config),
            hashing: tokio::sync::Semaphore::new(1),
            trends: Mutex::new(trend::Trends::default()),
            live: Arc::new(live::Live::default()),
        })
    }

    /// Everything the overview shows, now. Reads the newest events from
    /// the store (one short read).
    pub fn overview(&self, now_ms: i64) -> view::Overview {
        let infos = self.hub.node_infos();
        let events = self
            .hub
            .store()
            .events(0, None, EVENTS_SHOWN)
            .unwrap_or_else(|e| {
                tracing::warn!("web: events: {e}");
                Vec::new()
            });
        let nodes = {
            let mut trends = self.trends.lock().unwrap_or_else(|p| p.into_inner());
            let tiles = infos
                .iter()
                .map(|n| {
                    let temp = n
                        .latest
                        .as_ref()
                        .filter(|_| n.online)
                        .and_then(cpu_temperature_celsius);
                    let trend = temp.map_or_else(Default::default, |c| {
                        let t = trends.trend(&n.name, now_ms, c);
                        trends.observe(&n.name, now_ms, c);
                        t
                    });
                    view::node_tile(n, trend, now_ms)
                })
                .collect();
            // Only a removed node leaves more remembered than listed.
            if trends.len() > infos.len() {
                let names: HashSet<&str> = infos.iter().map(|n| n.name.as_str()).collect();
                trends.retain(&names);
            }
            tiles
        };
        let mut ups: Vec<view::UpsTile> = self
            .hub
            .ups_live()
            .iter()
            .map(|u| view::ups_tile(u, &events, now_ms))
            .collect();
        ups.sort_by(|a, b| (&a.name, &a.node).cmp(&(&b.name, &b.node)));
        let domains = self.power.as_ref().map_or_else(Vec::new, |p| {
            p.domains()
                .iter()
                .map(|d| {
                    let mut msg = crate::server::power::domain_msg(&d.machine);
                    msg.now = d.now.clone();
                    view::domain_box(&msg, now_ms)
                })
                .collect()
        });
        view::Overview {
            nodes,
            ups,
            domains,
            power_enabled: self.power_enabled,
            observing: self
                .power
                .as_ref()
                .is_some_and(|p| !p.arm_state().is_armed()),
            events: events.iter().map(view::event_row).collect(),
        }
    }

    /// Renders and publishes the overview's tiles while browsers follow,
    /// until `shutdown`.
    pub async fn run_live(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut events = self.hub.subscribe();
        loop {
            tokio::select! {
                _ = self.live.next_render(&mut events) => {}
                _ = shutdown.changed() => return,
            }
            if self.live.followers() == 0 {
                self.live.forget();
                continue;
            }
            let web = self.clone();
            let tiles =
                tokio::task::spawn_blocking(move || render::tiles(&web.overview(now_ms()))).await;
            match tiles {
                Ok(tiles) => self.live.publish(tiles),
                Err(e) => tracing::warn!("web: rendering tiles: {e}"),
            }
        }
    }
}

fn full(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// The headers every response carries: no script or style but our own
/// files, no framing, no sniffing, no referrer.
pub fn secure(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// A plain-text answer (errors, refusals).
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", body)
}

/// 405 for anything but GET and HEAD: nothing here changes the cluster.
pub fn method_not_allowed() -> Response<Body> {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        "only GET and HEAD: the page is read-only; actions stay on the admin socket\n",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

/// The access verdict for one request. A password check is PBKDF2, so it
/// runs on the blocking pool, one at a time.
async fn check_access(
    web: &Arc<Web>,
    peer: SocketAddr,
    authorization: Option<&[u8]>,
) -> auth::Verdict {
    // The owner's browser (its header verified before) never queues
    // behind a guesser's PBKDF2.
    if let Some(verdict) = web.access.quick_check(peer.ip(), authorization) {
        return verdict;
    }
    let Ok(_one_at_a_time) = web.hashing.acquire().await else {
        return auth::Verdict::Login;
    };
    let (web, header) = (web.clone(), authorization.map(<[u8]>::to_vec));
    tokio::task::spawn_blocking(move || web.access.check(peer.ip(), header.as_deref()))
        .await
        .unwrap_or(auth::Verdict::Login)
}

/// Answers a GET or HEAD for the page from `peer` (anything but /metrics).
pub async fn respond<B>(
    web: &Arc<Web>,
    req: &Request<B>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match check_access(web, peer, authorization).await {
        auth::Verdict::Allow => {}
        auth::Verdict::TooManyWrong { retry_after_s } => {
            let mut r = text(
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong passwords from this address: try again in a minute\n",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            return r;
        }
        auth::Verdict::Login => {
            let mut r = text(
                StatusCode::UNAUTHORIZED,
                "log in to read the nodewarden page\n",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"nodewarden\", charset=\"UTF-8\""),
            );
            return r;
        }
        auth::Verdict::RemoteRefused => {
            return text(
                StatusCode::FORBIDDEN,
                "the nodewarden page answers only this machine; set [web] allow_remote = true or a [web] user in collector.toml\n",
            );
        }
    }
    let path = req.uri().path();
    if let Some((ctype, body)) = assets::asset(path) {
        let mut r = full(StatusCode::OK, ctype, body);
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=300"),
        );
        return r;
    }
    match path {
        "/" => {
            let web = web.clone();
            match tokio::task::spawn_blocking(move || render::overview(&web.overview(now_ms())))
                .await
            {
                Ok(html) => html_response(html),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n"),
            }
        }
        "/events/stream" if req.method() == Method::GET => {
            let rx = web.live.follow(shutdown);
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        "/events/stream" => full(StatusCode::OK, "text/event-stream", ""),
        _ => match path.strip_prefix("/node/") {
            Some(segment) => node(web, segment, req.uri().query()).await,
            None => not_found(),
        },
    }
}

fn html_response(html: String) -> Response<Body> {
    let mut r = full(StatusCode::OK, "text/html; charset=utf-8", html);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn not_found() -> Response<Body> {
    let mut r = html_response(render::page(
        "nodewarden: not found",
        "<p>no such page; the overview is at <a href=\"/\">/</a>, Prometheus metrics at <a href=\"/metrics\">/metrics</a></p>",
    ));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

async fn node(web: &Arc<Web>, segment: &str, query: Option<&str>) -> Response<Body> {
    let Some(name) = percent_decode(segment) else {
        return not_found();
    };
    let Some(info) = web.hub.node_info(&name) else {
        return not_found();
    };
    let range = node_page::Range::from_query(query);
    let now = now_ms();
    let trend = {
        let trends = web.trends.lock().unwrap_or_else(|p| p.into_inner());
        info.latest
            .as_ref()
            .filter(|_| info.online)
            .and_then(cpu_temperature_celsius)
            .map_or_else(Default::default, |c| trends.trend(&name, now, c))
    };
    let tile = view::node_tile(&info, trend, now);
    let store = web.hub.store().clone();
    let charts =
        tokio::task::spawn_blocking(move || node_page::load_charts(&store, &name, range, now))
            .await;
    match charts {
        Ok(charts) => html_response(node_page::render(&tile, range, &charts)),
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading history failed\n",
        ),
    }
}

/// `%2F`-style escapes decoded; None when not valid UTF-8 or malformed.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
