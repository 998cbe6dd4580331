//! PP-OCR's DB text detector: finds text lines anywhere in a frame.
//!
//! Recipe (matches RapidOCR's reference): BGR input, `(v/255-0.5)/0.5`, sides scaled to multiples
//! of 32 (shorter side up to 736 unless that exceeds the configured longest side), probability map
//! thresholded at 0.3, boxes scored by mean probability (≥ 0.5) and grown ("unclipped") by
//! `area * 1.6 / perimeter`.

use anyhow::{Context, Result};
use opencv::core::{Mat, Point, Point2f, Scalar, Size, ToInputArray, Vector, CV_32F, CV_8U};
use opencv::imgproc;
use opencv::prelude::*;
use ort::session::Session;
use ort::value::TensorRef;

use crate::vision::{self, order_quad};

/// One detected text line.
#[derive(Debug, Clone)]
pub struct TextBox {
    /// Corners in frame pixels: top-left, top-right, bottom-right, bottom-left.
    pub quad: [Point2f; 4],
    /// Mean detector probability inside the box.
    pub score: f32,
}

/// The DB text detector and its reusable buffers.
pub struct TextDetector {
    session: Session,
    max_side: u32,
    resized: Mat,
    input: Vec<f32>,
    /// Minimum box score to keep.
    pub box_threshold: f32,
}

const MIN_SHORT_SIDE: f32 = 736.0;
const BIN_THRESHOLD: f32 = 0.3;
const UNCLIP_RATIO: f32 = 1.6;
const MAX_CANDIDATES: usize = 1000;

impl TextDetector {
    /// Wraps a loaded PP-OCR DB session.
    pub fn new(session: Session, max_side: u32) -> Self {
        Self {
            session,
            max_side,
            resized: Mat::default(),
            input: Vec::new(),
            box_threshold: 0.5,
        }
    }

    /// Changes the longest side frames are scaled to (the input buffer grows on demand).
    pub fn set_max_side(&mut self, max_side: u32) {
        self.max_side = max_side;
    }

    /// The factor a frame of `w`×`h` is scaled by when its longest side may be at most
    /// `max_side` (before the sides are rounded to multiples of 32).
    pub fn scale(w: i32, h: i32, max_side: u32) -> f32 {
        let (wf, hf) = (w.max(1) as f32, h.max(1) as f32);
        let mut ratio = if wf.min(hf) < MIN_SHORT_SIDE {
            MIN_SHORT_SIDE / wf.min(hf)
        } else {
            1.0
        };
        if wf.max(hf) * ratio > max_side as f32 {
            ratio = max_side as f32 / wf.max(hf);
        }
        ratio
    }

    /// The model input size for a frame of `w`×`h`.
    pub fn input_size(&self, w: i32, h: i32) -> (i32, i32) {
        let ratio = Self::scale(w, h, self.max_side);
        let round32 = |v: f32| (((v / 32.0).round() as i32) * 32).max(32);
        (round32(w as f32 * ratio), round32(h as f32 * ratio))
    }

    /// Resizes and normalises a BGR frame into the reused input buffer; returns the input size.
    /// Public so the benches measure exactly this step.
    pub fn preprocess(&mut self, frame: &Mat) -> Result<(i32, i32)> {
        let (iw, ih) = self.input_size(frame.cols(), frame.rows());
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
            1.0 / 255.0,
            [0.5; 3],
            [2.0; 3],
        )?;
        Ok((iw, ih))
    }

    /// Finds text lines in a BGR frame.
    pub fn detect(&mut self, frame: &Mat) -> Result<Vec<TextBox>> {
        let (iw, ih) = self.preprocess(frame)?;
        let tensor =
            TensorRef::from_array_view(([1usize, 3, ih as usize, iw as usize], &self.input[..]))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .context("text detector inference")?;
        let (shape, prob) = outputs[0].try_extract_tensor::<f32>()?;
        let (ph, pw) = (shape[2] as i32, shape[3] as i32);
        let prob_map = Mat::new_rows_cols_with_data(ph, pw, prob)?;
        let sx = frame.cols() as f32 / pw as f32;
        let sy = frame.rows() as f32 / ph as f32;
        boxes_from_probability(&prob_map, self.box_threshold, sx, sy)
    }
}

/// Turns a probability map into scored, unclipped text boxes scaled by (`sx`, `sy`).
pub fn boxes_from_probability<M: ToInputArray + MatTraitConst>(
    prob: &M,
    box_threshold: f32,
    sx: f32,
    sy: f32,
) -> Result<Vec<TextBox>> {
    let mut mask = Mat::default();
    let mut bin = Mat::default();
    imgproc::threshold(
        prob,
        &mut bin,
        BIN_THRESHOLD as f64,
        255.0,
        imgproc::THRESH_BINARY,
    )?;
    bin.convert_to(&mut mask, CV_8U, 1.0, 0.0)?;
    let mut contours = Vector::<Vector<Point>>::new();
    imgproc::find_contours(
        &mask,
        &mut contours,
        imgproc::RETR_LIST,
        imgproc::CHAIN_APPROX_SIMPLE,
        Point::new(0, 0),
    )?;
    let (pw, ph) = (prob.cols() as f32, prob.rows() as f32);
    let mut out = Vec::new();
    for contour in contours.iter().take(MAX_CANDIDATES) {
        if contour.len() < 4 {
            continue;
        }
        let rect = imgproc::min_area_rect(&contour)?;
        if rect.size.width.min(rect.size.height) < 3.0 {
            continue;
        }
        let score = mean_inside(prob, &contour)?;
        if score < box_threshold {
            continue;
        }
        // Unclip: grow the rectangle by area * ratio / perimeter on every side.
        let (w, h) = (rect.size.width, rect.size.height);
        let d = w * h * UNCLIP_RATIO / (2.0 * (w + h));
        let grown = opencv::core::RotatedRect::new(
            rect.center,
            opencv::core::Size2f::new(w + 2.0 * d, h + 2.0 * d),
            rect.angle,
        )?;
        if grown.size.width.min(grown.size.height) < 5.0 {
            continue;
        }
        let mut pts = [Point2f::default(); 4];
        grown.points(&mut pts)?;
        let quad = order_quad(
            pts.map(|p| Point2f::new((p.x.clamp(0.0, pw)) * sx, (p.y.clamp(0.0, ph)) * sy)),
        );
        out.push(TextBox { quad, score });
    }
    Ok(out)
}

/// Mean of `prob` inside the polygon `contour`.
fn mean_inside(prob: &impl MatTraitConst, contour: &Vector<Point>) -> Result<f32> {
    let r = imgproc::bounding_rect(contour)?;
    let mut mask = Mat::zeros(r.height, r.width, CV_8U)?.to_mat()?;
    let shifted: Vector<Point> = contour
        .iter()
        .map(|p| Point::new(p.x - r.x, p.y - r.y))
        .collect();
    let polys = Vector::<Vector<Point>>::from_iter([shifted]);
    imgproc::fill_poly(
        &mut mask,
        &polys,
        Scalar::all(1.0),
        imgproc::LINE_8,
        0,
        Point::new(0, 0),
    )?;
    let data = prob.data_typed::<f32>()?;
    let m = mask.data_bytes()?;
    let cols = prob.cols() as usize;
    let (mut sum, mut n) = (0.0f64, 0usize);
    for y in 0..r.height as usize {
        for x in 0..r.width as usize {
            if m[y * r.width as usize + x] != 0 {
                sum += data[(r.y as usize + y) * cols + r.x as usize + x] as f64;
                n += 1;
            }
        }
    }
    Ok(if n == 0 { 0.0 } else { (sum / n as f64) as f32 })
}

/// A probability map from a float buffer, for tests.
pub fn prob_map_for_test(w: i32, h: i32, fill: impl Fn(i32, i32) -> f32) -> Result<Mat> {
    let mut m = Mat::new_size_with_default(Size::new(w, h), CV_32F, Scalar::all(0.0))?;
    for y in 0..h {
        for x in 0..w {
            *m.at_2d_mut::<f32>(y, x)? = fill(x, y);
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_box_is_found_grown_and_scaled() {
        // A 40x10 text line at (20, 30) in a 100x60 map; the frame is twice the map's size.
        let m = prob_map_for_test(100, 60, |x, y| {
            if (20..60).contains(&x) && (30..40).contains(&y) {
                0.9
            } else {
                0.0
            }
        })
        .unwrap();
        let boxes = boxes_from_probability(&m, 0.5, 2.0, 2.0).unwrap();
        assert_eq!(boxes.len(), 1);
        let b = crate::vision::BBox::around(&boxes[0].quad);
        assert!((boxes[0].score - 0.9).abs() < 0.01);
        // Unclipped: larger than the raw 80x20 (scaled) region, centred on it.
        assert!(b.w > 80.0 && b.h > 20.0, "{b:?}");
        assert!(
            (b.x + b.w / 2.0 - 79.0).abs() < 3.0 && (b.y + b.h / 2.0 - 69.0).abs() < 3.0,
            "{b:?}"
        );
    }

    #[test]
    fn faint_regions_are_dropped() {
        let m = prob_map_for_test(50, 50, |x, y| {
            if (10..40).contains(&x) && (10..20).contains(&y) {
                0.35
            } else {
                0.0
            }
        })
        .unwrap();
        assert!(boxes_from_probability(&m, 0.5, 1.0, 1.0)
            .unwrap()
            .is_empty());
    }
}
