//! `gatewatch run`: cameras → plate pipelines → MQTT, until a signal or every camera ends.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::app::service::{Service, Watched};
use crate::app::App;
use crate::cmds::run_commands::{reload_config, RunCommands};
use crate::config::Config;
use crate::delivery::MqttLink;
use crate::source::capture;
use crate::state_dir;

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
    if let Some(mode) = state_dir::open_beyond_group(&cfg.state_dir) {
        // The operator's directory: said, not changed (systemd's StateDirectoryMode sets it).
        tracing::warn!(state_dir = %cfg.state_dir.display(), mode = format!("{mode:o}"), "state_dir is open to other users, and holds plates and yard lists: chmod 750 (or 700) it");
    }
    // One gatewatch per state_dir, held until `run` returns: a second one would hand out the same
    // seqs and overwrite the yard files.
    let _lock = state_dir::lock(&cfg.state_dir)?;
    capture::configure_ffmpeg();
    // Read before anything starts: a missing TLS or password file fails now, naming the key.
    let mqtt = cfg.mqtt_options()?;
    let cameras: Vec<_> = cfg.cameras.iter().filter(|c| c.enabled).cloned().collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let _guard = rt.enter();
    // Installed before the models load, so an early SIGHUP or SIGTERM waits for the start instead
    // of ending the process (the default action of both).
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let service = Service::from_env();

    let mut app = App::start(cfg.app_options(&cameras))?;
    let commands = RunCommands {
        status: app.status(),
        config_path: args.config.clone(),
        latest: app.latest_frames(),
        shutdown: app.shutdown.clone(),
        yards: app.yards.clone(),
        faces: app.faces.clone(),
    };
    let link = MqttLink::start(
        &mqtt,
        app.delivery.clone(),
        app.status(),
        Duration::from_secs(30),
        Some(Arc::new(commands.into_commands())),
    );
    app.start_yard_timer();
    tracing::info!(cameras = cameras.len(), yards = cfg.yards.len(), prefix = %cfg.topic_prefix(), "gatewatch running");
    service.ready(&Watched::of(&app));
    let watch = service.spawn_watch(Watched::of(&app), app.shutdown.clone());

    let shutdown = app.shutdown.clone();
    let reason = rt.block_on(async {
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break "interrupted".to_owned(),
                _ = term.recv() => break "terminated".to_owned(),
                _ = hup.recv() => {
                    // `systemctl reload`: what the hub's reload_config does. A valid file requests
                    // the stop, seen on the next turn.
                    if let Err(e) = reload_config(&args.config, &shutdown, "SIGHUP") {
                        tracing::error!(config = %args.config.display(), error = %e, "SIGHUP: reload refused");
                    }
                }
                reason = shutdown.requested() => break reason,
            }
        }
    });
    shutdown.request(reason);
    let reason = shutdown.reason().unwrap_or_default();
    tracing::info!(reason, "shutting down");
    service.stopping(&reason);
    if let Some(w) = watch {
        w.abort();
    }
    app.stop_lanes();
    let undelivered = rt.block_on(link.shutdown(Duration::from_secs(15)));
    let (frames, passages) = app.lanes.totals();
    tracing::info!(frames, passages, undelivered, "gatewatch stopped");
    if undelivered > 0 {
        tracing::warn!(
            undelivered,
            "events not yet acknowledged stay in the outbox and are sent after the next start"
        );
    }
    Ok(ExitCode::SUCCESS)
}
