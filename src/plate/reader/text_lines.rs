//! The text-detector set (no plate detector): text lines are found, read at two framings,
//! paired into two-line plates and accepted by the grammars.

use anyhow::Result;
use opencv::core::{Mat, Rect};
use opencv::prelude::*;

use super::framings::{
    judge_framings, needs_second_framing, settle_by_third_look, widen_quad, Framing,
    TEXT_LINE_FRAMINGS, THIRD_LOOK_STRETCH,
};
#[cfg(test)]
use super::ReaderOptions;
use super::{Detector, LatinRecogniser, PlateRead, PlateReader, SECOND_OPINION_BELOW};
use crate::plate::grammar::{self, classify, Region};
use crate::plate::text_det::TextDetector;
use crate::plate::text_rec::TextRead;
use crate::vision::{self, BBox};

impl PlateReader {
    /// Every read of a frame: text lines at the first scale (where a locating look found text,
    /// [`read_located`](Self::read_located), else the whole frame) and, while that gave no
    /// plate-like read, again larger ([`retry_sides`]): small plates vanish at the first scale.
    /// Then lines that read like a piece of a plate ([`piece_of_a_plate`]) and lie in no plate
    /// read are looked at closer ([`read_around`](Self::read_around)); a VN/CN plate found there
    /// that holds the piece is taken. Measured on the shared photos: cn 0.894 -> 0.906 (the Hong
    /// Kong plate `LX8170`, found as `8170`), vn 0.972 -> 0.986, no wrong read added.
    ///
    /// With a `part`, only that part of the frame is looked at, at each scale the whole frame
    /// would be (closer looks may reach past it).
    pub(super) fn read_text(&mut self, frame: &Mat, part: Option<Rect>) -> Result<Vec<PlateRead>> {
        let Look {
            mut reads,
            mut pieces,
            ..
        } = match self.read_located(frame, part)? {
            Some(look) => look,
            None => self.read_text_lines_in(frame, part, self.opts.detector_max_side)?,
        };
        let frame_side = frame.cols().max(frame.rows()).max(0) as u32;
        let sides = if self.opts.retries(frame_side) {
            retry_sides(
                self.opts.detector_max_side,
                self.opts.retry_max_side,
                frame_side,
            )
        } else {
            Vec::new()
        };
        for side in sides {
            if plate_like(&reads) {
                break;
            }
            let again = self.read_text_lines_in(frame, part, side)?;
            if plate_like(&again.reads) {
                (reads, pieces) = (again.reads, again.pieces);
            }
        }
        // A piece of a plate is looked at closer: the text detector found part of the plate at
        // the frame's scale (a Hong Kong plate's digits without its letters). Only VN/CN plates
        // are taken from the closer look, so it is skipped without them.
        if self.opts.regions.iter().any(|r| r.is_strict()) {
            for piece in pieces.into_iter().take(CLOSER_LOOKS) {
                if reads.iter().any(|r| r.bbox.contains(piece.centre())) {
                    continue;
                }
                for r in self.read_around(frame, piece)? {
                    if r.region.is_strict()
                        && r.bbox.contains(piece.centre())
                        && reads
                            .iter()
                            .all(|o| o.plate != r.plate && o.bbox.iou(&r.bbox) < 0.3)
                    {
                        tracing::trace!(plate = %r.plate, ?piece, "a closer look at a piece of a plate");
                        reads.push(r);
                    }
                }
            }
        }
        Ok(reads)
    }

    /// [`read_text_lines`](Self::read_text_lines) on `part` of the frame (all of it when `None`)
    /// at the scale `max_side` gives the whole frame; in frame pixels.
    pub(super) fn read_text_lines_in(
        &mut self,
        frame: &Mat,
        part: Option<Rect>,
        max_side: u32,
    ) -> Result<Look> {
        let Some(part) = part else {
            return self.read_text_lines(frame, max_side);
        };
        let scale = TextDetector::scale(frame.cols(), frame.rows(), max_side);
        let part = align_to_detector(part, frame.cols(), frame.rows(), scale);
        let side = side_at_scale(part, scale);
        // A copy (under a millisecond at 1080p): the detector and the line warps take a `Mat`.
        let crop = Mat::roi(frame, part)?.try_clone()?;
        let mut look = self.read_text_lines(&crop, side)?;
        look.shift(part.x as f32, part.y as f32);
        Ok(look)
    }

    /// The text detector: the set's own, or the one the fast-alpr set finds the lines around a
    /// plate box with.
    pub(super) fn text_detector(&mut self) -> &mut TextDetector {
        match (&mut self.detector, &mut self.box_lines) {
            (Detector::Text(det), _) | (_, Some(det)) => det,
            _ => unreachable!("called with a text detector only"),
        }
    }

    /// The plates read from the text lines of `bbox`'s neighbourhood ([`NEIGHBOURHOOD`]), in
    /// frame coordinates.
    pub(super) fn read_around(&mut self, frame: &Mat, bbox: BBox) -> Result<Vec<PlateRead>> {
        let (pad_x, pad_y, max_side) = NEIGHBOURHOOD;
        let rect = vision::padded_rect(frame, &bbox, pad_x, pad_y);
        let around = Mat::roi(frame, rect)?.try_clone()?;
        let mut look = self.read_text_lines(&around, max_side)?;
        look.shift(rect.x as f32, rect.y as f32);
        Ok(look.reads)
    }

    /// The text-detector path: text lines found at `max_side`, read, and assembled into plates.
    pub(super) fn read_text_lines(&mut self, frame: &Mat, max_side: u32) -> Result<Look> {
        let det = self.text_detector();
        det.set_max_side(max_side);
        let boxes = det.detect(frame)?;
        let found: Vec<BBox> = boxes.iter().map(|b| BBox::around(&b.quad)).collect();
        let mut lines_q = Vec::new();
        let mut crops = Vec::new();
        let mut quads = Vec::new();
        let [first, second] = TEXT_LINE_FRAMINGS;
        for b in boxes {
            let bbox = BBox::around(&b.quad);
            if bbox.h < self.opts.min_text_height || bbox.w < bbox.h * 0.8 {
                continue;
            }
            crops.push(vision::warp_quad(frame, &widen_quad(&b.quad, first))?);
            quads.push(b.quad);
            lines_q.push(bbox);
        }
        let mut reads = self.read_lines(&crops)?;
        // Lines that could hold a plate number are read again, cut wider, unless the first read
        // is already a confident VN/CN plate; the more confident read that fits a grammar wins.
        let maybe_plates: Vec<usize> = (0..reads.len())
            .filter(|&i| needs_second_framing(&reads[i], &self.opts.regions))
            .collect();
        let wider = maybe_plates
            .iter()
            .map(|&i| vision::warp_quad(frame, &widen_quad(&quads[i], second)))
            .collect::<Result<Vec<_>>>()?;
        if !wider.is_empty() {
            let again = self.read_lines(&wider)?;
            for ((&i, other), wide) in maybe_plates.iter().zip(again).zip(&wider) {
                tracing::trace!(first = %reads[i].text, first_confidence = reads[i].confidence, second = %other.text, second_confidence = other.confidence, "text line framings");
                let mut verdict = judge_framings(&reads[i], &other, &self.opts.regions);
                if verdict == Framing::Neither {
                    let third = self
                        .cjk
                        .recognise_stretched(std::slice::from_ref(wide), THIRD_LOOK_STRETCH)?
                        .remove(0);
                    verdict = settle_by_third_look(&reads[i], &other, &third, &self.opts.regions);
                    tracing::debug!(first = %reads[i].text, second = %other.text, third = %third.text, ?verdict, "a third look at a line whose framings disagreed");
                }
                match verdict {
                    Framing::First => {}
                    Framing::Second => reads[i] = other,
                    Framing::Neither => {
                        tracing::debug!(first = %reads[i].text, second = %other.text, "two framings of a text line read different plates; not read");
                        self.refused.looks_disagreed += 1;
                        reads[i] = TextRead::default();
                    }
                }
            }
        }
        for (b, r) in lines_q.iter().zip(&reads) {
            tracing::trace!(text = %r.text, confidence = r.confidence, ?b, "text line");
        }
        let lines: Vec<Line> = lines_q
            .into_iter()
            .zip(reads)
            .map(|(bbox, read)| Line { bbox, read })
            .collect();
        let pieces = lines
            .iter()
            .filter(|l| piece_of_a_plate(&l.read.text))
            .map(|l| l.bbox)
            .collect();
        Ok(Look {
            reads: self.assemble(lines),
            pieces,
            lines: found,
        })
    }

    /// Reads text-line crops with both recognisers: the CJK reading wins when it holds a Chinese
    /// province character, else the Latin one (measured best policy at a mixed border).
    fn read_lines(&mut self, crops: &[Mat]) -> Result<Vec<TextRead>> {
        let latin = match &mut self.latin {
            Some(LatinRecogniser::PpOcr(r)) => r.recognise(crops)?,
            _ => return self.cjk.recognise(crops),
        };
        if !self.opts.regions.contains(&Region::Cn) {
            // No Chinese plates configured: a province character would be a misread emblem. The
            // CJK model (which reads Latin too) is then free to give a second opinion on unsure
            // lines; the more confident read that fits a grammar wins.
            let fits = |t: &TextRead| classify(&t.text, &self.opts.regions).is_some();
            let unsure: Vec<usize> = (0..latin.len())
                .filter(|&i| !fits(&latin[i]) || latin[i].confidence < SECOND_OPINION_BELOW)
                .collect();
            if unsure.is_empty() {
                return Ok(latin);
            }
            let others = self.cjk.recognise_some(crops, &unsure)?;
            let mut latin = latin;
            for (&i, other) in unsure.iter().zip(others) {
                let better =
                    fits(&other) && (!fits(&latin[i]) || other.confidence > latin[i].confidence);
                if better {
                    latin[i] = other;
                }
            }
            return Ok(latin);
        }
        // The CJK recogniser is asked only about lines that may hold a province character.
        let ask: Vec<usize> = (0..latin.len())
            .filter(|&i| !holds_no_province(&latin[i]))
            .collect();
        let mut reads = latin;
        for (&i, c) in ask.iter().zip(self.cjk.recognise_some(crops, &ask)?) {
            if grammar::has_cn_province(&c.text) {
                reads[i] = c;
            }
        }
        Ok(reads)
    }

    /// Pairs stacked lines into two-line plates, then accepts single lines.
    fn assemble(&self, lines: Vec<Line>) -> Vec<PlateRead> {
        let mut used = vec![false; lines.len()];
        let mut out = Vec::new();
        let two_line_regions: Vec<Region> = self
            .opts
            .regions
            .iter()
            .copied()
            .filter(|r| r.is_strict())
            .collect();
        for i in 0..lines.len() {
            for j in 0..lines.len() {
                if i == j || used[i] || used[j] || !stacked(&lines[i].bbox, &lines[j].bbox) {
                    continue;
                }
                let text = format!("{} {}", lines[i].read.text, lines[j].read.text);
                if let Some(m) = classify(&text, &two_line_regions) {
                    let confidence = lines[i].read.confidence.min(lines[j].read.confidence);
                    if confidence >= self.opts.min_confidence {
                        used[i] = true;
                        used[j] = true;
                        out.push(PlateRead {
                            plate: m.plate,
                            raw: text,
                            region: m.region,
                            confidence,
                            bbox: lines[i].bbox.union(&lines[j].bbox),
                        });
                    }
                }
            }
        }
        for (i, line) in lines.iter().enumerate() {
            if !used[i] {
                out.extend(self.accept(&line.read.text, line.read.confidence, line.bbox));
            }
        }
        suppress_small_text_near_plates(out)
    }
}

/// Whether the Latin recogniser's confident read of a line shows that the line holds no Chinese
/// province character, so the CJK recogniser need not read it:
/// - a civil VN plate, which starts with two digits (a Chinese plate without its province
///   character starts with a letter). Not every VN plate: a new-energy plate whose province was
///   dropped (`AD11166`) fits the VN military series; taking those lost two Chinese plates of the
///   shared cn photos (0.906 -> 0.882). Lines read as digits alone are asked too: a plate whose
///   province and letter were dropped reads so;
/// - a line without a digit (a word on a sign or a truck): every Chinese plate holds digits.
///   Reads unchanged on the shared cn and vn photos with both sets.
fn holds_no_province(latin: &TextRead) -> bool {
    if latin.confidence < SECOND_OPINION_BELOW {
        return false;
    }
    let n = grammar::normalise(&latin.text);
    let two_digits_first = n.chars().take(2).filter(char::is_ascii_digit).count() == 2;
    let no_digit = !n.is_empty() && !n.chars().any(|c| c.is_ascii_digit());
    no_digit || (two_digits_first && classify(&n, &[Region::Vn]).is_some())
}

/// Whether a look gave a read that is plausibly a plate ([`PlateRead::plausibility`] 2): what
/// ends the search at larger scales, and what a locating look's parts must give.
pub(super) fn plate_like(reads: &[PlateRead]) -> bool {
    reads.iter().any(|r| r.plausibility() == 2)
}

/// The longest sides the text detector tries, in order, after the first pass (at `first`) gave
/// no plate-like read ([`ReaderOptions::retries`] says whether it does): twice the first pass
/// (small frames are scaled up: a 500 px photo's plate is found at 1920, not at 960), then
/// `retry_max` when the frame is larger than that (a 12 MP photo's far plates need 2560). Both
/// at most `retry_max`; none when it is not above `first`.
fn retry_sides(first: u32, retry_max: u32, frame_side: u32) -> Vec<u32> {
    if retry_max <= first {
        return Vec::new();
    }
    let twice = (2 * first).min(retry_max);
    let mut sides = vec![twice];
    if retry_max > twice && frame_side > twice {
        sides.push(retry_max);
    }
    sides
}

/// The detector's longest side for `part` of a frame when the whole frame is seen at `scale`.
pub(super) fn side_at_scale(part: Rect, scale: f32) -> u32 {
    (part.width.max(part.height) as f32 * scale)
        .round()
        .max(32.0) as u32
}

/// `part` of a `w` × `h` frame grown, about its centre and within the frame, so that its sides
/// scaled by `scale` are multiples of 32: the detector rounds its input sides to those, and a
/// part rounded down or up would be seen at another scale than the whole frame.
pub(super) fn align_to_detector(part: Rect, w: i32, h: i32, scale: f32) -> Rect {
    let step = 32.0 / scale.max(f32::EPSILON);
    let grow = |start: i32, len: i32, limit: i32| -> (i32, i32) {
        let want = ((len as f32 / step).ceil() * step).round() as i32;
        let len2 = want.clamp(len.min(limit), limit);
        let start2 = (start - (len2 - len) / 2).clamp(0, limit - len2);
        (start2, len2)
    };
    let (x, width) = grow(part.x, part.width, w);
    let (y, height) = grow(part.y, part.height, h);
    Rect::new(x, y, width, height)
}

/// The neighbourhood of a box whose text lines are found again (a plate detector's box, a piece
/// of a plate): (horizontal, vertical) padding as fractions of the box, and the text detector's
/// longest side for it (the crop is scaled up to it: small plates are read better larger).
/// Measured on the shared cn photos (fast-alpr set, exact match): side 480 0.906 (one wrong read
/// next to a label), 640 0.918, 800 0.894, 960 0.906; padding 0.3/1.0 and 0.5/0.6 0.906. Tuned on
/// the photos it is reported on.
pub(super) const NEIGHBOURHOOD: (f32, f32, u32) = (0.5, 1.0, 640);

/// At most this many pieces of a plate are looked at closer per frame (each costs a text
/// detection of its neighbourhood).
const CLOSER_LOOKS: usize = 2;

/// Whether a line's text reads like a piece of a plate rather than a plate: three to five
/// digits alone (the number of a Hong Kong plate whose letters the detector missed, the second
/// row of a two-line plate).
fn piece_of_a_plate(text: &str) -> bool {
    let n = grammar::normalise(text);
    (3..=5).contains(&n.chars().count()) && n.chars().all(|c| c.is_ascii_digit())
}

/// What one look at (a part of) a frame gave: its plate reads, the boxes of the lines that read
/// like a piece of a plate ([`piece_of_a_plate`]), and the box of every line the detector found.
pub(super) struct Look {
    pub reads: Vec<PlateRead>,
    pub pieces: Vec<BBox>,
    pub lines: Vec<BBox>,
}

impl Look {
    /// Moves every box by (`dx`, `dy`): from a part's pixels to the frame's.
    fn shift(&mut self, dx: f32, dy: f32) {
        let boxes = self.reads.iter_mut().map(|r| &mut r.bbox);
        for b in boxes.chain(&mut self.pieces).chain(&mut self.lines) {
            b.x += dx;
            b.y += dy;
        }
    }
}

/// A candidate text line: where it is and both readings.
struct Line {
    bbox: BBox,
    read: TextRead,
}

/// Drops generic reads that sit close to a clearly taller read: on a plate the number is the
/// tallest text, so nearby smaller text (registration stickers, dates, dealer frames) is not the
/// plate. Reads of a specific grammar (VN, CN) are kept.
fn suppress_small_text_near_plates(reads: Vec<PlateRead>) -> Vec<PlateRead> {
    let keep: Vec<bool> = reads
        .iter()
        .map(|r| {
            r.region.is_strict()
                || !reads.iter().any(|o| {
                    // Only a read at least as plate-like may push another aside.
                    if o.plausibility() < r.plausibility() {
                        return false;
                    }
                    let ((cx, cy), (ox, oy)) = (r.bbox.centre(), o.bbox.centre());
                    let near = (cx - ox).abs() < o.bbox.w.max(r.bbox.w)
                        && (cy - oy).abs() < 3.0 * o.bbox.h;
                    near && o.bbox.h > 1.25 * r.bbox.h
                })
        })
        .collect();
    reads
        .into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect()
}

/// Whether `lower` sits right under `upper` like the second row of a two-line plate.
fn stacked(upper: &BBox, lower: &BBox) -> bool {
    let gap = lower.y - (upper.y + upper.h);
    let h = upper.h.max(lower.h);
    let overlap = (upper.x + upper.w).min(lower.x + lower.w) - upper.x.max(lower.x);
    let narrower = upper.w.min(lower.w);
    let height_ratio = upper.h / lower.h;
    lower.y > upper.y
        && gap > -0.5 * h
        && gap < 0.6 * h
        && overlap > 0.5 * narrower
        && (0.5..2.0).contains(&height_ratio)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plate::reader::tests::read;

    /// A recogniser's read of a line, every character as confident as the whole.
    fn line(text: &str, confidence: f32) -> TextRead {
        TextRead {
            text: text.into(),
            confidence,
            min_char: confidence,
        }
    }

    #[test]
    fn a_part_is_grown_to_what_the_detector_sees_at_the_frame_scale() {
        // 1920 x 1080 at 960: scale 0.5, so parts grow to multiples of 64 px, within the frame.
        let scale = TextDetector::scale(1920, 1080, 960);
        assert_eq!(scale, 0.5);
        let part = Rect::new(500, 600, 610, 400);
        assert_eq!(
            align_to_detector(part, 1920, 1080, scale),
            Rect::new(485, 576, 640, 448),
            "grown about its centre"
        );
        // At the frame's corner it grows inwards.
        let corner = Rect::new(1500, 900, 420, 180);
        let grown = align_to_detector(corner, 1920, 1080, scale);
        assert_eq!(grown, Rect::new(1472, 888, 448, 192));
        assert_eq!(grown & corner, corner);
        // Already aligned, or as large as the frame: unchanged.
        let aligned = Rect::new(64, 64, 640, 320);
        assert_eq!(align_to_detector(aligned, 1920, 1080, scale), aligned);
        let all = Rect::new(0, 0, 1920, 1080);
        assert_eq!(align_to_detector(all, 1920, 1080, scale), all);
    }

    #[test]
    fn only_lines_that_may_hold_a_province_go_to_the_cjk_recogniser() {
        // A confident VN plate: no province character there.
        for (text, c) in [("51A-123.45", 0.99), ("30H-753.40", 0.96)] {
            assert!(holds_no_province(&line(text, c)), "{text}");
        }
        // An unsure VN read, digits alone (a plate whose province and letter were dropped), a
        // Chinese plate without (or with) its province, the upper row of a two-row plate, a
        // word, nothing read: the CJK recogniser is asked.
        for (text, c) in [
            ("51A-123.45", 0.9),
            ("12345", 0.99),
            ("AD11166", 0.99),
            ("B12345", 0.99),
            ("粤B12345", 0.99),
            ("29-C1", 0.99),
            ("TRUCK", 0.9),
            ("", 0.0),
        ] {
            assert!(!holds_no_province(&line(text, c)), "{text}");
        }
        // A confident word holds no digit, so no Chinese plate.
        assert!(holds_no_province(&line("STOP", 0.99)));
    }

    #[test]
    fn pieces_of_a_plate_are_short_digit_runs() {
        for piece in ["8170", "234.56", "123"] {
            assert!(piece_of_a_plate(piece), "{piece}");
        }
        for not in ["12", "123456", "LX8170", "粤ZEV52港", "UD TRUCKS", ""] {
            assert!(!piece_of_a_plate(not), "{not}");
        }
    }

    #[test]
    fn small_generic_text_next_to_a_taller_plate_is_dropped() {
        let plate = read("ABC1234", Region::Generic, 100.0, 40.0);
        let sticker = read("20140430", Region::Generic, 150.0, 12.0);
        let far = BBox {
            x: 900.0,
            ..sticker.bbox
        };
        let other_car = PlateRead {
            bbox: far,
            ..sticker.clone()
        };
        let vn = read("51A12345", Region::Vn, 150.0, 12.0);
        let kept = suppress_small_text_near_plates(vec![sticker, plate, other_car, vn]);
        let plates: Vec<_> = kept.iter().map(|r| (r.plate.as_str(), r.bbox.x)).collect();
        assert_eq!(
            plates,
            [("ABC1234", 100.0), ("20140430", 900.0), ("51A12345", 100.0)]
        );
    }

    #[test]
    fn stacked_lines_pair_and_side_by_side_do_not() {
        let top = BBox {
            x: 100.0,
            y: 100.0,
            w: 80.0,
            h: 30.0,
        };
        let bottom = BBox {
            x: 95.0,
            y: 135.0,
            w: 95.0,
            h: 32.0,
        };
        assert!(stacked(&top, &bottom));
        assert!(!stacked(&bottom, &top));
        let beside = BBox {
            x: 200.0,
            y: 100.0,
            w: 80.0,
            h: 30.0,
        };
        assert!(!stacked(&top, &beside));
        let far_below = BBox { y: 200.0, ..bottom };
        assert!(!stacked(&top, &far_below));
    }

    #[test]
    fn the_best_read_is_the_most_plate_like_then_the_most_confident() {
        let mut word = read("SP0RT", Region::Us, 100.0, 60.0);
        word.raw = "SPORT".into();
        word.confidence = 1.0;
        let mut plate = read("HL0KTY1", Region::Us, 170.0, 40.0);
        plate.raw = "HLOKTY1".into();
        plate.confidence = 0.8;
        let phone = read("3148455900", Region::Generic, 300.0, 40.0);
        assert_eq!(
            word.plausibility(),
            1,
            "letters only as read, O folded or not"
        );
        assert_eq!(phone.plausibility(), 1);
        assert_eq!(plate.plausibility(), 2);
        let reads = [word.clone(), phone.clone(), plate.clone()];
        assert_eq!(PlateRead::best(&reads).unwrap().plate, "HL0KTY1");
        // A taller word next to the plate does not push the plate aside.
        let kept = suppress_small_text_near_plates(vec![word, plate]);
        assert_eq!(kept.len(), 2);
        assert_eq!(
            PlateRead::best(std::slice::from_ref(&phone)).unwrap().plate,
            phone.plate
        );
    }

    #[test]
    fn the_retry_goes_to_twice_the_first_pass_then_further_for_large_frames() {
        assert_eq!(retry_sides(960, 0, 4032), Vec::<u32>::new());
        assert_eq!(retry_sides(960, 2560, 4032), [1920, 2560]);
        assert_eq!(retry_sides(960, 2560, 1920), [1920]);
        assert_eq!(retry_sides(960, 2560, 960), [1920]);
        assert_eq!(retry_sides(960, 2560, 1921), [1920, 2560]);
        assert_eq!(retry_sides(960, 2560, 3840), [1920, 2560]);
        assert_eq!(retry_sides(960, 2560, 500), [1920]);
        assert_eq!(retry_sides(960, 1600, 4032), [1600]);
        assert_eq!(retry_sides(1280, 2560, 4032), [2560]);
        assert_eq!(retry_sides(2560, 2560, 4032), Vec::<u32>::new());
    }

    #[test]
    fn camera_sized_frames_are_looked_at_again_only_when_asked() {
        let opts = ReaderOptions::default();
        assert!(!opts.retries(1920) && !opts.retries(1280) && !opts.retries(961));
        assert!(opts.retries(960) && opts.retries(500) && opts.retries(1921) && opts.retries(4032));
        let asked = ReaderOptions {
            retry_camera_sized: true,
            ..ReaderOptions::default()
        };
        assert!(asked.retries(1920) && asked.retries(4032));
        let off = ReaderOptions {
            retry_max_side: 0,
            ..asked
        };
        assert!(!off.retries(500) && !off.retries(4032));
    }
}
