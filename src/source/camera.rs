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

use super::{AtEnd, Frame, FrameSource, Handoff, SourceError};
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
    /// When the source last gave something (opened, a frame, a bad frame), in ms of [`mono_ms`].
    last_progress_ms: AtomicU64,
    /// How long without progress makes an open source stalled (0: not open yet).
    stall_after_ms: AtomicU64,
}

/// A source that gives nothing for this long (or three frame intervals of a slow one) is stalled:
/// reported `up: false` although it never reported an error (a read blocked on a dead stream).
pub const STALL_AFTER: Duration = Duration::from_secs(10);

/// Milliseconds on a monotonic clock that starts with the process.
fn mono_ms(at: Instant) -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    at.saturating_duration_since(start).as_millis() as u64
}

impl CameraHealth {
    /// The source gave something: a frame (good or bad) or a successful open.
    fn progressed(&self) {
        self.last_progress_ms
            .store(mono_ms(Instant::now()), Ordering::Relaxed);
    }

    /// The source is open and expected to deliver a frame at least every `interval`.
    fn opened(&self, interval: Option<Duration>) {
        let stall_after = interval.map_or(STALL_AFTER, |i| STALL_AFTER.max(i * 3));
        self.stall_after_ms
            .store(stall_after.as_millis() as u64, Ordering::Relaxed);
        self.progressed();
        self.up.store(true, Ordering::Relaxed);
    }

    /// Seconds since the source last gave something, when it is open and has been silent for
    /// longer than its stall limit.
    pub fn stalled_for(&self, now: Instant) -> Option<f64> {
        let limit = self.stall_after_ms.load(Ordering::Relaxed);
        if !self.up.load(Ordering::Relaxed) || limit == 0 {
            return None;
        }
        let silent = mono_ms(now).saturating_sub(self.last_progress_ms.load(Ordering::Relaxed));
        (silent > limit).then(|| silent as f64 / 1000.0)
    }

    /// A JSON summary for status messages.
    pub fn snapshot(&self) -> serde_json::Value {
        self.snapshot_at(Instant::now())
    }

    /// [`snapshot`](Self::snapshot) as of `now`.
    pub fn snapshot_at(&self, now: Instant) -> serde_json::Value {
        let stalled = self.stalled_for(now);
        let mut v = serde_json::json!({
            "up": self.up.load(Ordering::Relaxed) && stalled.is_none(),
            "frames": self.frames.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "bad_frames": self.bad_frames.load(Ordering::Relaxed),
            "reconnects": self.reconnects.load(Ordering::Relaxed),
        });
        if let Some(s) = stalled {
            v["stalled_s"] = ((s * 10.0).round() / 10.0).into();
        }
        v
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
    // Whether the next successful open is a reconnection (after a lost source or a failed open).
    // The restart of a looping file or folder is not one, and is not announced either.
    let mut reconnecting = false;
    let mut announce = true;
    let mut bad_log = LogLimiter::new(BAD_FRAME_LOGS, BAD_FRAME_LOG_WINDOW);
    let mut bad_frame = |why: &str| {
        health.bad_frames.fetch_add(1, Ordering::Relaxed);
        if let Some(held_back) = bad_log.allow(Instant::now()) {
            tracing::warn!(camera = %opts.id, error = %redact::text(why), held_back, "bad frame skipped");
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = source.open() {
            health.up.store(false, Ordering::Relaxed);
            tracing::warn!(camera = %opts.id, error = %redact::text(&e.to_string()), retry_in_s = backoff.as_secs_f64(), "camera unavailable");
            sleep_unless_stopped(backoff, stop);
            backoff = (backoff * 2).min(opts.backoff_max);
            reconnecting = true;
            announce = true;
            continue;
        }
        if reconnecting {
            health.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        reconnecting = false;
        let interval = opts
            .max_fps
            .or_else(|| source.fps())
            .filter(|fps| *fps > 0.0)
            .map(|fps| Duration::from_secs_f64(1.0 / fps));
        health.opened(interval);
        if announce {
            tracing::info!(camera = %opts.id, "camera streaming");
            announce = false;
        }
        // Recorded input is paced at its own rate unless every frame is wanted; live input paces itself.
        let pace = opts
            .max_fps
            .or_else(|| (!source.is_live()).then(|| source.fps()).flatten());
        let pace = if slot.handoff == Handoff::Every && !source.is_live() {
            opts.max_fps
        } else {
            pace
        };
        let mut replay = pace
            .filter(|_| !source.is_live())
            .map(|fps| Pacer::new(fps, Instant::now()));
        let mut last_handed: Option<f64> = None;
        let mut yielded = false;
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let next = source.next_frame();
            health.progressed();
            match next {
                Ok(Some(frame)) => {
                    // Folder images are checked before decoding; a stream or video file of an
                    // absurd size is stopped here, before the pipeline scales it.
                    use opencv::prelude::MatTraitConst;
                    let (w, h) = (frame.image.cols(), frame.image.rows());
                    if let Err(e) =
                        crate::vision::check_image_size(w.max(0) as u32, h.max(0) as u32)
                    {
                        bad_frame(&e.to_string());
                        if let Some(p) = replay.as_mut() {
                            sleep_until_unless_stopped(p.bad(), stop);
                        }
                        continue;
                    }
                    yielded = true;
                    backoff = opts.backoff_start;
                    health.frames.fetch_add(1, Ordering::Relaxed);
                    if let Some(p) = replay.as_mut() {
                        // Replay recorded input in real time.
                        sleep_until_unless_stopped(p.frame(frame.t), stop);
                    } else if let Some(fps) = pace {
                        if last_handed.is_some_and(|t| frame.t - t < 1.0 / fps) {
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
                    AtEnd::Restart if !yielded => {
                        // Nothing usable in a whole pass (every image corrupt, an empty video):
                        // back off as for a lost source instead of spinning on it.
                        health.up.store(false, Ordering::Relaxed);
                        tracing::warn!(camera = %opts.id, retry_in_s = backoff.as_secs_f64(), "no usable frame in a whole pass of the source; restarting later");
                        sleep_unless_stopped(backoff, stop);
                        backoff = (backoff * 2).min(opts.backoff_max);
                        break;
                    }
                    AtEnd::Restart => {
                        // The next pass starts one frame interval after this one's last frame,
                        // so a looping one-image folder still runs at its fps.
                        if let Some(p) = &replay {
                            sleep_until_unless_stopped(p.pass_end(), stop);
                        }
                        tracing::debug!(camera = %opts.id, "end of stream; restarting");
                        break;
                    }
                },
                Err(SourceError::BadFrame(why)) => {
                    bad_frame(&why);
                    // A bad image keeps its slot in the replay: a folder of corrupt files is
                    // read at its fps, not as fast as the disk allows.
                    if let Some(p) = replay.as_mut() {
                        sleep_until_unless_stopped(p.bad(), stop);
                    }
                }
                Err(SourceError::Lost(why)) => {
                    health.up.store(false, Ordering::Relaxed);
                    tracing::warn!(camera = %opts.id, error = %redact::text(&why), retry_in_s = backoff.as_secs_f64(), "camera lost");
                    sleep_unless_stopped(backoff, stop);
                    backoff = (backoff * 2).min(opts.backoff_max);
                    reconnecting = true;
                    announce = true;
                    break;
                }
            }
        }
    }
}

/// Bad-frame warnings let through per window; the rest are counted (`bad_frames` in status) and
/// the next warning says how many were held back.
const BAD_FRAME_LOGS: u32 = 10;
const BAD_FRAME_LOG_WINDOW: Duration = Duration::from_secs(60);

/// Replay pacing of recorded input within one pass: every item, frame or bad frame, has a slot on
/// the stream's clock, mapped to the wall clock from the pass's start.
#[derive(Debug)]
struct Pacer {
    interval: f64,
    start: Instant,
    /// Stream time of the pass's first item (a video may not start at 0).
    origin: Option<f64>,
    /// Stream time of the next item's slot.
    next: f64,
}

impl Pacer {
    fn new(fps: f64, start: Instant) -> Pacer {
        Pacer {
            interval: 1.0 / fps,
            start,
            origin: None,
            next: 0.0,
        }
    }

    fn at(&self, t: f64) -> Instant {
        let origin = self.origin.unwrap_or(t);
        self.start + Duration::from_secs_f64((t - origin).clamp(0.0, 86_400.0))
    }

    /// When the frame at stream time `t` is due.
    fn frame(&mut self, t: f64) -> Instant {
        self.origin.get_or_insert(t);
        self.next = t + self.interval;
        self.at(t)
    }

    /// When a bad item in the next slot is done with.
    fn bad(&mut self) -> Instant {
        self.origin.get_or_insert(self.next);
        self.next += self.interval;
        self.at(self.next)
    }

    /// When the next pass may start: the slot after the last item.
    fn pass_end(&self) -> Instant {
        self.at(self.next)
    }
}

/// Lets `burst` messages through per `window` and counts those it holds back.
#[derive(Debug)]
struct LogLimiter {
    burst: u32,
    window: Duration,
    window_start: Option<Instant>,
    sent: u32,
    held_back: u64,
}

impl LogLimiter {
    fn new(burst: u32, window: Duration) -> LogLimiter {
        LogLimiter {
            burst,
            window,
            window_start: None,
            sent: 0,
            held_back: 0,
        }
    }

    /// `Some(messages held back since the last one let through)` when this one may be logged.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .window_start
            .is_none_or(|s| now.duration_since(s) >= self.window)
        {
            self.window_start = Some(now);
            self.sent = 0;
        }
        if self.sent < self.burst {
            self.sent += 1;
            Some(std::mem::take(&mut self.held_back))
        } else {
            self.held_back += 1;
            None
        }
    }
}

fn sleep_until_unless_stopped(at: Instant, stop: &AtomicBool) {
    if let Some(d) = at.checked_duration_since(Instant::now()) {
        sleep_unless_stopped(d, stop);
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

    /// A recorded source: each pass gives `items` (true: an image, false: a corrupt file) at `fps`.
    struct Looping {
        items: Vec<bool>,
        next: usize,
        fps: f64,
    }

    impl FrameSource for Looping {
        fn open(&mut self) -> Result<(), SourceError> {
            self.next = 0;
            Ok(())
        }
        fn next_frame(&mut self) -> SourceResult {
            let Some(&good) = self.items.get(self.next) else {
                return Ok(None);
            };
            self.next += 1;
            if !good {
                return Err(SourceError::BadFrame("corrupt".into()));
            }
            Ok(Some(Frame {
                image: Mat::new_rows_cols_with_default(16, 16, CV_8UC3, Scalar::all(0.0)).unwrap(),
                t: (self.next - 1) as f64 / self.fps,
                captured_at: chrono::Utc::now(),
                index: self.next as u64,
            }))
        }
        fn is_live(&self) -> bool {
            false
        }
        fn fps(&self) -> Option<f64> {
            Some(self.fps)
        }
    }

    /// Runs a looping source for `seconds` with a consumer taking every frame; returns its health.
    fn run_looping(items: Vec<bool>, fps: f64, seconds: f64) -> Arc<CameraHealth> {
        let slot = FrameSlot::new(Handoff::Newest);
        let health = Arc::new(CameraHealth::default());
        let stop = Arc::new(AtomicBool::new(false));
        let opts = CameraOptions {
            id: "t".into(),
            at_end: AtEnd::Restart,
            max_fps: None,
            backoff_start: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
        };
        let src = Looping {
            items,
            next: 0,
            fps,
        };
        let h = spawn(
            Box::new(src),
            opts,
            slot.clone(),
            health.clone(),
            stop.clone(),
        )
        .unwrap();
        let taker = {
            let slot = slot.clone();
            std::thread::spawn(move || while slot.take().is_some() {})
        };
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        taker.join().unwrap();
        health
    }

    #[test]
    fn a_looping_one_image_folder_keeps_its_fps_and_restarts_are_not_reconnects() {
        let health = run_looping(vec![true], 10.0, 1.0);
        let frames = health.frames.load(Ordering::Relaxed);
        // 10 frames in 1 s; generous bounds for a loaded machine (it spun at hundreds before).
        assert!(
            (6..=14).contains(&frames),
            "{frames} frames in 1 s at 10 fps"
        );
        assert_eq!(health.reconnects.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_pass_without_a_usable_frame_backs_off() {
        let health = run_looping(vec![false], 10.0, 1.0);
        let bad = health.bad_frames.load(Ordering::Relaxed);
        // Passes at about 0, 0.2, 0.5 and 1.0 s (backoff 0.1, 0.2, 0.4 s after the file's slot).
        assert!((1..=6).contains(&bad), "{bad} passes in 1 s");
        assert_eq!(health.reconnects.load(Ordering::Relaxed), 0);
        assert_eq!(health.frames.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn replay_slots_count_bad_items_and_the_next_pass_waits_one_interval() {
        let s = Instant::now();
        let ms = |i: Instant| i.duration_since(s).as_millis();
        let mut p = Pacer::new(2.0, s);
        assert_eq!(ms(p.frame(0.0)), 0);
        assert_eq!(
            ms(p.pass_end()),
            500,
            "one image at 2 fps: next pass after 0.5 s"
        );
        let mut p = Pacer::new(2.0, s);
        assert_eq!(ms(p.bad()), 500, "a corrupt first file takes its slot");
        assert_eq!(ms(p.frame(0.5)), 500);
        assert_eq!(ms(p.bad()), 1500);
        assert_eq!(ms(p.pass_end()), 1500);
        // A video whose stream time does not start at 0.
        let mut p = Pacer::new(25.0, s);
        assert_eq!(ms(p.frame(3600.0)), 0);
        assert_eq!(ms(p.frame(3600.2)), 200);
    }

    #[test]
    fn log_limiter_lets_a_burst_through_per_window_and_counts_the_rest() {
        let s = Instant::now();
        let mut l = LogLimiter::new(2, Duration::from_secs(60));
        assert_eq!(l.allow(s), Some(0));
        assert_eq!(l.allow(s), Some(0));
        assert_eq!(l.allow(s), None);
        assert_eq!(l.allow(s + Duration::from_secs(59)), None);
        assert_eq!(l.allow(s + Duration::from_secs(61)), Some(2));
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

    /// A live source whose second read blocks until the test lets it go (a dead stream).
    struct Hanging {
        reads: usize,
        release: std::sync::mpsc::Receiver<()>,
    }

    impl FrameSource for Hanging {
        fn open(&mut self) -> Result<(), SourceError> {
            Ok(())
        }
        fn next_frame(&mut self) -> SourceResult {
            self.reads += 1;
            if self.reads > 1 {
                let _ = self.release.recv();
                return Ok(None);
            }
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
            Some(25.0)
        }
    }

    #[test]
    fn a_camera_blocked_in_a_read_is_reported_stalled_not_up() {
        let (release, rx) = std::sync::mpsc::channel();
        let slot = FrameSlot::new(Handoff::Newest);
        let health = Arc::new(CameraHealth::default());
        let stop = Arc::new(AtomicBool::new(false));
        let opts = CameraOptions {
            id: "t".into(),
            at_end: AtEnd::Stop,
            max_fps: None,
            backoff_start: Duration::from_millis(5),
            backoff_max: Duration::from_millis(20),
        };
        let src = Hanging {
            reads: 0,
            release: rx,
        };
        let h = spawn(Box::new(src), opts, slot.clone(), health.clone(), stop).unwrap();
        assert!(slot.take().is_some(), "the first frame");
        // The camera thread is now blocked in its second read. Judged as of later instants
        // rather than by waiting, so the test does not depend on the machine's speed.
        let now = Instant::now();
        let fresh = health.snapshot_at(now);
        assert_eq!(fresh["up"], true);
        assert!(fresh.get("stalled_s").is_none());
        let later = health.snapshot_at(now + STALL_AFTER + Duration::from_secs(2));
        assert_eq!(later["up"], false, "{later}");
        assert!(later["stalled_s"].as_f64().unwrap() >= STALL_AFTER.as_secs_f64());
        release.send(()).unwrap();
        h.join().unwrap();
        assert_eq!(
            health.stalled_for(now + Duration::from_secs(3600)),
            None,
            "ended, not stalled"
        );
    }

    #[test]
    fn a_slow_source_gets_three_frame_intervals_before_it_is_stalled() {
        let health = CameraHealth::default();
        let start = Instant::now();
        health.opened(Some(Duration::from_secs(20)));
        assert_eq!(health.stalled_for(start + Duration::from_secs(59)), None);
        assert!(health
            .stalled_for(start + Duration::from_secs(61))
            .is_some());
        let never_opened = CameraHealth::default();
        assert_eq!(
            never_opened.stalled_for(start + Duration::from_secs(3600)),
            None
        );
    }
}
