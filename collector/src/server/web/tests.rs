//! The hyper glue: access, methods and headers, against a real hub.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::{Request, StatusCode};

use super::*;
use crate::store::Retention;
use crate::store::Store;

fn hub() -> (tempfile::TempDir, Arc<Hub>) {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        raw: Duration::from_secs(7200),
        rollup: Duration::from_secs(86400),
    };
    let store = Arc::new(Store::open(dir.path(), retention).unwrap());
    (dir, Arc::new(Hub::new(store, Default::default())))
}

async fn get(
    config: &WebConfig,
    method: &str,
    path: &str,
    peer: &str,
    auth: Option<&str>,
) -> (StatusCode, hyper::HeaderMap, String) {
    let (_dir, hub) = hub();
    let web = Web::new(hub.clone(), None, false, config);
    let mut req = Request::builder().method(method).uri(path);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let req = req.body(()).unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let r = crate::server::http::respond(&hub, &web, &req, peer.parse().unwrap(), shutdown).await;
    let (parts, body) = r.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

const LOCAL: &str = "127.0.0.1:5000";
const REMOTE: &str = "192.0.2.7:5000";

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    for (path, peer) in [
        ("/", LOCAL),
        ("/metrics", REMOTE),
        ("/nope", LOCAL),
        ("/", REMOTE),
    ] {
        let (_, h, _) = get(&WebConfig::default(), "GET", path, peer, None).await;
        assert_eq!(
            h["content-security-policy"],
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            "{path}"
        );
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
}

#[tokio::test]
async fn loopback_reads_the_page_and_remote_is_refused_unless_allowed() {
    let (s, h, body) = get(&WebConfig::default(), "GET", "/", LOCAL, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(body.contains("no nodes have connected yet"), "{body}");
    let (s, _, body) = get(&WebConfig::default(), "GET", "/", REMOTE, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body.contains("allow_remote"), "{body}");
    let (s, _, _) = get(
        &WebConfig::default(),
        "GET",
        "/assets/live.js",
        REMOTE,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let open = WebConfig {
        allow_remote: true,
        ..Default::default()
    };
    assert_eq!(get(&open, "GET", "/", REMOTE, None).await.0, StatusCode::OK);
    // Prometheus scrapes from elsewhere, as before the page existed.
    let (s, _, body) = get(&WebConfig::default(), "GET", "/metrics", REMOTE, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("# HELP"), "{body}");
}

#[tokio::test]
async fn with_a_user_the_page_asks_for_a_login_and_metrics_does_not() {
    let config = WebConfig {
        user: "ops".into(),
        password_hash: auth::PasswordHash::new("pw", 1000).to_string(),
        allow_remote: false,
    };
    let (s, h, _) = get(&config, "GET", "/", LOCAL, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm=")
    );
    let (s, _, _) = get(&config, "GET", "/", REMOTE, Some("Basic b3BzOndyb25n")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "ops:wrong");
    let (s, _, _) = get(&config, "GET", "/", REMOTE, Some("Basic b3BzOnB3")).await;
    assert_eq!(s, StatusCode::OK, "ops:pw");
    assert_eq!(
        get(&config, "GET", "/metrics", REMOTE, None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn only_get_and_head_are_answered() {
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/", "/metrics", "/events/stream", "/node/x"] {
            let (s, h, _) = get(&WebConfig::default(), method, path, LOCAL, None).await;
            assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(h["allow"], "GET, HEAD");
        }
    }
    assert_eq!(
        get(&WebConfig::default(), "HEAD", "/", LOCAL, None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn assets_come_from_the_binary_and_unknown_nodes_are_404() {
    let (s, h, body) = get(&WebConfig::default(), "GET", "/assets/live.js", LOCAL, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(body.contains("EventSource('/events/stream')"));
    let (s, _, body) = get(&WebConfig::default(), "GET", "/node/ghost", LOCAL, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("no such page"));
}

#[test]
fn percent_decoding_refuses_broken_escapes() {
    assert_eq!(percent_decode("pi%2D4").as_deref(), Some("pi-4"));
    assert_eq!(percent_decode("a%2"), None);
    assert_eq!(percent_decode("%FF"), None);
}
