//! Megatec/Q1 ("Voltronic") UPSes, as NUT's nutdrv_qx speaks to them.
//!
//! [`protocol`] is pure: request bytes, reply parsers, NUT's status and
//! battery rules. [`driver`] is the thin part that owns a serial line.

pub mod driver;
pub mod protocol;

pub use driver::{BatteryTuning, DEFAULT_BAUD, MegatecDriver};
