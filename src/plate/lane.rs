//! One camera's plate core without threads, clocks or I/O: lane view → motion gate → reader →
//! tracker. The pipeline thread of `run` and `eval plates --as-run` drive the same value, so what
//! the product-path evaluation counts is what a camera publishes.

use anyhow::Result;
use opencv::core::Mat;
use std::time::{Duration, Instant};

use super::lane_view::{LaneView, LaneViewConfig};
use super::reader::PlateRead;
use super::tracker::{ClosedTrack, Passage, Tracker, TrackerOptions, Withheld};
use crate::motion::{MotionConfig, MotionGate};
use crate::vision::BBox;

/// What reading one lane image gives: plate reads, and plate boxes found but not read.
pub type LaneReads = (Vec<PlateRead>, Vec<BBox>);

/// What one frame did.
#[derive(Debug, Default)]
pub struct LaneFrame {
    /// Passages ready to publish.
    pub passages: Vec<Passage>,
    /// Whether the models ran on this frame (else the motion gate found it still).
    pub inferred: bool,
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
    last_reads: LaneReads,
    last_t: f64,
}

impl PlateLane {
    pub fn new(view: LaneViewConfig, motion: MotionConfig, tracker: TrackerOptions) -> Self {
        Self {
            view: LaneView::new(view, 1, 1),
            gate: MotionGate::new(motion),
            tracker: Tracker::new(tracker),
            last_reads: LaneReads::default(),
            last_t: f64::NEG_INFINITY,
        }
    }

    /// Takes the frame at stream time `t`: reads its lane with `read` (or reuses the last reads
    /// when the motion gate finds the lane still, so tracks behave as if it had been read) and
    /// tracks the reads. A frame earlier than the last one means a recorded stream started over:
    /// what the previous run left open is closed first and its passages returned with this
    /// frame's. On a read error nothing is tracked and the error is returned.
    pub fn on_frame(
        &mut self,
        frame: &Mat,
        t: f64,
        read: &mut dyn FnMut(&Mat) -> Result<LaneReads>,
    ) -> Result<LaneFrame> {
        let mut out = LaneFrame::default();
        if t < self.last_t {
            out.passages = self.tracker.flush();
        }
        self.last_t = t;
        let t_gate = Instant::now();
        let lane = self.view.cut(frame)?;
        let must_read = self.gate.should_read(&lane, t)?;
        out.gate = t_gate.elapsed();
        if must_read {
            let t_read = Instant::now();
            let (reads, unread) = read(&lane)?;
            out.read = t_read.elapsed();
            out.inferred = true;
            self.last_reads = (self.view.place(reads), self.view.place_boxes(&unread));
        }
        let t_track = Instant::now();
        let (reads, unread) = &self.last_reads;
        out.passages
            .extend(self.tracker.update_with_unread(t, reads, unread));
        out.track = t_track.elapsed();
        Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plate::grammar::Region;
    use opencv::core::{Scalar, CV_8UC3};

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
        PlateLane::new(
            LaneViewConfig::default(),
            MotionConfig {
                enabled: motion,
                ..MotionConfig::default()
            },
            TrackerOptions {
                confirm_frames: 3,
                lost_after: 1.0,
                min_iou: 0.2,
                settle: 2.0,
            },
        )
    }

    #[test]
    fn still_frames_reuse_the_last_reads_and_count_as_reads_for_the_tracker() {
        let mut lane = lane(true);
        let mut calls = 0;
        let mut reader = |_: &Mat| {
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
        let mut reader = |_: &Mat| Ok((vec![read("29C123456")], vec![]));
        let img = image(80.0);
        // One read only: not confirmed while open.
        assert!(lane
            .on_frame(&img, 5.0, &mut reader)
            .unwrap()
            .passages
            .is_empty());
        // The recording restarts at t = 0: the open track is closed and published.
        let mut empty = |_: &Mat| Ok(LaneReads::default());
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
        let mut failing = |_: &Mat| anyhow::bail!("model failed");
        let err = lane.on_frame(&image(10.0), 0.0, &mut failing).unwrap_err();
        assert!(err.to_string().contains("model failed"));
        assert!(lane.finish().is_empty());
        assert!(lane.take_closed().is_empty());
    }

    #[test]
    fn closing_the_lane_flushes_a_track_still_in_view() {
        let mut lane = lane(false);
        let mut reader = |_: &Mat| Ok((vec![read("51A12345")], vec![]));
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
}
