//! Power-loss orchestration: the per-domain state machine (pure), the power
//! config, the orchestrator that feeds it and carries out its actions, and
//! the notifications. The orchestrator reaches the world only through
//! `ports` (Kubernetes, agents, live state, store); `adapters` implements
//! them over the real cluster, hub and store, `testing` in memory. It
//! imports `state` and `store` types, never `server`.

pub mod adapters;
pub mod config;
pub mod machine;
pub mod notify;
pub mod orchestrator;
pub mod ports;
#[cfg(test)]
pub(crate) mod testing;
pub mod wake;
