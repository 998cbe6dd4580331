//! Delivery: the disk-backed [`outbox`] that owns every produced event until the broker has it,
//! and the MQTT [`link`] that drains it.

pub mod client;
pub mod link;
pub mod link_state;
pub mod outbox;

pub use link::{Delivery, LinkStats, MqttLink, StatusFn};
pub use outbox::{AppendError, FullPolicy, Outbox, OutboxOptions};
