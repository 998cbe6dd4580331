//! Plate events (`gatewatch.plate/1`): a vehicle passage with its plate read.

use serde::{Deserialize, Serialize};

use super::kind::EventKind;

/// A vehicle passage with its plate read (topic `…/events/plate`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlateEvent {
    /// Normalised plate: A-Z, 0-9 and the CJK province character, e.g. `51A12345`, `桂A12345`.
    pub plate: String,
    /// The recogniser's text before normalisation.
    pub plate_raw: String,
    /// Grammar that matched: `VN`, `CN` or `generic`.
    pub region: String,
    /// 0-1.
    pub confidence: f32,
    /// `[x, y, w, h]` in frame pixels of the best read.
    pub bbox: [i32; 4],
    /// Frames that voted for this passage.
    pub frames: u32,
    /// When the plate was first seen, RFC 3339 UTC with milliseconds.
    pub first_seen: String,
}

impl EventKind for PlateEvent {
    const SCHEMA: &'static str = "gatewatch.plate/1";
    const TOPIC: &'static str = "events/plate";
}
