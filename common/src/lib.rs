//! What the nodewarden agent and collector share that is not the wire
//! protocol (that is `nodewarden-proto`): the wall clock, one retry backoff,
//! systemd's notify protocol, the stop signal, config-file errors, durations
//! as people write them, NUT's protocol words, and the UPS decision vocabulary both sides use.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod clock;
pub mod config_error;
pub mod nut;
pub mod sd_notify;
pub mod signal;
pub mod units;
pub mod ups;
