//! `[camera.qr]`: a camera's QR decoding settings and their validation.

use serde::{Deserialize, Serialize};

/// `[camera.qr]`: QR decoding on this camera.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraQrConfig {
    /// Region `[x, y, w, h]` in fractions of the frame (0-1) to scan; whole frame when unset.
    pub roi: Option<[f64; 4]>,
    /// Frames per second to scan (0.1-30).
    #[serde(default = "default_scan_fps")]
    pub scan_fps: f64,
    /// A code unseen this long has left view; shown again, it is a new event.
    #[serde(default = "default_gone_after")]
    pub gone_after_s: f64,
    /// Publish a code that stays in view again after this many seconds; 0 = never.
    #[serde(default)]
    pub repeat_after_s: f64,
}

fn default_scan_fps() -> f64 {
    5.0
}
fn default_gone_after() -> f64 {
    3.0
}

impl CameraQrConfig {
    /// Checks the values; problems go to `issue` under `key` (e.g. `camera[0].qr`).
    pub fn validate(&self, key: &str, issue: &mut dyn FnMut(&str, String)) {
        if let Some(r) = self.roi {
            let inside = r.iter().all(|v| (0.0..=1.0).contains(v))
                && r[0] + r[2] <= 1.0
                && r[1] + r[3] <= 1.0;
            if !inside || r[2] < 0.02 || r[3] < 0.02 {
                issue(&format!("{key}.roi"), format!("{r:?} is not a region inside the frame: [x, y, w, h] in fractions 0-1, x+w and y+h at most 1, w and h at least 0.02"));
            }
        }
        if !(0.1..=30.0).contains(&self.scan_fps) {
            issue(
                &format!("{key}.scan_fps"),
                format!("{} is out of range: allowed 0.1 to 30", self.scan_fps),
            );
        }
        if !(0.1..=3600.0).contains(&self.gone_after_s) {
            issue(
                &format!("{key}.gone_after_s"),
                format!(
                    "{} is out of range: allowed 0.1 to 3600 seconds",
                    self.gone_after_s
                ),
            );
        }
        if !(self.repeat_after_s == 0.0 || (1.0..=86_400.0).contains(&self.repeat_after_s)) {
            issue(
                &format!("{key}.repeat_after_s"),
                format!(
                    "{} is not allowed: 0 (never) or 1 to 86400 seconds",
                    self.repeat_after_s
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named() {
        let c = CameraQrConfig {
            roi: Some([0.5, 0.5, 0.6, 0.2]),
            scan_fps: 0.0,
            gone_after_s: 3.0,
            repeat_after_s: 0.5,
        };
        let mut keys = Vec::new();
        c.validate("camera[0].qr", &mut |k, _| keys.push(k.to_owned()));
        assert_eq!(
            keys,
            [
                "camera[0].qr.roi",
                "camera[0].qr.scan_fps",
                "camera[0].qr.repeat_after_s"
            ]
        );
    }
}
