//! How good a face picture is for recognition, 0-1: its size, how frontal it is (from the five
//! landmarks) and how sharp the aligned crop is. Used to rank a track's frames (the best ones are
//! embedded into the track's descriptor) and reported in the event; not a calibrated probability.

use anyhow::Result;
use opencv::core::{Mat, Point2f};
use opencv::prelude::*;

/// Face width (px) at and above which size no longer limits recognition: dlib's chips map the
/// face onto about 110 of their 150 pixels, so a wider face is downscaled anyway.
const FULL_SIZE_PX: f32 = 110.0;
/// Laplacian variance of an aligned crop that scores 0.5 sharpness (a sharp 150x150 face gives
/// several hundred; motion blur or defocus a few tens).
const HALF_SHARPNESS: f32 = 100.0;

/// The three parts of a face's quality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    pub size: f32,
    pub frontal: f32,
    pub sharp: f32,
}

impl Quality {
    /// The geometric mean of the parts: one poor part pulls it down, and a profile view, even
    /// large and sharp, ranks below a frontal one.
    pub fn score(&self) -> f32 {
        (self.size * self.frontal * self.sharp).max(0.0).cbrt()
    }
}

/// 0-1 by face width.
pub fn size_score(width_px: f32) -> f32 {
    (width_px / FULL_SIZE_PX).clamp(0.0, 1.0)
}

/// 0-1 from the landmarks (eye on the image's left, other eye, nose tip, mouth corners): 1 when
/// the nose sits midway between the eyes (no yaw) and midway between the eye line and the mouth
/// line (no pitch); 0 when it is at or beyond an eye (a profile). Roll does not count: the
/// alignment undoes it.
pub fn frontalness(l: &[Point2f; 5]) -> f32 {
    let (le, re, nose) = (l[0], l[1], l[2]);
    let mouth = Point2f::new((l[3].x + l[4].x) / 2.0, (l[3].y + l[4].y) / 2.0);
    let eyes = Point2f::new((le.x + re.x) / 2.0, (le.y + re.y) / 2.0);
    // In the face's own frame: x along the eye line, y from the eyes towards the mouth.
    let (ax, ay) = (re.x - le.x, re.y - le.y);
    let eye_dist = ax.hypot(ay);
    if eye_dist < 1e-3 {
        return 0.0;
    }
    let (ux, uy) = (ax / eye_dist, ay / eye_dist);
    let along = |p: Point2f| (p.x - le.x) * ux + (p.y - le.y) * uy;
    let across = |p: Point2f| -(p.x - le.x) * uy + (p.y - le.y) * ux;
    let yaw = along(nose) / eye_dist; // 0.5 when frontal
    let (eye_y, mouth_y) = (across(eyes), across(mouth));
    let pitch = if (mouth_y - eye_y).abs() < 1e-3 {
        0.0
    } else {
        (across(nose) - eye_y) / (mouth_y - eye_y) // about 0.55 when frontal
    };
    let yaw_score = (1.0 - (yaw - 0.5).abs() * 2.0).clamp(0.0, 1.0);
    let pitch_score = (1.0 - (pitch - 0.55).abs() * 2.0).clamp(0.0, 1.0);
    yaw_score * pitch_score.sqrt()
}

/// 0-1 from the variance of the Laplacian of an aligned crop's grey levels.
pub fn sharpness(aligned_bgr: &Mat) -> Result<f32> {
    let mut grey = Mat::default();
    opencv::imgproc::cvt_color_def(aligned_bgr, &mut grey, opencv::imgproc::COLOR_BGR2GRAY)?;
    let mut lap = Mat::default();
    opencv::imgproc::laplacian_def(&grey, &mut lap, opencv::core::CV_32F)?;
    let (mut mean, mut dev) = (Mat::default(), Mat::default());
    opencv::core::mean_std_dev_def(&lap, &mut mean, &mut dev)?;
    let sd = *dev.at::<f64>(0)? as f32;
    let var = sd * sd;
    Ok(var / (var + HALF_SHARPNESS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::align::TEMPLATE;

    #[test]
    fn the_template_is_frontal_and_a_profile_is_not() {
        assert!(frontalness(&TEMPLATE) > 0.9, "{}", frontalness(&TEMPLATE));
        // Rotated in the image plane: still frontal.
        let turned = TEMPLATE.map(|p| Point2f::new(200.0 - p.y, p.x));
        assert!((frontalness(&turned) - frontalness(&TEMPLATE)).abs() < 1e-4);
        // The nose beyond the right eye (a three-quarter to profile view, like scikit-image's
        // cameraman): zero.
        let mut profile = TEMPLATE;
        profile[2].x = profile[1].x + 2.0;
        assert_eq!(frontalness(&profile), 0.0);
        // Halfway there: about half.
        let mut half = TEMPLATE;
        half[2].x = (TEMPLATE[2].x + TEMPLATE[1].x) / 2.0;
        let f = frontalness(&half);
        assert!(f > 0.3 && f < 0.7, "{f}");
        assert_eq!(frontalness(&[Point2f::new(1.0, 1.0); 5]), 0.0);
    }

    #[test]
    fn sizes_and_scores_combine() {
        assert_eq!(size_score(55.0), 0.5);
        assert_eq!(size_score(500.0), 1.0);
        let q = Quality {
            size: 1.0,
            frontal: 0.0,
            sharp: 1.0,
        };
        assert_eq!(q.score(), 0.0);
        let q = Quality {
            size: 0.8,
            frontal: 0.8,
            sharp: 0.8,
        };
        assert!((q.score() - 0.8).abs() < 1e-5);
    }

    #[test]
    fn a_blurred_crop_is_less_sharp() {
        use opencv::core::{Scalar, Size, CV_8UC3};
        let mut crop =
            Mat::new_rows_cols_with_default(150, 150, CV_8UC3, Scalar::all(0.0)).unwrap();
        for y in 0..150 {
            for x in 0..150 {
                let v = if (x / 6 + y / 6) % 2 == 0 { 230 } else { 20 };
                *crop.at_2d_mut::<opencv::core::Vec3b>(y, x).unwrap() = [v, v, v].into();
            }
        }
        let mut blurred = Mat::default();
        opencv::imgproc::gaussian_blur_def(&crop, &mut blurred, Size::new(15, 15), 5.0).unwrap();
        let (s, b) = (sharpness(&crop).unwrap(), sharpness(&blurred).unwrap());
        assert!(s > 0.9 && b < s, "sharp {s}, blurred {b}");
    }
}
