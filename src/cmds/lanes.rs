//! The cameras and plate pipelines of a config, started and stopped together: what `run` serves
//! and what `bench pipeline` measures, so the bench measures the product.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{CameraConfig, Config};
use crate::event::EventFactory;
use crate::pipeline::{self, PipelineParts, PipelineStats, StageTimes, YardLane};
use crate::plate::reader::PlateReader;
use crate::qr::stage::QrStats;
use crate::source::camera::{self, CameraHealth, FrameSlot};
use crate::source::SourceSpec;
use crate::yard::service::YardService;

/// A loaded model set shared by some of the cameras.
pub type SharedReader = Arc<Mutex<PlateReader>>;

/// Loads `runtime.readers` copies of the configured model set (0 = one per camera, at most one
/// per CPU core): cameras take turns on a copy, so more copies let more cores infer at once.
pub fn load_readers(cfg: &Config, model_dir: &Path, cameras: usize) -> Result<Vec<SharedReader>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Camera i infers on copy i % n, so copies beyond the number of cameras would only hold
    // memory.
    let n = match cfg.runtime.readers {
        0 => cameras.clamp(1, cores),
        n => n.min(cameras.max(1)),
    };
    (0..n)
        .map(|_| {
            let reader = PlateReader::load(
                cfg.models.set,
                model_dir,
                cfg.runtime.onnxruntime.as_deref(),
                cfg.reader_options(),
            )
            .with_context(|| format!("cannot load model set {:?}", cfg.models.set.as_str()))?;
            Ok(Arc::new(Mutex::new(reader)))
        })
        .collect()
}

/// What the lanes share.
pub struct LaneDeps {
    pub readers: Vec<SharedReader>,
    pub events: Arc<EventFactory>,
    pub yards: Arc<YardService>,
    pub stop: Arc<AtomicBool>,
    /// Per-stage latencies are recorded when set (benchmarks).
    pub timings: Option<Arc<StageTimes>>,
}

/// The running cameras and their pipelines, with their counters.
pub struct Lanes {
    pub health: BTreeMap<String, Arc<CameraHealth>>,
    pub stats: BTreeMap<String, Arc<PipelineStats>>,
    pub qr_stats: BTreeMap<String, Arc<QrStats>>,
    /// The latest frame of each camera, for snapshots.
    pub latest: BTreeMap<String, Arc<Mutex<Option<opencv::core::Mat>>>>,
    pub slots: Vec<Arc<FrameSlot>>,
    pub camera_threads: Vec<JoinHandle<()>>,
    pub pipeline_threads: Vec<JoinHandle<()>>,
}

impl Lanes {
    /// Starts a camera thread and a pipeline thread per camera of `cameras`; camera `i` infers
    /// on reader `i % readers`.
    pub fn start(cfg: &Config, cameras: &[CameraConfig], deps: &LaneDeps) -> Result<Lanes> {
        let mut lanes = Lanes {
            health: BTreeMap::new(),
            stats: BTreeMap::new(),
            qr_stats: BTreeMap::new(),
            latest: BTreeMap::new(),
            slots: Vec::new(),
            camera_threads: Vec::new(),
            pipeline_threads: Vec::new(),
        };
        for (i, cam) in cameras.iter().enumerate() {
            let spec = SourceSpec::parse(&cam.url)
                .map_err(|e| anyhow::anyhow!("camera {}: {e}", cam.id))?;
            let live = matches!(
                spec,
                SourceSpec::Capture { live: true, .. } | SourceSpec::V4l2(_)
            );
            let health = Arc::new(CameraHealth::default());
            let stats = Arc::new(PipelineStats::default());
            let qr_stats = Arc::new(QrStats::default());
            let latest = Arc::new(Mutex::new(None));
            let slot = FrameSlot::new(cam.handoff);
            lanes.camera_threads.push(camera::spawn(
                spec.build(cam.fps),
                cam.camera_options(),
                slot.clone(),
                health.clone(),
                deps.stop.clone(),
            )?);
            lanes.pipeline_threads.push(pipeline::spawn(PipelineParts {
                camera: cam.id.clone(),
                lane: cam.lane.clone(),
                live,
                slot: slot.clone(),
                reader: deps.readers[i % deps.readers.len()].clone(),
                tracker: cfg.plates.tracker_options(),
                events: deps.events.clone(),
                stats: stats.clone(),
                latest: latest.clone(),
                qr: cam.qr.clone().map(|c| (c, qr_stats.clone())),
                view: cam.lane_view(),
                motion: cam.motion.clone(),
                yard: cam.yard.clone().map(|config| YardLane {
                    service: deps.yards.clone(),
                    config,
                }),
                timings: deps.timings.clone(),
            })?);
            lanes.slots.push(slot);
            lanes.health.insert(cam.id.clone(), health);
            lanes.stats.insert(cam.id.clone(), stats);
            lanes.qr_stats.insert(cam.id.clone(), qr_stats);
            lanes.latest.insert(cam.id.clone(), latest);
        }
        Ok(lanes)
    }

    /// Gives camera threads up to two seconds to end (`stop` set, slots closed): a thread blocked
    /// opening a dead stream is left behind rather than holding up the shutdown.
    pub fn wait_cameras(camera_threads: Vec<JoinHandle<()>>) {
        let deadline = Instant::now() + Duration::from_secs(2);
        for t in camera_threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
