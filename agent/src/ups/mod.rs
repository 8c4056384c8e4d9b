//! The UPS wired to this node: a driver-neutral model, the drivers (Megatec
//! Q1, Riello GPSER, NUT's network protocol), and the monitor that polls one
//! and pushes every status change to the link at once.
//!
//! Drivers are blocking (serial ports are); the monitor runs each on its own
//! thread and talks to the async side through channels.

pub mod cli;
pub mod config;
pub mod drivers;
pub mod gpser;
pub mod megatec;
pub mod model;
pub mod monitor;
pub mod nut;
pub mod probe;
pub mod serial;
// The simulated UPS is for the demo and the tests, not for the packaged
// agent; unit tests always have it.
#[cfg(any(test, feature = "simulator"))]
pub mod sim;

pub use model::{AppliedDelays, UpsCommandKind, UpsDriver, UpsError, UpsReading};
pub use monitor::{CommandDone, UpsHandle, spawn_monitor};
