//! nodewarden collector: accepts agent streams (server), keeps history and
//! events (store), serves Prometheus metrics (metrics) and answers the CLI
//! (cli, over the Admin API); its CA (pki) decides who may talk to it.
#![forbid(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod metrics;
pub mod pki;
pub mod power;
pub mod series;
pub mod server;
pub mod state;
pub mod store;
