//! The collector's network adapters: each turns a wire protocol into calls
//! on the live state (`state`), the CA (`pki`) or the power orchestrator's
//! handle. The agent link (link), the admin API (admin, its peer-credential
//! policy in auth), enrollment and trust administration (trust), the power
//! API (power), Prometheus /metrics and the status page (http, web) and the NUT-protocol server
//! for hosts that cannot run an agent (nut); the wrong-password limit both
//! logins share (auth_limit). What they serve is wired
//! together in `daemon`.

pub mod admin;
pub mod auth;
pub mod auth_limit;
pub mod http;
pub mod link;
pub mod nut;
pub mod power;
pub mod trust;
pub mod web;
