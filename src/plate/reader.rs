//! One frame in, plate reads out: the model set's detector and recognisers composed with the
//! grammars. `run` and `eval` both call [`PlateReader::read`], so what is measured is what runs.

use anyhow::{Context, Result};
use opencv::core::{Mat, Point2f, Rect};
use opencv::prelude::*;
use std::path::Path;

use super::clp::ClpDetector;
use super::colour;
use super::fast_alpr::{CctRecogniser, YoloPlateDetector};
use super::grammar::{self, classify, Region};
use super::text_det::TextDetector;
use super::text_rec::{TextRead, TextRecogniser};
use crate::models::{self, ModelSet};
use crate::vision::{self, BBox};

/// A plate read in one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct PlateRead {
    /// Normalised plate text.
    pub plate: String,
    /// The recogniser's text before normalisation (lines joined with a space).
    pub raw: String,
    pub region: Region,
    /// Recogniser confidence, 0-1.
    pub confidence: f32,
    /// Where in the frame, in pixels.
    pub bbox: BBox,
}

impl PlateRead {
    /// How plate-like the read is, before confidence: a strict grammar (VN, CN) or a mix of
    /// letters and digits beats all-digit or all-letter text (phone numbers, signs, a word), so
    /// the best read of a frame is the likeliest plate rather than the crispest text.
    pub fn plausibility(&self) -> u8 {
        // Judged on the text as read, before a grammar's folding (US O→0).
        let as_read = grammar::normalise(&self.raw);
        let letters = as_read.chars().any(|c| c.is_ascii_uppercase());
        let digits = as_read.chars().any(|c| c.is_ascii_digit());
        if self.region.is_strict() || (letters && digits) {
            2
        } else {
            1
        }
    }

    /// The read a caller should take when it may take only one: most plausible, then most
    /// confident.
    pub fn best(reads: &[PlateRead]) -> Option<&PlateRead> {
        reads.iter().max_by(|a, b| {
            a.plausibility()
                .cmp(&b.plausibility())
                .then(a.confidence.total_cmp(&b.confidence))
        })
    }
}

/// Reader settings taken from the config.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    pub regions: Vec<Region>,
    pub min_confidence: f32,
    /// Longest side of the frame given to full-frame detectors.
    pub detector_max_side: u32,
    /// Intra-op threads per session.
    pub threads: usize,
    /// Text lines shorter than this (px) are not read.
    pub min_text_height: f32,
    /// Text-detector set: detect again at this longest side when a frame gives no plate-like
    /// read (0 = off).
    pub retry_max_side: u32,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            regions: vec![Region::Vn, Region::Cn],
            min_confidence: 0.6,
            detector_max_side: 960,
            threads: 1,
            min_text_height: 8.0,
            retry_max_side: 0,
        }
    }
}

enum Detector {
    Text(TextDetector),
    Yolo(YoloPlateDetector),
    Clp(ClpDetector),
}

enum LatinRecogniser {
    PpOcr(TextRecogniser),
    Cct(CctRecogniser),
}

/// A loaded model set.
pub struct PlateReader {
    set: ModelSet,
    detector: Detector,
    latin: Option<LatinRecogniser>,
    /// PP-OCRv4: reads CJK (Chinese province characters).
    cjk: TextRecogniser,
    /// A second Latin recogniser asked when the first is unsure (fast-alpr set: PP-OCRv6).
    second_opinion: Option<TextRecogniser>,
    /// Plate boxes of the last frame whose text could not be read confidently.
    unread: Vec<BBox>,
    /// Chinese reads refused since loading because their layout contradicts the plate's colour.
    colour_refused: u64,
    opts: ReaderOptions,
}

/// A candidate text line: where it is and both readings.
struct Line {
    bbox: BBox,
    read: TextRead,
}

impl PlateReader {
    /// Loads and verifies the models of `set` from `model_dir`.
    pub fn load(
        set: ModelSet,
        model_dir: &Path,
        ort_lib: Option<&Path>,
        opts: ReaderOptions,
    ) -> Result<Self> {
        let env = models::ort_environment(ort_lib)?;
        let open = |file: &str| -> Result<ort::session::Session> {
            let path = models::verified_model(model_dir, file)?;
            models::open_session(env, &path, opts.threads)
        };
        let cjk = TextRecogniser::new(open("ppocr_v4_rec.onnx")?)?;
        let (detector, latin) = match set {
            ModelSet::Default => (
                Detector::Text(TextDetector::new(
                    open("ppocr_v4_det.onnx")?,
                    opts.detector_max_side,
                )),
                Some(LatinRecogniser::PpOcr(TextRecogniser::new(open(
                    "ppocr_v6_rec_small.onnx",
                )?)?)),
            ),
            ModelSet::FastAlpr => (
                Detector::Yolo(YoloPlateDetector::new(open("yolo_v9_t_416_plates.onnx")?)),
                Some(LatinRecogniser::Cct(CctRecogniser::new(open(
                    "cct_xs_v2_global.onnx",
                )?))),
            ),
            ModelSet::Clp => (
                Detector::Clp(ClpDetector::new(
                    open("clp_det.onnx")?,
                    opts.detector_max_side,
                )),
                None,
            ),
        };
        let second_opinion = match set {
            ModelSet::FastAlpr => Some(TextRecogniser::new(open("ppocr_v6_rec_small.onnx")?)?),
            _ => None,
        };
        Ok(Self {
            set,
            detector,
            latin,
            cjk,
            second_opinion,
            unread: Vec::new(),
            colour_refused: 0,
            opts,
        })
    }

    /// The model set in use.
    pub fn model_set(&self) -> ModelSet {
        self.set
    }

    /// Plate boxes of the last [`read`](Self::read) frame that a plate detector found but no
    /// recogniser could read confidently: a vehicle is there even if its plate is unknown.
    /// Always empty for the text-detector set, which cannot tell a plate from other text.
    pub fn unread(&self) -> &[BBox] {
        &self.unread
    }

    /// Chinese reads refused since the reader was loaded because their layout contradicts the
    /// plate's background colour (a seven-character read of a green new-energy plate): a
    /// character was lost or gained, so nothing is published for them.
    pub fn colour_refused(&self) -> u64 {
        self.colour_refused
    }

    /// Reads every plate in a BGR frame.
    pub fn read(&mut self, frame: &Mat) -> Result<Vec<PlateRead>> {
        vision::ensure_bgr(frame)?;
        self.unread.clear();
        let reads = self.read_any(frame)?;
        self.refuse_colour_mismatch(frame, reads)
    }

    /// Drops the Chinese reads whose layout contradicts the colour of their plate
    /// ([`split_by_colour`]) and counts them.
    fn refuse_colour_mismatch(
        &mut self,
        frame: &Mat,
        reads: Vec<PlateRead>,
    ) -> Result<Vec<PlateRead>> {
        let (kept, refused) = split_by_colour(frame, reads)?;
        for r in refused {
            tracing::debug!(plate = %r.plate, "plate layout contradicts its colour; not read");
            self.colour_refused += 1;
            // A plate detector's box still holds a vehicle (the text detector's never says so:
            // see `unread`).
            if !matches!(self.detector, Detector::Text(_)) {
                self.unread.push(r.bbox);
            }
        }
        Ok(kept)
    }

    /// Every read of the model set in a frame, before the colour check.
    fn read_any(&mut self, frame: &Mat) -> Result<Vec<PlateRead>> {
        match &mut self.detector {
            Detector::Text(_) => {
                let first = self.read_text_lines(frame, self.opts.detector_max_side)?;
                let plate_like = |reads: &[PlateRead]| reads.iter().any(|r| r.plausibility() == 2);
                if self.opts.retry_max_side == 0 || plate_like(&first) {
                    return Ok(first);
                }
                // Small plates vanish at the first scale; a larger one finds them.
                let second = self.read_text_lines(frame, self.opts.retry_max_side)?;
                Ok(if plate_like(&second) { second } else { first })
            }
            Detector::Yolo(det) => {
                let boxes = det.detect(frame)?;
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
                    let sure_vn = best.as_ref().is_some_and(|r| {
                        r.region == Region::Vn && r.confidence >= SECOND_OPINION_BELOW
                    });
                    if self.opts.regions.contains(&Region::Cn) && !sure_vn {
                        let second_look = &crops[i * views.len() + 1];
                        match self.read_chinese(crop, second_look, b.bbox)? {
                            ChineseRead::Plate(r) => best = Some(r),
                            // Two looks, two provinces or plates: neither is published, and
                            // the Latin read (which has no province) is not a fallback.
                            ChineseRead::Contested => best = None,
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
            Detector::Clp(det) => {
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
        }
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

    /// The most confident of `reads` (readings of one plate box) that is accepted as a plate.
    fn accept_most_confident(&self, reads: &[TextRead], bbox: BBox) -> Option<PlateRead> {
        reads
            .iter()
            .filter_map(|r| self.accept(&r.text, r.confidence, bbox))
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
    }

    fn accept(&self, text: &str, confidence: f32, bbox: BBox) -> Option<PlateRead> {
        if confidence < self.opts.min_confidence {
            return None;
        }
        let m = classify(text, &self.opts.regions)?;
        // Without a plate detector, text of letters only is far more often a word on the car
        // (make, dealer, a sign) than a custom plate.
        let words_possible = !matches!(self.detector, Detector::Text(_));
        // (Judged on the text as read: the US grammar's O→0 folding must not turn `METRO` into a
        // plate.)
        let as_read = grammar::normalise(text);
        if !words_possible
            && !as_read
                .chars()
                .any(|c| c.is_ascii_digit() || grammar::is_cjk(c))
        {
            return None;
        }
        Some(PlateRead {
            plate: m.plate,
            raw: text.to_owned(),
            region: m.region,
            confidence,
            bbox,
        })
    }
}

/// Splits a frame's reads into those kept and the Chinese reads whose layout contradicts the
/// colour of the plate in their box ([`colour::contradicts`]). The confidences cannot catch
/// these: a new-energy plate with a repeated digit dropped (`皖AD1989` for `皖AD19789`) is read as
/// confidently, and alike at every framing, and the shorter text fits the ordinary layout.
fn split_by_colour(frame: &Mat, reads: Vec<PlateRead>) -> Result<(Vec<PlateRead>, Vec<PlateRead>)> {
    let (mut kept, mut refused) = (Vec::with_capacity(reads.len()), Vec::new());
    for r in reads {
        let judged = r.region == Region::Cn
            && (grammar::is_cn_ordinary(&r.plate) || grammar::is_cn_new_energy(&r.plate));
        let wrong = judged && {
            let crop = vision::crop_padded(frame, &r.bbox, 0.0, 0.0)?;
            colour::contradicts(&r.plate, r.region, colour::plate_colour(&crop)?)
        };
        if wrong {
            refused.push(r);
        } else {
            kept.push(r);
        }
    }
    Ok((kept, refused))
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

/// Below this confidence (or when its read fits no grammar) the first recogniser's read is checked
/// by a second one, and the more confident accepted read wins. Measured (`eval plates`, US+EU
/// photos): fast-alpr set (CCT, then PP-OCRv6) never 0.915 overall, below 0.8 0.918, below 0.95
/// 0.924, always 0.924 at twice the median time; default set (PP-OCRv6, then PP-OCRv4 on text
/// lines when CN is not configured) 0.812 → 0.827 at 0.95.
const SECOND_OPINION_BELOW: f32 = 0.95;

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

/// Reads a whole-plate crop with a line recogniser: as one line and, when the crop is squarish
/// enough to hold two rows, also as its top and bottom halves joined. Both readings are returned
/// (one line first) for the grammars to choose from: a plate detector's box of a one-line plate is
/// often under 2.2:1 (Chinese plates at an angle measured 1.5-2:1), and read as two halves each
/// half re-reads most of the line (`皖A·999J3 皖A·Z79`), which doubled characters.
pub fn read_plate_rows(rec: &mut TextRecogniser, crop: &Mat) -> Result<Vec<TextRead>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(plate: &str, region: Region, y: f32, h: f32) -> PlateRead {
        PlateRead {
            plate: plate.into(),
            raw: plate.into(),
            region,
            confidence: 0.9,
            bbox: BBox {
                x: 100.0,
                y,
                w: 120.0,
                h,
            },
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
    fn chinese_reads_that_contradict_their_plate_colour_are_split_off() {
        use opencv::core::{Scalar, CV_8UC3};
        // A grey road with a green plate at x 100 and a blue one at x 400 (BGR), black and white
        // character bars on them.
        let mut frame =
            Mat::new_rows_cols_with_default(300, 600, CV_8UC3, Scalar::all(110.0)).unwrap();
        for (x, bg, ink) in [
            (100, Scalar::new(90.0, 200.0, 60.0, 0.0), Scalar::all(20.0)),
            (400, Scalar::new(160.0, 60.0, 10.0, 0.0), Scalar::all(245.0)),
        ] {
            let plate = Rect::new(x, 100, 120, 40);
            imgproc_fill(&mut frame, plate, bg);
            for i in 0..7 {
                imgproc_fill(&mut frame, Rect::new(x + 6 + i * 16, 108, 8, 24), ink);
            }
        }
        let at = |plate: &str, region: Region, x: f32| PlateRead {
            bbox: BBox {
                x,
                y: 100.0,
                w: 120.0,
                h: 40.0,
            },
            ..read(plate, region, 0.0, 0.0)
        };
        let reads = vec![
            at("皖AD1989", Region::Cn, 100.0),  // 7 on green: a digit lost
            at("皖AD19789", Region::Cn, 100.0), // 8 on green: kept
            at("皖AD19789", Region::Cn, 400.0), // 8 on blue: a digit gained
            at("皖AD1989", Region::Cn, 400.0),  // 7 on blue: kept
            at("粤ZR066港", Region::Cn, 100.0), // not the ordinary layout: not judged
            at("51A12345", Region::Vn, 100.0),  // other grammars: never judged
            at("ABC1234", Region::Generic, 100.0),
        ];
        let (kept, refused) = split_by_colour(&frame, reads).unwrap();
        let plates = |v: &[PlateRead]| -> Vec<(String, f32)> {
            v.iter().map(|r| (r.plate.clone(), r.bbox.x)).collect()
        };
        assert_eq!(
            plates(&refused),
            [("皖AD1989".into(), 100.0), ("皖AD19789".into(), 400.0)]
        );
        assert_eq!(kept.len(), 5);
        assert!(!plates(&kept).contains(&("皖AD1989".into(), 100.0)));
    }

    fn imgproc_fill(m: &mut Mat, r: Rect, c: opencv::core::Scalar) {
        opencv::imgproc::rectangle(m, r, c, -1, opencv::imgproc::LINE_8, 0).unwrap();
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
}
