//! The per-camera plate pipeline: frames → plate reads → tracks → one event per passage.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::event::{format_ts, EventFactory, PlateEvent, PLATE_SCHEMA};
use crate::motion::{MotionConfig, MotionGate};
use crate::plate::lane_view::{LaneView, LaneViewConfig};
use crate::plate::reader::{PlateRead, PlateReader};
use crate::plate::tracker::{ClosedTrack, Passage, Tracker, TrackerOptions};
use crate::qr::stage::{self as qr_stage, CameraQrConfig, QrStageParts, QrStats};
use crate::source::camera::{FrameSlot, Taken};
use crate::source::process_clock;
use crate::vision::BBox;
use crate::yard::config::{entering, CameraYardConfig, LaneRole};
use crate::yard::engine::{Direction, PassageInput};
use crate::yard::service::YardService;

/// Counters of one camera's pipeline.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub frames: AtomicU64,
    /// Frames the plate models ran on.
    pub inferred: AtomicU64,
    /// Frames the motion gate found still: the previous reads were reused.
    pub still: AtomicU64,
    pub reads: AtomicU64,
    pub passages: AtomicU64,
    pub errors: AtomicU64,
}

impl PipelineStats {
    /// The counters as the `pipeline` object of a camera in `…/status`.
    pub fn snapshot(&self) -> serde_json::Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "frames": n(&self.frames),
            "inferred": n(&self.inferred),
            "still": n(&self.still),
            "reads": n(&self.reads),
            "passages": n(&self.passages),
            "errors": n(&self.errors),
        })
    }
}

/// Per-stage latencies (milliseconds) of every frame, recorded for benchmarks only.
#[derive(Debug, Default)]
pub struct StageTimes {
    /// Cutting the lane out and the motion gate's decision.
    pub gate: Mutex<Vec<f32>>,
    /// The plate models on frames that were read.
    pub read: Mutex<Vec<f32>>,
    /// Tracking and event emission.
    pub track: Mutex<Vec<f32>>,
}

impl StageTimes {
    fn record(slot: &Mutex<Vec<f32>>, since: std::time::Instant) {
        let ms = since.elapsed().as_secs_f32() * 1000.0;
        slot.lock().expect("stage times lock").push(ms);
    }
}

/// What a pipeline needs.
pub struct PipelineParts {
    pub camera: String,
    pub lane: String,
    /// Whether the source is live (its frames carry the process clock; idle time closes tracks).
    pub live: bool,
    pub slot: Arc<FrameSlot>,
    pub reader: Arc<Mutex<PlateReader>>,
    pub tracker: TrackerOptions,
    pub events: Arc<EventFactory>,
    pub stats: Arc<PipelineStats>,
    /// The last frame read, for snapshots.
    pub latest: Arc<Mutex<Option<opencv::core::Mat>>>,
    /// The yard gate this camera watches, if any: every passage is also counted there.
    pub yard: Option<YardLane>,
    /// QR decoding on this camera, if enabled: frames are offered to its own thread.
    pub qr: Option<(CameraQrConfig, Arc<QrStats>)>,
    /// The lane's region of interest and minimum plate height.
    pub view: LaneViewConfig,
    /// When still frames may skip inference.
    pub motion: MotionConfig,
    /// Where to record per-stage latencies, if anywhere.
    pub timings: Option<Arc<StageTimes>>,
}

/// A camera's part in a yard.
pub struct YardLane {
    pub service: Arc<YardService>,
    pub config: CameraYardConfig,
}

impl YardLane {
    /// Counts a passage: its direction comes from the lane's role, or for `both` from the plate's
    /// motion across the gate line (`frame` is the frame size in pixels).
    fn count(&self, p: &PipelineParts, pass: &ClosedTrack, frame: (f64, f64), at: DateTime<Utc>) {
        let c = &self.config;
        let direction = match c.role {
            LaneRole::Entry => Some(Direction::Entry),
            LaneRole::Exit => Some(Direction::Exit),
            LaneRole::Both => {
                let centre = |b: &crate::vision::BBox| {
                    (
                        (b.x + b.w / 2.0) as f64 / frame.0,
                        (b.y + b.h / 2.0) as f64 / frame.1,
                    )
                };
                let (line, inside) = (c.line.unwrap_or_default(), c.inside.unwrap_or_default());
                entering(
                    &line,
                    &inside,
                    centre(&pass.first_bbox),
                    centre(&pass.last_bbox),
                )
                .map(|e| if e { Direction::Entry } else { Direction::Exit })
            }
        };
        let Some(direction) = direction else {
            tracing::warn!(camera = %p.camera, plate = ?pass.plate, "passage not counted in the yard: it did not move across the gate line far enough to tell its direction");
            return;
        };
        self.service.passage(
            &c.id,
            PassageInput {
                plate: pass.plate.clone(),
                direction,
                camera: p.camera.clone(),
                lane: p.lane.clone(),
                at,
            },
        );
    }
}

/// Starts the pipeline thread; it ends when the camera's slot closes, after flushing its tracks.
pub fn spawn(parts: PipelineParts) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("pipe-{}", parts.camera))
        .spawn(move || run(parts))
}

fn run(p: PipelineParts) {
    let qr = p.qr.as_ref().and_then(|(config, stats)| {
        let slot = FrameSlot::new(crate::config::Handoff::Newest);
        let stage = qr_stage::spawn(QrStageParts {
            camera: p.camera.clone(),
            lane: p.lane.clone(),
            config: config.clone(),
            slot: slot.clone(),
            events: p.events.clone(),
            stats: stats.clone(),
        });
        match stage {
            Ok(handle) => Some((slot, handle, 1.0 / config.scan_fps)),
            Err(e) => {
                tracing::error!(camera = %p.camera, error = %e, "cannot start the QR stage; QR decoding is off");
                None
            }
        }
    });
    let mut next_qr_t = f64::NEG_INFINITY;
    let mut tracker = Tracker::new(p.tracker.clone());
    let mut last_t = f64::NEG_INFINITY;
    // Maps stream time to wall time for the passage's first_seen.
    let mut clock_ref: (f64, DateTime<Utc>) = (0.0, Utc::now());
    let mut frame_size = (1.0, 1.0);
    let mut view = LaneView::new(p.view.clone(), 1, 1);
    let mut gate = MotionGate::new(p.motion.clone());
    let mut last_reads = (Vec::new(), Vec::new());
    loop {
        let frame = match p.slot.take_timeout(Duration::from_millis(500)) {
            Taken::Frame(f) => f,
            Taken::Closed => break,
            Taken::Timeout => {
                if p.live {
                    let t = process_clock();
                    let wall = Utc::now();
                    emit(&p, tracker.update(t, &[]), (t, wall), wall);
                    count_closed(&p, &mut tracker, (t, wall), frame_size);
                }
                continue;
            }
        };
        if frame.t < last_t {
            // A recorded stream started over: close what the previous run left open.
            emit(&p, tracker.flush(), clock_ref, frame.captured_at);
            count_closed(&p, &mut tracker, clock_ref, frame_size);
        }
        if frame.t < next_qr_t - 1.0 {
            next_qr_t = f64::NEG_INFINITY; // the stream started over
        }
        if let Some((slot, _, every)) = &qr {
            if frame.t >= next_qr_t {
                next_qr_t = frame.t + every;
                if offer_to_qr(slot, &frame) {
                    if let Some((_, stats)) = &p.qr {
                        stats.skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        last_t = frame.t;
        clock_ref = (frame.t, frame.captured_at);
        {
            use opencv::prelude::MatTraitConst;
            frame_size = (
                frame.image.cols().max(1) as f64,
                frame.image.rows().max(1) as f64,
            );
        }
        p.stats.frames.fetch_add(1, Ordering::Relaxed);
        let lane = read_lane(&p, &mut view, &mut gate, &frame, &mut last_reads);
        let (reads, unread) = match lane {
            Ok(r) => r,
            Err(e) => {
                p.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(camera = %p.camera, error = %format!("{e:#}"), "frame could not be read; skipped");
                continue;
            }
        };
        p.stats
            .reads
            .fetch_add(reads.len() as u64, Ordering::Relaxed);
        for r in &reads {
            tracing::debug!(camera = %p.camera, plate = %r.plate, confidence = r.confidence, t = frame.t, "plate read");
        }
        let t_track = std::time::Instant::now();
        emit(
            &p,
            tracker.update_with_unread(frame.t, &reads, &unread),
            clock_ref,
            frame.captured_at,
        );
        count_closed(&p, &mut tracker, clock_ref, frame_size);
        if let Some(t) = &p.timings {
            StageTimes::record(&t.track, t_track);
        }
        *p.latest.lock().expect("latest frame lock") = Some(frame.image);
    }
    emit(&p, tracker.flush(), clock_ref, Utc::now());
    count_closed(&p, &mut tracker, clock_ref, frame_size);
    if let Some((slot, handle, _)) = qr {
        slot.close();
        let _ = handle.join();
    }
}

/// Reads the plates in the lane of one frame, or reuses the previous frame's reads when the
/// motion gate finds the lane still (so tracks behave as if the frame had been read).
fn read_lane(
    p: &PipelineParts,
    view: &mut LaneView,
    gate: &mut MotionGate,
    frame: &crate::source::Frame,
    last_reads: &mut (Vec<PlateRead>, Vec<BBox>),
) -> anyhow::Result<(Vec<PlateRead>, Vec<BBox>)> {
    let t_gate = std::time::Instant::now();
    let lane = view.cut(&frame.image)?;
    let read = gate.should_read(&lane, frame.t)?;
    if let Some(t) = &p.timings {
        StageTimes::record(&t.gate, t_gate);
    }
    if !read {
        p.stats.still.fetch_add(1, Ordering::Relaxed);
        return Ok(last_reads.clone());
    }
    p.stats.inferred.fetch_add(1, Ordering::Relaxed);
    let t_read = std::time::Instant::now();
    let (reads, unread) = {
        let mut reader = p.reader.lock().expect("reader lock");
        let reads = reader.read(&lane)?;
        (reads, view.place_boxes(reader.unread()))
    };
    if let Some(t) = &p.timings {
        StageTimes::record(&t.read, t_read);
    }
    let reads = (view.place(reads), unread);
    last_reads.clone_from(&reads);
    Ok(reads)
}

/// Hands a copy of the frame to the QR stage; returns whether a frame it had not taken yet was
/// replaced (the stage was busy).
fn offer_to_qr(slot: &FrameSlot, frame: &crate::source::Frame) -> bool {
    use opencv::prelude::MatTraitConst;
    let Ok(image) = frame.image.try_clone() else {
        return false;
    };
    let copy = crate::source::Frame {
        image,
        t: frame.t,
        captured_at: frame.captured_at,
        index: frame.index,
    };
    static NEVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    slot.put(copy, &NEVER)
}

fn emit(
    p: &PipelineParts,
    passages: Vec<Passage>,
    clock_ref: (f64, DateTime<Utc>),
    at: DateTime<Utc>,
) {
    for pass in passages {
        let first_seen = clock_ref.1
            - ChronoDuration::milliseconds(((clock_ref.0 - pass.first_seen) * 1000.0) as i64);
        let body = PlateEvent {
            plate: pass.plate.clone(),
            plate_raw: pass.plate_raw.clone(),
            region: pass.region.as_str().to_owned(),
            confidence: (pass.confidence * 1000.0).round() / 1000.0,
            bbox: pass.bbox.to_px(),
            frames: pass.frames,
            first_seen: format_ts(first_seen.min(at)),
        };
        match p
            .events
            .emit("events/plate", PLATE_SCHEMA, &p.camera, &p.lane, at, body)
        {
            Ok(seq) => {
                p.stats.passages.fetch_add(1, Ordering::Relaxed);
                tracing::info!(camera = %p.camera, plate = %pass.plate, seq, frames = pass.frames, "plate passage");
            }
            Err(e) => {
                p.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(camera = %p.camera, plate = %pass.plate, error = %e, "plate event not stored (counted in status)");
            }
        }
    }
}

/// Counts the vehicles whose tracks ended in the camera's yard, if it has one. A track is counted
/// when it ends, not when its plate is first published: only then is its whole motion across a
/// `both` gate line known, and a vehicle whose plate was never read counts too (`plate: null`).
fn count_closed(
    p: &PipelineParts,
    tracker: &mut Tracker,
    clock_ref: (f64, DateTime<Utc>),
    frame_size: (f64, f64),
) {
    let closed = tracker.take_closed();
    let Some(y) = &p.yard else { return };
    for track in closed {
        let last_seen = clock_ref.1
            - ChronoDuration::milliseconds(((clock_ref.0 - track.last_seen) * 1000.0) as i64);
        y.count(p, &track, frame_size, last_seen.min(clock_ref.1));
    }
}
