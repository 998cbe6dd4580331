//! Video files and network streams (RTSP, HTTP) through OpenCV's FFmpeg backend.

use chrono::Utc;
use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};

use super::{Frame, FrameSource, SourceError, SourceResult};

/// Opening a stream gives up after this long. FFmpeg probes a few seconds of a low-rate stream
/// before it reports the stream open, so this must be well above that probe time: OpenCV's
/// interrupt timer runs from the start of opening and would otherwise cut the first read.
const OPEN_TIMEOUT_MS: i32 = 20_000;
/// A read gives up after this long, so a dead camera cannot hang its thread.
const READ_TIMEOUT_MS: i32 = 10_000;

/// An OpenCV `VideoCapture` source.
pub struct CaptureSource {
    url: String,
    /// The URL as shown in messages: logged on every reconnect attempt, so without credentials.
    shown: String,
    live: bool,
    cap: Option<VideoCapture>,
    index: u64,
}

impl CaptureSource {
    pub fn new(url: String, live: bool) -> Self {
        Self {
            shown: crate::redact::text(&url).into_owned(),
            url,
            live,
            cap: None,
            index: 0,
        }
    }
}

/// Makes FFmpeg use RTSP over TCP (UDP is lossy through gate-side NAT and firewalls) unless the
/// operator set their own options. Call before any capture is opened.
pub fn configure_ffmpeg() {
    if std::env::var_os("OPENCV_FFMPEG_CAPTURE_OPTIONS").is_none() {
        // SAFETY: called once at start-up before any other thread exists.
        unsafe { std::env::set_var("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp") };
    }
}

/// An OpenCV error may quote the URL it was given: masked like ours.
fn lost(message: &str) -> String {
    crate::redact::text(message).into_owned()
}

impl FrameSource for CaptureSource {
    fn open(&mut self) -> Result<(), SourceError> {
        self.cap = None;
        let params = Vector::<i32>::from_slice(&[
            videoio::CAP_PROP_OPEN_TIMEOUT_MSEC,
            OPEN_TIMEOUT_MS,
            videoio::CAP_PROP_READ_TIMEOUT_MSEC,
            READ_TIMEOUT_MS,
        ]);
        let cap = VideoCapture::from_file_with_params(&self.url, videoio::CAP_FFMPEG, &params)
            .map_err(|e| SourceError::Lost(lost(&format!("cannot open {}: {e}", self.shown))))?;
        if !cap.is_opened().unwrap_or(false) {
            return Err(SourceError::Lost(format!(
                "cannot open {} (unreachable, missing or not a video)",
                self.shown
            )));
        }
        self.cap = Some(cap);
        self.index = 0;
        Ok(())
    }

    fn next_frame(&mut self) -> SourceResult {
        let cap = self
            .cap
            .as_mut()
            .ok_or_else(|| SourceError::Lost("not open".into()))?;
        let mut image = Mat::default();
        let ok = cap
            .read(&mut image)
            .map_err(|e| SourceError::Lost(lost(&format!("read from {}: {e}", self.shown))))?;
        if !ok || image.empty() {
            if self.live {
                return Err(SourceError::Lost(format!(
                    "{} stopped sending frames",
                    self.shown
                )));
            }
            return Ok(None);
        }
        let t = if self.live {
            super::process_clock()
        } else {
            cap.get(videoio::CAP_PROP_POS_MSEC).unwrap_or(0.0) / 1000.0
        };
        self.index += 1;
        Ok(Some(Frame {
            image,
            t,
            captured_at: Utc::now(),
            index: self.index,
        }))
    }

    fn is_live(&self) -> bool {
        self.live
    }

    fn fps(&self) -> Option<f64> {
        let fps = self.cap.as_ref()?.get(videoio::CAP_PROP_FPS).ok()?;
        (fps.is_finite() && fps > 0.0 && fps < 1000.0).then_some(fps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtsp_credentials_are_not_in_errors() {
        // Nothing listens on port 9 of loopback: the open fails at once, as at every reconnect.
        let mut src = CaptureSource::new("rtsp://admin:Gate-Secret-42@127.0.0.1:9/s1".into(), true);
        let err = src.open().unwrap_err().to_string();
        assert!(!err.contains("Gate-Secret-42"), "{err}");
        assert!(err.contains("rtsp://admin:***@127.0.0.1:9/s1"), "{err}");
    }
}
