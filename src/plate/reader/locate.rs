//! A cheap first look that finds where the text of a frame is, so that the text detector looks
//! at the reading scale only there.
//!
//! The text detector's time grows with the pixels it is given, and at a gate most of a frame is
//! road, booth and sky. The same detector at a smaller scale finds the lines of a plate (it may
//! frame them worse, which is why they are not read from that look); the parts around them are
//! then looked at again at the scale the whole frame is read at, as the moved parts of a lane are
//! (`read_text_lines_in`). A frame whose parts give no plate-like read is read whole, as before.

use anyhow::Result;
use opencv::core::{Mat, Rect};
use opencv::prelude::*;

use super::text_lines::{align_to_detector, plate_like, side_at_scale, Look};
use super::PlateReader;
use crate::plate::text_det::TextDetector;
use crate::vision::BBox;

/// A part is at least this share of the region's width and of its height. The detector's
/// squeeze-and-excitation layers average over everything it is given, so a part only a little
/// larger than its plate is seen differently from the whole frame: on the shared OpenALPR photos
/// (locating at 480) parts padded by two line heights read us 0.806 and eu 0.861 (whole frames
/// 0.820 and 0.898); at 0.30 / 0.35 / 0.40 / 0.50 of the sides, see `docs/accuracy.md`.
const MIN_PART_SHARE: f32 = 0.35;
/// A part of the frame smaller than this share of it (a moved part of the lane) is read whole: in
/// `benches/pipeline.rs`'s `moved_part` (a moved part 0.13 of a 1080p frame) locating inside it
/// took 1.1 times the time of reading it whole.
const MIN_REGION_SHARE: f64 = 0.25;
/// Padding around a located line, in line heights (horizontal, vertical), for lines whose part
/// is larger than [`MIN_PART_SHARE`] asks.
const LINE_PADDING: (f32, f32) = (2.0, 1.5);
/// Above this share of the region's area the parts save little: the region is read whole.
const MAX_PARTS_SHARE: f64 = 0.6;
/// More located lines than this and the region is read whole.
const MAX_LINES: usize = 24;
/// At most this many parts are grown per frame; past that the frame is read whole.
const MAX_GROWTHS: usize = 4;

impl PlateReader {
    /// The text lines the detector finds in `part` of the frame (all of it when `None`) at the
    /// scale `side` gives the whole frame; boxes in frame pixels.
    fn locate_lines(&mut self, frame: &Mat, part: Option<Rect>, side: u32) -> Result<Vec<BBox>> {
        let scale = TextDetector::scale(frame.cols(), frame.rows(), side);
        let region = part.unwrap_or(Rect::new(0, 0, frame.cols(), frame.rows()));
        let det = self.text_detector();
        det.set_max_side(side_at_scale(region, scale));
        let boxes = if part.is_some() {
            let crop = Mat::roi(frame, region)?.try_clone()?;
            det.detect(&crop)?
        } else {
            det.detect(frame)?
        };
        Ok(boxes
            .iter()
            .map(|b| {
                let mut bbox = BBox::around(&b.quad);
                bbox.x += region.x as f32;
                bbox.y += region.y as f32;
                bbox
            })
            .collect())
    }

    /// The first-scale look at `part` (the whole frame when `None`) through a locating look:
    /// the text detector at `locate_max_side` finds where text is, and only the parts around
    /// those lines are read, each at `detector_max_side`'s scale. `None` when the whole region
    /// is to be read instead: locating is off, the parts would not save much (too many lines,
    /// too much of the region, lines that kept running past their parts), or they gave no
    /// plate-like read (a plate the small look missed is then found by the whole one), or `part`
    /// is already a small part of the frame ([`MIN_REGION_SHARE`]).
    ///
    /// A part is read again larger while a line found there runs into one of its edges (an edge
    /// that is not the region's): the locating look may have found only part of a line, and a
    /// line cut by its part's edge reads as a shorter plate.
    pub(super) fn read_located(&mut self, frame: &Mat, part: Option<Rect>) -> Result<Option<Look>> {
        let (side, max_side) = (self.opts.locate_max_side, self.opts.detector_max_side);
        let frame_area = frame.cols() as f64 * frame.rows() as f64;
        let small_part = part.is_some_and(|p| (p.area() as f64) < MIN_REGION_SHARE * frame_area);
        if side == 0 || side >= max_side || small_part {
            return Ok(None);
        }
        // What the parts refuse is counted only if their reads are the ones kept.
        let refused = self.refused;
        let look = self.read_located_parts(frame, part, side, max_side)?;
        match look {
            Some(look) if plate_like(&look.reads) => {
                self.located += 1;
                Ok(Some(look))
            }
            _ => {
                self.refused = refused;
                Ok(None)
            }
        }
    }

    fn read_located_parts(
        &mut self,
        frame: &Mat,
        part: Option<Rect>,
        side: u32,
        max_side: u32,
    ) -> Result<Option<Look>> {
        let lines = self.locate_lines(frame, part, side)?;
        if lines.len() > MAX_LINES {
            return Ok(None);
        }
        let region = part.unwrap_or(Rect::new(0, 0, frame.cols(), frame.rows()));
        let (w, h) = (frame.cols(), frame.rows());
        let scale = TextDetector::scale(w, h, max_side);
        let mut todo = look_parts(&lines, region, w, h, scale);
        tracing::trace!(?lines, parts = ?todo, "located text lines");
        let mut done: Vec<(Rect, Look)> = Vec::new();
        let mut growths = 0;
        while let Some(p) = todo.pop() {
            let parts = todo.iter().chain(done.iter().map(|(r, _)| r)).chain([&p]);
            let share = parts.map(|r| r.area() as f64).sum::<f64>() / region.area().max(1) as f64;
            if share > MAX_PARTS_SHARE {
                return Ok(None);
            }
            let look = self.read_text_lines_in(frame, Some(p), max_side)?;
            let Some(grown) = grown_to_hold(p, &look.lines, region, scale) else {
                done.push((p, look));
                continue;
            };
            growths += 1;
            if growths > MAX_GROWTHS {
                return Ok(None);
            }
            // The grown part takes in the parts it now overlaps; those are read again with it.
            let mut grown = align_to_detector(grown, w, h, scale);
            loop {
                let apart = |r: &Rect| (*r & grown).area() == 0;
                let taken: Vec<Rect> = todo.iter().copied().filter(|r| !apart(r)).collect();
                let read_again: Vec<Rect> =
                    done.iter().map(|d| d.0).filter(|r| !apart(r)).collect();
                if taken.is_empty() && read_again.is_empty() {
                    break;
                }
                todo.retain(|r| apart(r));
                done.retain(|(r, _)| apart(r));
                for r in taken.into_iter().chain(read_again) {
                    grown |= r;
                }
                grown = align_to_detector(grown, w, h, scale);
            }
            todo.push(grown);
        }
        let mut all = Look {
            reads: Vec::new(),
            pieces: Vec::new(),
            lines: Vec::new(),
        };
        for (_, look) in done {
            all.reads.extend(look.reads);
            all.pieces.extend(look.pieces);
            all.lines.extend(look.lines);
        }
        Ok(Some(all))
    }
}

/// `part` grown past each of its edges that a line in `lines` (frame pixels) runs into, unless
/// that edge is `region`'s; `None` when no line does. A part grows by the line's width and two of
/// its heights, where the rest of a cut line would be.
fn grown_to_hold(part: Rect, lines: &[BBox], region: Rect, scale: f32) -> Option<Rect> {
    // Boxes are clamped to the detector's map: a cut line ends within a map pixel of the edge.
    let tol = 1.5 / scale.max(f32::EPSILON);
    let (x0, y0) = (part.x as f32, part.y as f32);
    let (x1, y1) = ((part.x + part.width) as f32, (part.y + part.height) as f32);
    let (mut gx0, mut gy0, mut gx1, mut gy1) = (x0, y0, x1, y1);
    for b in lines {
        let (gw, gh) = (b.w + 2.0 * b.h, 2.0 * b.h);
        if b.x <= x0 + tol && part.x > region.x {
            gx0 = gx0.min(b.x - gw);
        }
        if b.x + b.w >= x1 - tol && part.x + part.width < region.x + region.width {
            gx1 = gx1.max(b.x + b.w + gw);
        }
        if b.y <= y0 + tol && part.y > region.y {
            gy0 = gy0.min(b.y - gh);
        }
        if b.y + b.h >= y1 - tol && part.y + part.height < region.y + region.height {
            gy1 = gy1.max(b.y + b.h + gh);
        }
    }
    if (gx0, gy0, gx1, gy1) == (x0, y0, x1, y1) {
        return None;
    }
    let gx0 = (gx0.floor() as i32).max(region.x);
    let gy0 = (gy0.floor() as i32).max(region.y);
    let gx1 = (gx1.ceil() as i32).min(region.x + region.width);
    let gy1 = (gy1.ceil() as i32).min(region.y + region.height);
    Some(Rect::new(gx0, gy0, gx1 - gx0, gy1 - gy0))
}

/// The parts of `region` to look at again around the located `lines`: each line padded by
/// [`LINE_PADDING`], at least [`MIN_PART_SHARE`] of the region's sides, grown to what the
/// detector sees at `scale` ([`align_to_detector`]), and overlapping parts joined until none
/// overlap.
fn look_parts(lines: &[BBox], region: Rect, frame_w: i32, frame_h: i32, scale: f32) -> Vec<Rect> {
    // Moved (not cut) into the region where it can be, to keep its size.
    let fit = |x0: f32, y0: f32, x1: f32, y1: f32| -> Rect {
        let fit_1d = |a: f32, b: f32, start: i32, len: i32| -> (i32, i32) {
            let want = ((b - a).ceil() as i32).clamp(1, len);
            let at = (a.floor() as i32).clamp(start, start + len - want);
            (at, want)
        };
        let (x, w) = fit_1d(x0, x1, region.x, region.width);
        let (y, h) = fit_1d(y0, y1, region.y, region.height);
        Rect::new(x, y, w, h)
    };
    let align = |r: Rect| align_to_detector(r, frame_w, frame_h, scale);
    let mut parts: Vec<Rect> = lines
        .iter()
        .map(|b| {
            let px = (b.h * LINE_PADDING.0).max((region.width as f32 * MIN_PART_SHARE - b.w) / 2.0);
            let py =
                (b.h * LINE_PADDING.1).max((region.height as f32 * MIN_PART_SHARE - b.h) / 2.0);
            align(fit(b.x - px, b.y - py, b.x + b.w + px, b.y + b.h + py))
        })
        .collect();
    // Join overlapping parts (their union, grown again) until no two overlap.
    loop {
        let mut joined = false;
        'pairs: for i in 0..parts.len() {
            for j in i + 1..parts.len() {
                if (parts[i] & parts[j]).area() > 0 {
                    let union = parts[i] | parts[j];
                    parts.swap_remove(j);
                    parts[i] = align(union);
                    joined = true;
                    break 'pairs;
                }
            }
        }
        if !joined {
            return parts;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::Point;

    const WHOLE: Rect = Rect {
        x: 0,
        y: 0,
        width: 1920,
        height: 1080,
    };

    fn bbox(x: f32, y: f32, w: f32, h: f32) -> BBox {
        BBox { x, y, w, h }
    }

    fn holds(p: &Rect, b: &BBox) -> bool {
        p.contains(Point::new(b.x as i32, b.y as i32))
            && p.contains(Point::new((b.x + b.w) as i32, (b.y + b.h) as i32))
    }

    #[test]
    fn the_lines_of_one_plate_become_one_part_and_a_distant_line_its_own() {
        // 1920 x 1080 read at 960: parts are multiples of 64 px.
        let scale = TextDetector::scale(1920, 1080, 960);
        let top = bbox(900.0, 700.0, 160.0, 40.0);
        let bottom = bbox(890.0, 745.0, 180.0, 42.0);
        let sign = bbox(100.0, 100.0, 120.0, 50.0);
        let parts = look_parts(&[top, bottom, sign], WHOLE, 1920, 1080, scale);
        assert_eq!(parts.len(), 2, "{parts:?}");
        for p in &parts {
            assert_eq!((p.width % 64, p.height % 64), (0, 0), "{p:?}");
            assert_eq!(*p & WHOLE, *p, "{p:?} leaves the frame");
            // Never smaller than the minimum share of the frame's sides, even at its corner.
            assert!(p.width as f32 >= 0.35 * 1920.0 && p.height as f32 >= 0.35 * 1080.0);
        }
        assert!(parts.iter().any(|p| holds(p, &top) && holds(p, &bottom)));
        assert!(parts.iter().any(|p| holds(p, &sign) && !holds(p, &top)));
        assert!(parts
            .iter()
            .all(|a| parts.iter().all(|b| a == b || (*a & *b).area() == 0)));
    }

    #[test]
    fn lines_near_each_other_share_one_part_sized_by_their_region() {
        let scale = TextDetector::scale(1920, 1080, 960);
        // A moved part of the lane.
        let region = Rect::new(600, 400, 900, 600);
        let a = bbox(700.0, 500.0, 100.0, 30.0);
        let b = bbox(850.0, 520.0, 100.0, 30.0);
        let parts = look_parts(&[a, b], region, 1920, 1080, scale);
        assert_eq!(parts.len(), 1, "{parts:?}");
        assert!(holds(&parts[0], &a) && holds(&parts[0], &b));
        // At least the minimum share of the region's sides, not of the frame's.
        assert!(parts[0].width >= 315 && parts[0].height >= 210 && parts[0].width < 672);
    }

    #[test]
    fn a_part_grows_past_the_edge_a_line_runs_into_unless_it_is_the_regions() {
        let scale = 0.5;
        let part = Rect::new(640, 512, 640, 384);
        // A line cut by the part's left edge: grown left by its width and two heights.
        let cut = bbox(640.0, 700.0, 120.0, 30.0);
        let g = grown_to_hold(part, &[cut], WHOLE, scale).unwrap();
        assert_eq!(
            (g.x, g.y, g.x + g.width, g.y + g.height),
            (460, 512, 1280, 896)
        );
        // A line well inside: nothing to grow.
        let inside = bbox(800.0, 700.0, 120.0, 30.0);
        assert_eq!(grown_to_hold(part, &[inside], WHOLE, scale), None);
        // The region's own edge is where the picture ends: no growth past it.
        let at_edge = Rect::new(0, 512, 640, 384);
        assert_eq!(
            grown_to_hold(at_edge, &[bbox(0.0, 700.0, 120.0, 30.0)], WHOLE, scale),
            None
        );
        // Cut at the bottom: grown down by two line heights (1024 + 2 x 24).
        let low = Rect::new(640, 640, 640, 384);
        let g = grown_to_hold(low, &[bbox(900.0, 1000.0, 120.0, 24.0)], WHOLE, scale).unwrap();
        assert_eq!((g.y, g.y + g.height), (640, 1072));
    }
}
