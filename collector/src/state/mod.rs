//! The collector's shared live state, below every adapter: the hub (each
//! node's stream, latest sample and UPS statuses, and the news the power
//! orchestrator follows), the commands waiting for agents' results, the
//! journal that writes the hub's records from one thread, the event rules
//! (pure), and the group-commit writer that link sessions hand samples to.
//!
//! The writer lives here rather than in `server/` or `store/`: it is shared
//! by every link session (not one protocol's adapter), and it is the live,
//! async side of persistence (queueing, batching, backoff, acks) while
//! `store/` stays the synchronous database. It imports only `store`.

pub mod commands;
pub mod events;
pub mod hub;
mod journal;
pub mod nut_hosts;
pub mod writer;
