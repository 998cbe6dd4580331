//! The face path: detector → alignment → embedder, on one BGR frame at a time, without threads,
//! clocks or I/O. [`FaceReader::read`] is the entry point `eval faces` and the benchmark use, so
//! what is measured is what a camera stage will run.
//!
//! - [`detect`]: RetinaFace-MobileNet0.25 boxes, scores and five landmarks;
//! - [`align`]: the similarity onto dlib's 5-point template, a 150x150 crop;
//! - [`embed`]: dlib's 128-D descriptor, L2-normalised; faces compare by cosine.
//!
//! Around it, the camera stage and the gallery: [`quality`] rates a face picture, [`track`] turns
//! frames' faces into one decision per person (pure, unit-tested), [`gallery`] holds the enrolled
//! identities and searches them, [`store`] keeps the gallery on disk, [`service`] serves it (hub
//! commands, enrolment), [`stage`] is a camera's face thread, and [`config`] is `[camera.face]`.

pub mod align;
pub mod config;
pub mod detect;
pub mod embed;
pub mod eval;
pub mod gallery;
pub mod quality;
pub mod service;
pub mod stage;
pub mod store;
pub mod track;

use anyhow::Result;
use opencv::core::{Mat, Point2f};
use std::path::Path;

use crate::models;
use crate::vision::BBox;
use align::align_face;
use detect::{DetectedFace, DetectorOptions, FaceDetector};
use embed::{Embedding, FaceEmbedder};

/// A face read in one frame.
#[derive(Debug, Clone)]
pub struct FaceRead {
    /// Where in the frame, in pixels.
    pub bbox: BBox,
    /// Eyes, nose tip and mouth corners, in frame pixels (see [`DetectedFace::landmarks`]).
    pub landmarks: [Point2f; 5],
    /// The detector's face probability, 0-1.
    pub score: f32,
    pub embedding: Embedding,
}

/// Reader settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceOptions {
    pub detector: DetectorOptions,
    /// Intra-op threads per session.
    pub threads: usize,
}

impl Default for FaceOptions {
    fn default() -> Self {
        Self {
            detector: DetectorOptions::default(),
            threads: 1,
        }
    }
}

/// The loaded face models.
pub struct FaceReader {
    detector: FaceDetector,
    embedder: FaceEmbedder,
}

impl FaceReader {
    /// Loads and verifies the face models from `model_dir`.
    pub fn load(model_dir: &Path, ort_lib: Option<&Path>, opts: FaceOptions) -> Result<Self> {
        let env = models::ort_environment(ort_lib)?;
        let open = |file: &str| -> Result<ort::session::Session> {
            let path = models::verified_model(model_dir, file)?;
            models::open_session(env, &path, opts.threads)
        };
        Ok(Self {
            detector: FaceDetector::new(open(models::FACE_DETECTOR)?, opts.detector)?,
            embedder: FaceEmbedder::new(open(models::FACE_EMBEDDER)?),
        })
    }

    /// The detector's settings.
    pub fn detector_options(&self) -> DetectorOptions {
        self.detector.options()
    }

    /// The faces of a BGR frame (best first), each with its embedding; none is not an error.
    pub fn read(&mut self, frame: &Mat) -> Result<Vec<FaceRead>> {
        let faces = self.detect(frame)?;
        self.embed(frame, &faces)
    }

    /// Only the detector: boxes, landmarks and scores, best first.
    pub fn detect(&mut self, frame: &Mat) -> Result<Vec<DetectedFace>> {
        self.detector.detect(frame)
    }

    /// Aligns and embeds faces detected in `frame` (one embedder call for all).
    pub fn embed(&mut self, frame: &Mat, faces: &[DetectedFace]) -> Result<Vec<FaceRead>> {
        Ok(self
            .embed_aligned(frame, faces)?
            .into_iter()
            .map(|(read, _)| read)
            .collect())
    }

    /// [`embed`](Self::embed), each face with its aligned 150x150 crop (the camera stage rates
    /// its sharpness, and may publish it).
    pub fn embed_aligned(
        &mut self,
        frame: &Mat,
        faces: &[DetectedFace],
    ) -> Result<Vec<(FaceRead, Mat)>> {
        let crops = faces
            .iter()
            .map(|f| align_face(frame, &f.landmarks))
            .collect::<Result<Vec<_>>>()?;
        let embeddings = self.embedder.embed(&crops)?;
        Ok(faces
            .iter()
            .zip(embeddings)
            .zip(crops)
            .map(|((f, embedding), crop)| {
                let read = FaceRead {
                    bbox: f.bbox,
                    landmarks: f.landmarks,
                    score: f.score,
                    embedding,
                };
                (read, crop)
            })
            .collect())
    }
}
