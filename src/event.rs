//! The events gatewatch publishes. These types *are* the MQTT contract: their JSON is documented
//! in `docs/events.md` and `docs/schema/*.json`, and tests validate emitted events against those
//! schemas.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use uuid::Uuid;

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

/// The per-device sequence counter, persisted so numbers are never reused after a restart.
///
/// The next number is written (to a temporary file, synced, renamed over) *before* it is handed
/// out, so a crash can skip a number but never repeat one.
pub struct SeqCounter {
    path: PathBuf,
    last: u64,
}

impl SeqCounter {
    /// Opens the counter stored in `dir/seq`, creating the directory if needed.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create state directory {}", dir.display()))?;
        let path = dir.join("seq");
        let last = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse().with_context(|| {
                format!(
                    "{} is corrupt ({s:?}); it must hold the last event number",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Self { path, last })
    }

    /// The last number handed out (0 if none).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Reserves and returns the next number.
    pub fn reserve(&mut self) -> std::io::Result<u64> {
        use std::io::Write;
        let n = self.last + 1;
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{n}")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.last = n;
        Ok(n)
    }
}

/// Builds envelopes: one place assigns `seq`, `event_id` and `ts`.
pub struct EventFactory {
    site: String,
    device: String,
    seq: Mutex<SeqCounter>,
}

impl EventFactory {
    pub fn new(site: String, device: String, seq: SeqCounter) -> Self {
        Self {
            site,
            device,
            seq: Mutex::new(seq),
        }
    }

    /// Wraps a body in a new envelope.
    pub fn envelope<B>(
        &self,
        schema: &str,
        camera: &str,
        lane: &str,
        at: DateTime<Utc>,
        body: B,
    ) -> std::io::Result<Envelope<B>> {
        let seq = self.seq.lock().expect("seq lock").reserve()?;
        Ok(Envelope {
            schema: schema.to_owned(),
            event_id: Uuid::now_v7(),
            seq,
            ts: format_ts(at),
            site: self.site.clone(),
            device: self.device.clone(),
            camera: camera.to_owned(),
            lane: lane.to_owned(),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_continues_across_reopen_and_never_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = SeqCounter::open(dir.path()).unwrap();
        assert_eq!((c.reserve().unwrap(), c.reserve().unwrap()), (1, 2));
        drop(c);
        let mut c = SeqCounter::open(dir.path()).unwrap();
        assert_eq!(c.last(), 2);
        assert_eq!(c.reserve().unwrap(), 3);
    }

    #[test]
    fn corrupt_seq_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("seq"), "twelve").unwrap();
        let err = SeqCounter::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("corrupt"), "{err}");
    }

    #[test]
    fn envelope_flattens_the_body_and_formats_time_with_millis() {
        let dir = tempfile::tempdir().unwrap();
        let f = EventFactory::new(
            "s".into(),
            "d".into(),
            SeqCounter::open(dir.path()).unwrap(),
        );
        let at = DateTime::parse_from_rfc3339("2026-11-24T10:00:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let e = f
            .envelope(
                PLATE_SCHEMA,
                "cam",
                "lane",
                at,
                serde_json::json!({"plate": "X1"}),
            )
            .unwrap();
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["ts"], "2026-11-24T10:00:00.500Z");
        assert_eq!(v["plate"], "X1");
        assert_eq!(v["seq"], 1);
        assert_eq!(e.event_id.get_version_num(), 7);
    }
}
