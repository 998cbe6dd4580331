//! Motion gating: skip plate inference on frames where nothing in the lane changed.
//!
//! Each frame's lane rectangle is shrunk to a small grey thumbnail and compared with the thumbnail
//! of the last frame that was *read* (not the previous frame: a truck crawling a pixel per frame
//! adds up to a change). When too few pixels changed the frame is "still": the pipeline reuses the
//! last frame's reads instead of running the models, so a vehicle standing in the lane keeps its
//! track open exactly as if every frame had been read. A full read is forced every `refresh_s`
//! all the same, so slow light changes cannot hide a plate for long.

use anyhow::{Context, Result};
use opencv::core::{self, Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};

/// `[camera.motion]`: the gate's settings. Absent = on with these defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MotionConfig {
    /// Whether still frames skip inference.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Grey-level difference (0-255) that counts a thumbnail pixel as changed.
    #[serde(default = "default_pixel_delta")]
    pub pixel_delta: u8,
    /// Fraction of the lane's thumbnail pixels that must change for a frame to be read.
    #[serde(default = "default_min_changed")]
    pub min_changed: f64,
    /// Read a frame at least this often (seconds) even when the lane looks still.
    #[serde(default = "default_refresh_s")]
    pub refresh_s: f64,
}

fn yes() -> bool {
    true
}
fn default_pixel_delta() -> u8 {
    12
}
fn default_min_changed() -> f64 {
    0.002
}
fn default_refresh_s() -> f64 {
    2.0
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            pixel_delta: default_pixel_delta(),
            min_changed: default_min_changed(),
            refresh_s: default_refresh_s(),
        }
    }
}

impl MotionConfig {
    /// Adds a problem per wrong key to `issue` (keys prefixed with `key`).
    pub fn validate(&self, key: &str, issue: &mut dyn FnMut(&str, String)) {
        if self.pixel_delta == 0 {
            issue(
                &format!("{key}.pixel_delta"),
                "is 0: every pixel would count as changed; allowed 1 to 255".into(),
            );
        }
        if !(0.0..=1.0).contains(&self.min_changed) {
            issue(
                &format!("{key}.min_changed"),
                format!(
                    "{} is out of range: a fraction of the lane from 0 to 1",
                    self.min_changed
                ),
            );
        }
        if !(0.1..=3600.0).contains(&self.refresh_s) {
            issue(
                &format!("{key}.refresh_s"),
                format!(
                    "{} is out of range: allowed 0.1 to 3600 seconds",
                    self.refresh_s
                ),
            );
        }
    }
}

/// Width of the thumbnail frames are compared at: enough for a plate-sized change, cheap enough
/// to cost well under a millisecond at 1080p.
const THUMB_WIDTH: i32 = 160;

/// The gate of one camera.
pub struct MotionGate {
    config: MotionConfig,
    reference: Mat,
    reference_t: f64,
    small: Mat,
    grey: Mat,
    diff: Mat,
}

impl MotionGate {
    pub fn new(config: MotionConfig) -> Self {
        Self {
            config,
            reference: Mat::default(),
            reference_t: f64::NEG_INFINITY,
            small: Mat::default(),
            grey: Mat::default(),
            diff: Mat::default(),
        }
    }

    /// Whether the lane image `lane` (BGR) at stream time `t` must be read. When it returns
    /// `true` the frame becomes the new reference.
    pub fn should_read(&mut self, lane: &Mat, t: f64) -> Result<bool> {
        if !self.config.enabled {
            return Ok(true);
        }
        let h = ((lane.rows() as f64 * THUMB_WIDTH as f64 / lane.cols().max(1) as f64).round()
            as i32)
            .max(1);
        imgproc::resize(
            lane,
            &mut self.small,
            Size::new(THUMB_WIDTH, h),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )
        .context("motion thumbnail")?;
        imgproc::cvt_color_def(&self.small, &mut self.grey, imgproc::COLOR_BGR2GRAY)?;
        let stale = !(t >= self.reference_t && t - self.reference_t < self.config.refresh_s);
        let same_size = self.reference.size()? == self.grey.size()?;
        if stale || !same_size || self.changed_fraction()? >= self.config.min_changed {
            std::mem::swap(&mut self.reference, &mut self.grey);
            self.reference_t = t;
            return Ok(true);
        }
        Ok(false)
    }

    fn changed_fraction(&mut self) -> Result<f64> {
        core::absdiff(&self.grey, &self.reference, &mut self.diff)?;
        let mut mask = Mat::default();
        imgproc::threshold(
            &self.diff,
            &mut mask,
            self.config.pixel_delta as f64,
            255.0,
            imgproc::THRESH_BINARY,
        )?;
        let total = (mask.rows() * mask.cols()).max(1) as f64;
        Ok(core::count_non_zero(&mask)? as f64 / total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Rect, Scalar, CV_8UC3};

    fn frame(box_x: i32) -> Mat {
        let mut m = Mat::new_rows_cols_with_default(720, 1280, CV_8UC3, Scalar::all(90.0)).unwrap();
        imgproc::rectangle(
            &mut m,
            Rect::new(box_x, 400, 120, 60),
            Scalar::all(250.0),
            -1,
            imgproc::LINE_8,
            0,
        )
        .unwrap();
        m
    }

    #[test]
    fn still_frames_are_skipped_until_something_moves_or_the_refresh_is_due() {
        let mut gate = MotionGate::new(MotionConfig::default());
        assert!(gate.should_read(&frame(100), 0.0).unwrap(), "first frame");
        assert!(
            !gate.should_read(&frame(100), 0.04).unwrap(),
            "same picture"
        );
        // Sensor noise of a couple of grey levels is not motion.
        let mut noisy = frame(100);
        let noise = Mat::new_rows_cols_with_default(720, 1280, CV_8UC3, Scalar::all(3.0)).unwrap();
        let mut out = Mat::default();
        core::add_def(&noisy, &noise, &mut out).unwrap();
        noisy = out;
        assert!(!gate.should_read(&noisy, 0.08).unwrap(), "noise");
        // A plate-sized object moving 40 px is.
        assert!(gate.should_read(&frame(140), 0.12).unwrap(), "moved");
        assert!(!gate.should_read(&frame(140), 0.16).unwrap());
        assert!(gate.should_read(&frame(140), 2.2).unwrap(), "refresh due");
        // A recorded stream that starts over reads again.
        assert!(
            gate.should_read(&frame(140), 0.0).unwrap(),
            "time went back"
        );
    }

    #[test]
    fn slow_motion_adds_up_against_the_last_read_frame() {
        let mut gate = MotionGate::new(MotionConfig {
            refresh_s: 3600.0,
            ..MotionConfig::default()
        });
        assert!(gate.should_read(&frame(100), 0.0).unwrap());
        let mut reads = 0;
        for step in 1..=40 {
            if gate
                .should_read(&frame(100 + step), step as f64 * 0.04)
                .unwrap()
            {
                reads += 1;
            }
        }
        assert!(
            (1..40).contains(&reads),
            "a crawl of 1 px per frame is read now and then, not never and not always: {reads}"
        );
    }

    #[test]
    fn a_disabled_gate_reads_everything_and_bad_settings_are_named() {
        let mut gate = MotionGate::new(MotionConfig {
            enabled: false,
            ..MotionConfig::default()
        });
        assert!(gate.should_read(&frame(0), 0.0).unwrap());
        assert!(gate.should_read(&frame(0), 0.0).unwrap());
        let mut problems = Vec::new();
        MotionConfig {
            enabled: true,
            pixel_delta: 0,
            min_changed: 1.5,
            refresh_s: 0.0,
        }
        .validate("camera[0].motion", &mut |k, m| {
            problems.push(format!("{k}: {m}"))
        });
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("camera[0].motion.pixel_delta"));
    }
}
