//! The HTTP listener (`metrics_listen`): Prometheus /metrics, one scrape
//! target for the whole cluster, and the read-only status page (`web`).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::web::{self, Body, Web};
use crate::state::hub::Hub;

/// /metrics: answered to every peer without a login, as before the page
/// existed, so Prometheus scrapes keep working; the page's access rules
/// (`[web]`) cover everything else.
fn metrics(hub: &Hub) -> Response<Body> {
    let mut body = crate::metrics::render(&hub.node_infos(), &hub.ups_infos());
    body.push_str(&crate::metrics::render_store(&hub.store().counters()));
    let mut r = web::text(StatusCode::OK, "");
    *r.body_mut() = http_body_util::BodyExt::boxed(http_body_util::Full::new(body.into()));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Routes one request: only GET and HEAD, /metrics, else the page.
pub async fn respond<B>(
    hub: &Hub,
    page: &Arc<Web>,
    req: &Request<B>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let response = if req.method() != Method::GET && req.method() != Method::HEAD {
        web::method_not_allowed()
    } else if req.uri().path() == "/metrics" {
        metrics(hub)
    } else {
        web::respond(page, req, peer, shutdown).await
    };
    web::secure(response)
}

/// Serves /metrics and the page on `listener` until shutdown.
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    page: Arc<Web>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(page.clone().run_live(shutdown.clone()));
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("metrics accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let (hub, page, stop) = (hub.clone(), page.clone(), shutdown.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (hub, page, stop) = (hub.clone(), page.clone(), stop.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(respond(&hub, &page, &req, peer, stop).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
