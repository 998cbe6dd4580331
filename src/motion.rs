//! Motion gating: skip plate inference on frames where nothing in the lane changed.
//!
//! Each frame's lane rectangle is shrunk to a small grey thumbnail and compared with the thumbnail
//! of the last frame that was *read* (not the previous frame: a truck crawling a pixel per frame
//! adds up to a change). When too few pixels changed the frame is "still": the pipeline reuses the
//! last frame's reads instead of running the models, so a vehicle standing in the lane keeps its
//! track open exactly as if every frame had been read. A full read is forced every `refresh_s`
//! all the same, so slow light changes cannot hide a plate for long.
//!
//! When only parts of the lane changed, the gate says which ([`Motion::Parts`]): the box of each
//! group of changed thumbnail pixels in lane pixels, padded by [`PART_PAD`], boxes that overlap
//! joined. The reader can then look there only and keep the last reads elsewhere (`plate::lane`).
//! The text detector's time grows with the pixels it is given, and a vehicle moving through the
//! lane changes a fraction of it: on the rendered demo clip a median of about 0.13 of the lane.

use anyhow::{Context, Result};
use opencv::core::{self, Mat, Rect, Size};
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
    /// Whether a frame where only parts of the lane moved is read there only (where the model
    /// set can: the text-detector set), the last reads elsewhere kept.
    #[serde(default = "yes")]
    pub part_reads: bool,
    /// Moved parts covering more than this fraction of the lane's area together are not worth
    /// cutting out: the whole lane is read.
    #[serde(default = "default_max_part")]
    pub max_part: f64,
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
fn default_max_part() -> f64 {
    0.6
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            pixel_delta: default_pixel_delta(),
            min_changed: default_min_changed(),
            refresh_s: default_refresh_s(),
            part_reads: true,
            max_part: default_max_part(),
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
        if !(self.max_part > 0.0 && self.max_part <= 1.0) {
            issue(
                &format!("{key}.max_part"),
                format!(
                    "{} is out of range: a fraction of the lane's area above 0 and at most 1",
                    self.max_part
                ),
            );
        }
    }
}

/// Width of the thumbnail frames are compared at: enough for a plate-sized change, cheap enough
/// to cost well under a millisecond at 1080p.
const THUMB_WIDTH: i32 = 160;

/// How far a moved part is grown on each side, as a fraction of the lane's width: the thumbnail
/// sees a moving plate's characters only where they changed by `pixel_delta`, and a plate cut by
/// the part's edge must not be read in pieces. At 1920 px, 120 px: twice a near plate's height.
pub const PART_PAD: f64 = 1.0 / 16.0;

/// At most this many parts are read apart; more are read as the one box around them.
pub const MAX_PARTS: usize = 4;

/// Groups of changed thumbnail pixels past which they are not told apart (scattered change).
const MAX_GROUPS: i32 = 48;

/// What the gate decided about a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Motion {
    /// Nothing changed enough since the last read frame: its reads still hold.
    Still,
    /// Read the whole lane: the first frame, a forced refresh, a new frame size, or most of the
    /// lane moved.
    Whole,
    /// Only these rectangles of the lane (lane pixels, padded, not overlapping) changed since
    /// the last read frame: one per thing that moved, at most [`MAX_PARTS`].
    Parts(Vec<Rect>),
}

/// The gate of one camera.
pub struct MotionGate {
    config: MotionConfig,
    reference: Mat,
    reference_t: f64,
    small: Mat,
    grey: Mat,
    diff: Mat,
    mask: Mat,
    /// Connected-component labels, stats and centroids of `mask`, reused frame to frame.
    components: [Mat; 3],
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
            mask: Mat::default(),
            components: Default::default(),
        }
    }

    /// The settings the gate was made with.
    pub fn config(&self) -> &MotionConfig {
        &self.config
    }

    /// Whether and where the lane image `lane` (BGR) at stream time `t` must be read. Unless it
    /// returns [`Motion::Still`] the frame becomes the new reference.
    pub fn judge(&mut self, lane: &Mat, t: f64) -> Result<Motion> {
        if !self.config.enabled {
            return Ok(Motion::Whole);
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
        let motion = if stale || !same_size {
            Motion::Whole
        } else {
            self.changed_mask()?;
            let total = (self.mask.rows() * self.mask.cols()).max(1) as f64;
            if (core::count_non_zero(&self.mask)? as f64 / total) < self.config.min_changed {
                return Ok(Motion::Still);
            }
            if self.config.part_reads {
                self.moved_parts(lane.cols(), lane.rows())?
            } else {
                Motion::Whole
            }
        };
        std::mem::swap(&mut self.reference, &mut self.grey);
        self.reference_t = t;
        Ok(motion)
    }

    /// Has the next frame read whole, whatever it shows (the last read failed).
    pub fn forget(&mut self) {
        self.reference_t = f64::NEG_INFINITY;
    }

    /// The parts of a `w` × `h` lane that moved: each group of changed thumbnail pixels' box in
    /// lane pixels, padded by [`PART_PAD`], boxes that overlap joined; one box around them all
    /// when there are more than [`MAX_PARTS`]; the whole lane when they cover more than
    /// `max_part` of it (or there are none).
    fn moved_parts(&mut self, w: i32, h: i32) -> Result<Motion> {
        let (sx, sy) = (
            w as f64 / self.mask.cols().max(1) as f64,
            h as f64 / self.mask.rows().max(1) as f64,
        );
        let pad = w as f64 * PART_PAD;
        let to_lane = |b: Rect| {
            let x0 = ((b.x as f64 * sx - pad).floor() as i32).max(0);
            let y0 = ((b.y as f64 * sy - pad).floor() as i32).max(0);
            let x1 = (((b.x + b.width) as f64 * sx + pad).ceil() as i32).min(w);
            let y1 = (((b.y + b.height) as f64 * sy + pad).ceil() as i32).min(h);
            Rect::new(x0, y0, (x1 - x0).max(1), (y1 - y0).max(1))
        };
        let [labels, stats, centroids] = &mut self.components;
        let groups = imgproc::connected_components_with_stats(
            &self.mask,
            labels,
            stats,
            centroids,
            8,
            core::CV_32S,
        )?;
        // Label 0 is the unchanged background. Scattered change (noise, rain) would make a part
        // per pixel: past a few dozen groups, one box around all of them.
        let mut parts = if groups - 1 > MAX_GROUPS {
            vec![to_lane(imgproc::bounding_rect(&self.mask)?)]
        } else {
            let mut v = Vec::with_capacity(groups.max(1) as usize - 1);
            for i in 1..groups {
                let at = |c: i32| stats.at_2d::<i32>(i, c).copied();
                v.push(to_lane(Rect::new(
                    at(imgproc::CC_STAT_LEFT)?,
                    at(imgproc::CC_STAT_TOP)?,
                    at(imgproc::CC_STAT_WIDTH)?,
                    at(imgproc::CC_STAT_HEIGHT)?,
                )));
            }
            join_overlapping(v)
        };
        if parts.len() > MAX_PARTS {
            let all = parts.iter().fold(parts[0], |a, b| a | *b);
            parts = vec![all];
        }
        // No changed pixel at all passes only `min_changed = 0`, which asks for every frame read.
        Ok(
            if parts.is_empty() || parts_share(&parts, w, h) > self.config.max_part {
                Motion::Whole
            } else {
                Motion::Parts(parts)
            },
        )
    }

    /// Thresholds the difference between this frame's thumbnail and the reference into `mask`.
    fn changed_mask(&mut self) -> Result<()> {
        core::absdiff(&self.grey, &self.reference, &mut self.diff)?;
        imgproc::threshold(
            &self.diff,
            &mut self.mask,
            self.config.pixel_delta as f64,
            255.0,
            imgproc::THRESH_BINARY,
        )?;
        Ok(())
    }
}

/// The share of a `w` × `h` lane's area that `parts` (not overlapping) cover.
pub fn parts_share(parts: &[Rect], w: i32, h: i32) -> f64 {
    parts.iter().map(|p| p.area() as f64).sum::<f64>() / (w.max(1) as f64 * h.max(1) as f64)
}

/// `rects` with every two that overlap replaced by the box around both, until none overlap.
pub fn join_overlapping(mut rects: Vec<Rect>) -> Vec<Rect> {
    let mut i = 0;
    while i < rects.len() {
        match (i + 1..rects.len()).find(|&j| (rects[i] & rects[j]).area() > 0) {
            Some(j) => {
                let other = rects.swap_remove(j);
                rects[i] |= other;
                // The grown box may now overlap one already passed.
                i = 0;
            }
            None => i += 1,
        }
    }
    rects
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

    /// Whether the gate has the frame read (whole or in part).
    fn reads(gate: &mut MotionGate, lane: &Mat, t: f64) -> bool {
        gate.judge(lane, t).unwrap() != Motion::Still
    }

    #[test]
    fn still_frames_are_skipped_until_something_moves_or_the_refresh_is_due() {
        let mut gate = MotionGate::new(MotionConfig::default());
        assert!(reads(&mut gate, &frame(100), 0.0), "first frame");
        assert!(!reads(&mut gate, &frame(100), 0.04), "same picture");
        // Sensor noise of a couple of grey levels is not motion.
        let mut noisy = frame(100);
        let noise = Mat::new_rows_cols_with_default(720, 1280, CV_8UC3, Scalar::all(3.0)).unwrap();
        let mut out = Mat::default();
        core::add_def(&noisy, &noise, &mut out).unwrap();
        noisy = out;
        assert!(!reads(&mut gate, &noisy, 0.08), "noise");
        // A plate-sized object moving 40 px is.
        assert!(reads(&mut gate, &frame(140), 0.12), "moved");
        assert!(!reads(&mut gate, &frame(140), 0.16));
        assert!(reads(&mut gate, &frame(140), 2.2), "refresh due");
        // A recorded stream that starts over reads again.
        assert!(reads(&mut gate, &frame(140), 0.0), "time went back");
    }

    #[test]
    fn slow_motion_adds_up_against_the_last_read_frame() {
        let mut gate = MotionGate::new(MotionConfig {
            refresh_s: 3600.0,
            ..MotionConfig::default()
        });
        assert!(reads(&mut gate, &frame(100), 0.0));
        let mut read = 0;
        for step in 1..=40 {
            if reads(&mut gate, &frame(100 + step), step as f64 * 0.04) {
                read += 1;
            }
        }
        assert!(
            (1..40).contains(&read),
            "a crawl of 1 px per frame is read now and then, not never and not always: {read}"
        );
    }

    #[test]
    fn a_disabled_gate_reads_everything_and_bad_settings_are_named() {
        let mut gate = MotionGate::new(MotionConfig {
            enabled: false,
            ..MotionConfig::default()
        });
        assert!(reads(&mut gate, &frame(0), 0.0));
        assert!(reads(&mut gate, &frame(0), 0.0));
        let mut problems = Vec::new();
        MotionConfig {
            enabled: true,
            pixel_delta: 0,
            min_changed: 1.5,
            refresh_s: 0.0,
            part_reads: true,
            max_part: 0.0,
        }
        .validate("camera[0].motion", &mut |k, m| {
            problems.push(format!("{k}: {m}"))
        });
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("camera[0].motion.pixel_delta"));
    }

    #[test]
    fn a_small_move_names_the_part_of_the_lane_that_moved_and_a_large_one_the_whole_lane() {
        let mut gate = MotionGate::new(MotionConfig::default());
        assert_eq!(
            gate.judge(&frame(100), 0.0).unwrap(),
            Motion::Whole,
            "first"
        );
        // The box moved from x 100 to 140: pixels 100-260 × 400-460 changed.
        let Motion::Parts(parts) = gate.judge(&frame(140), 0.04).unwrap() else {
            panic!("a plate-sized move is a part of the lane");
        };
        let [part] = parts[..] else {
            panic!("one thing moved: {parts:?}")
        };
        let moved = Rect::new(100, 400, 160, 60);
        assert_eq!(part & moved, moved, "the part holds what moved: {part:?}");
        // Padded by a 16th of the lane's width (80 px) and the thumbnail's 8 px steps, no more.
        let most = Rect::new(100 - 80 - 16, 400 - 80 - 16, 160 + 2 * 96, 60 + 2 * 96);
        assert_eq!(part & most, part, "{part:?} within {most:?}");
        assert!(parts_share(&parts, 1280, 720) < 0.2);
        // A light change over the whole lane: read it whole.
        let mut brighter = Mat::default();
        core::add_def(&frame(140), &Scalar::all(40.0), &mut brighter).unwrap();
        assert_eq!(gate.judge(&brighter, 0.08).unwrap(), Motion::Whole);
        // Parts off: a move is a whole read.
        let mut whole = MotionGate::new(MotionConfig {
            part_reads: false,
            ..MotionConfig::default()
        });
        assert_eq!(whole.judge(&frame(100), 0.0).unwrap(), Motion::Whole);
        assert_eq!(whole.judge(&frame(140), 0.04).unwrap(), Motion::Whole);
    }

    #[test]
    fn things_moving_apart_are_parts_apart_and_scattered_change_is_one_box() {
        // Two boxes moving 40 px, one at the left and one at the right of the lane.
        let two = |dx: i32| {
            let mut m = frame(100 + dx);
            imgproc::rectangle(
                &mut m,
                Rect::new(1000 + dx, 100, 120, 60),
                Scalar::all(250.0),
                -1,
                imgproc::LINE_8,
                0,
            )
            .unwrap();
            m
        };
        let mut gate = MotionGate::new(MotionConfig::default());
        gate.judge(&two(0), 0.0).unwrap();
        let Motion::Parts(parts) = gate.judge(&two(40), 0.04).unwrap() else {
            panic!("two small moves");
        };
        assert_eq!(parts.len(), 2, "{parts:?}");
        for moved in [Rect::new(100, 400, 160, 60), Rect::new(1000, 100, 160, 60)] {
            assert!(
                parts.iter().any(|p| (*p & moved) == moved),
                "{moved:?} in {parts:?}"
            );
        }
        assert_eq!(parts[0] & parts[1], Rect::default(), "not overlapping");

        // Overlapping boxes are joined, repeatedly.
        let joined = join_overlapping(vec![
            Rect::new(0, 0, 10, 10),
            Rect::new(50, 0, 10, 10),
            Rect::new(5, 5, 10, 10),
            Rect::new(12, 0, 40, 3),
        ]);
        assert_eq!(joined, [Rect::new(0, 0, 60, 15)]);

        // Change scattered over the lane (a checkerboard of small blocks): one box, too large
        // to be a part.
        let mut gate = MotionGate::new(MotionConfig::default());
        let plain = Mat::new_rows_cols_with_default(720, 1280, CV_8UC3, Scalar::all(90.0)).unwrap();
        gate.judge(&plain, 0.0).unwrap();
        let mut spotted = plain.clone();
        for y in (0..720).step_by(96) {
            for x in (0..1280).step_by(96) {
                imgproc::rectangle(
                    &mut spotted,
                    Rect::new(x, y, 16, 16),
                    Scalar::all(250.0),
                    -1,
                    imgproc::LINE_8,
                    0,
                )
                .unwrap();
            }
        }
        assert_eq!(gate.judge(&spotted, 0.04).unwrap(), Motion::Whole);
    }
}
