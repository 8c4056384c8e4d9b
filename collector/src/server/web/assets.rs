//! The page's stylesheet and script, compiled into the binary: no CDN, no
//! files to install, works on a cluster with no internet.

/// `/assets/style.css`.
pub const STYLE_CSS: &str = include_str!("assets/style.css");
/// `/assets/live.js`: swaps tiles as server-sent events arrive.
pub const LIVE_JS: &str = include_str!("assets/live.js");

/// The asset at `path`, with its content type.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/assets/style.css" => Some(("text/css; charset=utf-8", STYLE_CSS)),
        "/assets/live.js" => Some(("text/javascript; charset=utf-8", LIVE_JS)),
        _ => None,
    }
}
