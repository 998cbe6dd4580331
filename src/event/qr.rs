//! QR events (`gatewatch.qr/1`): a code read in the lane.

use serde::{Deserialize, Serialize};

use super::kind::EventKind;

/// A code read in the lane (topic `…/events/qr`), after the common envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QrEvent {
    /// The payload as text, control characters removed; `null` for binary payloads.
    pub text: Option<String>,
    /// The payload bytes, base64 (always present).
    pub bytes_b64: String,
    /// Corners in frame pixels: top left, top right, bottom right, bottom left of the symbol.
    pub corners: [[i32; 2]; 4],
    /// `qr` or `micro_qr`.
    pub symbol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecc_level: Option<String>,
}

impl EventKind for QrEvent {
    const SCHEMA: &'static str = "gatewatch.qr/1";
    const TOPIC: &'static str = "events/qr";
}
