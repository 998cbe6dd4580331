//! PP-OCR CTC text-line recognisers (PP-OCRv4 for CJK, PP-OCRv6-small for Latin).
//!
//! Crops are scaled to height 48 keeping their aspect, padded to a common width (at least 320),
//! normalised `(v/255-0.5)/0.5` in BGR order, and decoded greedily: argmax per time step, repeats
//! collapsed, class 0 is the CTC blank, the last class is a space. The dictionary is read from the
//! model's own metadata (`character`), so a model and its dictionary can never disagree.

use anyhow::{bail, Context, Result};
use opencv::core::Mat;
use opencv::prelude::*;
use ort::session::Session;
use ort::value::TensorRef;

use crate::vision;

/// A recognised line of text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextRead {
    pub text: String,
    /// Mean probability of the kept characters (0-1); 0 for an empty read.
    pub confidence: f32,
    /// Probability of the least sure kept character (0-1); 0 for an empty read. One unsure
    /// character (a province misread as the most common one) hides in the mean.
    pub min_char: f32,
}

/// A CTC recogniser session with its dictionary and reusable buffers.
pub struct TextRecogniser {
    session: Session,
    /// Class index → character; index 0 is the blank.
    classes: Vec<String>,
    input: Vec<f32>,
    resized: Mat,
}

const HEIGHT: i32 = 48;
const MIN_WIDTH: i32 = 320;
const MAX_WIDTH: i32 = 1280;

impl TextRecogniser {
    /// Wraps a loaded PP-OCR recogniser; fails if its metadata has no dictionary.
    pub fn new(session: Session) -> Result<Self> {
        let dict = session
            .metadata()
            .context("read model metadata")?
            .custom("character")
            .context("recogniser model has no `character` metadata (not a PP-OCR recogniser?)")?;
        let mut classes = vec![String::new()];
        classes.extend(dict.split('\n').map(str::to_owned));
        classes.push(" ".to_owned());
        Ok(Self {
            session,
            classes,
            input: Vec::new(),
            resized: Mat::default(),
        })
    }

    /// Number of output classes (dictionary + blank + space).
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// Reads the crops at `which` (ascending indices into `crops`), in that order; the crops are
    /// copied only when not all of them are asked about.
    pub fn recognise_some(&mut self, crops: &[Mat], which: &[usize]) -> Result<Vec<TextRead>> {
        if which.len() == crops.len() {
            return self.recognise(crops);
        }
        let some: Vec<Mat> = which
            .iter()
            .map(|&i| crops[i].try_clone())
            .collect::<opencv::Result<_>>()?;
        self.recognise(&some)
    }

    /// Reads each BGR crop; one batched model call.
    pub fn recognise(&mut self, crops: &[Mat]) -> Result<Vec<TextRead>> {
        self.recognise_stretched(crops, 1.0)
    }

    /// Reads each BGR crop scaled `stretch` times wider than its aspect gives, up to the minimum
    /// input width (a line already that wide is read as it is): more CTC time steps per
    /// character, so a repeated character keeps the blank between its two steps.
    pub fn recognise_stretched(&mut self, crops: &[Mat], stretch: f32) -> Result<Vec<TextRead>> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        let widths: Vec<i32> = crops
            .iter()
            .map(|c| stretched_width(c.cols(), c.rows(), stretch))
            .collect();
        let batch_w = widths
            .iter()
            .copied()
            .max()
            .unwrap_or(MIN_WIDTH)
            .max(MIN_WIDTH);
        let plane = (HEIGHT * batch_w) as usize;
        self.input.clear();
        self.input.resize(crops.len() * 3 * plane, 0.0);
        for (i, (crop, &w)) in crops.iter().zip(&widths).enumerate() {
            vision::resize_into(crop, &mut self.resized, w, HEIGHT)?;
            vision::pack_chw(
                &self.resized,
                &mut self.input,
                i * 3 * plane,
                batch_w as usize,
                HEIGHT as usize,
                false,
                1.0 / 255.0,
                [0.5; 3],
                [2.0; 3],
            )?;
        }
        let shape = [crops.len(), 3, HEIGHT as usize, batch_w as usize];
        let tensor = TensorRef::from_array_view((shape, &self.input[..]))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .context("text recogniser inference")?;
        let (shape, probs) = outputs[0].try_extract_tensor::<f32>()?;
        let (n, steps, classes) = (shape[0] as usize, shape[1] as usize, shape[2] as usize);
        if classes != self.classes.len() || n != crops.len() {
            bail!(
                "recogniser output {n}x{steps}x{classes} does not fit {} crops and {} classes",
                crops.len(),
                self.classes.len()
            );
        }
        Ok((0..n)
            .map(|i| {
                ctc_greedy(
                    &probs[i * steps * classes..(i + 1) * steps * classes],
                    classes,
                    &self.classes,
                )
            })
            .collect())
    }
}

/// A `cols` × `rows` crop's width at the input height, `stretch` times its aspect's, never
/// stretched past [`MIN_WIDTH`] nor a crop already wider than that.
fn stretched_width(cols: i32, rows: i32, stretch: f32) -> i32 {
    let ratio = cols as f32 / rows.max(1) as f32;
    let own = ((HEIGHT as f32 * ratio).ceil() as i32).clamp(8, MAX_WIDTH);
    if stretch > 1.0 && own < MIN_WIDTH {
        ((own as f32 * stretch).ceil() as i32).min(MIN_WIDTH)
    } else {
        own
    }
}

/// Greedy CTC decoding of `[steps, classes]` probabilities.
pub fn ctc_greedy(probs: &[f32], classes: usize, names: &[String]) -> TextRead {
    let mut text = String::new();
    let mut conf_sum = 0.0;
    let mut kept = 0usize;
    let mut min_char = f32::MAX;
    let mut prev = usize::MAX;
    for step in probs.chunks_exact(classes) {
        let (best, p) =
            step.iter().enumerate().fold(
                (0, f32::MIN),
                |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
            );
        if best != 0 && best != prev {
            text.push_str(&names[best]);
            conf_sum += p;
            min_char = min_char.min(p);
            kept += 1;
        }
        prev = best;
    }
    TextRead {
        text,
        confidence: if kept == 0 {
            0.0
        } else {
            conf_sum / kept as f32
        },
        min_char: if kept == 0 { 0.0 } else { min_char },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stretch_widens_narrow_lines_up_to_the_minimum_width_only() {
        // 300 x 100 at height 48: 144 wide as it is, 216 at 1.5, 320 (not 432) at 3.
        assert_eq!(stretched_width(300, 100, 1.0), 144);
        assert_eq!(stretched_width(300, 100, 1.5), 216);
        assert_eq!(stretched_width(300, 100, 3.0), MIN_WIDTH);
        // A line already wider than the minimum is read as it is.
        assert_eq!(stretched_width(800, 100, 1.5), 384);
        assert_eq!(stretched_width(10_000, 10, 1.5), MAX_WIDTH);
    }

    #[test]
    fn ctc_collapses_repeats_and_skips_blanks() {
        let names: Vec<String> = ["", "A", "B", " "].iter().map(|s| s.to_string()).collect();
        let one_hot = |i: usize, p: f32| {
            let mut v = vec![(1.0 - p) / 3.0; 4];
            v[i] = p;
            v
        };
        // A A blank A B B blank → "AAB".
        let probs: Vec<f32> = [
            (1, 0.9),
            (1, 0.9),
            (0, 0.9),
            (1, 0.8),
            (2, 0.7),
            (2, 0.7),
            (0, 0.9),
        ]
        .iter()
        .flat_map(|&(i, p)| one_hot(i, p))
        .collect();
        let r = ctc_greedy(&probs, 4, &names);
        assert_eq!(r.text, "AAB");
        assert!((r.confidence - (0.9 + 0.8 + 0.7) / 3.0).abs() < 1e-6);
        assert!((r.min_char - 0.7).abs() < 1e-6);
        assert_eq!(ctc_greedy(&one_hot(0, 1.0), 4, &names).confidence, 0.0);
    }
}
