//! Real faces for the demo clip: drivers seen through the booth camera's window (an inset at the
//! top left of the lane picture) while their vehicle is in view. The photos come from
//! scikit-image, fetched and verified by the setup step like the models: `astronaut.png` (Eileen
//! Collins, NASA, public domain) is enrolled from a crop of the photo and shown smaller and
//! moving; `camera.png` (a man with a camcorder, CC0) is another person, never enrolled, so his
//! event must say `identity: null`.

use anyhow::{Context, Result};
use opencv::core::{Mat, Rect, Scalar, Size};
use opencv::imgproc;
use opencv::prelude::*;
use std::path::Path;

use crate::face::service::FaceService;
use crate::models;

/// A driver whose face the booth camera shows.
#[derive(Debug, Clone)]
pub struct DemoFace {
    /// Index of the vehicle (in order of appearance) the driver belongs to.
    pub vehicle: usize,
    /// The gallery id the demo enrols the face as; `None`: not enrolled (an unknown face).
    pub identity: Option<&'static str>,
    /// The photo (an asset of `models/manifest.toml`).
    pub photo: &'static str,
    /// The part of the photo shown in the window: x, y, width, height.
    pub shown: [i32; 4],
    /// Scale of the shown part in the frame.
    pub scale: f64,
    /// The part of the photo the demo enrols from (a tighter crop at the photo's own scale, so
    /// the enrolled picture is not the one the camera sees).
    pub enrol: [i32; 4],
}

/// The faces of the demo clip.
pub fn demo_faces() -> Vec<DemoFace> {
    vec![
        DemoFace {
            vehicle: 0,
            identity: Some("demo-astronaut"),
            photo: models::FACE_BENCH_FRAME,
            shown: [130, 10, 190, 230],
            scale: 0.85,
            enrol: [150, 30, 150, 175],
        },
        DemoFace {
            vehicle: 3,
            identity: None,
            photo: models::FACE_SECOND,
            shown: [150, 60, 150, 170],
            scale: 1.25,
            enrol: [170, 90, 110, 130],
        },
    ]
}

fn read_part(model_dir: &Path, photo: &str, [x, y, w, h]: [i32; 4]) -> Result<Mat> {
    let path = models::verified_asset(model_dir, photo)?;
    let mut image = crate::vision::read_image(&path)?;
    if image.channels() == 1 {
        let mut bgr = Mat::default();
        imgproc::cvt_color_def(&image, &mut bgr, imgproc::COLOR_GRAY2BGR)?;
        image = bgr;
    }
    Ok(Mat::roi(&image, Rect::new(x, y, w, h))
        .with_context(|| format!("{photo}: part {x},{y} {w}x{h} is outside the photo"))?
        .try_clone()?)
}

/// The picture each face is shown with, scaled for the frame.
pub fn load_shown(model_dir: &Path, faces: &[DemoFace]) -> Result<Vec<Mat>> {
    faces
        .iter()
        .map(|f| {
            let part = read_part(model_dir, f.photo, f.shown)?;
            let mut scaled = Mat::default();
            let size = Size::new(
                (part.cols() as f64 * f.scale) as i32,
                (part.rows() as f64 * f.scale) as i32,
            );
            imgproc::resize(&part, &mut scaled, size, 0.0, 0.0, imgproc::INTER_AREA)?;
            Ok(scaled)
        })
        .collect()
}

/// The enrolment picture of a face.
pub fn enrol_picture(model_dir: &Path, face: &DemoFace) -> Result<Mat> {
    read_part(model_dir, face.photo, face.enrol)
}

/// Enrols every face of `faces` that has an identity into `gallery`, from its enrolment picture,
/// as `gatewatch face enrol` does with the picture `demo render --enrol` writes (a PNG, so the
/// same pixels). Returns the identities enrolled.
pub fn enrol(gallery: &FaceService, model_dir: &Path, faces: &[DemoFace]) -> Result<Vec<String>> {
    let mut enrolled = Vec::new();
    for face in faces {
        let Some(id) = face.identity else { continue };
        let mut png = opencv::core::Vector::<u8>::new();
        opencv::imgcodecs::imencode_def(".png", &enrol_picture(model_dir, face)?, &mut png)?;
        let found = gallery
            .face_of_image(png.as_slice())
            .map_err(|e| anyhow::anyhow!("demo face {id}: {e}"))?;
        gallery
            .enrol(id, None, vec![found.embedding], true)
            .map_err(|e| anyhow::anyhow!("demo face {id}: {e}"))?;
        enrolled.push(id.to_owned());
    }
    Ok(enrolled)
}

/// Draws the booth window with `face` in it, top left, the face drifting a little with
/// `progress` (0-1 through the vehicle's pass) as a driver's head does.
pub fn draw_window(img: &mut Mat, face: &Mat, progress: f64) -> Result<()> {
    let (w, h) = (face.cols(), face.rows());
    let frame = Rect::new(20, 20, w + 40, h + 40);
    imgproc::rectangle(
        img,
        frame,
        Scalar::new(60.0, 50.0, 40.0, 0.0),
        imgproc::FILLED,
        imgproc::LINE_AA,
        0,
    )?;
    let dx = (progress * 16.0) as i32;
    let dy = ((progress * std::f64::consts::PI).sin() * 8.0) as i32;
    let at = Rect::new(32 + dx, 28 + dy, w, h);
    face.copy_to(&mut Mat::roi_mut(img, at)?)?;
    Ok(())
}
