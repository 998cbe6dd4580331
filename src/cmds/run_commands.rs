//! The hub commands `run` answers: `ping`, `status`, `reload_config`, `snapshot`, the yard
//! commands `yard_set`, `yard_remove`, `yard_list`, and the face gallery's `face_enrol`,
//! `face_remove`, `face_list`.

use base64::Engine;
use opencv::core::{Mat, Size, Vector};
use opencv::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::app::Shutdown;
use crate::config::{Config, ConfigError};
use crate::delivery::StatusFn;
use crate::event::format_ts;
use crate::face::service::FaceService;
use crate::hub::{optional_str, optional_u64, Commands};
use crate::yard::service::YardService;

/// Default and largest snapshot size (JPEG bytes).
const SNAPSHOT_DEFAULT_BYTES: usize = 256 * 1024;
const SNAPSHOT_MAX_BYTES: usize = 512 * 1024;

/// What the commands of a running box act on.
pub struct RunCommands {
    pub status: StatusFn,
    pub config_path: PathBuf,
    pub latest: BTreeMap<String, Arc<Mutex<Option<Mat>>>>,
    /// Requested when a valid `reload_config` asks for a restart.
    pub shutdown: Shutdown,
    /// The yards, for `yard_set`, `yard_remove`, `yard_list`.
    pub yards: Arc<YardService>,
    /// The face gallery, for `face_enrol`, `face_remove`, `face_list`.
    pub faces: Arc<FaceService>,
}

impl RunCommands {
    /// The table of every command `run` answers.
    pub fn into_commands(self) -> Commands {
        let this = Arc::new(self);
        let mut commands = Commands::default();
        commands.add("ping", |_| {
            Ok(json!({"pong": format_ts(chrono::Utc::now())}))
        });
        let status = this.status.clone();
        commands.add("status", move |_| Ok(status()));
        let (path, shutdown) = (this.config_path.clone(), this.shutdown.clone());
        commands.add("reload_config", move |_| {
            reload_config(&path, &shutdown, "reload_config")
        });
        let snapshot = this.clone();
        commands.add("snapshot", move |req| snapshot.snapshot(req));
        this.yards.add_commands(&mut commands);
        this.faces.add_commands(&mut commands);
        commands
    }
}

/// Checks the config file and, when it is valid, asks for a restart. Settings are read once at
/// start: a clean restart applies the new file without losing anything (open tracks are flushed,
/// the outbox keeps what is undelivered) and systemd brings the service back (the unit's
/// `RestartForceExitStatus=0`). `via` names who asked (the hub command, or SIGHUP from
/// `systemctl reload`) in the stop reason.
pub(crate) fn reload_config(path: &Path, shutdown: &Shutdown, via: &str) -> Result<Value, String> {
    match Config::load(path) {
        Ok(_) => {
            shutdown.request(format!(
                "{via}: reload: new config is valid; restarting to apply it"
            ));
            Ok(json!({"valid": true, "restarting": true}))
        }
        Err(ConfigError::Invalid { issues, .. }) => Err(format!(
            "new config is invalid, keeping the running one: {}",
            issues
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Err(e) => Err(format!(
            "new config is unusable, keeping the running one: {e}"
        )),
    }
}

impl RunCommands {
    fn snapshot(&self, req: &Map<String, Value>) -> Result<Value, String> {
        let camera = optional_str(req, "camera")?
            .ok_or("snapshot needs \"camera\": the id of a configured camera")?;
        let slot = self.latest.get(camera).ok_or_else(|| {
            format!(
                "unknown camera {camera:?}; cameras: {}",
                self.latest.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        let limit = optional_u64(req, "max_bytes")?.map_or(SNAPSHOT_DEFAULT_BYTES, |b| {
            (b as usize).min(SNAPSHOT_MAX_BYTES)
        });
        let frame = slot
            .lock()
            .map_err(|_| "frame store poisoned")?
            .as_ref()
            .map(|m| m.try_clone())
            .transpose()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("camera {camera:?} has delivered no frame yet"))?;
        let (jpeg, w, h) = encode_within(&frame, limit)
            .map_err(|e| format!("cannot encode the snapshot: {e:#}"))?;
        Ok(json!({
            "camera": camera,
            "width": w,
            "height": h,
            "content_type": "image/jpeg",
            "jpeg_b64": base64::engine::general_purpose::STANDARD.encode(&jpeg),
        }))
    }
}

/// JPEG-encodes `frame`, scaling it down until the bytes fit `limit`.
fn encode_within(frame: &Mat, limit: usize) -> anyhow::Result<(Vec<u8>, i32, i32)> {
    let mut img = frame.try_clone()?;
    loop {
        let mut buf = Vector::<u8>::new();
        let params = Vector::<i32>::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, 80]);
        opencv::imgcodecs::imencode(".jpg", &img, &mut buf, &params)?;
        if buf.len() <= limit {
            return Ok((buf.to_vec(), img.cols(), img.rows()));
        }
        anyhow::ensure!(img.cols() > 64, "cannot fit a snapshot in {limit} bytes");
        let mut smaller = Mat::default();
        let size = Size::new(img.cols() * 7 / 10, img.rows() * 7 / 10);
        opencv::imgproc::resize(
            &img,
            &mut smaller,
            size,
            0.0,
            0.0,
            opencv::imgproc::INTER_AREA,
        )?;
        img = smaller;
    }
}
