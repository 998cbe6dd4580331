//! The events gatewatch publishes. These types *are* the MQTT contract: their JSON is documented
//! in `docs/events.md` and `docs/schema/*.json`, and tests validate emitted events against those
//! schemas. Every kind is declared here (one file each) and names its schema and topic through
//! [`EventKind`]; [`EventFactory`] is the one place that wraps a body in its envelope and stores it.
//!
//! Adding an event kind: a file beside `plate.rs` with the body struct and its `EventKind` impl, a
//! JSON Schema in `docs/schema/`, a section in `docs/events.md`.

mod face;
mod kind;
mod plate;
mod qr;
mod yard;

pub use face::FaceEvent;
pub use kind::EventKind;
pub use plate::PlateEvent;
pub use qr::QrEvent;
pub use yard::{InsideVehicle, Match, YardEvent, YardEventKind};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use uuid::Uuid;

use crate::delivery::{AppendError, Delivery};

/// Where an event comes from: the camera and lane it names (`hub`/`timer` for events that no
/// camera saw, such as a yard change the hub commanded).
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub camera: &'a str,
    pub lane: &'a str,
}

/// Largest event gatewatch stores, as JSON. Half the MQTT packet limit of the client
/// (`delivery::client`), leaving room for topic and properties; a bigger event would be refused
/// by the client at publish time, after it was counted as accepted, and block the queue. Lists
/// that can grow (a `set` event's `inside`) are bounded well below it where they are made.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;

/// Why an event was not stored.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error(
        "{kind} event of {bytes} bytes is larger than the {limit}-byte event limit: not stored"
    )]
    TooLarge {
        kind: &'static str,
        bytes: usize,
        limit: usize,
    },
    #[error(transparent)]
    Store(#[from] AppendError),
}

/// The fields every event carries, followed by the kind's own fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope<B> {
    /// `name/version` of the event's schema, e.g. `gatewatch.plate/1`.
    pub schema: String,
    /// Unique id (UUIDv7, time-ordered); consumers de-duplicate on it.
    pub event_id: Uuid,
    /// Per-device sequence number: +1 per event, never reused, also across restarts.
    pub seq: u64,
    /// When the event happened, RFC 3339 UTC with milliseconds.
    pub ts: String,
    pub site: String,
    pub device: String,
    pub camera: String,
    pub lane: String,
    /// Present and true on events delivered as catch-up (after an outage or a restart) rather
    /// than live.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    #[serde(flatten)]
    pub body: B,
}

/// Formats a time the way every event does.
pub fn format_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Builds envelopes and stores them in the outbox: the one place that assigns `seq` (through the
/// outbox, in the same step as storing), `event_id` and `ts`.
pub struct EventFactory {
    site: String,
    device: String,
    delivery: Arc<Delivery>,
    too_large: AtomicU64,
}

impl EventFactory {
    pub fn new(site: String, device: String, delivery: Arc<Delivery>) -> Self {
        Self {
            site,
            device,
            delivery,
            too_large: AtomicU64::new(0),
        }
    }

    /// Wraps `body` in a new envelope and stores it for delivery on `<prefix>/<B::TOPIC>`.
    /// Returns the stored envelope's seq.
    pub fn emit<B: EventKind>(
        &self,
        origin: Origin,
        at: DateTime<Utc>,
        body: &B,
    ) -> Result<u64, EmitError> {
        self.emit_with_id(Uuid::now_v7(), origin, at, body)
    }

    /// Like [`emit`](Self::emit) with an `event_id` chosen by the caller: for events whose id
    /// other state refers to (a yard's entry) and that may have to be sent again after a crash.
    pub fn emit_with_id<B: EventKind>(
        &self,
        event_id: Uuid,
        origin: Origin,
        at: DateTime<Utc>,
        body: &B,
    ) -> Result<u64, EmitError> {
        let envelope = |seq| Envelope {
            schema: B::SCHEMA.to_owned(),
            event_id,
            seq,
            ts: format_ts(at),
            site: self.site.clone(),
            device: self.device.clone(),
            camera: origin.camera.to_owned(),
            lane: origin.lane.to_owned(),
            replayed: false,
            body,
        };
        // Measured before storing, with the longest seq: once stored, an event counts as
        // accepted, and one the broker link cannot send would block everything behind it.
        let bytes = serde_json::to_vec(&envelope(u64::MAX))
            .expect("events serialise")
            .len()
            + r#","replayed":true"#.len();
        if bytes > MAX_EVENT_BYTES {
            self.too_large.fetch_add(1, Ordering::Relaxed);
            return Err(EmitError::TooLarge {
                kind: B::SCHEMA,
                bytes,
                limit: MAX_EVENT_BYTES,
            });
        }
        Ok(self.delivery.emit(B::TOPIC, |seq| {
            serde_json::to_vec(&envelope(seq)).expect("events serialise")
        })?)
    }

    /// Events refused because they were larger than [`MAX_EVENT_BYTES`] (for status).
    pub fn too_large(&self) -> u64 {
        self.too_large.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{FullPolicy, Outbox, OutboxOptions};

    #[derive(Serialize)]
    struct Note {
        plate: String,
    }
    impl EventKind for Note {
        const SCHEMA: &'static str = "gatewatch.note/1";
        const TOPIC: &'static str = "events/note";
    }
    const CAM: Origin = Origin {
        camera: "cam",
        lane: "lane",
    };

    fn outbox(dir: &std::path::Path) -> Outbox {
        Outbox::open(OutboxOptions {
            dir: dir.into(),
            max_bytes: 8 << 20,
            policy: FullPolicy::DropOldest,
            segment_bytes: 8 << 20,
        })
        .unwrap()
    }

    #[test]
    fn envelope_flattens_the_body_and_formats_time_with_millis() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(OutboxOptions {
            dir: dir.path().into(),
            max_bytes: 1 << 20,
            policy: FullPolicy::DropOldest,
            segment_bytes: 1 << 20,
        })
        .unwrap();
        let f = EventFactory::new("s".into(), "d".into(), Delivery::new(ob));
        let at = DateTime::parse_from_rfc3339("2026-11-24T10:00:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(f.emit(CAM, at, &Note { plate: "X1".into() }).unwrap(), 1);
        assert_eq!(f.emit(CAM, at, &Note { plate: "X2".into() }).unwrap(), 2);
        drop(f);
        let mut ob = Outbox::open(OutboxOptions {
            dir: dir.path().into(),
            max_bytes: 1 << 20,
            policy: FullPolicy::DropOldest,
            segment_bytes: 1 << 20,
        })
        .unwrap();
        let r = ob.next_unsent().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(v["ts"], "2026-11-24T10:00:00.500Z");
        assert_eq!(v["plate"], "X1");
        assert_eq!(v["seq"], 1);
        assert!(
            v.get("replayed").is_none(),
            "live events carry no replayed field"
        );
        let id: Uuid = serde_json::from_value(v["event_id"].clone()).unwrap();
        assert_eq!(id.get_version_num(), 7);
    }

    #[test]
    fn the_kind_names_schema_and_topic() {
        let dir = tempfile::tempdir().unwrap();
        let f = EventFactory::new("s".into(), "d".into(), Delivery::new(outbox(dir.path())));
        f.emit(CAM, Utc::now(), &Note { plate: "X1".into() })
            .unwrap();
        drop(f);
        let r = outbox(dir.path()).next_unsent().unwrap();
        assert_eq!(r.topic_suffix, "events/note");
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(v["schema"], "gatewatch.note/1");
        assert_eq!(
            (v["camera"].as_str(), v["lane"].as_str()),
            (Some("cam"), Some("lane"))
        );
    }

    #[test]
    fn an_event_larger_than_the_limit_is_refused_counted_and_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let f = EventFactory::new("s".into(), "d".into(), Delivery::new(outbox(dir.path())));
        let at = Utc::now();
        // Just under: the envelope and the replayed mark fit.
        let fits = MAX_EVENT_BYTES - 400;
        f.emit(
            CAM,
            at,
            &Note {
                plate: "A".repeat(fits),
            },
        )
        .unwrap();
        let err = f
            .emit(
                CAM,
                at,
                &Note {
                    plate: "A".repeat(MAX_EVENT_BYTES),
                },
            )
            .unwrap_err();
        assert!(matches!(err, EmitError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("gatewatch.note/1"), "{err}");
        assert_eq!(f.too_large(), 1);
        // The refusal used no seq: the next event follows the last stored one.
        assert_eq!(f.emit(CAM, at, &Note { plate: "B".into() }).unwrap(), 2);
        drop(f);
        let mut ob = outbox(dir.path());
        let sizes: Vec<usize> = std::iter::from_fn(|| ob.next_unsent())
            .map(|r| r.payload.len())
            .collect();
        assert_eq!(sizes.len(), 2);
        assert!(sizes.iter().all(|&n| n <= MAX_EVENT_BYTES), "{sizes:?}");
    }
}
