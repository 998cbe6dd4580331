//! What of a camera's frame is the lane: a region-of-interest polygon and a minimum plate height.
//!
//! The reader only looks at the polygon's bounding rectangle (less to infer, and a plate detector
//! with a fixed input size sees the lane at a higher resolution), and a read counts only when its
//! box's centre lies inside the polygon and it is tall enough to be a plate in this lane rather
//! than one on the road beyond or on a poster.

use anyhow::Result;
use opencv::core::{Mat, Rect};
use opencv::prelude::*;
use serde::{Deserialize, Serialize};

use super::reader::PlateRead;
use crate::vision::BBox;

/// The plate settings of one camera: `roi` and `min_plate_height_px` keys of `[[camera]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LaneViewConfig {
    /// Polygon `[[x, y], …]` in fractions of the frame (0-1, origin top left); whole frame when
    /// absent.
    #[serde(default)]
    pub roi: Option<Vec<[f64; 2]>>,
    /// Reads whose box is shorter than this (pixels) are ignored; 0 = no minimum.
    #[serde(default)]
    pub min_plate_height_px: u32,
}

impl LaneViewConfig {
    /// Adds a problem per wrong key to `issue` (keys prefixed with `key`).
    pub fn validate(&self, key: &str, issue: &mut dyn FnMut(&str, String)) {
        if self.min_plate_height_px > 2000 {
            issue(
                &format!("{key}.min_plate_height_px"),
                format!(
                    "{} is out of range: allowed 0 to 2000 pixels",
                    self.min_plate_height_px
                ),
            );
        }
        let Some(points) = &self.roi else { return };
        let roi_key = format!("{key}.roi");
        if points.len() < 3 {
            issue(
                &roi_key,
                format!(
                    "has {} point(s): a polygon needs at least 3 [x, y] points",
                    points.len()
                ),
            );
            return;
        }
        if points.len() > 64 {
            issue(
                &roi_key,
                format!("has {} points: at most 64 are allowed", points.len()),
            );
        }
        for (i, p) in points.iter().enumerate() {
            if !p.iter().all(|v| (0.0..=1.0).contains(v)) {
                issue(
                    &format!("{roi_key}[{i}]"),
                    format!(
                        "[{}, {}] is outside the frame: coordinates are fractions of the frame from 0 to 1",
                        p[0], p[1]
                    ),
                );
            }
        }
        if let Some((a, b)) = crossing_edges(points) {
            issue(
                &roi_key,
                format!("edges {a} and {b} cross: list the corners in order around the lane"),
            );
        } else if area(points) < 0.001 {
            issue(
                &roi_key,
                format!(
                    "covers {:.4} of the frame: too small to hold a plate (at least 0.001)",
                    area(points)
                ),
            );
        }
    }
}

/// A camera's lane view for frames of one size.
#[derive(Debug, Clone)]
pub struct LaneView {
    config: LaneViewConfig,
    /// Frame size the pixel polygon was made for.
    size: (i32, i32),
    polygon_px: Vec<(f32, f32)>,
    rect: Rect,
}

impl LaneView {
    /// The view for `config` on frames of `width` × `height`.
    pub fn new(config: LaneViewConfig, width: i32, height: i32) -> Self {
        let mut v = LaneView {
            config,
            size: (0, 0),
            polygon_px: Vec::new(),
            rect: Rect::default(),
        };
        v.resize(width, height);
        v
    }

    /// Re-fits the view when the stream's frame size changes.
    pub fn resize(&mut self, width: i32, height: i32) {
        if self.size == (width, height) {
            return;
        }
        self.size = (width, height);
        let (w, h) = (width as f32, height as f32);
        self.polygon_px = match &self.config.roi {
            Some(points) => points
                .iter()
                .map(|p| (p[0] as f32 * w, p[1] as f32 * h))
                .collect(),
            None => vec![(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)],
        };
        let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0.0f32, 0.0f32);
        for &(x, y) in &self.polygon_px {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
        let (x0, y0) = (x0.floor().max(0.0) as i32, y0.floor().max(0.0) as i32);
        let (x1, y1) = (
            (x1.ceil() as i32).min(width),
            (y1.ceil() as i32).min(height),
        );
        self.rect = Rect::new(x0, y0, (x1 - x0).max(1), (y1 - y0).max(1));
    }

    /// The polygon's bounding rectangle in pixels: the part of the frame the reader sees.
    pub fn rect(&self) -> Rect {
        self.rect
    }

    /// Whether the view is the whole frame (no copy needed).
    pub fn is_whole_frame(&self) -> bool {
        self.rect == Rect::new(0, 0, self.size.0, self.size.1)
    }

    /// The part of `frame` the reader should see: the frame itself or a copy of the rectangle.
    pub fn cut<'f>(&mut self, frame: &'f Mat) -> Result<std::borrow::Cow<'f, Mat>> {
        self.resize(frame.cols(), frame.rows());
        if self.is_whole_frame() {
            return Ok(std::borrow::Cow::Borrowed(frame));
        }
        Ok(std::borrow::Cow::Owned(
            Mat::roi(frame, self.rect)?.try_clone()?,
        ))
    }

    /// Moves reads made on [`cut`](Self::cut)'s image back to frame coordinates and keeps those
    /// whose centre is in the lane and that are tall enough.
    pub fn place(&self, reads: Vec<PlateRead>) -> Vec<PlateRead> {
        reads
            .into_iter()
            .filter_map(|mut r| {
                r.bbox = self.place_box(r.bbox)?;
                Some(r)
            })
            .collect()
    }

    /// As [`place`](Self::place), for plate boxes without a read.
    pub fn place_boxes(&self, boxes: &[BBox]) -> Vec<BBox> {
        boxes.iter().filter_map(|&b| self.place_box(b)).collect()
    }

    /// A box in frame coordinates moved onto [`cut`](Self::cut)'s image (the inverse of placing,
    /// without its filter).
    pub fn to_lane(&self, b: BBox) -> BBox {
        BBox {
            x: b.x - self.rect.x as f32,
            y: b.y - self.rect.y as f32,
            ..b
        }
    }

    fn place_box(&self, mut b: BBox) -> Option<BBox> {
        b.x += self.rect.x as f32;
        b.y += self.rect.y as f32;
        let centre = (b.x + b.w / 2.0, b.y + b.h / 2.0);
        (b.h >= self.config.min_plate_height_px as f32 && contains(&self.polygon_px, centre))
            .then_some(b)
    }
}

/// Point in polygon by ray casting (points on an edge may fall either side).
fn contains(polygon: &[(f32, f32)], (px, py): (f32, f32)) -> bool {
    let mut inside = false;
    let n = polygon.len();
    for i in 0..n {
        let (xi, yi) = polygon[i];
        let (xj, yj) = polygon[(i + n - 1) % n];
        if (yi > py) != (yj > py) && px < (xj - xi) * (py - yi) / (yj - yi) + xi {
            inside = !inside;
        }
    }
    inside
}

/// Polygon area (shoelace), in the square of the coordinates' unit.
fn area(points: &[[f64; 2]]) -> f64 {
    let n = points.len();
    (0..n)
        .map(|i| {
            let (a, b) = (points[i], points[(i + 1) % n]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum::<f64>()
        .abs()
        / 2.0
}

/// The first pair of non-adjacent edges that cross (edge `i` runs from point `i` to `i + 1`).
fn crossing_edges(points: &[[f64; 2]]) -> Option<(usize, usize)> {
    let n = points.len();
    let edge = |i: usize| (points[i], points[(i + 1) % n]);
    let orient = |a: [f64; 2], b: [f64; 2], c: [f64; 2]| {
        let v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
        if v.abs() < 1e-12 {
            0
        } else {
            v.signum() as i32
        }
    };
    for i in 0..n {
        for j in i + 1..n {
            if j == i + 1 || (i == 0 && j == n - 1) {
                continue; // neighbours share a corner
            }
            let ((a, b), (c, d)) = (edge(i), edge(j));
            let (o1, o2, o3, o4) = (
                orient(a, b, c),
                orient(a, b, d),
                orient(c, d, a),
                orient(c, d, b),
            );
            if o1 * o2 < 0 && o3 * o4 < 0 {
                return Some((i, j));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plate::grammar::Region;

    fn read_at(x: f32, y: f32, h: f32) -> PlateRead {
        PlateRead {
            plate: "51A12345".into(),
            raw: "51A12345".into(),
            region: Region::Vn,
            confidence: 0.9,
            bbox: BBox { x, y, w: 100.0, h },
        }
    }

    fn problems(c: &LaneViewConfig) -> Vec<String> {
        let mut out = Vec::new();
        c.validate("camera[0]", &mut |k, m| out.push(format!("{k}: {m}")));
        out
    }

    #[test]
    fn reads_are_moved_back_to_the_frame_and_kept_only_inside_the_lane() {
        // A trapezoid over the lower half of a 1000x500 frame.
        let config = LaneViewConfig {
            roi: Some(vec![[0.3, 0.5], [0.7, 0.5], [0.9, 1.0], [0.1, 1.0]]),
            min_plate_height_px: 20,
        };
        let view = LaneView::new(config, 1000, 500);
        assert_eq!(view.rect(), Rect::new(100, 250, 800, 250));
        // Coordinates relative to the cut rectangle.
        let kept = view.place(vec![
            read_at(350.0, 150.0, 30.0), // centre (500, 415): inside
            read_at(0.0, 10.0, 30.0),    // centre (150, 275): in the rectangle, outside the lane
            read_at(350.0, 150.0, 12.0), // inside, too small
        ]);
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].bbox.x, kept[0].bbox.y), (450.0, 400.0));
        // And back onto the cut image (where the tracker's frame boxes meet the lane's parts).
        let back = view.to_lane(kept[0].bbox);
        assert_eq!((back.x, back.y, back.h), (350.0, 150.0, 30.0));
    }

    #[test]
    fn the_whole_frame_is_the_default_and_needs_no_copy() {
        let mut view = LaneView::new(LaneViewConfig::default(), 640, 480);
        assert!(view.is_whole_frame());
        let frame = Mat::new_rows_cols_with_default(
            480,
            640,
            opencv::core::CV_8UC3,
            opencv::core::Scalar::all(0.0),
        )
        .unwrap();
        assert!(matches!(
            view.cut(&frame).unwrap(),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(view.place(vec![read_at(10.0, 10.0, 5.0)]).len(), 1);
        // A new frame size refits the view.
        view.resize(1280, 720);
        assert_eq!(view.rect(), Rect::new(0, 0, 1280, 720));
    }

    #[test]
    fn validation_names_each_wrong_polygon() {
        let bad = |roi: Vec<[f64; 2]>| LaneViewConfig {
            roi: Some(roi),
            min_plate_height_px: 0,
        };
        let p = problems(&bad(vec![[0.1, 0.1], [0.9, 0.1]]));
        assert!(p[0].contains("camera[0].roi: has 2 point(s)"), "{p:?}");
        let p = problems(&bad(vec![[0.1, 0.1], [1.5, 0.1], [0.5, 0.9]]));
        assert!(
            p[0].starts_with("camera[0].roi[1]: [1.5, 0.1] is outside"),
            "{p:?}"
        );
        // A bow tie: corners listed out of order.
        let p = problems(&bad(vec![[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]));
        assert!(p[0].contains("edges 0 and 2 cross"), "{p:?}");
        let p = problems(&bad(vec![[0.1, 0.1], [0.11, 0.1], [0.11, 0.11]]));
        assert!(p[0].contains("too small"), "{p:?}");
        let p = problems(&LaneViewConfig {
            roi: None,
            min_plate_height_px: 5000,
        });
        assert!(
            p[0].starts_with("camera[0].min_plate_height_px: 5000"),
            "{p:?}"
        );
        assert!(problems(&LaneViewConfig {
            roi: Some(vec![[0.0, 0.4], [1.0, 0.4], [1.0, 1.0], [0.0, 1.0]]),
            min_plate_height_px: 14,
        })
        .is_empty());
    }
}
