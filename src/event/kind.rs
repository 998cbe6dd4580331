//! What makes a body an event kind (a leaf: the kinds' files and the factory both use it).

use serde::Serialize;

/// A kind of event: the body that follows the envelope, with its schema id and topic.
pub trait EventKind: Serialize {
    /// `name/version`, e.g. `gatewatch.plate/1`; bump the version on any incompatible change.
    const SCHEMA: &'static str;
    /// Topic under the device's prefix, e.g. `events/plate`.
    const TOPIC: &'static str;
}
