//! One frame in, plate reads out: the model set's detector and recognisers composed with the
//! grammars. `run` and `eval` both call [`PlateReader::read`], so what is measured is what runs.

use anyhow::Result;
use opencv::core::{Mat, Rect};
use std::path::Path;

use super::clp::ClpDetector;
use super::colour;
use super::fast_alpr::{CctRecogniser, YoloPlateDetector};
use super::grammar::{self, classify, Region};
use super::text_det::TextDetector;
use super::text_rec::{TextRead, TextRecogniser};
use crate::models::{self, ModelSet};
use crate::vision::{self, BBox};

mod framings;
mod locate;
mod plate_boxes;
mod text_lines;

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

/// The default `retry_max_side`: a 12 MP photo's far plates need 2560 (the shared vn photos,
/// docs/accuracy.md).
pub const DEFAULT_RETRY_MAX_SIDE: u32 = 2560;

/// Reader settings taken from the config.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    pub regions: Vec<Region>,
    pub min_confidence: f32,
    /// Longest side of the frame given to full-frame detectors.
    pub detector_max_side: u32,
    /// The text-detector set first finds where text is with its detector at this longest side,
    /// then reads only there at `detector_max_side`'s scale (0 = off: whole frames).
    pub locate_max_side: u32,
    /// Intra-op threads per session.
    pub threads: usize,
    /// Text lines shorter than this (px) are not read.
    pub min_text_height: f32,
    /// When a frame gives no plate-like read, look again larger, up to this longest side (0 =
    /// off): the text-detector set detects again at larger sides, the fast-alpr set in tiles.
    pub retry_max_side: u32,
    /// Look again at camera-sized frames too (longest side above `detector_max_side` and at
    /// most twice it: 720p and 1080p at 960). Off by default: see [`ReaderOptions::retries`].
    pub retry_camera_sized: bool,
}

impl ReaderOptions {
    /// Whether a frame whose longest side is `frame_side` is looked at again when it gave no
    /// plate-like read. Camera-sized frames are not, unless asked: their text shrank at most
    /// twice at the first pass, and a plate too small there grows as the vehicle comes closer.
    /// Measured on the rendered 1080p lane clip (`bench pipeline`, 1 camera): the default set's
    /// retry at 1920 read the same 10 of 10 passages at 3.5 times fewer processed frames and
    /// twice the peak memory (1000 MB against 450 MB); fast-alpr's tiles almost halved the
    /// frames processed, for the same 10 of 10.
    pub fn retries(&self, frame_side: u32) -> bool {
        let camera_sized =
            frame_side > self.detector_max_side && frame_side <= 2 * self.detector_max_side;
        self.retry_max_side > self.detector_max_side && (self.retry_camera_sized || !camera_sized)
    }
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            regions: vec![Region::Vn, Region::Cn],
            min_confidence: 0.6,
            detector_max_side: 960,
            locate_max_side: default_locate_max_side(960),
            threads: 1,
            min_text_height: 8.0,
            retry_max_side: DEFAULT_RETRY_MAX_SIDE,
            retry_camera_sized: false,
        }
    }
}

/// The default `locate_max_side` for a first pass at `detector_max_side`: half of it, in multiples
/// of 32 (480 at 960; measured in `docs/accuracy.md`), or off (0) when that is under 160.
pub fn default_locate_max_side(detector_max_side: u32) -> u32 {
    let half = detector_max_side / 2 / 32 * 32;
    if half >= 160 {
        half
    } else {
        0
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

/// Plate reads a reader refused although they fit a grammar, by reason (precision before recall:
/// what is not published is counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Chinese reads whose layout contradicts the plate's background colour (a seven-character
    /// read of a green new-energy plate): a character was lost or gained.
    pub colour: u64,
    /// Plates that two looks (two framings of one text line) read differently: one of
    /// them is wrong and the confidences cannot tell which.
    pub looks_disagreed: u64,
}

impl std::ops::Sub for Refusals {
    type Output = Refusals;
    fn sub(self, earlier: Refusals) -> Refusals {
        Refusals {
            colour: self.colour - earlier.colour,
            looks_disagreed: self.looks_disagreed - earlier.looks_disagreed,
        }
    }
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
    /// PP-OCR's text detector run around a plate box to find its lines (fast-alpr set, where
    /// Chinese plates are configured): see `read_plate_boxes`.
    box_lines: Option<TextDetector>,
    /// Plate boxes of the last frame whose text could not be read confidently.
    unread: Vec<BBox>,
    /// Plate reads refused since loading, by reason.
    refused: Refusals,
    /// Reads (of a frame or a part) whose first look was the locating look's parts.
    located: u64,
    opts: ReaderOptions,
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
            // Two of the detector's convolutions and 18 of the Latin recogniser's in int8: the
            // float models' plates in 0.7 and 0.63 times the time (`docs/accuracy.md`). The
            // fast-alpr set keeps both float: its box lines below and its second opinion.
            ModelSet::Default => (
                Detector::Text(TextDetector::new(
                    open("ppocr_v4_det_int8.onnx")?,
                    opts.detector_max_side,
                )),
                Some(LatinRecogniser::PpOcr(TextRecogniser::new(open(
                    "ppocr_v6_rec_small_int8.onnx",
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
        let box_lines = match set {
            ModelSet::FastAlpr if opts.regions.contains(&Region::Cn) => Some(TextDetector::new(
                open("ppocr_v4_det.onnx")?,
                opts.detector_max_side,
            )),
            _ => None,
        };
        Ok(Self {
            set,
            detector,
            latin,
            cjk,
            second_opinion,
            box_lines,
            unread: Vec::new(),
            refused: Refusals::default(),
            located: 0,
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

    /// Plate reads refused since the reader was loaded: nothing is published for them.
    pub fn refused(&self) -> Refusals {
        self.refused
    }

    /// How many reads since loading took their plates from the parts a locating look found
    /// (`ReaderOptions::locate_max_side`) rather than from the whole frame or part.
    pub fn located(&self) -> u64 {
        self.located
    }

    /// Reads every plate in a BGR frame.
    pub fn read(&mut self, frame: &Mat) -> Result<Vec<PlateRead>> {
        self.read_part(frame, None)
    }

    /// Whether [`read_part`](Self::read_part) looks at the part it is given only: the
    /// text-detector set, whose detector's time grows with the pixels it is given. The plate
    /// detectors take a fixed input size, so a part would only be looked at larger.
    pub fn reads_parts(&self) -> bool {
        matches!(self.detector, Detector::Text(_))
    }

    /// Reads the plates in `part` of a BGR frame (all of it when `None`) at the scale the whole
    /// frame is read at, so a plate is the same size to the models either way; reads in frame
    /// pixels. A set that does not [read parts](Self::reads_parts) reads the whole frame.
    pub fn read_part(&mut self, frame: &Mat, part: Option<Rect>) -> Result<Vec<PlateRead>> {
        vision::ensure_bgr(frame)?;
        self.unread.clear();
        let reads = match self.detector {
            Detector::Text(_) => self.read_text(frame, part)?,
            Detector::Yolo(_) => self.read_plate_boxes(frame)?,
            Detector::Clp(_) => self.read_clp(frame)?,
        };
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
            self.refused.colour += 1;
            // A plate detector's box still holds a vehicle (the text detector's never says so:
            // see `unread`).
            if !matches!(self.detector, Detector::Text(_)) {
                self.unread.push(r.bbox);
            }
        }
        Ok(kept)
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

/// Below this confidence (or when its read fits no grammar) the first recogniser's read is checked
/// by a second one, and the more confident accepted read wins. Measured (`eval plates`, US+EU
/// photos): fast-alpr set (CCT, then PP-OCRv6) never 0.915 overall, below 0.8 0.918, below 0.95
/// 0.924, always 0.924 at twice the median time; default set (PP-OCRv6, then PP-OCRv4 on text
/// lines when CN is not configured) 0.812 → 0.827 at 0.95.
const SECOND_OPINION_BELOW: f32 = 0.95;

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::Rect;

    pub(super) fn read(plate: &str, region: Region, y: f32, h: f32) -> PlateRead {
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
}
