//! The events gatewatch publishes. These types *are* the MQTT contract: their JSON is documented
//! in `docs/events.md` and `docs/schema/*.json`, and tests validate emitted events against those
//! schemas.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

use crate::delivery::{AppendError, Delivery};

/// Schema id of plate events; bump the version on any incompatible change.
pub const PLATE_SCHEMA: &str = "gatewatch.plate/1";

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
}

impl EventFactory {
    pub fn new(site: String, device: String, delivery: Arc<Delivery>) -> Self {
        Self {
            site,
            device,
            delivery,
        }
    }

    /// Wraps `body` in a new envelope and stores it for delivery on `<prefix>/<topic_suffix>`.
    /// Returns the stored envelope's seq.
    pub fn emit<B: Serialize>(
        &self,
        topic_suffix: &str,
        schema: &str,
        camera: &str,
        lane: &str,
        at: DateTime<Utc>,
        body: B,
    ) -> Result<u64, AppendError> {
        self.emit_with_id(Uuid::now_v7(), topic_suffix, schema, camera, lane, at, body)
    }

    /// Like [`emit`](Self::emit) with an `event_id` chosen by the caller: for events whose id
    /// other state refers to (a yard's entry) and that may have to be sent again after a crash.
    #[allow(clippy::too_many_arguments)]
    pub fn emit_with_id<B: Serialize>(
        &self,
        event_id: Uuid,
        topic_suffix: &str,
        schema: &str,
        camera: &str,
        lane: &str,
        at: DateTime<Utc>,
        body: B,
    ) -> Result<u64, AppendError> {
        let mut body = Some(body);
        self.delivery.emit(topic_suffix, |seq| {
            let env = Envelope {
                schema: schema.to_owned(),
                event_id,
                seq,
                ts: format_ts(at),
                site: self.site.clone(),
                device: self.device.clone(),
                camera: camera.to_owned(),
                lane: lane.to_owned(),
                replayed: false,
                body: body.take().expect("built once"),
            };
            serde_json::to_vec(&env).expect("events serialise")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{FullPolicy, Outbox, OutboxOptions};

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
        assert_eq!(
            f.emit(
                "events/x",
                PLATE_SCHEMA,
                "cam",
                "lane",
                at,
                serde_json::json!({"plate": "X1"})
            )
            .unwrap(),
            1
        );
        assert_eq!(
            f.emit(
                "events/x",
                PLATE_SCHEMA,
                "cam",
                "lane",
                at,
                serde_json::json!({"plate": "X2"})
            )
            .unwrap(),
            2
        );
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
}
