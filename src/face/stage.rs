//! The per-camera face stage: its own thread, fed by the plate pipeline with at most `scan_fps`
//! frames per second through a newest-wins slot (frames arriving while it is busy are dropped
//! and counted), so faces never slow the plate path. Faces are detected in the region of
//! interest, embedded, tracked ([`track`](super::track)), and each track is matched against the
//! gallery once: one `gatewatch.face/1` event per person.
//!
//! Privacy: no embedding and no face image is logged; an image is kept in memory and published
//! only when the camera's `publish_images` is on.

use anyhow::Result;
use base64::Engine;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use opencv::core::{Mat, Point2f, Rect};
use opencv::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::config::CameraFaceConfig;
use super::quality::{self, Quality};
use super::service::FaceService;
use super::track::{decide, FaceTracker, FaceTrackerOptions, ReadyTrack, Sighting};
use super::FaceReader;
use crate::event::{format_ts, EventFactory, FaceEvent, Origin};
use crate::pipeline::StageTimes;
use crate::source::camera::{FrameSlot, Taken};
use crate::source::process_clock;

/// Counters of one camera's face stage.
#[derive(Debug, Default)]
pub struct FaceStats {
    pub scanned: AtomicU64,
    /// Frames replaced before the stage took them (it was busy).
    pub skipped: AtomicU64,
    /// Faces seen (large enough), over all frames.
    pub faces: AtomicU64,
    pub events: AtomicU64,
    /// Events naming an identity.
    pub identified: AtomicU64,
    pub failures: AtomicU64,
}

impl FaceStats {
    /// The counters as the `face` object of a camera in `…/status`.
    pub fn snapshot(&self) -> serde_json::Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "scanned": n(&self.scanned),
            "skipped": n(&self.skipped),
            "faces": n(&self.faces),
            "events": n(&self.events),
            "identified": n(&self.identified),
            "failures": n(&self.failures),
        })
    }
}

/// What the face stage needs.
pub struct FaceStageParts {
    pub camera: String,
    pub lane: String,
    /// Whether the source is live (its frames carry the process clock; idle time ends tracks).
    pub live: bool,
    pub config: CameraFaceConfig,
    pub slot: Arc<FrameSlot>,
    /// This camera's own copy of the face models.
    pub reader: FaceReader,
    pub gallery: Arc<FaceService>,
    pub events: Arc<EventFactory>,
    pub stats: Arc<FaceStats>,
    /// The scan of each frame is timed into `face` when set (benchmarks).
    pub timings: Option<Arc<StageTimes>>,
}

/// The tracker settings of a camera's face config.
pub fn tracker_options(c: &CameraFaceConfig) -> FaceTrackerOptions {
    FaceTrackerOptions {
        gone_after: c.gone_after_s,
        decide_after: c.decide_after_s,
        ..FaceTrackerOptions::default()
    }
}

/// Starts the stage; it ends when its slot is closed and drained, after deciding open tracks.
pub fn spawn(parts: FaceStageParts) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("face-{}", parts.camera))
        .spawn(move || run(parts))
}

/// The aligned crop, kept only when it may be published.
type Crop = Option<Mat>;

fn run(mut p: FaceStageParts) {
    let mut tracker: FaceTracker<Crop> = FaceTracker::new(tracker_options(&p.config));
    // Stream time → wall time, from the latest frame.
    let mut clock = (0.0f64, Utc::now());
    loop {
        let frame = match p.slot.take_timeout(Duration::from_millis(500)) {
            Taken::Frame(f) => f,
            Taken::Closed => break,
            Taken::Timeout => {
                if p.live {
                    let (t, now) = (process_clock(), Utc::now());
                    clock = (t, now);
                    for track in tracker.on_idle(t) {
                        publish(&p, track, clock, now);
                    }
                }
                continue;
            }
        };
        p.stats.scanned.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let seen = match sightings(&mut p.reader, &frame.image, &p.config) {
            Ok(s) => {
                if let Some(t) = &p.timings {
                    t.record_ms(&t.face, started.elapsed());
                }
                s
            }
            Err(e) => {
                p.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(camera = %p.camera, error = %format!("{e:#}"), "face scan failed; frame skipped");
                continue;
            }
        };
        p.stats
            .faces
            .fetch_add(seen.len() as u64, Ordering::Relaxed);
        let previous = clock;
        clock = (frame.t, frame.captured_at);
        for track in tracker.update(frame.t, seen) {
            // A track a restarted recording ended belongs to the previous pass's clock.
            let c = if track.last_seen > frame.t {
                previous
            } else {
                clock
            };
            publish(&p, track, c, frame.captured_at);
        }
    }
    for track in tracker.finish() {
        publish(&p, track, clock, Utc::now());
    }
}

/// The faces of a frame's region of interest at least `min_face_px` wide, embedded and rated.
fn sightings(
    reader: &mut FaceReader,
    image: &Mat,
    c: &CameraFaceConfig,
) -> Result<Vec<Sighting<Crop>>> {
    let (fw, fh) = (image.cols() as f64, image.rows() as f64);
    let rect = match c.roi {
        Some([x, y, w, h]) => Rect::new(
            (x * fw) as i32,
            (y * fh) as i32,
            ((w * fw) as i32).max(1),
            ((h * fh) as i32).max(1),
        ),
        None => Rect::new(0, 0, image.cols(), image.rows()),
    };
    let region = Mat::roi(image, rect)?.try_clone()?;
    let mut faces = reader.detect(&region)?;
    faces.retain(|f| f.bbox.w >= c.min_face_px as f32);
    for f in &mut faces {
        f.bbox.x += rect.x as f32;
        f.bbox.y += rect.y as f32;
        for l in &mut f.landmarks {
            *l = Point2f::new(l.x + rect.x as f32, l.y + rect.y as f32);
        }
    }
    let mut out = Vec::with_capacity(faces.len());
    for (read, crop) in reader.embed_aligned(image, &faces)? {
        let q = Quality {
            size: quality::size_score(read.bbox.w),
            frontal: quality::frontalness(&read.landmarks),
            sharp: quality::sharpness(&crop)?,
        };
        out.push(Sighting {
            bbox: read.bbox,
            embedding: read.embedding,
            quality: q.score(),
            payload: c.publish_images.then_some(crop),
        });
    }
    Ok(out)
}

/// Three decimals: the cosine scale is compressed, a fourth adds nothing a consumer can use.
fn round3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

/// Matches a finished track against the gallery in force and stores its event.
fn publish(
    p: &FaceStageParts,
    track: ReadyTrack<Crop>,
    clock: (f64, DateTime<Utc>),
    at: DateTime<Utc>,
) {
    let gallery = p.gallery.gallery();
    let found = gallery.search(&track.embedding());
    let d = decide(&found, p.config.match_threshold, p.config.min_margin);
    let best = &track.best[0];
    let image_jpeg_b64 = best.payload.as_ref().and_then(|crop| {
        let mut buf = opencv::core::Vector::<u8>::new();
        let params =
            opencv::core::Vector::<i32>::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, 90]);
        match opencv::imgcodecs::imencode(".jpg", crop, &mut buf, &params) {
            Ok(_) => Some(base64::engine::general_purpose::STANDARD.encode(buf.as_slice())),
            Err(e) => {
                tracing::warn!(camera = %p.camera, error = %e, "face image not encoded; the event goes without it");
                None
            }
        }
    });
    let back = ChronoDuration::milliseconds(((clock.0 - track.first_seen) * 1000.0) as i64);
    let first_seen = (clock.1 - back).min(at);
    let body = FaceEvent {
        identity: d.identity.map(|n| gallery.identities()[n].id.clone()),
        score: d.score.map(round3),
        threshold: p.config.match_threshold,
        margin: d.margin.map(round3),
        quality: round3(best.quality),
        frames: track.frames,
        bbox: best.bbox.to_px(),
        first_seen: format_ts(first_seen),
        image_jpeg_b64,
    };
    let origin = Origin {
        camera: &p.camera,
        lane: &p.lane,
    };
    match p.events.emit(origin, at, &body) {
        Ok(seq) => {
            p.stats.events.fetch_add(1, Ordering::Relaxed);
            if body.identity.is_some() {
                p.stats.identified.fetch_add(1, Ordering::Relaxed);
            }
            // Who it was is in the event, for those allowed to read it; the log says only
            // whether someone was named.
            tracing::info!(camera = %p.camera, seq, identified = body.identity.is_some(), score = ?body.score, frames = body.frames, "face seen");
        }
        Err(e) => {
            p.stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(camera = %p.camera, error = %e, "face event not stored (counted in status)");
        }
    }
}
