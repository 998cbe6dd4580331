//! `[camera.face]`: a camera's face recognition settings and their validation.

use serde::{Deserialize, Serialize};

/// The match threshold that gives a false accept rate of 1e-3 on the shared face photos
/// (`docs/accuracy.md`, "Faces": TAR 1.000 at FAR 1e-3, threshold 0.926). The embedder's cosine
/// scale is compressed (impostors 0.83 ± 0.03, genuine 0.97 ± 0.01), so the third decimal matters.
pub const DEFAULT_MATCH_THRESHOLD: f32 = 0.926;

/// Smallest lead of the best identity over the second best (cosine). Two gallery identities this
/// close to a face cannot be told apart on this scale (genuine pairs spread ± 0.012), so the face
/// is published as unknown rather than guessed.
pub const DEFAULT_MIN_MARGIN: f32 = 0.02;

/// `[camera.face]`: face recognition on this camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraFaceConfig {
    /// Region `[x, y, w, h]` in fractions of the frame (0-1) to look for faces in; whole frame
    /// when unset.
    pub roi: Option<[f64; 4]>,
    /// Frames per second to scan (0.1-30).
    #[serde(default = "default_scan_fps")]
    pub scan_fps: f64,
    /// Faces narrower than this many pixels (in the frame) are ignored: too few pixels to embed.
    #[serde(default = "default_min_face_px")]
    pub min_face_px: u32,
    /// The longer side of the region as the detector sees it (px, 160-1920).
    #[serde(default = "default_detector_long_side")]
    pub detector_long_side: u32,
    /// Cosine similarity a face must reach against a gallery identity to be named (0.5-0.999).
    #[serde(default = "default_match_threshold")]
    pub match_threshold: f32,
    /// Lead of the best identity over the second best needed to name it (0-0.5).
    #[serde(default = "default_min_margin")]
    pub min_margin: f32,
    /// A face unseen this long has left view; seen again, it is a new event.
    #[serde(default = "default_gone_after")]
    pub gone_after_s: f64,
    /// A face still in view is decided (and published) this long after it was first seen.
    #[serde(default = "default_decide_after")]
    pub decide_after_s: f64,
    /// Whether events may carry the aligned face image (JPEG). Off by default: personal data.
    #[serde(default)]
    pub publish_images: bool,
}

fn default_scan_fps() -> f64 {
    5.0
}
fn default_min_face_px() -> u32 {
    40
}
fn default_detector_long_side() -> u32 {
    640
}
fn default_match_threshold() -> f32 {
    DEFAULT_MATCH_THRESHOLD
}
fn default_min_margin() -> f32 {
    DEFAULT_MIN_MARGIN
}
fn default_gone_after() -> f64 {
    2.0
}
fn default_decide_after() -> f64 {
    1.5
}

impl Default for CameraFaceConfig {
    fn default() -> Self {
        Self {
            roi: None,
            scan_fps: default_scan_fps(),
            min_face_px: default_min_face_px(),
            detector_long_side: default_detector_long_side(),
            match_threshold: default_match_threshold(),
            min_margin: default_min_margin(),
            gone_after_s: default_gone_after(),
            decide_after_s: default_decide_after(),
            publish_images: false,
        }
    }
}

impl CameraFaceConfig {
    /// Checks the values; problems go to `issue` under `key` (e.g. `camera[0].face`).
    pub fn validate(&self, key: &str, issue: &mut dyn FnMut(&str, String)) {
        // Values are shown as written (an f32 widened to f64 would print 1.2000000476837158).
        let mut range = |field: &str, v: f64, shown: String, lo: f64, hi: f64, unit: &str| {
            if !(lo..=hi).contains(&v) {
                issue(
                    &format!("{key}.{field}"),
                    format!("{shown} is out of range: allowed {lo} to {hi}{unit}"),
                );
            }
        };
        let (fps, px, side) = (self.scan_fps, self.min_face_px, self.detector_long_side);
        range("scan_fps", fps, fps.to_string(), 0.1, 30.0, "");
        range(
            "min_face_px",
            px as f64,
            px.to_string(),
            16.0,
            1000.0,
            " px",
        );
        range(
            "detector_long_side",
            side as f64,
            side.to_string(),
            160.0,
            1920.0,
            " px",
        );
        let (threshold, margin) = (self.match_threshold, self.min_margin);
        range(
            "match_threshold",
            threshold as f64,
            threshold.to_string(),
            0.5,
            0.999,
            "",
        );
        range(
            "min_margin",
            margin as f64,
            margin.to_string(),
            0.0,
            0.5,
            "",
        );
        let (gone, decide) = (self.gone_after_s, self.decide_after_s);
        range(
            "gone_after_s",
            gone,
            gone.to_string(),
            0.1,
            3600.0,
            " seconds",
        );
        range(
            "decide_after_s",
            decide,
            decide.to_string(),
            0.0,
            60.0,
            " seconds",
        );
        if let Some(r) = self.roi {
            let inside = r.iter().all(|v| (0.0..=1.0).contains(v))
                && r[0] + r[2] <= 1.0
                && r[1] + r[3] <= 1.0;
            if !inside || r[2] < 0.02 || r[3] < 0.02 {
                issue(&format!("{key}.roi"), format!("{r:?} is not a region inside the frame: [x, y, w, h] in fractions 0-1, x+w and y+h at most 1, w and h at least 0.02"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_private() {
        let c: CameraFaceConfig = toml::from_str("").unwrap();
        assert_eq!(c, CameraFaceConfig::default());
        assert!(
            !c.publish_images,
            "images are published only when configured"
        );
        assert_eq!(c.match_threshold, 0.926);
        let mut n = 0;
        c.validate("camera[0].face", &mut |_, _| n += 1);
        assert_eq!(n, 0);
    }

    #[test]
    fn bad_settings_are_named_with_the_value_and_what_is_allowed() {
        let c = CameraFaceConfig {
            roi: Some([0.5, 0.5, 0.6, 0.2]),
            scan_fps: 0.0,
            min_face_px: 4,
            match_threshold: 1.2,
            ..CameraFaceConfig::default()
        };
        let mut issues = Vec::new();
        c.validate("camera[0].face", &mut |k, m| {
            issues.push(format!("{k}: {m}"))
        });
        assert_eq!(issues.len(), 4, "{issues:?}");
        assert!(issues[0].starts_with("camera[0].face.scan_fps: 0 is out of range"));
        assert!(issues[1].contains("min_face_px: 4 is out of range: allowed 16 to 1000 px"));
        assert!(issues[2].contains("match_threshold: 1.2 is out of range: allowed 0.5 to 0.999"));
        assert!(issues[3].starts_with("camera[0].face.roi"));
        let unknown = toml::from_str::<CameraFaceConfig>("treshold = 0.9").unwrap_err();
        assert!(unknown.to_string().contains("treshold"), "{unknown}");
    }
}
