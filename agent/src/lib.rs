//! nodewarden-agent: reads this node (sensors) and its UPS (ups), streams both
//! to the collector over one outbound mutual-TLS gRPC stream (link, with the
//! identity from trust), and carries out the collector's commands (command);
//! on the UPS host it powers down by itself when the collector is gone in a
//! power cut (standalone). It listens on no port. `.local` names the system
//! resolver cannot resolve go to a Multicast DNS query of its own (mdns).
// deny, not forbid: sensors::syscall (statvfs, sysconf, the VideoCore mailbox
// ioctl) is the one module allowed unsafe code.
#![deny(unsafe_code)]

pub mod command;
pub mod config;
pub mod daemon;
pub mod link;
pub mod mdns;
pub mod sensors;
pub mod standalone;
pub mod sysroot;
pub mod ticker;
pub mod trust;
pub mod ups;
