//! Riello GPSER, the serial protocol of Riello's small UPSes (the reference
//! Riello 800 VA speaks it), as NUT's `riello_ser` driver speaks it.
//!
//! A frame is `STX, two address bytes, two command letters, a two-nibble data
//! length, the data, a four-nibble check, ETX`. Numbers travel as "nibbles":
//! one byte per 4 bits, `0x30 + value`, so 10..15 are `: ; < = > ?`, never
//! `A`..`F`. The check is a 16-bit sum or a CRC (CRC-16/RIELLO) over every
//! byte between STX and the check; which one a UPS wants is in its reply to
//! the identification request, which itself always uses the sum.
//!
//! [`protocol`] is pure: bytes in, typed values or typed errors out.
//! [`driver`] is the thin part that owns a serial line.

pub mod driver;
pub mod protocol;

pub use driver::GpserDriver;
pub use protocol::CheckKind;

#[cfg(test)]
mod tests;
