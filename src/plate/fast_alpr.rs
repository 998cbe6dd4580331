//! The fast-alpr model pair: a YOLOv9-t plate detector (NMS inside the graph) and the CCT-XS
//! fixed-slot plate OCR. Both are MIT-licensed and live in `../shared/models/fast-alpr`; they read
//! Latin plates only.

use anyhow::{bail, ensure, Context, Result};
use opencv::core::{Mat, Rect, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;
use ort::session::Session;
use ort::value::TensorRef;

use super::text_rec::TextRead;
use crate::vision::{self, BBox};

/// A detected plate box with its score.
#[derive(Debug, Clone)]
pub struct PlateBox {
    pub bbox: BBox,
    pub score: f32,
}

/// YOLOv9-t plate detector, 416×416 letterboxed RGB input.
pub struct YoloPlateDetector {
    session: Session,
    canvas: Mat,
    resized: Mat,
    input: Vec<f32>,
    /// Minimum detection score.
    pub threshold: f32,
}

const SIDE: i32 = 416;

impl YoloPlateDetector {
    pub fn new(session: Session) -> Self {
        Self {
            session,
            canvas: Mat::default(),
            resized: Mat::default(),
            input: vec![0.0; (3 * SIDE * SIDE) as usize],
            threshold: 0.4,
        }
    }

    /// Finds plates in a BGR frame.
    pub fn detect(&mut self, frame: &Mat) -> Result<Vec<PlateBox>> {
        let (w, h) = (frame.cols() as f32, frame.rows() as f32);
        let scale = (SIDE as f32 / w).min(SIDE as f32 / h);
        let (nw, nh) = ((w * scale).round() as i32, (h * scale).round() as i32);
        let (px, py) = ((SIDE - nw) / 2, (SIDE - nh) / 2);
        vision::resize_into(frame, &mut self.resized, nw, nh)?;
        if self.canvas.empty() {
            self.canvas = Mat::new_size_with_default(
                Size::new(SIDE, SIDE),
                opencv::core::CV_8UC3,
                Scalar::all(114.0),
            )?;
        } else {
            self.canvas.set_to_def(&Scalar::all(114.0))?;
        }
        let mut roi = Mat::roi_mut(&mut self.canvas, Rect::new(px, py, nw, nh))?;
        self.resized.copy_to(&mut roi)?;
        vision::pack_chw(
            &self.canvas,
            &mut self.input,
            0,
            SIDE as usize,
            SIDE as usize,
            true,
            1.0 / 255.0,
            [0.0; 3],
            [1.0; 3],
        )?;
        let tensor = TensorRef::from_array_view((
            [1usize, 3, SIDE as usize, SIDE as usize],
            &self.input[..],
        ))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .context("plate detector inference")?;
        let (shape, rows) = outputs[0].try_extract_tensor::<f32>()?;
        if shape.len() != 2 || shape[1] != 7 {
            bail!("unexpected plate detector output shape {shape:?}");
        }
        Ok(rows
            .chunks_exact(7)
            .filter(|r| r[6] >= self.threshold)
            .map(|r| {
                let x1 = ((r[1] - px as f32) / scale).clamp(0.0, w);
                let y1 = ((r[2] - py as f32) / scale).clamp(0.0, h);
                let x2 = ((r[3] - px as f32) / scale).clamp(0.0, w);
                let y2 = ((r[4] - py as f32) / scale).clamp(0.0, h);
                PlateBox {
                    bbox: BBox {
                        x: x1,
                        y: y1,
                        w: x2 - x1,
                        h: y2 - y1,
                    },
                    score: r[6],
                }
            })
            .filter(|b| b.bbox.w >= 4.0 && b.bbox.h >= 4.0)
            .collect())
    }

    /// Finds plates in a frame cut into `grid` × `grid` overlapping tiles, each given the whole
    /// input: small plates of a large frame (a 12 MP photo's far cars) are a few pixels at one
    /// 416 px look and `grid` times larger here, at `grid`² detector runs.
    pub fn detect_tiled(&mut self, frame: &Mat, grid: i32) -> Result<Vec<PlateBox>> {
        let mut found = Vec::new();
        for tile in tiles(frame.cols(), frame.rows(), grid) {
            let part = Mat::roi(frame, tile)?.try_clone()?;
            for mut b in self.detect(&part)? {
                b.bbox.x += tile.x as f32;
                b.bbox.y += tile.y as f32;
                found.push(b);
            }
        }
        Ok(merge_tiled(found))
    }
}

/// A `grid` × `grid` cover of a `w` × `h` frame, each tile 1.2 / `grid` of the frame's side, so
/// neighbouring tiles overlap (by a fifth of the frame at 2 × 2) and a plate cut by one tile's
/// edge is whole in its neighbour.
fn tiles(w: i32, h: i32, grid: i32) -> Vec<Rect> {
    let span = |len: i32| -> Vec<(i32, i32)> {
        let size = ((len as f32 / grid as f32) * 1.2).ceil().min(len as f32) as i32;
        (0..grid)
            .map(|i| {
                let start = if grid == 1 {
                    0
                } else {
                    (len - size) * i / (grid - 1)
                };
                (start, size)
            })
            .collect()
    };
    let (xs, ys) = (span(w), span(h));
    ys.iter()
        .flat_map(|&(y, th)| xs.iter().map(move |&(x, tw)| Rect::new(x, y, tw, th)))
        .collect()
}

/// One box per plate from overlapping tiles: the higher-scoring box is kept, and a box sharing
/// over half the smaller box's area with a kept one is the same plate (or its part cut by a tile
/// edge).
fn merge_tiled(mut boxes: Vec<PlateBox>) -> Vec<PlateBox> {
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<PlateBox> = Vec::new();
    for b in boxes {
        let area = (b.bbox.w * b.bbox.h).max(1e-3);
        let inside = |k: &PlateBox| {
            let ix = (b.bbox.x + b.bbox.w).min(k.bbox.x + k.bbox.w) - b.bbox.x.max(k.bbox.x);
            let iy = (b.bbox.y + b.bbox.h).min(k.bbox.y + k.bbox.h) - b.bbox.y.max(k.bbox.y);
            ix.max(0.0) * iy.max(0.0) > 0.5 * area.min(k.bbox.w * k.bbox.h)
        };
        if !kept.iter().any(inside) {
            kept.push(b);
        }
    }
    kept
}

/// CCT-XS plate OCR: 128×64 RGB u8 in, 10 slots over `0-9A-Z_` out.
pub struct CctRecogniser {
    session: Session,
    resized: Mat,
    rgb: Mat,
    input: Vec<u8>,
}

const CCT_W: i32 = 128;
const CCT_H: i32 = 64;
const CCT_ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_";

impl CctRecogniser {
    pub fn new(session: Session) -> Self {
        Self {
            session,
            resized: Mat::default(),
            rgb: Mat::default(),
            input: Vec::new(),
        }
    }

    /// Reads each BGR plate crop.
    pub fn recognise(&mut self, crops: &[Mat]) -> Result<Vec<TextRead>> {
        self.recognise_voted(crops, 1)
    }

    /// Reads consecutive groups of `views` crops of the same plate (e.g. the detector's box at a
    /// few paddings) as one: each slot's probabilities are averaged over the group before the
    /// argmax, so a character misread in one framing is outvoted by the others.
    pub fn recognise_voted(&mut self, crops: &[Mat], views: usize) -> Result<Vec<TextRead>> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        ensure!(
            views > 0 && crops.len().is_multiple_of(views),
            "{} crops do not split into groups of {views}",
            crops.len()
        );
        let per = (CCT_W * CCT_H * 3) as usize;
        self.input.clear();
        for crop in crops {
            vision::resize_into(crop, &mut self.resized, CCT_W, CCT_H)?;
            imgproc::cvt_color_def(&self.resized, &mut self.rgb, imgproc::COLOR_BGR2RGB)?;
            self.input.extend_from_slice(&self.rgb.data_bytes()?[..per]);
        }
        let shape = [crops.len(), CCT_H as usize, CCT_W as usize, 3];
        let tensor = TensorRef::from_array_view((shape, &self.input[..]))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .context("plate OCR inference")?;
        let (shape, probs) = outputs[0].try_extract_tensor::<f32>()?;
        let (slots, classes) = (shape[1] as usize, shape[2] as usize);
        if classes != CCT_ALPHABET.len() {
            bail!(
                "plate OCR has {classes} classes, expected {}",
                CCT_ALPHABET.len()
            );
        }
        let per_plate = slots * classes;
        let mut mean = vec![0.0f32; per_plate];
        Ok(probs
            .chunks_exact(per_plate * views)
            .map(|group| {
                average_views(group, &mut mean);
                decode_slots(&mean, classes)
            })
            .collect())
    }
}

/// Averages the views in `group` (consecutive blocks of `mean.len()` probabilities) into `mean`.
fn average_views(group: &[f32], mean: &mut [f32]) {
    let views = (group.len() / mean.len()) as f32;
    mean.fill(0.0);
    for view in group.chunks_exact(mean.len()) {
        for (m, p) in mean.iter_mut().zip(view) {
            *m += p / views;
        }
    }
}

/// Decodes fixed slots: argmax per slot, pad `_` dropped; confidence is the mean over all slots
/// (pads included, as fast-plate-ocr does), so a plate padded with confident pads stays confident.
fn decode_slots(probs: &[f32], classes: usize) -> TextRead {
    let mut text = String::new();
    let mut sum = 0.0;
    let mut n = 0;
    let mut min_char = f32::MAX;
    for slot in probs.chunks_exact(classes) {
        let (best, p) =
            slot.iter()
                .enumerate()
                .fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
        sum += p;
        n += 1;
        let c = CCT_ALPHABET[best] as char;
        if c != '_' {
            text.push(c);
            min_char = min_char.min(p);
        }
    }
    TextRead {
        confidence: if n == 0 { 0.0 } else { sum / n as f32 },
        min_char: if text.is_empty() { 0.0 } else { min_char },
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_frame_and_overlap() {
        let t = tiles(4032, 2268, 2);
        assert_eq!(t.len(), 4);
        assert_eq!(t[0], Rect::new(0, 0, 2420, 1361));
        assert_eq!(t[3], Rect::new(4032 - 2420, 2268 - 1361, 2420, 1361));
        // Neighbours overlap by a fifth of the frame (less rounding).
        let overlap = t[0].x + t[0].width - t[1].x;
        assert!((overlap - 4032 / 5).abs() <= 4, "{overlap}");
        assert_eq!(tiles(640, 480, 1), [Rect::new(0, 0, 640, 480)]);
    }

    #[test]
    fn a_plate_seen_by_two_tiles_is_one_box_and_its_cut_part_is_dropped() {
        let at = |x: f32, w: f32, score: f32| PlateBox {
            bbox: BBox {
                x,
                y: 100.0,
                w,
                h: 30.0,
            },
            score,
        };
        let merged = merge_tiled(vec![
            at(1000.0, 90.0, 0.7), // the plate, from the left tile
            at(1002.0, 90.0, 0.9), // the same plate, from the right tile
            at(1050.0, 42.0, 0.6), // its right half, cut by the left tile's edge
            at(3000.0, 90.0, 0.5), // another plate
        ]);
        let xs: Vec<f32> = merged.iter().map(|b| b.bbox.x).collect();
        assert_eq!(xs, [1002.0, 3000.0]);
    }

    #[test]
    fn slots_decode_without_padding() {
        let classes = CCT_ALPHABET.len();
        let mut probs = vec![0.0f32; 4 * classes];
        for (slot, ch) in "A1__".bytes().enumerate() {
            let i = CCT_ALPHABET.iter().position(|&c| c == ch).unwrap();
            probs[slot * classes + i] = 0.5;
        }
        let r = decode_slots(&probs, classes);
        assert_eq!(r.text, "A1");
        assert!((r.confidence - 0.5).abs() < 1e-6);
    }

    #[test]
    fn views_vote_per_slot_before_the_argmax() {
        let classes = CCT_ALPHABET.len();
        let idx = |ch: u8| CCT_ALPHABET.iter().position(|&c| c == ch).unwrap();
        // Three framings of a one-slot plate: two lean to 8, one is sure of B. Per-view argmax
        // and a majority would agree here; the sum decides where they would not.
        let mut group = vec![0.0f32; 3 * classes];
        for (view, (b, eight)) in [(0.45, 0.55), (0.45, 0.55), (0.95, 0.05)]
            .iter()
            .enumerate()
        {
            group[view * classes + idx(b'B')] = *b;
            group[view * classes + idx(b'8')] = *eight;
        }
        let mut mean = vec![0.0; classes];
        average_views(&group, &mut mean);
        let r = decode_slots(&mean, classes);
        assert_eq!(r.text, "B", "mean B = 0.62 beats mean 8 = 0.38");
        assert!((r.confidence - 0.6167).abs() < 1e-3);
    }
}
