//! The nodewarden wire protocol, `nodewarden.v1`.
//!
//! The `.proto` files in `proto/nodewarden/v1/` are the source of truth. The
//! Rust bindings in `src/generated/` are generated from them and committed, so
//! building nodewarden (natively or cross) needs no `protoc`;
//! `tests/bootstrap.rs` regenerates them and fails on any difference, so they
//! cannot drift.
#![forbid(unsafe_code)]

/// `nodewarden.v1`: messages and the `AgentLink` / `Admin` services.
#[allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
pub mod v1 {
    include!("generated/nodewarden.v1.rs");
}

pub mod join_token;
pub mod throttle;

/// Largest message either side accepts on the agent link (a full reconnect
/// batch fits well within it).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
