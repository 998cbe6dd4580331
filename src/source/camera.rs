//! Runs a frame source on its own thread and hands frames to the pipeline.
//!
//! A broken source is reopened with exponential backoff (1 s doubling to 30 s) and reported; it
//! never ends the process. Frames pass through a [`FrameSlot`]: with [`Handoff::Newest`] a new
//! frame replaces one the pipeline has not taken yet (counted as dropped), so a slow pipeline
//! always works on the newest picture; with [`Handoff::Every`] the source waits instead.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Frame, FrameSource, SourceError};
use crate::config::{AtEnd, Handoff};
// Every source's errors are logged through `redact::text`: a source that quotes its URL (or an
// OpenCV message that does) cannot put camera credentials in the journal.
use crate::redact;

/// Counters of one camera, shared with the status reporter.
#[derive(Debug, Default)]
pub struct CameraHealth {
    pub up: AtomicBool,
    pub frames: AtomicU64,
    pub dropped: AtomicU64,
    pub bad_frames: AtomicU64,
    pub reconnects: AtomicU64,
}

impl CameraHealth {
    /// A JSON summary for status messages.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "up": self.up.load(Ordering::Relaxed),
            "frames": self.frames.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "bad_frames": self.bad_frames.load(Ordering::Relaxed),
            "reconnects": self.reconnects.load(Ordering::Relaxed),
        })
    }
}

struct SlotState {
    frame: Option<Frame>,
    closed: bool,
}

/// What [`FrameSlot::take_timeout`] found.
pub enum Taken {
    Frame(Frame),
    Timeout,
    Closed,
}

/// A one-frame hand-over point between a camera thread and its pipeline.
pub struct FrameSlot {
    state: Mutex<SlotState>,
    changed: Condvar,
    handoff: Handoff,
}

impl FrameSlot {
    pub fn new(handoff: Handoff) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(SlotState {
                frame: None,
                closed: false,
            }),
            changed: Condvar::new(),
            handoff,
        })
    }

    /// Offers a frame; returns whether an untaken frame was dropped to make room.
    pub fn put(&self, frame: Frame, stop: &AtomicBool) -> bool {
        let mut s = self.state.lock().expect("slot lock");
        if self.handoff == Handoff::Every {
            while s.frame.is_some() && !s.closed && !stop.load(Ordering::Relaxed) {
                s = self
                    .changed
                    .wait_timeout(s, Duration::from_millis(100))
                    .expect("slot lock")
                    .0;
            }
        }
        let dropped = s.frame.replace(frame).is_some();
        self.changed.notify_all();
        dropped
    }

    /// Takes the waiting frame, blocking until one comes; `None` once closed and drained.
    pub fn take(&self) -> Option<Frame> {
        let mut s = self.state.lock().expect("slot lock");
        loop {
            if let Some(f) = s.frame.take() {
                self.changed.notify_all();
                return Some(f);
            }
            if s.closed {
                return None;
            }
            s = self.changed.wait(s).expect("slot lock");
        }
    }

    /// Like [`take`](Self::take) but gives up after `timeout`.
    pub fn take_timeout(&self, timeout: Duration) -> Taken {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock().expect("slot lock");
        loop {
            if let Some(f) = s.frame.take() {
                self.changed.notify_all();
                return Taken::Frame(f);
            }
            if s.closed {
                return Taken::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Taken::Timeout;
            }
            s = self
                .changed
                .wait_timeout(s, deadline - now)
                .expect("slot lock")
                .0;
        }
    }

    /// Marks the end of the stream: `take` returns what is left, then `None`.
    pub fn close(&self) {
        self.state.lock().expect("slot lock").closed = true;
        self.changed.notify_all();
    }
}

/// How a camera thread runs.
#[derive(Debug, Clone)]
pub struct CameraOptions {
    pub id: String,
    pub at_end: AtEnd,
    /// Cap on frames per second handed over (also the replay pace of recorded input).
    pub max_fps: Option<f64>,
    pub backoff_start: Duration,
    pub backoff_max: Duration,
}

/// Starts the camera thread. It ends when `stop` is set or, with `AtEnd::Stop`, at end of stream;
/// either way it closes the slot.
pub fn spawn(
    mut source: Box<dyn FrameSource>,
    opts: CameraOptions,
    slot: Arc<FrameSlot>,
    health: Arc<CameraHealth>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("cam-{}", opts.id))
        .spawn(move || {
            run(source.as_mut(), &opts, &slot, &health, &stop);
            health.up.store(false, Ordering::Relaxed);
            slot.close();
        })
}

fn run(
    source: &mut dyn FrameSource,
    opts: &CameraOptions,
    slot: &FrameSlot,
    health: &CameraHealth,
    stop: &AtomicBool,
) {
    let mut backoff = opts.backoff_start;
    let mut first_open = true;
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = source.open() {
            health.up.store(false, Ordering::Relaxed);
            tracing::warn!(camera = %opts.id, error = %redact::text(&e.to_string()), retry_in_s = backoff.as_secs_f64(), "camera unavailable");
            sleep_unless_stopped(backoff, stop);
            backoff = (backoff * 2).min(opts.backoff_max);
            continue;
        }
        if !first_open {
            health.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first_open = false;
        health.up.store(true, Ordering::Relaxed);
        tracing::info!(camera = %opts.id, "camera streaming");
        // Recorded input is paced at its own rate unless every frame is wanted; live input paces itself.
        let pace = opts
            .max_fps
            .or_else(|| (!source.is_live()).then(|| source.fps()).flatten());
        let pace = if slot.handoff == Handoff::Every && !source.is_live() {
            opts.max_fps
        } else {
            pace
        };
        let started = Instant::now();
        let mut first_t: Option<f64> = None;
        let mut last_handed: Option<f64> = None;
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match source.next_frame() {
                Ok(Some(frame)) => {
                    // Folder images are checked before decoding; a stream or video file of an
                    // absurd size is stopped here, before the pipeline scales it.
                    use opencv::prelude::MatTraitConst;
                    let (w, h) = (frame.image.cols(), frame.image.rows());
                    if let Err(e) =
                        crate::vision::check_image_size(w.max(0) as u32, h.max(0) as u32)
                    {
                        health.bad_frames.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(camera = %opts.id, error = %e, "bad frame skipped");
                        continue;
                    }
                    backoff = opts.backoff_start;
                    health.frames.fetch_add(1, Ordering::Relaxed);
                    if let Some(fps) = pace {
                        let t0 = *first_t.get_or_insert(frame.t);
                        if !source.is_live() {
                            // Replay recorded input in real time.
                            let due = Duration::from_secs_f64(((frame.t - t0) * 1.0).max(0.0));
                            if let Some(wait) = due.checked_sub(started.elapsed()) {
                                sleep_unless_stopped(wait, stop);
                            }
                        } else if last_handed.is_some_and(|t| frame.t - t < 1.0 / fps) {
                            continue;
                        }
                    }
                    last_handed = Some(frame.t);
                    if slot.put(frame, stop) {
                        health.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(None) => match opts.at_end {
                    AtEnd::Stop => {
                        tracing::info!(camera = %opts.id, "end of stream; camera stopped");
                        return;
                    }
                    AtEnd::Restart => {
                        tracing::debug!(camera = %opts.id, "end of stream; restarting");
                        break;
                    }
                },
                Err(SourceError::BadFrame(why)) => {
                    health.bad_frames.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(camera = %opts.id, error = %redact::text(&why), "bad frame skipped");
                }
                Err(SourceError::Lost(why)) => {
                    health.up.store(false, Ordering::Relaxed);
                    tracing::warn!(camera = %opts.id, error = %redact::text(&why), retry_in_s = backoff.as_secs_f64(), "camera lost");
                    sleep_unless_stopped(backoff, stop);
                    backoff = (backoff * 2).min(opts.backoff_max);
                    break;
                }
            }
        }
    }
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceResult;
    use opencv::core::{Mat, Scalar, CV_8UC3};

    /// A scripted source: each open gives the next batch; `None` entries mean "lost".
    struct Scripted {
        batches: Vec<Option<usize>>,
        current: usize,
        opened: usize,
    }

    impl FrameSource for Scripted {
        fn open(&mut self) -> Result<(), SourceError> {
            let b = self.batches.get(self.opened).cloned().flatten();
            self.opened += 1;
            match b {
                Some(n) => {
                    self.current = n;
                    Ok(())
                }
                None => Err(SourceError::Lost("scripted outage".into())),
            }
        }
        fn next_frame(&mut self) -> SourceResult {
            if self.current == 0 {
                return if self.opened >= self.batches.len() {
                    Ok(None)
                } else {
                    Err(SourceError::Lost("gone".into()))
                };
            }
            self.current -= 1;
            Ok(Some(Frame {
                image: Mat::new_rows_cols_with_default(16, 16, CV_8UC3, Scalar::all(0.0)).unwrap(),
                t: 0.0,
                captured_at: chrono::Utc::now(),
                index: 0,
            }))
        }
        fn is_live(&self) -> bool {
            true
        }
        fn fps(&self) -> Option<f64> {
            None
        }
    }

    #[test]
    fn a_camera_that_disappears_comes_back_and_nothing_is_lost_with_every_handoff() {
        // 3 frames, camera lost, two failed opens, then 2 frames and end.
        let src = Scripted {
            batches: vec![Some(3), None, None, Some(2)],
            current: 0,
            opened: 0,
        };
        let slot = FrameSlot::new(Handoff::Every);
        let health = Arc::new(CameraHealth::default());
        let stop = Arc::new(AtomicBool::new(false));
        let opts = CameraOptions {
            id: "t".into(),
            at_end: AtEnd::Stop,
            max_fps: None,
            backoff_start: Duration::from_millis(5),
            backoff_max: Duration::from_millis(20),
        };
        let h = spawn(Box::new(src), opts, slot.clone(), health.clone(), stop).unwrap();
        let mut n = 0;
        while slot.take().is_some() {
            n += 1;
        }
        h.join().unwrap();
        assert_eq!(n, 5);
        assert_eq!(health.reconnects.load(Ordering::Relaxed), 1);
        assert_eq!(health.dropped.load(Ordering::Relaxed), 0);
        assert!(!health.up.load(Ordering::Relaxed));
    }

    #[test]
    fn newest_handoff_drops_and_counts_stale_frames() {
        let slot = FrameSlot::new(Handoff::Newest);
        let stop = AtomicBool::new(false);
        let frame = |i| Frame {
            image: Mat::default(),
            t: i as f64,
            captured_at: chrono::Utc::now(),
            index: i,
        };
        assert!(!slot.put(frame(1), &stop));
        assert!(slot.put(frame(2), &stop));
        assert_eq!(slot.take().unwrap().index, 2);
        slot.close();
        assert!(slot.take().is_none());
    }
}
