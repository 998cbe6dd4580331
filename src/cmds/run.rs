//! `gatewatch run`: cameras → plate pipelines → MQTT, until a signal or every camera ends.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cmds::lanes::{self, LaneDeps, Lanes};
use crate::cmds::run_commands::RunCommands;
use crate::config::Config;
use crate::delivery::{Delivery, MqttLink, Outbox, StatusFn};
use crate::event::{format_ts, EventFactory};
use crate::models;
use crate::source::capture;
use crate::state_dir;
use crate::yard::service::YardService;

/// Arguments of `gatewatch run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
}

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let cfg = Config::load(&args.config)?;
    // Created before the outbox and the yards put plates in it, so it is private from the start.
    state_dir::create_private_dir(&cfg.state_dir)
        .with_context(|| format!("cannot create state_dir {}", cfg.state_dir.display()))?;
    if let Some(mode) = state_dir::open_to_others(&cfg.state_dir) {
        // The operator's directory: said, not changed (systemd's StateDirectoryMode sets it).
        tracing::warn!(state_dir = %cfg.state_dir.display(), mode = format!("{mode:o}"), "state_dir is open to other users, and holds plates and yard lists: chmod 700 it");
    }
    // One gatewatch per state_dir, held until `run` returns: a second one would hand out the same
    // seqs and overwrite the yard files.
    let _lock = state_dir::lock(&cfg.state_dir)?;
    capture::configure_ffmpeg();
    let started = Instant::now();
    let model_dir = models::model_dir(cfg.models.dir.as_deref());
    let cameras: Vec<_> = cfg.cameras.iter().filter(|c| c.enabled).cloned().collect();
    let readers = lanes::load_readers(&cfg, &model_dir, cameras.len())?;
    tracing::info!(set = cfg.models.set.as_str(), dir = %model_dir.display(), copies = readers.len(), "models loaded");
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
    let Lanes {
        health,
        stats,
        qr_stats,
        latest,
        slots,
        camera_threads,
        pipeline_threads,
    } = Lanes::start(
        &cfg,
        &cameras,
        &LaneDeps {
            readers,
            events: events.clone(),
            yards: yards.clone(),
            stop: stop.clone(),
            timings: None,
        },
    )?;
    let status: StatusFn = {
        let (health, stats, qr_stats, started_at, delivery, events) = (
            health.clone(),
            stats.clone(),
            qr_stats.clone(),
            format_ts(chrono::Utc::now()),
            delivery.clone(),
            events.clone(),
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
            let mut outbox = delivery.status_fields();
            outbox["too_large"] = events.too_large().into();
            serde_json::json!({
                "state": "online",
                "version": env!("CARGO_PKG_VERSION"),
                "started_at": started_at,
                "uptime_s": started.elapsed().as_secs(),
                "cameras": cams,
                "outbox": outbox,
                "commands": {
                    "retained_ignored": delivery.link_stats().retained_commands.load(std::sync::atomic::Ordering::Relaxed),
                },
            })
        })
    };
    let restart = Arc::new(tokio::sync::Notify::new());
    let commands = RunCommands {
        status: status.clone(),
        config_path: args.config.clone(),
        latest: latest.clone(),
        restart: restart.clone(),
        yards: yards.clone(),
    };
    let link = MqttLink::start(
        &cfg.mqtt_options()?,
        delivery.clone(),
        status,
        Duration::from_secs(30),
        Some(Arc::new(commands.into_commands())),
    );

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
    Lanes::wait_cameras(camera_threads);
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
