//! `gatewatch run`: cameras → plate pipelines → MQTT, until a signal or every camera ends.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cmds::run_commands::RunCommands;
use crate::config::Config;
use crate::delivery::{Delivery, MqttLink, Outbox, StatusFn};
use crate::event::{format_ts, EventFactory};
use crate::models;
use crate::pipeline::{self, PipelineParts, PipelineStats, YardLane};
use crate::plate::grammar::Region;
use crate::plate::reader::{PlateReader, ReaderOptions};
use crate::plate::tracker::TrackerOptions;
use crate::qr::stage::QrStats;
use crate::source::camera::{self, CameraHealth, CameraOptions, FrameSlot};
use crate::source::{capture, SourceSpec};
use crate::yard::service::YardService;

/// Arguments of `gatewatch run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Reader options from the config.
pub fn reader_options(cfg: &Config) -> ReaderOptions {
    ReaderOptions {
        regions: cfg
            .plates
            .regions
            .iter()
            .filter_map(|r| Region::parse(r))
            .collect(),
        min_confidence: cfg.plates.min_confidence,
        detector_max_side: cfg.plates.detector_max_side,
        threads: cfg.runtime.threads,
        ..ReaderOptions::default()
    }
}

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let cfg = Config::load(&args.config)?;
    capture::configure_ffmpeg();
    let started = Instant::now();
    let model_dir = models::model_dir(cfg.models.dir.as_deref());
    let reader = PlateReader::load(
        cfg.models.set,
        &model_dir,
        cfg.runtime.onnxruntime.as_deref(),
        reader_options(&cfg),
    )
    .with_context(|| format!("cannot load model set {:?}", cfg.models.set.as_str()))?;
    tracing::info!(set = cfg.models.set.as_str(), dir = %model_dir.display(), "models loaded");
    let reader = Arc::new(Mutex::new(reader));
    let outbox_opts = cfg.outbox_options();
    let outbox = Outbox::open(outbox_opts.clone())
        .with_context(|| format!("cannot open the outbox in {}", outbox_opts.dir.display()))?;
    tracing::info!(
        last_seq = outbox.last_seq(),
        undelivered = outbox.recovered(),
        dir = %outbox_opts.dir.display(),
        "outbox opened; undelivered events are sent first"
    );
    let delivery = Delivery::new(outbox);
    let events = Arc::new(EventFactory::new(
        cfg.site.clone(),
        cfg.device.clone(),
        delivery.clone(),
    ));

    let yards = YardService::open(&cfg.yards, &cfg.state_dir, events.clone(), delivery.clone())
        .context("cannot open the yard state")?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let _guard = rt.enter();

    let stop = Arc::new(AtomicBool::new(false));
    let cameras: Vec<_> = cfg.cameras.iter().filter(|c| c.enabled).cloned().collect();
    let health: BTreeMap<String, Arc<CameraHealth>> = cameras
        .iter()
        .map(|c| (c.id.clone(), Arc::new(CameraHealth::default())))
        .collect();
    let stats: BTreeMap<String, Arc<PipelineStats>> = cameras
        .iter()
        .map(|c| (c.id.clone(), Arc::new(PipelineStats::default())))
        .collect();
    let qr_stats: BTreeMap<String, Arc<QrStats>> = cameras
        .iter()
        .map(|c| (c.id.clone(), Arc::new(QrStats::default())))
        .collect();
    let status: StatusFn = {
        let (health, stats, qr_stats, started_at, delivery) = (
            health.clone(),
            stats.clone(),
            qr_stats.clone(),
            format_ts(chrono::Utc::now()),
            delivery.clone(),
        );
        let qr_on: std::collections::BTreeSet<String> = cameras
            .iter()
            .filter(|c| c.qr.is_some())
            .map(|c| c.id.clone())
            .collect();
        Arc::new(move || {
            let cams: serde_json::Map<String, serde_json::Value> = health
                .iter()
                .map(|(id, h)| {
                    let mut cam = h.snapshot();
                    cam["pipeline"] = stats[id].snapshot();
                    if qr_on.contains(id) {
                        cam["qr"] = qr_stats[id].snapshot();
                    }
                    (id.clone(), cam)
                })
                .collect();
            serde_json::json!({
                "state": "online",
                "version": env!("CARGO_PKG_VERSION"),
                "started_at": started_at,
                "uptime_s": started.elapsed().as_secs(),
                "cameras": cams,
                "outbox": delivery.status_fields(),
            })
        })
    };
    let latest: BTreeMap<String, Arc<Mutex<Option<opencv::core::Mat>>>> = cameras
        .iter()
        .map(|c| (c.id.clone(), Arc::new(Mutex::new(None))))
        .collect();
    let restart = Arc::new(tokio::sync::Notify::new());
    let commands = RunCommands {
        status: status.clone(),
        config_path: args.config.clone(),
        latest: latest.clone(),
        restart: restart.clone(),
        yards: yards.clone(),
    };
    let link = MqttLink::start(
        &cfg,
        delivery.clone(),
        status,
        Duration::from_secs(30),
        Some(Arc::new(commands)),
    )?;

    let mut camera_threads = Vec::new();
    let mut pipeline_threads = Vec::new();
    let mut slots = Vec::new();
    for cam in &cameras {
        let spec =
            SourceSpec::parse(&cam.url).map_err(|e| anyhow::anyhow!("camera {}: {e}", cam.id))?;
        let live = matches!(
            spec,
            SourceSpec::Capture { live: true, .. } | SourceSpec::V4l2(_)
        );
        let slot = FrameSlot::new(cam.handoff);
        slots.push(slot.clone());
        let opts = CameraOptions {
            id: cam.id.clone(),
            at_end: cam.at_end,
            max_fps: cam.fps,
            backoff_start: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        };
        camera_threads.push(camera::spawn(
            spec.build(cam.fps),
            opts,
            slot.clone(),
            health[&cam.id].clone(),
            stop.clone(),
        )?);
        pipeline_threads.push(pipeline::spawn(PipelineParts {
            camera: cam.id.clone(),
            lane: cam.lane.clone(),
            live,
            slot,
            reader: reader.clone(),
            tracker: TrackerOptions {
                confirm_frames: cfg.plates.confirm_frames,
                lost_after: cfg.plates.lost_after_s,
                min_iou: 0.2,
            },
            events: events.clone(),
            stats: stats[&cam.id].clone(),
            latest: latest[&cam.id].clone(),
            qr: cam.qr.clone().map(|c| (c, qr_stats[&cam.id].clone())),
            view: cam.lane_view(),
            motion: cam.motion.clone(),
            yard: cam.yard.clone().map(|config| YardLane {
                service: yards.clone(),
                config,
            }),
        })?);
    }
    tracing::info!(cameras = cameras.len(), yards = cfg.yards.len(), prefix = %cfg.topic_prefix(), "gatewatch running");
    let overstay_timer = {
        let yards = yards.clone();
        rt.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                let yards = yards.clone();
                let _ = tokio::task::spawn_blocking(move || yards.tick(chrono::Utc::now())).await;
            }
        })
    };

    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let joiner = std::thread::spawn(move || {
        for t in pipeline_threads {
            let _ = t.join();
        }
        let _ = done_tx.send(());
    });
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
            _ = term.recv() => tracing::info!("terminated; shutting down"),
            _ = done_rx => tracing::info!("all cameras ended; shutting down"),
            _ = restart.notified() => tracing::info!("reload_config: new config is valid; restarting to apply it"),
        }
        anyhow::Ok(())
    })?;
    stop.store(true, Ordering::Relaxed);
    overstay_timer.abort();
    // Closing the slots here lets every pipeline flush its open tracks and end even while a camera
    // thread is still blocked opening or reading a dead stream.
    for slot in &slots {
        slot.close();
    }
    let _ = joiner.join();
    let deadline = Instant::now() + Duration::from_secs(2);
    for t in camera_threads {
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
    let undelivered = rt.block_on(link.shutdown(Duration::from_secs(15)));
    let passages: u64 = stats
        .values()
        .map(|s| s.passages.load(Ordering::Relaxed))
        .sum();
    let frames: u64 = stats
        .values()
        .map(|s| s.frames.load(Ordering::Relaxed))
        .sum();
    tracing::info!(frames, passages, undelivered, "gatewatch stopped");
    if undelivered > 0 {
        tracing::warn!(
            undelivered,
            "events not yet acknowledged stay in the outbox and are sent after the next start"
        );
    }
    Ok(ExitCode::SUCCESS)
}
