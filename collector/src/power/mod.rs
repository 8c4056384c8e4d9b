//! Power-loss orchestration: the per-domain state machine (pure), the power
//! config, the orchestrator that feeds it and carries out its actions, and
//! the notifications.

pub mod adapters;
pub mod config;
pub mod machine;
pub mod notify;
pub mod orchestrator;
pub mod ports;
#[cfg(test)]
pub(crate) mod testing;
