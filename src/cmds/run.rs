//! `gatewatch run`: cameras → plate pipelines → MQTT, until a signal or every camera ends.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::cmds::run_commands::RunCommands;
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
    if let Some(mode) = state_dir::open_to_others(&cfg.state_dir) {
        // The operator's directory: said, not changed (systemd's StateDirectoryMode sets it).
        tracing::warn!(state_dir = %cfg.state_dir.display(), mode = format!("{mode:o}"), "state_dir is open to other users, and holds plates and yard lists: chmod 700 it");
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

    let shutdown = app.shutdown.clone();
    let reason = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        anyhow::Ok(tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted".to_owned(),
            _ = term.recv() => "terminated".to_owned(),
            reason = shutdown.requested() => reason,
        })
    })?;
    shutdown.request(reason);
    tracing::info!(
        reason = shutdown.reason().unwrap_or_default(),
        "shutting down"
    );
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
