//! The per-camera plate pipeline: frames → plate reads → tracks → one event per passage. It also
//! offers frames to the camera's side stages (QR, faces), each on its own thread.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::event::{format_ts, EventFactory, Origin, PlateEvent};
use crate::heartbeat::Heartbeat;
use crate::motion::MotionConfig;
use crate::plate::lane::PlateLane;
use crate::plate::lane_view::LaneViewConfig;
use crate::plate::reader::PlateReader;
use crate::plate::tracker::{ClosedTrack, Passage, TrackerOptions};
use crate::qr::config::CameraQrConfig;
use crate::qr::stage::{self as qr_stage, QrStageParts, QrStats};
use crate::source::camera::{FrameSlot, Taken};
use crate::source::process_clock;
use crate::yard::config::CameraYardConfig;
use crate::yard::engine::PassageInput;
use crate::yard::service::YardService;

/// Counters of one camera's pipeline.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub frames: AtomicU64,
    /// Frames the plate models ran on.
    pub inferred: AtomicU64,
    /// Of those, frames they ran on only the parts of the lane that moved.
    pub inferred_part: AtomicU64,
    /// Frames the motion gate found still: the previous reads were reused.
    pub still: AtomicU64,
    pub reads: AtomicU64,
    pub passages: AtomicU64,
    /// Vehicles whose reads disagreed: nothing was published for them.
    pub withheld: AtomicU64,
    /// Chinese plate reads whose layout contradicted the plate's colour (a seven-character read
    /// of a green new-energy plate): refused by the reader, so no vehicle is published with them.
    pub colour_refused: AtomicU64,
    /// Plate reads refused by the reader because two looks at the plate read it differently.
    pub looks_disagreed: AtomicU64,
    pub errors: AtomicU64,
    /// Bumped every loop iteration, idle ones included, for the service watchdog (not in status).
    pub heartbeat: Heartbeat,
}

impl PipelineStats {
    /// The counters as the `pipeline` object of a camera in `…/status`.
    pub fn snapshot(&self) -> serde_json::Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "frames": n(&self.frames),
            "inferred": n(&self.inferred),
            "inferred_part": n(&self.inferred_part),
            "still": n(&self.still),
            "reads": n(&self.reads),
            "passages": n(&self.passages),
            "withheld": n(&self.withheld),
            "colour_refused": n(&self.colour_refused),
            "looks_disagreed": n(&self.looks_disagreed),
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
    /// The face stage on a frame it scanned: detect, align, embed and rate (its own thread).
    pub face: Mutex<Vec<f32>>,
}

impl StageTimes {
    pub(crate) fn record_ms(&self, slot: &Mutex<Vec<f32>>, took: Duration) {
        let ms = took.as_secs_f32() * 1000.0;
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
    /// The camera's face stage, if enabled (started by the lane, which loaded its models): frames
    /// are offered to it like to the QR stage; the pipeline ends it when it ends.
    pub face: Option<SideStage>,
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
        let centre = |b: &crate::vision::BBox| {
            (
                (b.x + b.w / 2.0) as f64 / frame.0,
                (b.y + b.h / 2.0) as f64 / frame.1,
            )
        };
        let direction = c.direction(centre(&pass.first_bbox), centre(&pass.last_bbox));
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
/// Starts the pipeline thread; `on_end` runs on it when the pipeline has ended (its camera
/// closed the slot, and the open tracks were flushed).
pub fn spawn(
    parts: PipelineParts,
    on_end: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("pipe-{}", parts.camera))
        .spawn(move || {
            run(parts);
            on_end();
        })
}

fn run(mut p: PipelineParts) {
    let qr = p.qr.as_ref().and_then(|(config, stats)| {
        let slot = FrameSlot::new(crate::source::Handoff::Newest);
        let stage = qr_stage::spawn(QrStageParts {
            camera: p.camera.clone(),
            lane: p.lane.clone(),
            config: config.clone(),
            slot: slot.clone(),
            events: p.events.clone(),
            stats: stats.clone(),
        });
        match stage {
            Ok(handle) => {
                let stats = stats.clone();
                let on_skip = move || {
                    stats.skipped.fetch_add(1, Ordering::Relaxed);
                };
                Some(SideStage::new(slot, handle, config.scan_fps, on_skip))
            }
            Err(e) => {
                tracing::error!(camera = %p.camera, error = %e, "cannot start the QR stage; QR decoding is off");
                None
            }
        }
    });
    let mut side: Vec<SideStage> = qr.into_iter().chain(p.face.take()).collect();
    let reads_parts = p.reader.lock().expect("reader lock").reads_parts();
    let mut lane = PlateLane::new(
        p.view.clone(),
        p.motion.clone(),
        p.tracker.clone(),
        reads_parts,
    );
    // Maps stream time to wall time for the passage's first_seen.
    let mut clock = StreamClock::new();
    let mut frame_size = (1.0, 1.0);
    let stall = stall_requested(&p.camera);
    loop {
        p.stats.heartbeat.beat();
        let frame = match p.slot.take_timeout(Duration::from_millis(500)) {
            Taken::Frame(f) => f,
            Taken::Closed => break,
            Taken::Timeout => {
                if p.live {
                    let t = process_clock();
                    let wall = Utc::now();
                    clock.set(t, wall);
                    emit(&p, lane.on_idle(t), &clock, wall);
                    count_closed(&p, &mut lane, &clock, frame_size);
                }
                continue;
            }
        };
        for stage in &mut side {
            stage.offer(&frame);
        }
        // Passages that a restarted recording closes belong to the previous run's clock.
        let previous_clock = clock.clone();
        clock.set(frame.t, frame.captured_at);
        {
            use opencv::prelude::MatTraitConst;
            frame_size = (
                frame.image.cols().max(1) as f64,
                frame.image.rows().max(1) as f64,
            );
        }
        let mut read = |image: &opencv::core::Mat, part: Option<opencv::core::Rect>| {
            let mut reader = p.reader.lock().expect("reader lock");
            // The reader's count is cumulative and may be shared with other cameras: this
            // frame's part is what it added under the lock.
            let before = reader.refused();
            let reads = reader.read_part(image, part)?;
            let refused = reader.refused() - before;
            p.stats
                .colour_refused
                .fetch_add(refused.colour, Ordering::Relaxed);
            p.stats
                .looks_disagreed
                .fetch_add(refused.looks_disagreed, Ordering::Relaxed);
            Ok((reads, reader.unread().to_vec()))
        };
        let done = match lane.on_frame(&frame.image, frame.t, &mut read) {
            Ok(done) => done,
            Err(e) => {
                p.stats.frames.fetch_add(1, Ordering::Relaxed);
                p.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(camera = %p.camera, error = %format!("{e:#}"), "frame could not be read; skipped");
                continue;
            }
        };
        // Counted together once the frame is done, so a status snapshot taken while a frame is
        // being read still adds up (frames = inferred + still + errors).
        p.stats.frames.fetch_add(1, Ordering::Relaxed);
        if done.inferred {
            p.stats.inferred.fetch_add(1, Ordering::Relaxed);
            if !done.parts.is_empty() {
                p.stats.inferred_part.fetch_add(1, Ordering::Relaxed);
            }
            for part in &done.parts {
                tracing::trace!(camera = %p.camera, t = frame.t, x = part.x, y = part.y, w = part.width, h = part.height, "read a part of the lane that moved");
            }
        } else {
            p.stats.still.fetch_add(1, Ordering::Relaxed);
        }
        p.stats
            .reads
            .fetch_add(lane.reads().len() as u64, Ordering::Relaxed);
        for r in lane.reads() {
            tracing::debug!(camera = %p.camera, plate = %r.plate, confidence = r.confidence, t = frame.t, "plate read");
        }
        let t_emit = std::time::Instant::now();
        let (restarted, current): (Vec<_>, Vec<_>) = done
            .passages
            .into_iter()
            .partition(|pass| pass.last_seen > frame.t);
        emit(&p, restarted, &previous_clock, frame.captured_at);
        emit(&p, current, &clock, frame.captured_at);
        count_closed(&p, &mut lane, &clock, frame_size);
        if let Some(t) = &p.timings {
            t.record_ms(&t.gate, done.gate);
            if done.inferred {
                t.record_ms(&t.read, done.read);
            }
            t.record_ms(&t.track, done.track + t_emit.elapsed());
        }
        *p.latest.lock().expect("latest frame lock") = Some(frame.image);
        if stall {
            hang_until_closed(&p);
            break;
        }
    }
    emit(&p, lane.finish(), &clock, Utc::now());
    count_closed(&p, &mut lane, &clock, frame_size);
    for stage in side {
        stage.finish();
    }
    p.stats.heartbeat.end();
}

/// Fault injection for the service tests, off unless set: `GATEWATCH_TEST_STALL_PIPELINE=<camera
/// id>` makes that camera's pipeline hang after its first frame, as a stuck inference would (read
/// once per process; see `docs/design.md`, "Service protocol").
const STALL_HOOK: &str = "GATEWATCH_TEST_STALL_PIPELINE";

fn stall_requested(camera: &str) -> bool {
    static STALL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    STALL
        .get_or_init(|| std::env::var(STALL_HOOK).ok().filter(|c| !c.is_empty()))
        .as_deref()
        == Some(camera)
}

/// The injected stall: no heartbeat and no frame read until the slot closes (so a stop still
/// works); the frames the camera keeps sending are dropped.
fn hang_until_closed(p: &PipelineParts) {
    tracing::warn!(camera = %p.camera, hook = STALL_HOOK, "fault injection: pipeline stalled on purpose (its heartbeat stops)");
    while !matches!(
        p.slot.take_timeout(Duration::from_millis(200)),
        Taken::Closed
    ) {}
}

/// Maps a stream time (seconds) to wall time, from the stream and wall time of the latest frame.
#[derive(Debug, Clone)]
struct StreamClock {
    t: f64,
    wall: DateTime<Utc>,
}

impl StreamClock {
    fn new() -> Self {
        Self {
            t: 0.0,
            wall: Utc::now(),
        }
    }

    fn set(&mut self, t: f64, wall: DateTime<Utc>) {
        (self.t, self.wall) = (t, wall);
    }

    /// The wall time of stream time `t`, never later than the latest frame.
    fn wall_of(&self, t: f64) -> DateTime<Utc> {
        let back = ChronoDuration::milliseconds(((self.t - t) * 1000.0) as i64);
        (self.wall - back).min(self.wall)
    }
}

/// A stage on its own thread that the pipeline offers frames to, at most `scan_fps` a second,
/// through a newest-wins slot: a busy stage skips frames (counted) and never slows the plates.
pub struct SideStage {
    slot: Arc<FrameSlot>,
    handle: JoinHandle<()>,
    every: f64,
    next_t: f64,
    on_skip: Box<dyn Fn() + Send>,
}

impl SideStage {
    /// A started stage reading `slot`; `on_skip` counts a frame it had not taken yet when the
    /// next came.
    pub fn new(
        slot: Arc<FrameSlot>,
        handle: JoinHandle<()>,
        scan_fps: f64,
        on_skip: impl Fn() + Send + 'static,
    ) -> Self {
        Self {
            slot,
            handle,
            every: 1.0 / scan_fps,
            next_t: f64::NEG_INFINITY,
            on_skip: Box::new(on_skip),
        }
    }

    /// Hands a copy of the frame over when it is time to scan again.
    fn offer(&mut self, frame: &crate::source::Frame) {
        if frame.t < self.next_t - 1.0 {
            self.next_t = f64::NEG_INFINITY; // the stream started over
        }
        if frame.t < self.next_t {
            return;
        }
        self.next_t = frame.t + self.every;
        use opencv::prelude::MatTraitConst;
        let Ok(image) = frame.image.try_clone() else {
            return;
        };
        let copy = crate::source::Frame {
            image,
            t: frame.t,
            captured_at: frame.captured_at,
            index: frame.index,
        };
        static NEVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if self.slot.put(copy, &NEVER) {
            (self.on_skip)();
        }
    }

    /// Closes the slot and waits for the stage to finish what it holds.
    pub fn finish(self) {
        self.slot.close();
        let _ = self.handle.join();
    }
}

fn emit(p: &PipelineParts, passages: Vec<Passage>, clock: &StreamClock, at: DateTime<Utc>) {
    for pass in passages {
        let first_seen = clock.wall_of(pass.first_seen);
        let body = PlateEvent {
            plate: pass.plate.clone(),
            plate_raw: pass.plate_raw.clone(),
            region: pass.region.as_str().to_owned(),
            confidence: (pass.confidence * 1000.0).round() / 1000.0,
            bbox: pass.bbox.to_px(),
            frames: pass.frames,
            first_seen: format_ts(first_seen.min(at)),
        };
        let origin = Origin {
            camera: &p.camera,
            lane: &p.lane,
        };
        match p.events.emit(origin, at, &body) {
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
    lane: &mut PlateLane,
    clock: &StreamClock,
    frame_size: (f64, f64),
) {
    for w in lane.take_withheld() {
        p.stats.withheld.fetch_add(1, Ordering::Relaxed);
        tracing::info!(camera = %p.camera, candidates = ?w.candidates, frames = w.frames, "passage withheld: the reads of this vehicle disagree, nothing published (counted in status as pipeline.withheld)");
    }
    let closed = lane.take_closed();
    let Some(y) = &p.yard else { return };
    for track in closed {
        y.count(p, &track, frame_size, clock.wall_of(track.last_seen));
    }
}
