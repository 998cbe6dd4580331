//! Resolution of a loaded configuration into the options each component takes: defaults filled
//! in, paths derived, fixed tuning added. Components never see the configuration itself.

use anyhow::Context;
use std::path::Path;
use std::time::Duration;

use super::{CameraConfig, Config, PlateConfig, Transport};
use crate::app::lanes::{LaneOptions, ReaderSetOptions};
use crate::app::AppOptions;
use crate::delivery::client::{MqttOptions, TlsMaterial};
use crate::delivery::OutboxOptions;
use crate::face::service::FaceModels;
use crate::plate::grammar::Region;
use crate::plate::lane_view::LaneViewConfig;
use crate::plate::reader::ReaderOptions;
use crate::plate::tracker::TrackerOptions;
use crate::source::camera::CameraOptions;

/// Box overlap (IoU) that joins a read to a track. Low, and backed by matching on plate text,
/// because at a few processed frames per second a moving plate's box shifts far between frames.
const TRACK_MIN_IOU: f32 = 0.2;

/// A camera that cannot be opened is retried after 1 s, the wait doubling up to 30 s: a short
/// outage is bridged quickly, and a camera that stays down is not hammered.
const CAMERA_BACKOFF_START: Duration = Duration::from_secs(1);
const CAMERA_BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Config {
    /// The outbox options in force.
    pub fn outbox_options(&self) -> OutboxOptions {
        OutboxOptions {
            dir: self
                .outbox
                .dir
                .clone()
                .unwrap_or_else(|| self.state_dir.join("outbox")),
            max_bytes: self.outbox.max_bytes,
            policy: self.outbox.policy,
            segment_bytes: (self.outbox.max_bytes / 16).clamp(4096, 16 << 20),
        }
    }

    /// The broker connection in force. It reads the TLS files and the password file, so it fails,
    /// naming the key, when one of them cannot be read.
    pub fn mqtt_options(&self) -> anyhow::Result<MqttOptions> {
        let m = &self.mqtt;
        let tls = if m.transport == Transport::Tls {
            let read = |p: &Path, what: &str| {
                std::fs::read(p).with_context(|| format!("cannot read {what} {}", p.display()))
            };
            let ca = read(&m.ca_file(), "mqtt.ca_file")?;
            let client_auth = match (&m.client_cert_file, &m.client_key_file) {
                (Some(c), Some(k)) => Some((
                    read(c, "mqtt.client_cert_file")?,
                    read(k, "mqtt.client_key_file")?,
                )),
                _ => None,
            };
            Some(TlsMaterial { ca, client_auth })
        } else {
            None
        };
        let credentials = match &m.username {
            Some(user) => {
                let password = m.password().context("cannot read mqtt.password_file")?;
                Some((user.clone(), password.unwrap_or_default()))
            }
            None => None,
        };
        Ok(MqttOptions {
            protocol: m.protocol,
            client_id: self.client_id(),
            host: m.host.clone(),
            port: m.port(),
            tls,
            keep_alive: Duration::from_secs(m.keep_alive_s),
            topic_prefix: self.topic_prefix(),
            credentials,
        })
    }

    /// What the runtime assembly takes, for `cameras` (the enabled ones, or a bench's copies).
    pub fn app_options(&self, cameras: &[CameraConfig]) -> AppOptions {
        let tracker = self.plates.tracker_options();
        AppOptions {
            site: self.site.clone(),
            device: self.device.clone(),
            state_dir: self.state_dir.clone(),
            outbox: self.outbox_options(),
            yards: self.yards.clone(),
            readers: ReaderSetOptions {
                set: self.models.set,
                model_dir: crate::models::model_dir(self.models.dir.as_deref()),
                onnxruntime: self.runtime.onnxruntime.clone(),
                options: self.reader_options(),
                copies: self.runtime.readers,
            },
            faces: self.face_models(),
            lanes: cameras
                .iter()
                .map(|c| c.lane_options(tracker.clone()))
                .collect(),
            timings: None,
        }
    }

    /// Where the face models are and how they run (the plate models' folder and runtime).
    pub fn face_models(&self) -> FaceModels {
        FaceModels {
            model_dir: crate::models::model_dir(self.models.dir.as_deref()),
            onnxruntime: self.runtime.onnxruntime.clone(),
            threads: self.runtime.threads,
        }
    }

    /// The plate reader options in force.
    pub fn reader_options(&self) -> ReaderOptions {
        let (retry_max_side, retry_camera_sized) = self.plates.retry();
        ReaderOptions {
            regions: self
                .plates
                .regions
                .iter()
                .filter_map(|r| Region::parse(r))
                .collect(),
            min_confidence: self.plates.min_confidence,
            detector_max_side: self.plates.detector_max_side,
            locate_max_side: self.plates.locate_max_side(),
            retry_max_side,
            retry_camera_sized,
            threads: self.runtime.threads,
            ..ReaderOptions::default()
        }
    }
}

impl PlateConfig {
    /// The tracker options in force.
    pub fn tracker_options(&self) -> TrackerOptions {
        TrackerOptions {
            confirm_frames: self.confirm_frames,
            lost_after: self.lost_after_s,
            min_iou: TRACK_MIN_IOU,
            settle: self.settle_s,
        }
    }
}

impl CameraConfig {
    /// The camera thread's options.
    pub fn camera_options(&self) -> CameraOptions {
        CameraOptions {
            id: self.id.clone(),
            at_end: self.at_end,
            max_fps: self.fps,
            backoff_start: CAMERA_BACKOFF_START,
            backoff_max: CAMERA_BACKOFF_MAX,
        }
    }

    /// Everything the camera's lane takes.
    pub fn lane_options(&self, tracker: TrackerOptions) -> LaneOptions {
        LaneOptions {
            camera: self.id.clone(),
            lane: self.lane.clone(),
            url: self.url.clone(),
            fps: self.fps,
            handoff: self.handoff,
            source: self.camera_options(),
            tracker,
            view: self.lane_view(),
            motion: self.motion.clone(),
            qr: self.qr.clone(),
            face: self.face.clone(),
            yard: self.yard.clone(),
        }
    }

    /// The camera's lane view settings (ROI polygon and minimum plate height).
    pub fn lane_view(&self) -> LaneViewConfig {
        LaneViewConfig {
            roi: self.roi.clone(),
            min_plate_height_px: self.min_plate_height_px,
        }
    }
}
