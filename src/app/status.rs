//! The status document (`<prefix>/status`, `docs/schema/status.v1.json`): what the box is doing,
//! built from the counters the components keep.

use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::lanes::Lanes;
use crate::delivery::Delivery;
use crate::event::{format_ts, EventFactory};
use crate::face::service::FaceService;
use crate::face::stage::FaceStats;
use crate::pipeline::PipelineStats;
use crate::qr::stage::QrStats;
use crate::source::camera::CameraHealth;
use crate::yard::service::YardService;

/// One camera's counters.
struct CameraCounters {
    id: String,
    health: Arc<CameraHealth>,
    pipeline: Arc<PipelineStats>,
    qr: Option<Arc<QrStats>>,
    face: Option<Arc<FaceStats>>,
}

/// The counters a status document is made of (cheap handles; the document is built on demand).
pub struct StatusSources {
    cameras: Vec<CameraCounters>,
    delivery: Arc<Delivery>,
    events: Arc<EventFactory>,
    yards: Arc<YardService>,
    faces: Arc<FaceService>,
    started: Instant,
    started_at: String,
}

impl StatusSources {
    pub fn new(
        lanes: &Lanes,
        delivery: Arc<Delivery>,
        events: Arc<EventFactory>,
        yards: Arc<YardService>,
        faces: Arc<FaceService>,
    ) -> Self {
        StatusSources {
            cameras: lanes
                .iter()
                .map(|(id, lane)| CameraCounters {
                    id: id.clone(),
                    health: lane.health.clone(),
                    pipeline: lane.stats.clone(),
                    qr: lane.qr_stats.clone(),
                    face: lane.face_stats.clone(),
                })
                .collect(),
            delivery,
            events,
            yards,
            faces,
            started: Instant::now(),
            started_at: format_ts(chrono::Utc::now()),
        }
    }

    /// The `online` status document as of now.
    pub fn document(&self) -> Value {
        let cameras: Map<String, Value> = self
            .cameras
            .iter()
            .map(|c| {
                let mut cam = c.health.snapshot();
                cam["pipeline"] = c.pipeline.snapshot();
                if let Some(qr) = &c.qr {
                    cam["qr"] = qr.snapshot();
                }
                if let Some(face) = &c.face {
                    cam["face"] = face.snapshot();
                }
                (c.id.clone(), cam)
            })
            .collect();
        let mut outbox = self.delivery.status_fields();
        outbox["too_large"] = self.events.too_large().into();
        let mut doc = json!({
            "state": "online",
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": self.started_at,
            "uptime_s": self.started.elapsed().as_secs(),
            "cameras": cameras,
            "outbox": outbox,
            "faces": self.faces.status(),
            "commands": {
                "retained_ignored": self.delivery.link_stats().retained_commands.load(Ordering::Relaxed),
            },
        });
        let yards = self.yards.status();
        if yards.as_object().is_some_and(|y| !y.is_empty()) {
            doc["yards"] = yards;
        }
        doc
    }
}
