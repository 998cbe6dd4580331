//! Frame sources: where frames come from.
//!
//! A [`FrameSource`] yields BGR frames until its stream ends or breaks. [`camera`] runs one on its
//! own thread, reopening it with backoff when it breaks, and hands frames over through a
//! [`camera::FrameSlot`].

pub mod camera;
pub mod capture;
pub mod folder;
pub mod v4l2;

use chrono::{DateTime, Utc};
use opencv::core::Mat;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Seconds since the process started, on a monotonic clock: the stream time of live sources, so
/// it keeps running across reconnects.
pub fn process_clock() -> f64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
}

/// What a file source does when it reaches its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AtEnd {
    /// Start again from the beginning (a looping test feed).
    #[default]
    Restart,
    /// Stop the camera; `run` exits once every camera has stopped and all events are delivered.
    Stop,
}

/// How frames are handed from a camera to its pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Handoff {
    /// Live camera behaviour: the newest frame wins, older unprocessed frames are dropped (counted).
    #[default]
    Newest,
    /// Every frame is processed (the source waits); for recorded input and evaluation.
    Every,
}

/// A frame and when it was taken.
pub struct Frame {
    /// 8-bit BGR image.
    pub image: Mat,
    /// Stream time in seconds: media position for recorded input, time since open for live input.
    /// The tracker runs on this clock, so replays track the same however fast they are processed.
    pub t: f64,
    /// Wall-clock capture time.
    pub captured_at: DateTime<Utc>,
    /// Frame number since the source was opened.
    pub index: u64,
}

/// Why a source could not give a frame.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// This frame is unusable (corrupt file, decode error); the next one may be fine.
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// The source is gone (camera unreachable, device unplugged): reopen it.
    #[error("source lost: {0}")]
    Lost(String),
}

/// What a source gives on each call.
pub type SourceResult = Result<Option<Frame>, SourceError>;

/// A stream of frames. `Ok(None)` means the stream ended (end of file, last image).
pub trait FrameSource: Send {
    /// Opens (or reopens) the source.
    fn open(&mut self) -> Result<(), SourceError>;
    /// The next frame.
    fn next_frame(&mut self) -> SourceResult;
    /// Whether frames arrive at their own pace (cameras) rather than on demand (files).
    fn is_live(&self) -> bool;
    /// The source's natural frame rate, if known.
    fn fps(&self) -> Option<f64>;
}

/// A parsed `camera.url`.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// RTSP/HTTP stream or video file, read through OpenCV's FFmpeg backend.
    Capture { url: String, live: bool },
    /// A folder of images replayed in name order.
    Folder(PathBuf),
    /// A V4L2 device.
    V4l2(PathBuf),
}

impl SourceSpec {
    /// Parses a camera URL; the error says what is allowed.
    pub fn parse(url: &str) -> Result<SourceSpec, String> {
        let url = url.trim();
        if url.is_empty() {
            return Err("is empty: give rtsp://…, http(s)://…, a video file path, folder:DIR or v4l2:/dev/videoN".into());
        }
        if let Some(rest) = url.strip_prefix("folder:") {
            if rest.is_empty() {
                return Err("folder: needs a directory, e.g. folder:/srv/replay".into());
            }
            return Ok(SourceSpec::Folder(PathBuf::from(rest)));
        }
        if let Some(rest) = url.strip_prefix("v4l2:") {
            if !rest.starts_with("/dev/") {
                return Err(format!(
                    "v4l2:{rest} is not a device path: use v4l2:/dev/videoN"
                ));
            }
            return Ok(SourceSpec::V4l2(PathBuf::from(rest)));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return match scheme.to_ascii_lowercase().as_str() {
                "rtsp" | "rtsps" | "http" | "https" => Ok(SourceSpec::Capture { url: url.into(), live: true }),
                "file" => Ok(SourceSpec::Capture {
                    url: url.trim_start_matches("file://").into(),
                    live: false,
                }),
                other => Err(format!(
                    "scheme {other}:// is not supported: use rtsp://, http(s)://, file://, folder:DIR or v4l2:/dev/videoN"
                )),
            };
        }
        Ok(SourceSpec::Capture {
            url: url.into(),
            live: false,
        })
    }

    /// Builds the source. `fps` is the replay rate for folders.
    pub fn build(&self, fps: Option<f64>) -> Box<dyn FrameSource> {
        match self {
            SourceSpec::Capture { url, live } => {
                Box::new(capture::CaptureSource::new(url.clone(), *live))
            }
            SourceSpec::Folder(dir) => {
                Box::new(folder::FolderSource::new(dir.clone(), fps.unwrap_or(5.0)))
            }
            SourceSpec::V4l2(dev) => Box::new(v4l2::V4l2Source::new(dev.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_sources() {
        assert_eq!(
            SourceSpec::parse("rtsp://cam/1").unwrap(),
            SourceSpec::Capture {
                url: "rtsp://cam/1".into(),
                live: true
            }
        );
        assert_eq!(
            SourceSpec::parse("file:///srv/a.mp4").unwrap(),
            SourceSpec::Capture {
                url: "/srv/a.mp4".into(),
                live: false
            }
        );
        assert_eq!(
            SourceSpec::parse("folder:/x").unwrap(),
            SourceSpec::Folder("/x".into())
        );
        assert_eq!(
            SourceSpec::parse("v4l2:/dev/video0").unwrap(),
            SourceSpec::V4l2("/dev/video0".into())
        );
        assert!(SourceSpec::parse("v4l2:video0")
            .unwrap_err()
            .contains("/dev/videoN"));
        assert!(SourceSpec::parse("gopher://x")
            .unwrap_err()
            .contains("not supported"));
        assert!(SourceSpec::parse("").is_err());
    }
}
