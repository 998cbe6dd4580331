//! `gatewatch check`: validate a config and show what it resolves to.

use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::models::{self, Manifest};

/// Arguments of `gatewatch check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The configuration file to check.
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Prints every problem (exit 2), or the resolved config and the state of its models.
pub fn run(args: &CheckArgs) -> Result<ExitCode> {
    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    println!(
        "# {} is valid. Resolved configuration:",
        args.config.display()
    );
    println!("# topic prefix: {}", cfg.topic_prefix());
    println!("# client id:    {}", cfg.client_id());
    println!(
        "# broker:       {}://{}:{}",
        match cfg.mqtt.transport {
            crate::config::Transport::Tls => "tls",
            crate::config::Transport::Tcp => "tcp",
        },
        cfg.mqtt.host,
        cfg.mqtt.port()
    );
    let dir = models::model_dir(cfg.models.dir.as_deref());
    println!("# model dir:    {}", dir.display());
    print!("{}", toml::to_string_pretty(&cfg.redacted())?);
    // Valid, but worth a second look: biometric images leave the box.
    for (i, cam) in cfg.cameras.iter().enumerate() {
        if cam.face.as_ref().is_some_and(|f| f.publish_images) {
            eprintln!(
                "warning: camera[{i}].face.publish_images is on: face events from camera {:?} \
                 carry an image of each person's face (biometric personal data) to everyone who \
                 may read <prefix>/events/face; turn it off unless that is intended",
                cam.id
            );
        }
    }
    let mut bad = 0;
    for m in Manifest::builtin()
        .model
        .iter()
        .filter(|m| m.sets.iter().any(|s| s == cfg.models.set.as_str()))
    {
        if let Err(e) = models::verified_model(&dir, &m.file) {
            eprintln!("models.set = {:?}: {e:#}", cfg.models.set.as_str());
            bad += 1;
        }
    }
    let lib = models::ort_lib_candidates(cfg.runtime.onnxruntime.as_deref())
        .into_iter()
        .find(|p| p.is_file());
    match lib {
        Some(p) => println!("# onnxruntime:  {}", p.display()),
        None => {
            eprintln!("runtime.onnxruntime: libonnxruntime.so not found; run scripts/fetch-models.py or set the path");
            bad += 1;
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
