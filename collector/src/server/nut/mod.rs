//! A NUT network-protocol server (RFC 9271, NUT's docs/net-protocol.txt):
//! NAS boxes, Proxmox, Home Assistant and upsmon follow the UPSes the
//! cluster's agents read as if nodewarden were upsd. `protocol` splits and
//! quotes words, `vars` turns a reading into NUT variables, `catalog` names
//! the served UPSes, `session` answers a client's commands (pure),
//! `instcmd` runs commands on agents (wrong passwords are limited by
//! `server::auth_limit`),
//! `listener` owns the sockets; `config` is `[nut_server]`.

pub mod catalog;
pub mod config;
pub mod instcmd;
pub mod listener;
pub mod protocol;
pub mod session;
pub mod vars;

#[cfg(test)]
mod tests;

pub use config::NutServerConfig;
pub use listener::NutServer;
