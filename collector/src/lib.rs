//! nodewarden collector: `daemon` wires it together; `server` holds the
//! network adapters (agent link, admin API, join, power API, /metrics) over
//! the shared live state (`state`: hub, commands, journal, event rules,
//! group-commit writer), which keeps history and events in `store`; `power`
//! orchestrates power loss through its ports (`cluster` is the Kubernetes
//! side); `cli` answers over the Admin API; its CA (`pki`) decides who may
//! talk to it. `scripts/check-cycles.sh` keeps the imports between these
//! modules acyclic.
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
