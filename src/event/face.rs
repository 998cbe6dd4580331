//! Face events (`gatewatch.face/1`): one per person seen in the lane.

use serde::{Deserialize, Serialize};

use super::kind::EventKind;

/// A person seen in the lane (topic `…/events/face`), after the common envelope. Never carries
/// the face's embedding; carries the aligned face image only when the camera's config allows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceEvent {
    /// The gallery id of the person, or `null` when the face matches no identity clearly enough.
    pub identity: Option<String>,
    /// Cosine similarity to the best gallery identity (named or not); `null` with an empty gallery.
    pub score: Option<f32>,
    /// The camera's match threshold the score was held to.
    pub threshold: f32,
    /// Best score minus the second-best identity's; `null` with fewer than two identities.
    pub margin: Option<f32>,
    /// Quality of the best frame, 0-1 (size, frontalness, sharpness).
    pub quality: f32,
    /// Frames the face was seen in before the decision.
    pub frames: u32,
    /// The best frame's face box in frame pixels: x, y, width, height.
    pub bbox: [i32; 4],
    /// When the person was first seen, RFC 3339 UTC with milliseconds.
    pub first_seen: String,
    /// The best frame's face aligned to 150x150, JPEG, standard base64; only when the camera's
    /// `publish_images` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_jpeg_b64: Option<String>,
}

impl EventKind for FaceEvent {
    const SCHEMA: &'static str = "gatewatch.face/1";
    const TOPIC: &'static str = "events/face";
}
