//! NUT as a source: a client of upsd's network protocol (TCP 3493, NUT's
//! docs/net-protocol.txt), for UPSes that NUT already drives (a NAS, a
//! Riello on riello_usb, anything nodewarden has no driver for).
//!
//! [`protocol`] is pure (`split_words`, `parse_reply_line`, `parse_list`,
//! the variables-to-reading map); [`driver`] is the thin part that owns the
//! TCP connection and reconnects when it breaks.

pub mod driver;
pub mod protocol;

pub use driver::{NutDriver, NutError};
pub use protocol::NutErrorCode;

#[cfg(test)]
mod tests;
