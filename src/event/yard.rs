//! Yard events (`gatewatch.yard/1`): what happened at a yard, with its counters after it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::kind::EventKind;

/// What happened at a yard (field `kind` of `…/events/yard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum YardEventKind {
    /// A vehicle came in (its plate, or `null` when it could not be read).
    Entry,
    /// A vehicle that was inside left; carries `match`, `entry_event_id`, `dwell_s`.
    Exit,
    /// A vehicle left whose plate was not inside (or could not be read while only listed vehicles
    /// were inside). Counted out if the yard was not empty.
    UnmatchedExit,
    /// A plate came in that is already inside; the count does not change.
    DuplicateEntry,
    /// A vehicle has been inside longer than the yard's limit (reported once per stay).
    Overstay,
    /// The yard reached its capacity.
    Full,
    /// The yard dropped below its capacity again.
    Available,
    /// The hub set the count and/or the inside list (`yard_set`); carries the new list.
    Set,
    /// The hub removed a vehicle that left unseen (`yard_remove`).
    Removed,
}

/// How an exit was paired with its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// Same plate text.
    Exact,
    /// One character differs by a configured OCR confusion (O/0, I/1, B/8, …).
    Fuzzy,
}

/// A vehicle in the inside list, as carried by `set` events and `yard_list` replies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InsideVehicle {
    pub plate: String,
    /// When it entered, RFC 3339 UTC with milliseconds.
    pub entered_at: String,
    /// Lane of the entry, or `hub` when it was added by `yard_set`.
    pub entry_lane: String,
    /// The event that let it in (an `entry`, or the `set` that listed it).
    pub entry_event_id: Uuid,
}

/// The body of a `gatewatch.yard/1` event (topic `…/events/yard`), after the common envelope.
///
/// Every event carries the yard's counters *after* it, so a consumer can follow the numbers
/// without keeping state, and one that does keep state can check itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct YardEvent {
    /// Yard id from the config.
    pub yard: String,
    pub kind: YardEventKind,
    /// The plate concerned: as read for entries and exits (`null` when unreadable), as given by
    /// the hub for `removed`; absent for `full`, `available` and `set`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plate: Option<String>,
    /// Exits: how the plate was paired.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<Match>,
    /// Exits, `removed`, `duplicate_entry`, `overstay`: the plate as it is listed inside (differs
    /// from `plate` on a fuzzy match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside_plate: Option<String>,
    /// Exits, `removed`, `duplicate_entry`, `overstay`: the event that let the vehicle in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_event_id: Option<Uuid>,
    /// Exits, `removed`, `overstay`: seconds between entry and this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dwell_s: Option<i64>,
    /// `set`: the complete inside list after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside: Option<Vec<InsideVehicle>>,
    /// `set`, `removed`: the hub command's id, so the hub can tie the event to its request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<serde_json::Value>,
    pub capacity: u32,
    /// Vehicles inside after this event.
    pub occupied: u32,
    /// `capacity - occupied`, never below 0.
    pub free: u32,
    /// Of `occupied`, vehicles counted in without a readable plate (or set by count only).
    pub unidentified: u32,
    /// Exits that could not be paired with a listed vehicle: the inside list holds this many
    /// vehicles that are probably gone (a misread plate); `occupied` already excludes them.
    pub unpaired_exits: u32,
}

impl EventKind for YardEvent {
    const SCHEMA: &'static str = "gatewatch.yard/1";
    const TOPIC: &'static str = "events/yard";
}
