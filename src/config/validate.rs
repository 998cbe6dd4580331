//! Validation of a loaded configuration: every problem names its key, says what is wrong and
//! what is allowed. Parts that belong to a feature (yards, QR, lane view, motion gate) validate
//! themselves and are called from here.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::Path;

use super::{Config, ConfigIssue, Transport, MAX_CAMERAS, MAX_READERS};
use crate::source::SourceSpec;
use crate::topic::{is_topic_segment, TOPIC_SEGMENT_RULE};

/// Longest `mqtt.topic_prefix`: MQTT allows 65535 bytes per topic, many brokers far less, and the
/// prefix is sent with every message (a 70,000-character one passed `check`).
pub const MAX_TOPIC_PREFIX_BYTES: usize = 256;

/// The message for a `value` outside `range`, stated as `allowed` ("0.1 to 3600 seconds"): every
/// range problem names the value and what is allowed alike.
fn out_of_range<T: PartialOrd + Display>(
    value: T,
    range: RangeInclusive<T>,
    allowed: &str,
) -> Option<String> {
    (!range.contains(&value)).then(|| format!("{value} is out of range: allowed {allowed}"))
}

/// A file that can be opened for reading (a directory opens too, but cannot be read).
fn readable_file(path: &Path) -> std::io::Result<()> {
    if std::fs::metadata(path)?.is_dir() {
        return Err(std::io::Error::other("it is a directory, not a file"));
    }
    std::fs::File::open(path).map(drop)
}

/// `mqtt.host` must be a host name or an IP address alone: a port or a scheme in it makes the
/// connection fail at run time with a resolver error.
fn check_host(host: &str) -> Result<(), String> {
    let h = host.trim();
    if h.is_empty() {
        return Err("is empty: give the broker's host name or IP address".into());
    }
    if h.contains("://") {
        return Err(format!(
            "{host:?} has a scheme: give the host name or IP address alone (mqtt.transport sets tls or tcp)"
        ));
    }
    if h.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(());
    }
    if h.contains(':') {
        return Err(format!(
            "{host:?} has a port: give the host name or IP address alone and the port in mqtt.port"
        ));
    }
    if h.len() > 253 || h.contains(|c: char| c.is_whitespace() || "/?#@[]".contains(c)) {
        return Err(format!("{host:?} is not a host name or IP address"));
    }
    Ok(())
}

/// A directory gatewatch keeps state in: it must be a directory and writable when it exists;
/// when it does not, `run` creates it, so its nearest existing parent must be a directory
/// (whether it may be created there depends on who runs gatewatch: systemd creates state_dir).
fn usable_dir(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err(format!("{} is a file, not a directory", dir.display())),
        Ok(_) => {
            // Writing is the only sure test: permissions, ACLs and read-only mounts all count.
            let probe = dir.join(format!(".gatewatch-check-{}", std::process::id()));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
            {
                Ok(_) => {
                    let _ = std::fs::remove_file(&probe);
                    Ok(())
                }
                Err(e) => Err(format!("{} is not writable: {e}", dir.display())),
            }
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            let parent = dir
                .ancestors()
                .skip(1)
                .map(|a| {
                    if a.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        a
                    }
                })
                .find(|a| a.exists());
            match parent {
                Some(p) if !p.is_dir() => Err(format!(
                    "{} cannot be created: {} is a file, not a directory",
                    dir.display(),
                    p.display()
                )),
                _ => Ok(()),
            }
        }
        Err(e) => Err(format!("cannot use {}: {e}", dir.display())),
    }
}

impl Config {
    /// Every problem found, in file order; empty when the configuration is usable.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        // Messages may quote a value (a camera URL): credentials never reach check's output, the
        // journal or a reload_config reply.
        let mut issue = |key: &str, message: String| {
            issues.push(ConfigIssue {
                key: key.to_owned(),
                message: crate::redact::text(&message).into_owned(),
            })
        };
        for (key, value) in [("site", &self.site), ("device", &self.device)] {
            if !is_topic_segment(value) {
                issue(
                    key,
                    format!("{value:?} is not allowed: {TOPIC_SEGMENT_RULE}"),
                );
            }
        }
        let r = &self.runtime;
        let readers_allowed =
            format!("0 (one per camera, at most one per CPU core) to {MAX_READERS}");
        #[rustfmt::skip]
        let ranges = [
            ("runtime.threads", out_of_range(r.threads, 1..=16, "1 to 16")),
            ("runtime.readers", out_of_range(r.readers, 0..=MAX_READERS, &readers_allowed)),
        ];
        for (key, problem) in ranges {
            if let Some(message) = problem {
                issue(key, message);
            }
        }
        if let Err(e) = check_host(&self.mqtt.host) {
            issue("mqtt.host", e);
        }
        for (key, dir) in [
            ("state_dir", Some(&self.state_dir)),
            ("outbox.dir", self.outbox.dir.as_ref()),
        ] {
            if let Some(Err(e)) = dir.map(|d| usable_dir(d)) {
                issue(key, e);
            }
        }
        if self.mqtt.port == Some(0) {
            issue("mqtt.port", "0 is not a port: allowed 1 to 65535".into());
        }
        let m = &self.mqtt;
        let readable = |key: &str, path: &Path, what: &str, issue: &mut dyn FnMut(&str, String)| {
            if let Err(e) = readable_file(path) {
                issue(key, format!("cannot read {what} {}: {e}", path.display()));
            }
        };
        if m.transport == Transport::Tls {
            readable("mqtt.ca_file", &m.ca_file(), "CA file", &mut issue);
            match (&m.client_cert_file, &m.client_key_file) {
                (Some(c), Some(k)) => {
                    readable("mqtt.client_cert_file", c, "client certificate", &mut issue);
                    readable("mqtt.client_key_file", k, "client key", &mut issue);
                }
                (Some(_), None) => issue(
                    "mqtt.client_key_file",
                    "is missing: mutual TLS needs both client_cert_file and client_key_file".into(),
                ),
                (None, Some(_)) => issue(
                    "mqtt.client_cert_file",
                    "is missing: mutual TLS needs both client_cert_file and client_key_file".into(),
                ),
                (None, None) => {}
            }
        } else {
            for (key, set) in [
                ("mqtt.ca_file", m.ca_file.is_some()),
                ("mqtt.client_cert_file", m.client_cert_file.is_some()),
                ("mqtt.client_key_file", m.client_key_file.is_some()),
            ] {
                if set {
                    issue(
                        key,
                        "is set but mqtt.transport is \"tcp\": set transport = \"tls\" to use it"
                            .into(),
                    );
                }
            }
        }
        if m.password.is_some() && m.password_file.is_some() {
            issue(
                "mqtt.password_file",
                "is set together with mqtt.password: use one of them".into(),
            );
        }
        if let Some(f) = &m.password_file {
            // Read as run reads it (text); the content is never shown.
            if let Err(e) = readable_file(f).and_then(|()| std::fs::read_to_string(f).map(drop)) {
                issue(
                    "mqtt.password_file",
                    format!("cannot read password file {}: {e}", f.display()),
                );
            }
        }
        if let Some(message) = out_of_range(m.keep_alive_s, 5..=3600, "5 to 3600 seconds") {
            issue("mqtt.keep_alive_s", message);
        }
        if let Some(prefix) = &self.mqtt.topic_prefix {
            if prefix.len() > MAX_TOPIC_PREFIX_BYTES {
                issue(
                    "mqtt.topic_prefix",
                    format!(
                        "{} bytes is too long: allowed 1 to {MAX_TOPIC_PREFIX_BYTES} bytes",
                        prefix.len()
                    ),
                );
            } else if prefix.is_empty()
                || prefix.ends_with('/')
                || prefix.contains(['#', '+', '\0'])
                || prefix.starts_with('/')
            {
                issue(
                    "mqtt.topic_prefix",
                    format!("{prefix:?} is not a usable topic prefix: no wildcards (#, +), no leading or trailing '/'"),
                );
            }
        }
        if (self.mqtt.password.is_some() || self.mqtt.password_file.is_some())
            && self.mqtt.username.is_none()
        {
            issue("mqtt.password", "is set without mqtt.username".into());
        }
        if self.outbox.max_bytes < 64 * 1024 {
            issue(
                "outbox.max_bytes",
                format!(
                    "{} is too small: allowed 65536 bytes (64 KiB) or more",
                    self.outbox.max_bytes
                ),
            );
        }
        let p = &self.plates;
        #[rustfmt::skip]
        let ranges = [
            ("plates.min_confidence", out_of_range(p.min_confidence, 0.0..=1.0, "0.0 to 1.0")),
            ("plates.confirm_frames", out_of_range(p.confirm_frames, 1..=100, "1 to 100")),
            ("plates.lost_after_s", out_of_range(p.lost_after_s, 0.1..=3600.0, "0.1 to 3600 seconds")),
            ("plates.settle_s", out_of_range(p.settle_s, 0.0..=60.0, "0 to 60 seconds")),
        ];
        for (key, problem) in ranges {
            if let Some(message) = problem {
                issue(key, message);
            }
        }
        if p.regions.is_empty() {
            issue(
                "plates.regions",
                format!(
                    "is empty: allowed values are {}",
                    crate::plate::grammar::REGION_NAMES
                ),
            );
        }
        for (i, r) in p.regions.iter().enumerate() {
            if crate::plate::grammar::Region::parse(r).is_none() {
                issue(
                    &format!("plates.regions[{i}]"),
                    format!(
                        "{r:?} is not a known plate grammar: allowed {}",
                        crate::plate::grammar::REGION_NAMES
                    ),
                );
            }
        }
        if p.detector_max_side < 320
            || p.detector_max_side > 4096
            || !p.detector_max_side.is_multiple_of(32)
        {
            issue(
                "plates.detector_max_side",
                format!(
                    "{} is not allowed: use a multiple of 32 from 320 to 4096",
                    p.detector_max_side
                ),
            );
        }
        if let Some(locate) = p.locate_max_side {
            if locate != 0
                && (locate < 160 || locate >= p.detector_max_side || !locate.is_multiple_of(32))
            {
                issue(
                    "plates.locate_max_side",
                    format!(
                        "{} is not allowed: 0 (off) or a multiple of 32 from 160 to below plates.detector_max_side ({})",
                        locate, p.detector_max_side
                    ),
                );
            }
        }
        if let Some(retry) = p.retry_max_side {
            if retry != 0
                && (retry <= p.detector_max_side || retry > 4096 || !retry.is_multiple_of(32))
            {
                issue(
                    "plates.retry_max_side",
                    format!(
                        "{} is not allowed: 0 (off) or a multiple of 32 above plates.detector_max_side ({}) and at most 4096",
                        retry, p.detector_max_side
                    ),
                );
            }
        }
        if self.cameras.is_empty() {
            issue(
                "camera",
                "no camera is configured: add at least one [[camera]] table".into(),
            );
        }
        if self.cameras.len() > MAX_CAMERAS {
            issue(
                "camera",
                format!(
                    "{} cameras are configured: allowed 1 to {MAX_CAMERAS}",
                    self.cameras.len()
                ),
            );
        }
        for (i, cam) in self.cameras.iter().enumerate() {
            let key = |k: &str| format!("camera[{i}].{k}");
            if !is_topic_segment(&cam.id) {
                issue(
                    &key("id"),
                    format!("{:?} is not allowed: {TOPIC_SEGMENT_RULE}", cam.id),
                );
            }
            if self.cameras[..i].iter().any(|c| c.id == cam.id) {
                issue(
                    &key("id"),
                    format!(
                        "{:?} is used by an earlier camera: ids must be unique",
                        cam.id
                    ),
                );
            }
            if cam.lane.trim().is_empty() {
                issue(
                    &key("lane"),
                    "is empty: name the lane this camera watches".into(),
                );
            }
            if let Err(e) = SourceSpec::parse(&cam.url) {
                issue(&key("url"), e);
            }
            if let Some(message) = cam
                .fps
                .and_then(|f| out_of_range(f, 0.1..=120.0, "0.1 to 120"))
            {
                issue(&key("fps"), message);
            }
        }
        for (i, cam) in self.cameras.iter().enumerate() {
            if let Some(qr) = &cam.qr {
                qr.validate(&format!("camera[{i}].qr"), &mut issue);
            }
            if let Some(face) = &cam.face {
                face.validate(&format!("camera[{i}].face"), &mut issue);
            }
            cam.lane_view()
                .validate(&format!("camera[{i}]"), &mut issue);
            cam.motion
                .validate(&format!("camera[{i}].motion"), &mut issue);
        }
        let camera_yards: Vec<_> = self
            .cameras
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.yard.as_ref()))
            .collect();
        crate::yard::config::validate(&self.yards, &camera_yards, &mut issue);
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_are_named_with_the_value_and_what_is_allowed() {
        let state_dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
site = "s"
device = "d"
state_dir = "{}"
[runtime]
threads = 0
readers = 17
[mqtt]
host = "h"
transport = "tcp"
keep_alive_s = 4
[plates]
min_confidence = 1.5
confirm_frames = 101
lost_after_s = 0.05
settle_s = 61.0
[[camera]]
id = "c"
lane = "l"
url = "folder:/x"
fps = 121.0
"#,
            state_dir.path().display()
        );
        let config: Config = toml::from_str(&text).unwrap();
        let issues: Vec<String> = config.validate().iter().map(|i| i.to_string()).collect();
        assert_eq!(
            issues,
            [
                "runtime.threads: 0 is out of range: allowed 1 to 16",
                "runtime.readers: 17 is out of range: allowed 0 (one per camera, at most one per CPU core) to 16",
                "mqtt.keep_alive_s: 4 is out of range: allowed 5 to 3600 seconds",
                "plates.min_confidence: 1.5 is out of range: allowed 0.0 to 1.0",
                "plates.confirm_frames: 101 is out of range: allowed 1 to 100",
                "plates.lost_after_s: 0.05 is out of range: allowed 0.1 to 3600 seconds",
                "plates.settle_s: 61 is out of range: allowed 0 to 60 seconds",
                "camera[0].fps: 121 is out of range: allowed 0.1 to 120",
            ]
        );
    }
}
