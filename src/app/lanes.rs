//! The lanes of a box: per camera, a camera thread feeding a plate pipeline (and the stages the
//! pipeline starts), with their counters. Started and stopped together: what `run` serves and what
//! `bench pipeline` measures, so the bench measures the product. A new per-camera stage is added
//! to [`Lane`] and [`LaneOptions`], here only.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::shutdown::Shutdown;
use crate::event::EventFactory;
use crate::face::config::CameraFaceConfig;
use crate::face::service::{FaceModels, FaceService};
use crate::face::stage::{self as face_stage, FaceStageParts, FaceStats};
use crate::models::ModelSet;
use crate::motion::MotionConfig;
use crate::pipeline::{self, PipelineParts, PipelineStats, SideStage, StageTimes, YardLane};
use crate::plate::lane_view::LaneViewConfig;
use crate::plate::reader::{PlateReader, ReaderOptions};
use crate::plate::tracker::TrackerOptions;
use crate::qr::config::CameraQrConfig;
use crate::qr::stage::QrStats;
use crate::source::camera::{self, CameraHealth, CameraOptions, FrameSlot};
use crate::source::{Handoff, SourceSpec};
use crate::yard::config::CameraYardConfig;
use crate::yard::service::YardService;

/// A loaded model set shared by some of the cameras.
pub type SharedReader = Arc<Mutex<PlateReader>>;

/// The plate model set to load, and how many copies.
#[derive(Debug, Clone)]
pub struct ReaderSetOptions {
    pub set: ModelSet,
    pub model_dir: PathBuf,
    /// ONNX Runtime library to load instead of the default one.
    pub onnxruntime: Option<PathBuf>,
    pub options: ReaderOptions,
    /// Copies wanted; 0 = one per camera, at most one per CPU core.
    pub copies: usize,
}

/// Loads the copies of the model set: cameras take turns on a copy, so more copies let more
/// cores infer at once.
pub fn load_readers(opts: &ReaderSetOptions, cameras: usize) -> Result<Vec<SharedReader>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Camera i infers on copy i % n, so copies beyond the number of cameras would only hold
    // memory.
    let n = match opts.copies {
        0 => cameras.clamp(1, cores),
        n => n.min(cameras.max(1)),
    };
    (0..n)
        .map(|_| {
            let reader = PlateReader::load(
                opts.set,
                &opts.model_dir,
                opts.onnxruntime.as_deref(),
                opts.options.clone(),
            )
            .with_context(|| format!("cannot load model set {:?}", opts.set.as_str()))?;
            Ok(Arc::new(Mutex::new(reader)))
        })
        .collect()
}

/// Everything one lane needs to know, resolved from its camera's configuration.
#[derive(Debug, Clone)]
pub struct LaneOptions {
    /// Camera id (the key of the lane).
    pub camera: String,
    /// Lane id carried by its events.
    pub lane: String,
    /// Source URL (`rtsp://…`, a file, `folder:…`, `v4l2:…`).
    pub url: String,
    /// Frame rate cap of the source.
    pub fps: Option<f64>,
    pub handoff: Handoff,
    pub source: CameraOptions,
    pub tracker: TrackerOptions,
    pub view: LaneViewConfig,
    pub motion: MotionConfig,
    pub qr: Option<CameraQrConfig>,
    pub face: Option<CameraFaceConfig>,
    pub yard: Option<CameraYardConfig>,
}

/// What the lanes share.
pub struct LaneDeps {
    pub readers: Vec<SharedReader>,
    pub events: Arc<EventFactory>,
    pub yards: Arc<YardService>,
    /// The face gallery the face stages match against.
    pub faces: Arc<FaceService>,
    /// Where the face models are: each face-scanning camera loads its own copy.
    pub face_models: FaceModels,
    pub shutdown: Shutdown,
    /// Per-stage latencies are recorded when set (benchmarks).
    pub timings: Option<Arc<StageTimes>>,
}

/// One camera's lane: its counters and its threads.
pub struct Lane {
    pub health: Arc<CameraHealth>,
    pub stats: Arc<PipelineStats>,
    /// Present when the camera scans QR codes.
    pub qr_stats: Option<Arc<QrStats>>,
    /// Present when the camera recognises faces.
    pub face_stats: Option<Arc<FaceStats>>,
    /// The latest frame, for snapshots.
    pub latest: Arc<Mutex<Option<opencv::core::Mat>>>,
    slot: Arc<FrameSlot>,
    camera_thread: Option<JoinHandle<()>>,
    pipeline_thread: Option<JoinHandle<()>>,
}

/// Loads a camera's face models (a missing model fails the start, naming the camera) and starts
/// its face stage.
fn start_face_stage(
    o: &LaneOptions,
    config: &CameraFaceConfig,
    live: bool,
    deps: &LaneDeps,
) -> Result<(SideStage, Arc<FaceStats>)> {
    let reader = deps
        .face_models
        .load(config.detector_long_side)
        .with_context(|| format!("camera {}: [camera.face]", o.camera))?;
    let stats = Arc::new(FaceStats::default());
    let slot = FrameSlot::new(Handoff::Newest);
    let handle = face_stage::spawn(FaceStageParts {
        camera: o.camera.clone(),
        lane: o.lane.clone(),
        live,
        config: config.clone(),
        slot: slot.clone(),
        reader,
        gallery: deps.faces.clone(),
        events: deps.events.clone(),
        stats: stats.clone(),
        timings: deps.timings.clone(),
    })
    .with_context(|| format!("camera {}: cannot start the face stage", o.camera))?;
    let counter = stats.clone();
    let on_skip = move || {
        counter.skipped.fetch_add(1, Ordering::Relaxed);
    };
    Ok((
        SideStage::new(slot, handle, config.scan_fps, on_skip),
        stats,
    ))
}

/// The running lanes, by camera id.
pub struct Lanes {
    lanes: BTreeMap<String, Lane>,
}

impl Lanes {
    /// Starts a camera thread and a pipeline thread per lane; lane `i` infers on reader
    /// `i % readers`. When every pipeline has ended (recorded input that stops at its end), a
    /// shutdown is requested.
    pub fn start(options: &[LaneOptions], deps: &LaneDeps) -> Result<Lanes> {
        anyhow::ensure!(!deps.readers.is_empty(), "no plate reader loaded");
        let running = Arc::new(AtomicUsize::new(options.len()));
        if options.is_empty() {
            // As when the last camera ends: there is nothing to serve.
            deps.shutdown.request("all cameras ended (none is enabled)");
        }
        let mut lanes = BTreeMap::new();
        for (i, o) in options.iter().enumerate() {
            let spec = SourceSpec::parse(&o.url)
                .map_err(|e| anyhow::anyhow!("camera {}: {e}", o.camera))?;
            let live = matches!(
                spec,
                SourceSpec::Capture { live: true, .. } | SourceSpec::V4l2(_)
            );
            let health = Arc::new(CameraHealth::default());
            let stats = Arc::new(PipelineStats::default());
            let qr_stats = o.qr.as_ref().map(|_| Arc::new(QrStats::default()));
            let face = match &o.face {
                Some(config) => Some(start_face_stage(o, config, live, deps)?),
                None => None,
            };
            let face_stats = face.as_ref().map(|(_, stats)| stats.clone());
            let latest = Arc::new(Mutex::new(None));
            let slot = FrameSlot::new(o.handoff);
            let camera_thread = camera::spawn(
                spec.build(o.fps),
                o.source.clone(),
                slot.clone(),
                health.clone(),
                deps.shutdown.flag(),
            )?;
            let parts = PipelineParts {
                camera: o.camera.clone(),
                lane: o.lane.clone(),
                live,
                slot: slot.clone(),
                reader: deps.readers[i % deps.readers.len()].clone(),
                tracker: o.tracker.clone(),
                events: deps.events.clone(),
                stats: stats.clone(),
                latest: latest.clone(),
                qr: o.qr.clone().zip(qr_stats.clone()),
                face: face.map(|(stage, _)| stage),
                view: o.view.clone(),
                motion: o.motion.clone(),
                yard: o.yard.clone().map(|config| YardLane {
                    service: deps.yards.clone(),
                    config,
                }),
                timings: deps.timings.clone(),
            };
            let (running, shutdown) = (running.clone(), deps.shutdown.clone());
            let pipeline_thread = pipeline::spawn(parts, move || {
                if running.fetch_sub(1, Ordering::SeqCst) == 1 {
                    shutdown.request("all cameras ended");
                }
            })?;
            lanes.insert(
                o.camera.clone(),
                Lane {
                    health,
                    stats,
                    qr_stats,
                    face_stats,
                    latest,
                    slot,
                    camera_thread: Some(camera_thread),
                    pipeline_thread: Some(pipeline_thread),
                },
            );
        }
        Ok(Lanes { lanes })
    }

    /// The lanes, by camera id.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Lane)> {
        self.lanes.iter()
    }

    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    /// Stops every lane; the shutdown must have been requested (the threads poll its flag).
    /// Closing the slots lets every pipeline flush its open tracks and end even while its camera
    /// thread is still blocked opening or reading a dead stream; camera threads then get up to
    /// two seconds, and one still blocked is left behind rather than holding up the stop.
    pub fn stop(&mut self) {
        for lane in self.lanes.values() {
            lane.slot.close();
        }
        for lane in self.lanes.values_mut() {
            if let Some(t) = lane.pipeline_thread.take() {
                let _ = t.join();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for lane in self.lanes.values_mut() {
            let Some(t) = lane.camera_thread.take() else {
                continue;
            };
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }

    /// Frames taken and passages published, over all lanes.
    pub fn totals(&self) -> (u64, u64) {
        self.lanes.values().fold((0, 0), |(f, p), l| {
            (
                f + l.stats.frames.load(Ordering::Relaxed),
                p + l.stats.passages.load(Ordering::Relaxed),
            )
        })
    }
}
