//! The configuration file: its structure, defaults and validation.
//!
//! Every validation error names the key it is about (`camera[1].url`), says what is wrong and
//! what is allowed, so that `gatewatch check` can tell an installer exactly what to fix.

use serde::{Deserialize, Serialize};

mod resolve;
mod toml_error;
mod validate;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::delivery::client::MqttProtocol;
use crate::delivery::FullPolicy;
use crate::models::ModelSet;
use crate::plate::reader::{default_locate_max_side, DEFAULT_RETRY_MAX_SIDE};
use crate::source::{AtEnd, Handoff};

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Site name, e.g. `mongcai`; part of the default topic prefix.
    pub site: String,
    /// This box's name, unique within the site.
    pub device: String,
    /// Directory for state that must survive restarts (the outbox, which also holds the sequence).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub models: ModelsConfig,
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub plates: PlateConfig,
    /// Cameras; at least one.
    #[serde(rename = "camera", default)]
    pub cameras: Vec<CameraConfig>,
    /// Yards whose occupancy is kept (`[[yard]]`); cameras join one with `[camera.yard]`.
    #[serde(rename = "yard", default)]
    pub yards: Vec<crate::yard::config::YardConfig>,
}

/// Most `[[camera]]` tables: each camera runs two threads and holds frames in flight; a gate box
/// serves a few lanes (measured: 4 cameras on 2 cores).
pub const MAX_CAMERAS: usize = 32;

/// Most model copies (`runtime.readers`): each holds 300-450 MB (measured peak RSS per copy at
/// 1080p), so 16 is already more memory than a gate box has, and more copies than cameras are
/// never used.
pub const MAX_READERS: usize = 16;

/// ONNX Runtime settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Path of `libonnxruntime.so`; when unset, `GATEWATCH_ORT_LIB`, `ORT_DYLIB_PATH`, then the
    /// install and development locations are tried.
    pub onnxruntime: Option<PathBuf>,
    /// Intra-op threads per model session (1 is fastest on a loaded 2-core box).
    #[serde(default = "one")]
    pub threads: usize,
    /// Copies of the model set loaded; cameras take turns on a copy. 0 = one per camera, at most
    /// one per CPU core.
    #[serde(default)]
    pub readers: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            onnxruntime: None,
            threads: one(),
            readers: 0,
        }
    }
}

/// Which models to use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// `default` (registry packages only), `fast-alpr` or `clp`.
    #[serde(default)]
    pub set: ModelSet,
    /// Directory holding the model files named in `models/manifest.toml`; when unset,
    /// `GATEWATCH_MODEL_DIR`, then the install and development locations are tried.
    pub dir: Option<PathBuf>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            set: ModelSet::Default,
            dir: None,
        }
    }
}

/// Broker connection and topics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    /// MQTT protocol version: `"3.1.1"` (default) or `"5"`.
    #[serde(default)]
    pub protocol: MqttProtocol,
    /// `tls` (default) or `tcp`: plain TCP only when the config says so.
    #[serde(default)]
    pub transport: Transport,
    /// Defaults to 8883 for TLS, 1883 for TCP.
    pub port: Option<u16>,
    /// CA certificates (PEM) that the broker's certificate must chain to; defaults to the system
    /// bundle `/etc/ssl/certs/ca-certificates.crt`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    pub client_key_file: Option<PathBuf>,
    /// Defaults to `gatewatch-<site>-<device>`.
    pub client_id: Option<String>,
    /// Defaults to `gatewatch/<site>/<device>`.
    pub topic_prefix: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A file holding the password (trailing newline ignored), so it need not be in this file.
    pub password_file: Option<PathBuf>,
}

/// How gatewatch reaches the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    #[default]
    Tls,
    Tcp,
}

/// The system CA bundle, the default trust for TLS.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl MqttConfig {
    /// The broker port in force.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.transport {
            Transport::Tls => 8883,
            Transport::Tcp => 1883,
        })
    }

    /// The CA file in force for TLS.
    pub fn ca_file(&self) -> PathBuf {
        self.ca_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE))
    }

    /// The password from `password` or `password_file`.
    pub fn password(&self) -> std::io::Result<Option<String>> {
        match (&self.password, &self.password_file) {
            (Some(p), _) => Ok(Some(p.clone())),
            (None, Some(f)) => Ok(Some(
                std::fs::read_to_string(f)?
                    .trim_end_matches(['\n', '\r'])
                    .to_owned(),
            )),
            (None, None) => Ok(None),
        }
    }
}

/// The disk-backed outbox every event passes through.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Defaults to `<state_dir>/outbox`.
    pub dir: Option<PathBuf>,
    /// Limit on undelivered events on disk, in bytes.
    #[serde(default = "default_outbox_bytes")]
    pub max_bytes: u64,
    /// When full: `drop_oldest` or `reject_new`; either way the loss is counted and shown in status.
    #[serde(default)]
    pub policy: FullPolicy,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: default_outbox_bytes(),
            policy: FullPolicy::default(),
        }
    }
}

/// Plate reading thresholds and tracking.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlateConfig {
    /// Reads below this recogniser confidence (0-1) are ignored.
    #[serde(default = "default_min_confidence")]
    pub min_confidence: f32,
    /// Frames a track must be read in before its event is published early.
    #[serde(default = "default_confirm_frames")]
    pub confirm_frames: u32,
    /// A track not seen for this long is closed; the same plate seen later is a new passage.
    #[serde(default = "default_lost_after")]
    pub lost_after_s: f64,
    /// How long a confirmed read waits for a fuller read of the same vehicle (a two-line plate's
    /// both rows, a Chinese plate's province) to win the vote before it is published anyway.
    #[serde(default = "default_settle")]
    pub settle_s: f64,
    /// Plate grammars to accept, in order of preference: `VN`, `CN`, `generic`.
    #[serde(default = "default_regions")]
    pub regions: Vec<String>,
    /// Longest side of the frame given to the full-frame text detector (px, multiple of 32).
    #[serde(default = "default_detector_max_side")]
    pub detector_max_side: u32,
    /// When a frame gives no plate-like read, look again larger, up to this longest side (finds
    /// small plates; costs more detector runs on such frames). 0 = off. Set: every frame may be
    /// looked at again. Unset: the default ([`PlateConfig::retry`]), which leaves camera-sized
    /// frames alone.
    #[serde(default)]
    pub retry_max_side: Option<u32>,
    /// The text-detector set first finds where text is with its detector at this longest side
    /// and reads only there (px, multiple of 32, below `detector_max_side`); 0 = off, whole
    /// frames. Unset: half of `detector_max_side`.
    #[serde(default)]
    pub locate_max_side: Option<u32>,
}

impl PlateConfig {
    /// The locating look's longest side in effect (0 = off).
    pub fn locate_max_side(&self) -> u32 {
        self.locate_max_side
            .unwrap_or_else(|| default_locate_max_side(self.detector_max_side))
    }

    /// The retry in effect, as `(retry_max_side, camera-sized frames too)`: as set, for every
    /// frame; unset, [`DEFAULT_RETRY_MAX_SIDE`] (off when the first pass is that large) for
    /// frames that are not camera-sized
    /// ([`ReaderOptions::retries`](crate::plate::reader::ReaderOptions::retries)).
    pub fn retry(&self) -> (u32, bool) {
        retry_in_effect(self.retry_max_side, self.detector_max_side)
    }
}

/// [`PlateConfig::retry`] for a `plates.retry_max_side` as set (or not) and a first pass at
/// `detector_max_side`; `eval` takes its flags through this too.
pub fn retry_in_effect(set: Option<u32>, detector_max_side: u32) -> (u32, bool) {
    match set {
        Some(side) => (side, true),
        None if detector_max_side < DEFAULT_RETRY_MAX_SIDE => (DEFAULT_RETRY_MAX_SIDE, false),
        None => (0, false),
    }
}

impl Default for PlateConfig {
    fn default() -> Self {
        Self {
            min_confidence: default_min_confidence(),
            confirm_frames: default_confirm_frames(),
            lost_after_s: default_lost_after(),
            settle_s: default_settle(),
            regions: default_regions(),
            detector_max_side: default_detector_max_side(),
            retry_max_side: None,
            locate_max_side: None,
        }
    }
}

/// One camera watching one lane.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Camera name, unique on this device.
    pub id: String,
    /// The lane it watches.
    pub lane: String,
    /// `rtsp://…`, `http://…`, a video file, `folder:DIR` (images replayed in name order) or
    /// `v4l2:/dev/videoN`.
    pub url: String,
    /// Frame rate for folder replay; for other sources a cap on processed frames per second.
    pub fps: Option<f64>,
    #[serde(default)]
    pub at_end: AtEnd,
    #[serde(default)]
    pub handoff: Handoff,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The yard gate this camera watches, if any.
    pub yard: Option<crate::yard::config::CameraYardConfig>,
    /// QR decoding on this camera (`[camera.qr]`); off when absent.
    pub qr: Option<crate::qr::config::CameraQrConfig>,
    /// Face recognition on this camera (`[camera.face]`); off when absent.
    pub face: Option<crate::face::config::CameraFaceConfig>,
    /// The lane's region of interest: polygon `[[x, y], …]` in fractions of the frame; plates are
    /// looked for in its bounding rectangle and kept when their centre is inside.
    pub roi: Option<Vec<[f64; 2]>>,
    /// Plate reads with a box shorter than this many pixels are ignored (0 = no minimum).
    #[serde(default)]
    pub min_plate_height_px: u32,
    /// Motion gating (`[camera.motion]`): still frames reuse the last reads instead of inference.
    #[serde(default)]
    pub motion: crate::motion::MotionConfig,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/gatewatch")
}
fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_keep_alive() -> u64 {
    30
}
fn default_outbox_bytes() -> u64 {
    256 << 20
}
fn default_min_confidence() -> f32 {
    0.6
}
fn default_confirm_frames() -> u32 {
    3
}
fn default_settle() -> f64 {
    2.0
}
fn default_lost_after() -> f64 {
    3.0
}
fn default_regions() -> Vec<String> {
    // `generic` is opt-in: at a VN/CN gate any other text it accepts is more often a sticker, a
    // phone number or half a plate than a foreign plate (issue 12's photos).
    vec!["VN".into(), "CN".into()]
}
fn default_detector_max_side() -> u32 {
    960
}

/// One problem with a configuration: the key and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigIssue {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A configuration that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML for gatewatch: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path} has {} problem(s):\n{}", .issues.len(), .issues.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        issues: Vec<ConfigIssue>,
    },
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates configuration text; `path` is only used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: toml_error::describe(text, &e),
        })?;
        let issues = config.validate();
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                issues,
            })
        }
    }

    /// The MQTT topic prefix in force.
    pub fn topic_prefix(&self) -> String {
        self.mqtt
            .topic_prefix
            .clone()
            .unwrap_or_else(|| format!("gatewatch/{}/{}", self.site, self.device))
    }

    /// A copy fit to print: `mqtt.password` and the credentials in camera URLs are masked
    /// (`check` prints this, and `ExecStartPre` sends it to the journal).
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if c.mqtt.password.is_some() {
            c.mqtt.password = Some(crate::redact::MASK.to_owned());
        }
        for cam in &mut c.cameras {
            cam.url = crate::redact::text(&cam.url).into_owned();
        }
        c
    }

    /// The MQTT client id in force.
    pub fn client_id(&self) -> String {
        self.mqtt
            .client_id
            .clone()
            .unwrap_or_else(|| format!("gatewatch-{}-{}", self.site, self.device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
site = "mongcai"
device = "lane1"
[mqtt]
host = "127.0.0.1"
[[camera]]
id = "front"
lane = "in-1"
url = "rtsp://10.0.0.5/stream1"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_toml(MINIMAL, Path::new("t.toml")).unwrap();
        assert_eq!(c.topic_prefix(), "gatewatch/mongcai/lane1");
        assert_eq!(
            c.mqtt.transport,
            Transport::Tls,
            "TLS unless the config says tcp"
        );
        assert_eq!(c.mqtt.port(), 8883);
        assert_eq!(c.models.set, ModelSet::Default);
        assert_eq!(c.cameras[0].handoff, Handoff::Newest);
        assert_eq!(c.runtime.threads, 1);
        assert_eq!(c.plates.confirm_frames, 3);
    }

    #[test]
    fn the_retry_is_on_by_default_below_its_side_and_off_when_set_so() {
        let retry = |plates: &str| {
            let c = Config::from_toml(&format!("{MINIMAL}[plates]\n{plates}"), Path::new("t.toml"))
                .unwrap();
            c.plates.retry()
        };
        // Unset: the default, camera-sized frames left alone.
        assert_eq!(retry(""), (DEFAULT_RETRY_MAX_SIDE, false));
        // Set: as set, every frame.
        assert_eq!(retry("retry_max_side = 0"), (0, true));
        assert_eq!(retry("retry_max_side = 1600"), (1600, true));
        // A first pass at the default retry side or above: no retry, and no complaint about a
        // key the installer never set.
        assert_eq!(retry("detector_max_side = 2560"), (0, false));
        assert_eq!(
            retry("detector_max_side = 1280"),
            (DEFAULT_RETRY_MAX_SIDE, false)
        );
    }

    #[test]
    fn the_locating_look_is_half_the_first_pass_unless_set() {
        let parse = |plates: &str| {
            Config::from_toml(&format!("{MINIMAL}[plates]\n{plates}"), Path::new("t.toml"))
        };
        let locate = |plates: &str| parse(plates).unwrap().plates.locate_max_side();
        assert_eq!(locate(""), 480);
        assert_eq!(locate("detector_max_side = 1280"), 640);
        assert_eq!(locate("locate_max_side = 0"), 0);
        assert_eq!(locate("locate_max_side = 640"), 640);
        assert_eq!(parse("").unwrap().reader_options().locate_max_side, 480);
        for bad in [
            "locate_max_side = 960",
            "locate_max_side = 500",
            "locate_max_side = 128",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("plates.locate_max_side")
                    && err.contains("below plates.detector_max_side (960)"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = MINIMAL
            .replace("\"mongcai\"", "\"mong cai\"")
            .replace("rtsp://10.0.0.5/stream1", "ftp://x")
            + "[plates]\nmin_confidence = 1.5\nregions = [\"XX\"]\nretry_max_side = 640\n";
        let err = Config::from_toml(&text, Path::new("t.toml")).unwrap_err();
        let ConfigError::Invalid { issues, .. } = err else {
            panic!("expected validation issues, got {err}")
        };
        let keys: Vec<_> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "site",
                "plates.min_confidence",
                "plates.regions[0]",
                "plates.retry_max_side",
                "camera[0].url"
            ]
        );
        assert!(
            issues[3]
                .message
                .contains("above plates.detector_max_side (960)"),
            "{}",
            issues[3].message
        );
        assert!(
            issues[4].message.contains("rtsp://"),
            "{}",
            issues[4].message
        );
    }

    #[test]
    fn model_copies_and_cameras_are_bounded() {
        let text = MINIMAL.to_owned() + "[runtime]\nreaders = 1000000\n";
        let err = Config::from_toml(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("runtime.readers: 1000000 is out of range: allowed 0")
                && err.contains("to 16"),
            "{err}"
        );
        let mut text = MINIMAL.to_owned();
        for i in 0..MAX_CAMERAS {
            text += &format!("[[camera]]\nid = \"c{i}\"\nlane = \"l\"\nurl = \"folder:/x\"\n");
        }
        let err = Config::from_toml(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("camera: 33 cameras are configured: allowed 1 to 32"),
            "{err}"
        );
    }

    #[test]
    fn what_run_cannot_use_is_reported_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let text = MINIMAL
            .replace(
                "host = \"127.0.0.1\"",
                &format!(
                    "host = \"127.0.0.1:1883\"\nusername = \"u\"\npassword_file = \"{}\"\ntopic_prefix = \"{}\"",
                    dir.path().display(),
                    "a".repeat(70_000)
                ),
            )
            .replace(
                "device = \"lane1\"",
                &format!("device = \"lane1\"\nstate_dir = \"{}\"", file.display()),
            );
        let err = Config::from_toml(&text, Path::new("t.toml")).unwrap_err();
        let ConfigError::Invalid { issues, .. } = err else {
            panic!("expected validation issues, got {err}")
        };
        let find = |key: &str| {
            issues
                .iter()
                .find(|i| i.key == key)
                .unwrap_or_else(|| panic!("no {key} in {issues:?}"))
                .message
                .clone()
        };
        assert!(find("mqtt.host").contains("has a port"));
        assert!(find("mqtt.password_file").contains("is a directory"));
        assert!(find("state_dir").contains("is a file, not a directory"));
        assert_eq!(
            find("mqtt.topic_prefix"),
            "70000 bytes is too long: allowed 1 to 256 bytes"
        );

        // A state_dir under a file cannot be created; an IPv6 address is a host.
        let text = MINIMAL.replace("127.0.0.1", "::1").replace(
            "device = \"lane1\"",
            &format!("device = \"lane1\"\nstate_dir = \"{}/sub\"", file.display()),
        );
        let issues = Config::from_toml(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            issues.contains("state_dir: ") && issues.contains("cannot be created"),
            "{issues}"
        );
        assert!(!issues.contains("mqtt.host"), "{issues}");
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let text = MINIMAL.replace("[mqtt]", "[mqtt]\nhots = \"x\"");
        let err = Config::from_toml(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("hots"), "{err}");
    }

    #[test]
    fn toml_errors_name_the_key_path_and_the_line() {
        let parse_error = |text: &str| match Config::from_toml(text, Path::new("t.toml")) {
            Err(ConfigError::Parse { message, .. }) => message,
            other => panic!("expected a parse error, got {other:?}"),
        };
        // The second camera has no url: which camera, and where.
        let text = format!("{MINIMAL}\n[[camera]]\nid = \"back\"\nlane = \"out-1\"\n");
        let line = text.lines().position(|l| l == "id = \"back\"").unwrap();
        assert_eq!(
            parse_error(&text),
            format!("camera[1].url: is missing (line {line})")
        );
        let text = MINIMAL.to_owned() + "[runtime]\nthreads = \"two\"\n";
        let msg = parse_error(&text);
        assert!(
            msg.starts_with("runtime.threads: invalid type") && msg.ends_with("(line 11)"),
            "{msg}"
        );
        let msg = parse_error(&MINIMAL.replace("[mqtt]", "[mqtt]\nport = 70000"));
        assert!(msg.starts_with("mqtt.port: invalid value"), "{msg}");
    }

    #[test]
    fn duplicate_camera_ids_are_rejected() {
        let text =
            format!("{MINIMAL}\n[[camera]]\nid = \"front\"\nlane = \"x\"\nurl = \"folder:/tmp\"\n");
        let err = Config::from_toml(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("camera[1].id"), "{err}");
    }
}
