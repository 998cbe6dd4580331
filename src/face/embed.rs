//! The face embedder: dlib's ResNet face descriptor (128-D), converted to ONNX from the
//! @vladmandic/face-api weights by `scripts/face-embedder-convert.py`.
//!
//! Input: the 150x150 aligned crop as RGB, `(v − [122.782, 117.001, 104.298]) / 256` (dlib's own
//! normalisation; face-api divides by 255, which moves scores by less than the measuring noise).
//! Output: 128 values, L2-normalised here, so two faces compare by their dot product (cosine).
//!
//! The model's scale is compressed: on the shared photos genuine pairs score 0.965 ± 0.012 and
//! impostor pairs 0.833 ± 0.033, so the threshold for a false accept rate of 1e-3 sits near 0.93.

use anyhow::{ensure, Context, Result};
use opencv::core::Mat;
use opencv::prelude::*;
use ort::session::Session;
use ort::value::TensorRef;

use super::align::ALIGNED_SIZE;
use crate::vision;

/// Values in an embedding.
pub const EMBEDDING_DIM: usize = 128;

const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];
const INV_STD: f32 = 1.0 / 256.0;

/// An L2-normalised face descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(pub Vec<f32>);

impl Embedding {
    /// Normalises `values` to unit length; a zero or non-finite vector is an error (a model that
    /// gives one is broken, and it would compare equal to nothing).
    pub fn from_raw(mut values: Vec<f32>) -> Result<Embedding> {
        ensure!(
            values.len() == EMBEDDING_DIM,
            "face embedding has {} values, expected {EMBEDDING_DIM}",
            values.len()
        );
        let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        ensure!(
            norm.is_finite() && norm > 1e-12,
            "face embedding has norm {norm}: the embedder's output is unusable"
        );
        values.iter_mut().for_each(|v| *v /= norm);
        Ok(Embedding(values))
    }

    /// Cosine similarity, -1 to 1 (1: the same direction).
    pub fn cosine(&self, other: &Embedding) -> f32 {
        self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum()
    }
}

/// The embedder session with a reusable input buffer.
pub struct FaceEmbedder {
    session: Session,
    input: Vec<f32>,
}

impl FaceEmbedder {
    pub fn new(session: Session) -> Self {
        Self {
            session,
            input: Vec::new(),
        }
    }

    /// Embeds aligned 150x150 BGR crops ([`align_face`](super::align::align_face)); one model
    /// call for all of them.
    pub fn embed(&mut self, crops: &[Mat]) -> Result<Vec<Embedding>> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        let side = ALIGNED_SIZE as usize;
        let plane = side * side;
        self.input.resize(crops.len() * 3 * plane, 0.0);
        for (i, crop) in crops.iter().enumerate() {
            ensure!(
                crop.cols() == ALIGNED_SIZE && crop.rows() == ALIGNED_SIZE,
                "face crop is {}x{}, the embedder takes {ALIGNED_SIZE}x{ALIGNED_SIZE}",
                crop.cols(),
                crop.rows()
            );
            vision::pack_chw(
                crop,
                &mut self.input,
                i * 3 * plane,
                side,
                side,
                true,
                1.0,
                MEAN_RGB,
                [INV_STD; 3],
            )?;
        }
        let tensor = TensorRef::from_array_view(([crops.len(), 3, side, side], &self.input[..]))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .context("face embedder inference")?;
        let (shape, values) = outputs[0].try_extract_tensor::<f32>()?;
        ensure!(
            values.len() == crops.len() * EMBEDDING_DIM,
            "face embedder output shape {shape:?}, expected [{}, {EMBEDDING_DIM}]",
            crops.len()
        );
        values
            .chunks(EMBEDDING_DIM)
            .map(|v| Embedding::from_raw(v.to_vec()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_unit_length_and_compare_by_cosine() {
        let mut a = vec![0.0; EMBEDDING_DIM];
        a[0] = 3.0;
        a[1] = 4.0;
        let a = Embedding::from_raw(a).unwrap();
        assert!((a.0[0] - 0.6).abs() < 1e-6 && (a.0[1] - 0.8).abs() < 1e-6);
        assert!((a.cosine(&a) - 1.0).abs() < 1e-6);
        let mut b = vec![0.0; EMBEDDING_DIM];
        b[0] = -1.0;
        let b = Embedding::from_raw(b).unwrap();
        assert!((a.cosine(&b) + 0.6).abs() < 1e-6);
    }

    #[test]
    fn unusable_outputs_are_errors() {
        assert!(Embedding::from_raw(vec![0.0; EMBEDDING_DIM]).is_err());
        assert!(Embedding::from_raw(vec![f32::NAN; EMBEDDING_DIM]).is_err());
        let err = Embedding::from_raw(vec![1.0; 3]).unwrap_err().to_string();
        assert!(err.contains("expected 128"), "{err}");
    }
}
