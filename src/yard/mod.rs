//! Yard occupancy: vehicles entering and leaving a yard through its gate lanes, counted against
//! the yard's capacity, paired by plate, kept across restarts and published as retained state.
//!
//! The design is event-sourced. [`engine::Yard`] decides what an input (a passage, a timer tick, a
//! hub command) means and expresses it as [`YardEvent`]s; the state changes *only* by applying
//! those events ([`engine::YardState::apply`]). The published event log therefore explains every
//! number, and replaying it from empty reproduces the state exactly (a property test checks this
//! through the JSON a consumer sees). [`store`] keeps the state on disk; [`service`] ties a yard
//! to the outbox, the retained occupancy topic and the hub commands.

pub mod config;
pub mod engine;
pub mod service;
pub mod store;

use serde::{Deserialize, Serialize};

pub use crate::event::{InsideVehicle, Match, YardEvent, YardEventKind};

/// The retained state on `…/yard/<id>/occupancy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Occupancy {
    pub yard: String,
    pub name: String,
    pub capacity: u32,
    pub occupied: u32,
    pub free: u32,
    /// When the state last changed (or the time of start-up when nothing has happened yet).
    pub updated_at: String,
    /// `seq` of the last yard event applied (0 before the first).
    pub seq: u64,
}
