//! One camera's plate core without threads, clocks or I/O: lane view → motion gate → reader →
//! tracker. The pipeline thread of `run` and `eval plates --as-run` drive the same value, so what
//! the product-path evaluation counts is what a camera publishes.
//!
//! Where the gate finds that only parts of the lane moved, only those parts are read and the last
//! reads elsewhere are kept, as a still frame keeps them all. Two rules keep a part read from
//! publishing a piece of a plate: a part first grows over every last read it touches and every
//! open track's last box (a standing plate is read whole or not at all), and a read reaching a
//! cut edge of the part is dropped (text the cut went through; the next whole read sees it).

use anyhow::Result;
use opencv::core::{Mat, Rect};
use opencv::prelude::*;
use std::time::{Duration, Instant};

use super::lane_view::{LaneView, LaneViewConfig};
use super::reader::PlateRead;
use super::tracker::{ClosedTrack, Passage, Tracker, TrackerOptions, Withheld};
use crate::motion::{join_overlapping, parts_share, Motion, MotionConfig, MotionGate};
use crate::vision::BBox;

/// What reading one lane image gives: plate reads, and plate boxes found but not read.
pub type LaneReads = (Vec<PlateRead>, Vec<BBox>);

/// Reads a lane image, the whole of it or only the given part (lane pixels), into reads in lane
/// pixels. A reader that cannot read parts may read the whole lane: what it finds outside the
/// part is ignored.
pub type ReadLane<'a> = dyn FnMut(&Mat, Option<Rect>) -> Result<LaneReads> + 'a;

/// How close (lane pixels) a part read's box may come to an edge where the part cut the lane.
const CUT_EDGE_MARGIN: f32 = 4.0;

/// What one frame did.
#[derive(Debug, Default)]
pub struct LaneFrame {
    /// Passages ready to publish.
    pub passages: Vec<Passage>,
    /// Whether the models ran on this frame (else the motion gate found it still).
    pub inferred: bool,
    /// The parts of the lane (lane pixels) they ran on; empty when they ran on the whole lane.
    pub parts: Vec<Rect>,
    /// Time spent cutting the lane and in the motion gate.
    pub gate: Duration,
    /// Time spent reading (the models), when they ran.
    pub read: Duration,
    /// Time spent tracking.
    pub track: Duration,
}

/// The plate core of one camera.
pub struct PlateLane {
    view: LaneView,
    gate: MotionGate,
    tracker: Tracker,
    /// The last reads in lane pixels, which a part read updates (`last_reads` holds them placed
    /// in the frame, as the tracker is given them).
    lane_reads: LaneReads,
    last_reads: LaneReads,
    last_t: f64,
}

impl PlateLane {
    /// The core for a camera whose reader can read parts of the lane or not
    /// (`PlateReader::reads_parts`): without, the gate's `part_reads` is off.
    pub fn new(
        view: LaneViewConfig,
        motion: MotionConfig,
        tracker: TrackerOptions,
        reader_reads_parts: bool,
    ) -> Self {
        let motion = MotionConfig {
            part_reads: motion.part_reads && reader_reads_parts,
            ..motion
        };
        Self {
            view: LaneView::new(view, 1, 1),
            gate: MotionGate::new(motion),
            tracker: Tracker::new(tracker),
            lane_reads: LaneReads::default(),
            last_reads: LaneReads::default(),
            last_t: f64::NEG_INFINITY,
        }
    }

    /// Takes the frame at stream time `t`: reads its lane with `read` (or reuses the last reads
    /// when the motion gate finds the lane still, so tracks behave as if it had been read; or
    /// reads only the part that moved) and tracks the reads. A frame earlier than the last one
    /// means a recorded stream started over: what the previous run left open is closed first and
    /// its passages returned with this frame's. On a read error nothing is tracked, the next
    /// frame is read whole, and the error is returned.
    pub fn on_frame(&mut self, frame: &Mat, t: f64, read: &mut ReadLane) -> Result<LaneFrame> {
        let mut out = LaneFrame::default();
        if t < self.last_t {
            out.passages = self.tracker.flush();
        }
        self.last_t = t;
        let t_gate = Instant::now();
        let lane = self.view.cut(frame)?;
        let motion = self.gate.judge(&lane, t)?;
        out.gate = t_gate.elapsed();
        if motion != Motion::Still {
            let (w, h) = (lane.cols(), lane.rows());
            let parts = match motion {
                Motion::Parts(moved) => self.parts_to_read(moved, w, h),
                _ => None,
            };
            let t_read = Instant::now();
            match &parts {
                None => {
                    self.lane_reads = read(&lane, None).inspect_err(|_| self.gate.forget())?;
                }
                Some(parts) => {
                    // Parts do not overlap, so each one's merge leaves the others' reads alone.
                    for &part in parts {
                        let fresh = read(&lane, Some(part)).inspect_err(|_| self.gate.forget())?;
                        self.lane_reads = merge_part(&self.lane_reads, fresh, part, w, h);
                    }
                }
            }
            out.read = t_read.elapsed();
            out.inferred = true;
            out.parts = parts.unwrap_or_default();
            self.last_reads = (
                self.view.place(self.lane_reads.0.clone()),
                self.view.place_boxes(&self.lane_reads.1),
            );
        }
        let t_track = Instant::now();
        let (reads, unread) = &self.last_reads;
        out.passages
            .extend(self.tracker.update_with_unread(t, reads, unread));
        out.track = t_track.elapsed();
        Ok(out)
    }

    /// The parts of a `w` × `h` lane to read for the `moved` ones: each grown over every last
    /// read it touches and over where every open track's plate was last seen (a plate that the
    /// last read of its part missed, hidden for a moment, is read whole when it shows again),
    /// parts that then overlap joined; `None` (the whole lane) when they grew past the gate's
    /// `max_part`.
    fn parts_to_read(&self, moved: Vec<Rect>, w: i32, h: i32) -> Option<Vec<Rect>> {
        let tracked = self.tracker.open_boxes().map(|b| self.view.to_lane(b));
        let boxes: Vec<BBox> = self
            .lane_reads
            .0
            .iter()
            .map(|r| r.bbox)
            .chain(self.lane_reads.1.iter().copied())
            .chain(tracked)
            .filter(|b| b.w > 0.0 && b.h > 0.0)
            .collect();
        let mut parts = moved;
        // Growing over one box, or joining, may make a part touch another box.
        loop {
            let grown = parts
                .iter()
                .map(|&part| {
                    boxes
                        .iter()
                        .filter(|b| overlaps(b, part))
                        .fold(part, |p, b| p | enclosing(b, w, h))
                })
                .collect();
            let grown = join_overlapping(grown);
            if grown == parts {
                break;
            }
            parts = grown;
        }
        (parts_share(&parts, w, h) <= self.gate.config().max_part).then_some(parts)
    }

    /// The reads of the latest frame, in frame coordinates (those of the last read frame when
    /// the lane was still). Borrowed, not returned with each frame: most frames are still.
    pub fn reads(&self) -> &[PlateRead] {
        &self.last_reads.0
    }

    /// No frame came until stream time `t` (a live camera): tracks not seen for long enough close.
    pub fn on_idle(&mut self, t: f64) -> Vec<Passage> {
        self.tracker.update(t, &[])
    }

    /// Closes every track (end of stream); returns the passages not yet published.
    pub fn finish(&mut self) -> Vec<Passage> {
        self.tracker.flush()
    }

    /// Tracks that ended since the last call (for yards).
    pub fn take_closed(&mut self) -> Vec<ClosedTrack> {
        self.tracker.take_closed()
    }

    /// Tracks that ended without a decisive read since the last call.
    pub fn take_withheld(&mut self) -> Vec<Withheld> {
        self.tracker.take_withheld()
    }
}

/// The reads after reading `part` of a `w` × `h` lane: the last reads outside it, and the fresh
/// reads inside it that keep clear of its cut edges.
fn merge_part(last: &LaneReads, fresh: LaneReads, part: Rect, w: i32, h: i32) -> LaneReads {
    let keep_old = |b: &BBox| !overlaps(b, part);
    let take_new = |b: &BBox| clear_of_cuts(b, part, w, h);
    let (fresh_reads, fresh_unread) = fresh;
    let reads = last
        .0
        .iter()
        .filter(|r| keep_old(&r.bbox))
        .cloned()
        .chain(fresh_reads.into_iter().filter(|r| take_new(&r.bbox)))
        .collect();
    let unread = last
        .1
        .iter()
        .copied()
        .filter(keep_old)
        .chain(fresh_unread.into_iter().filter(take_new))
        .collect();
    (reads, unread)
}

/// Whether box `b` and rectangle `r` share any area.
fn overlaps(b: &BBox, r: Rect) -> bool {
    b.x < (r.x + r.width) as f32
        && b.x + b.w > r.x as f32
        && b.y < (r.y + r.height) as f32
        && b.y + b.h > r.y as f32
}

/// The whole-pixel rectangle around `b` with room for a read of the same plate in a box a little
/// larger (half its height on each side, clear of [`CUT_EDGE_MARGIN`]), within the `w` × `h` lane.
fn enclosing(b: &BBox, w: i32, h: i32) -> Rect {
    let room = (b.h * 0.5).max(2.0 * CUT_EDGE_MARGIN);
    let x0 = ((b.x - room).floor() as i32).clamp(0, w);
    let y0 = ((b.y - room).floor() as i32).clamp(0, h);
    let x1 = ((b.x + b.w + room).ceil() as i32).clamp(0, w);
    let y1 = ((b.y + b.h + room).ceil() as i32).clamp(0, h);
    Rect::new(x0, y0, x1 - x0, y1 - y0)
}

/// Whether box `b` lies inside `part` of a `w` × `h` lane, at least [`CUT_EDGE_MARGIN`] from each
/// edge where the part cut the lane (its edges on the lane's border cut nothing).
fn clear_of_cuts(b: &BBox, part: Rect, w: i32, h: i32) -> bool {
    let m = CUT_EDGE_MARGIN;
    let (x0, y0) = (part.x as f32, part.y as f32);
    let (x1, y1) = ((part.x + part.width) as f32, (part.y + part.height) as f32);
    // A box may reach past the lane's border (the text detector grows its boxes): a whole read
    // takes it, so a part read does too.
    let (out_lo, out_hi) = (f32::NEG_INFINITY, f32::INFINITY);
    let left = if part.x > 0 { x0 + m } else { out_lo };
    let top = if part.y > 0 { y0 + m } else { out_lo };
    let right = if part.x + part.width < w {
        x1 - m
    } else {
        out_hi
    };
    let bottom = if part.y + part.height < h {
        y1 - m
    } else {
        out_hi
    };
    b.x >= left && b.y >= top && b.x + b.w <= right && b.y + b.h <= bottom
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plate::grammar::Region;
    use opencv::core::{Scalar, CV_8UC3};
    use opencv::imgproc;

    fn image(value: f64) -> Mat {
        Mat::new_rows_cols_with_default(240, 320, CV_8UC3, Scalar::all(value)).unwrap()
    }

    fn read(plate: &str) -> PlateRead {
        PlateRead {
            plate: plate.into(),
            raw: plate.into(),
            region: Region::Vn,
            confidence: 0.9,
            bbox: BBox {
                x: 100.0,
                y: 100.0,
                w: 80.0,
                h: 24.0,
            },
        }
    }

    fn lane(motion: bool) -> PlateLane {
        lane_with(MotionConfig {
            enabled: motion,
            ..MotionConfig::default()
        })
    }

    fn lane_with(motion: MotionConfig) -> PlateLane {
        PlateLane::new(
            LaneViewConfig::default(),
            motion,
            TrackerOptions {
                confirm_frames: 3,
                lost_after: 1.0,
                min_iou: 0.2,
                settle: 2.0,
            },
            true,
        )
    }

    #[test]
    fn still_frames_reuse_the_last_reads_and_count_as_reads_for_the_tracker() {
        let mut lane = lane(true);
        let mut calls = 0;
        let mut reader = |_: &Mat, _: Option<Rect>| {
            calls += 1;
            Ok((vec![read("51A12345")], vec![]))
        };
        let img = image(80.0);
        let mut passages = Vec::new();
        let mut inferred = 0;
        for i in 0..5 {
            let f = lane.on_frame(&img, i as f64 * 0.2, &mut reader).unwrap();
            inferred += usize::from(f.inferred);
            assert_eq!(lane.reads().len(), 1, "frame {i}");
            passages.extend(f.passages);
        }
        assert_eq!(inferred, 1, "one read, then still frames");
        assert_eq!(calls, 1);
        assert_eq!(passages.len(), 1, "confirmed by the reused reads");
        assert_eq!(passages[0].plate, "51A12345");
    }

    #[test]
    fn a_stream_that_starts_over_closes_the_previous_run_and_idle_time_closes_tracks() {
        let mut lane = lane(false);
        let mut reader = |_: &Mat, _: Option<Rect>| Ok((vec![read("29C123456")], vec![]));
        let img = image(80.0);
        // One read only: not confirmed while open.
        assert!(lane
            .on_frame(&img, 5.0, &mut reader)
            .unwrap()
            .passages
            .is_empty());
        // The recording restarts at t = 0: the open track is closed and published.
        let mut empty = |_: &Mat, _: Option<Rect>| Ok(LaneReads::default());
        let f = lane.on_frame(&img, 0.0, &mut empty).unwrap();
        assert_eq!(f.passages.len(), 1);
        assert_eq!(lane.take_closed().len(), 1);
        // A live lane: a track not seen for lost_after closes on idle.
        lane.on_frame(&img, 1.0, &mut reader).unwrap();
        assert!(lane.on_idle(1.5).is_empty());
        let p = lane.on_idle(2.5);
        assert_eq!(p.len(), 1);
        assert!(lane.finish().is_empty());
    }

    #[test]
    fn a_read_error_is_returned_and_tracks_nothing() {
        let mut lane = lane(false);
        let mut failing = |_: &Mat, _: Option<Rect>| anyhow::bail!("model failed");
        let err = lane.on_frame(&image(10.0), 0.0, &mut failing).unwrap_err();
        assert!(err.to_string().contains("model failed"));
        assert!(lane.finish().is_empty());
        assert!(lane.take_closed().is_empty());
    }

    #[test]
    fn closing_the_lane_flushes_a_track_still_in_view() {
        let mut lane = lane(false);
        let mut reader = |_: &Mat, _: Option<Rect>| Ok((vec![read("51A12345")], vec![]));
        let img = image(80.0);
        // Two agreeing reads: below confirm_frames, so nothing is published while it is open.
        for t in [0.0, 0.2] {
            assert!(lane
                .on_frame(&img, t, &mut reader)
                .unwrap()
                .passages
                .is_empty());
        }
        // The camera closes (end of a file, shutdown): the track is published once, and closed
        // for the yard with its motion.
        let flushed = lane.finish();
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].plate, "51A12345");
        assert_eq!(lane.take_closed().len(), 1);
        assert!(lane.finish().is_empty(), "once");
    }

    /// A 1280 × 720 grey lane with a white rectangle per plate.
    fn scene(plates: &[(&str, Rect)]) -> Mat {
        scene_with(plates, None)
    }

    /// [`scene`] with a dark block (someone walking by) drawn over it.
    fn scene_with(plates: &[(&str, Rect)], block: Option<Rect>) -> Mat {
        let mut m = Mat::new_rows_cols_with_default(720, 1280, CV_8UC3, Scalar::all(90.0)).unwrap();
        for (_, r) in plates {
            imgproc::rectangle(&mut m, *r, Scalar::all(250.0), -1, imgproc::LINE_8, 0).unwrap();
        }
        if let Some(b) = block {
            imgproc::rectangle(&mut m, b, Scalar::all(20.0), -1, imgproc::LINE_8, 0).unwrap();
        }
        m
    }

    fn bbox(r: Rect) -> BBox {
        BBox {
            x: r.x as f32,
            y: r.y as f32,
            w: r.width as f32,
            h: r.height as f32,
        }
    }

    /// A reader of `plates` that sees only the part it is given, as the text-detector set does:
    /// a plate the part cuts is read as a piece of itself. Records the parts asked for.
    fn looking_at<'a>(
        plates: &'a [(&'a str, Rect)],
        asked: &'a mut Vec<Option<Rect>>,
    ) -> impl FnMut(&Mat, Option<Rect>) -> Result<LaneReads> + 'a {
        move |lane: &Mat, part: Option<Rect>| {
            asked.push(part);
            let seen = part.unwrap_or(Rect::new(0, 0, lane.cols(), lane.rows()));
            let reads = plates
                .iter()
                .filter(|(_, r)| (*r & seen).area() > 0)
                .map(|(plate, r)| {
                    let visible = *r & seen;
                    let text = if visible == *r { plate } else { "23456" };
                    PlateRead {
                        bbox: bbox(visible),
                        ..read(text)
                    }
                })
                .collect();
            Ok((reads, vec![]))
        }
    }

    fn plates_read(lane: &PlateLane) -> Vec<(String, f32)> {
        let mut v: Vec<_> = lane
            .reads()
            .iter()
            .map(|r| (r.plate.clone(), r.bbox.x))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn a_part_read_replaces_the_reads_where_the_lane_moved_and_keeps_the_others() {
        let mut lane = lane(true);
        let standing = ("29C123456", Rect::new(100, 100, 160, 50));
        let beside = ("51A12345", Rect::new(950, 300, 160, 50));
        let moving = |x| ("30E67890", Rect::new(x, 400, 160, 50));
        let mut asked = Vec::new();
        let first = [standing, beside, moving(700)];
        lane.on_frame(&scene(&first), 0.0, &mut looking_at(&first, &mut asked))
            .unwrap();
        assert_eq!(asked, [None], "the first frame is read whole");
        asked.clear();

        let second = [standing, beside, moving(740)];
        let f = lane
            .on_frame(&scene(&second), 0.04, &mut looking_at(&second, &mut asked))
            .unwrap();
        let [part] = f.parts[..] else {
            panic!("one part of the lane moved: {:?}", f.parts);
        };
        assert_eq!(asked, [Some(part)]);
        assert_eq!(part & standing.1, Rect::default(), "far from the move");
        // The padded move touched the plate beside it: the part grew to hold it whole, so it is
        // read again whole, not in pieces.
        assert_eq!(part & beside.1, beside.1, "{part:?}");
        assert_eq!(
            plates_read(&lane),
            [
                ("29C123456".to_owned(), 100.0),
                ("30E67890".to_owned(), 740.0),
                ("51A12345".to_owned(), 950.0)
            ],
            "the standing plate's read kept, the moving one's replaced"
        );
        assert_eq!(lane.reads().len(), 3);
    }

    #[test]
    fn things_moving_apart_are_read_part_by_part() {
        let mut lane = lane(true);
        let standing = ("29C123456", Rect::new(560, 300, 160, 50));
        let left = |y| ("30E67890", Rect::new(100, y, 160, 50));
        let right = |y| ("51A12345", Rect::new(1050, y, 160, 50));
        let mut asked = Vec::new();
        let first = [standing, left(600), right(200)];
        lane.on_frame(&scene(&first), 0.0, &mut looking_at(&first, &mut asked))
            .unwrap();
        asked.clear();
        let second = [standing, left(560), right(240)];
        let f = lane
            .on_frame(&scene(&second), 0.04, &mut looking_at(&second, &mut asked))
            .unwrap();
        assert_eq!(f.parts.len(), 2, "{:?}", f.parts);
        assert_eq!(asked, f.parts.iter().map(|p| Some(*p)).collect::<Vec<_>>());
        assert!(f.parts.iter().all(|p| (*p & standing.1).area() == 0));
        assert_eq!(
            plates_read(&lane),
            [
                ("29C123456".to_owned(), 560.0),
                ("30E67890".to_owned(), 100.0),
                ("51A12345".to_owned(), 1050.0)
            ]
        );
        let ys: Vec<f32> = lane.reads().iter().map(|r| r.bbox.y).collect();
        assert!(
            ys.contains(&560.0) && ys.contains(&240.0),
            "both moves read anew: {ys:?}"
        );
    }

    #[test]
    fn a_plate_hidden_for_a_moment_is_read_whole_when_it_shows_again() {
        let mut lane = lane(true);
        let plate = ("29C123456", Rect::new(400, 300, 300, 60));
        let mut asked = Vec::new();
        lane.on_frame(&scene(&[plate]), 0.0, &mut looking_at(&[plate], &mut asked))
            .unwrap();
        // Someone walks in front of the plate's left end: its part grows over the plate, which
        // cannot be read while hidden.
        let hiding = Rect::new(380, 280, 120, 100);
        lane.on_frame(
            &scene_with(&[plate], Some(hiding)),
            0.2,
            &mut looking_at(&[], &mut asked),
        )
        .unwrap();
        assert!(lane.reads().is_empty());
        // They walk on: where they were is a part that holds only the plate's left end, but the
        // plate's track is still open, so the part grows over where it was seen and reads it whole.
        let f = lane
            .on_frame(
                &scene_with(&[plate], Some(Rect::new(900, 280, 120, 100))),
                0.4,
                &mut looking_at(&[plate], &mut asked),
            )
            .unwrap();
        assert!(
            f.parts.iter().any(|p| (*p & plate.1) == plate.1),
            "{:?}",
            f.parts
        );
        assert_eq!(plates_read(&lane), [("29C123456".to_owned(), 400.0)]);
    }

    #[test]
    fn text_cut_by_a_part_is_not_taken_and_a_large_or_failed_part_read_reads_whole() {
        // A plate at the part's inner edge that no last read announced is read in pieces by the
        // part: the piece is dropped.
        let (w, h) = (1280, 720);
        let part = Rect::new(400, 200, 400, 300);
        let piece = read("23456");
        let cut = |x: f32, y: f32, bw: f32| BBox {
            x,
            y,
            w: bw,
            h: 40.0,
        };
        let fresh = (
            vec![
                PlateRead {
                    bbox: cut(400.0, 300.0, 60.0),
                    ..piece.clone()
                },
                PlateRead {
                    bbox: cut(500.0, 300.0, 160.0),
                    ..read("30E67890")
                },
            ],
            vec![cut(740.0, 260.0, 60.0)],
        );
        let (reads, unread) = merge_part(&LaneReads::default(), fresh, part, w, h);
        assert_eq!(reads.len(), 1);
        assert_eq!(reads[0].plate, "30E67890");
        assert!(unread.is_empty(), "at the right cut edge");
        // At the lane's own border nothing was cut: a box reaching past it is taken.
        let corner = Rect::new(0, 0, 300, 200);
        assert!(clear_of_cuts(&cut(-3.0, 10.0, 100.0), corner, w, h));
        assert!(!clear_of_cuts(&cut(220.0, 10.0, 78.0), corner, w, h));

        // A move over more than max_part of the lane is read whole.
        let mut lane = lane_with(MotionConfig {
            max_part: 0.01,
            ..MotionConfig::default()
        });
        let moving = |x| [("30E67890", Rect::new(x, 400, 160, 50))];
        let mut asked = Vec::new();
        for (i, x) in [700, 740].into_iter().enumerate() {
            let plates = moving(x);
            lane.on_frame(
                &scene(&plates),
                i as f64 * 0.04,
                &mut looking_at(&plates, &mut asked),
            )
            .unwrap();
        }
        assert_eq!(asked, [None, None]);

        // A failed part read: the next frame is read whole, though nothing moved since.
        let mut lane = lane_with(MotionConfig::default());
        let mut asked = Vec::new();
        let (a, b) = (moving(700), moving(740));
        lane.on_frame(&scene(&a), 0.0, &mut looking_at(&a, &mut asked))
            .unwrap();
        let mut failing = |_: &Mat, part: Option<Rect>| {
            assert!(part.is_some());
            anyhow::bail!("model failed")
        };
        assert!(lane.on_frame(&scene(&b), 0.04, &mut failing).is_err());
        lane.on_frame(&scene(&b), 0.08, &mut looking_at(&b, &mut asked))
            .unwrap();
        assert_eq!(asked, [None, None]);
        assert_eq!(plates_read(&lane), [("30E67890".to_owned(), 740.0)]);
    }
}
