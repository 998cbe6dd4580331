//! V4L2 capture devices (USB and CSI cameras) through the `v4l` crate, MJPEG or YUYV.
//!
//! The device is asked for MJPEG first (less USB bandwidth at 1080p), then YUYV. Buffer
//! conversion is a separate function so it is tested on recorded buffers without a device.

use chrono::Utc;
use opencv::core::{Mat, CV_8UC2};
use opencv::imgproc;
use opencv::prelude::*;
use std::path::PathBuf;
use std::time::Duration;
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::{Frame, FrameSource, SourceError, SourceResult};
use crate::vision;

/// Pixel formats gatewatch can convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Mjpeg,
    Yuyv,
}

impl PixelFormat {
    fn fourcc(self) -> FourCC {
        match self {
            PixelFormat::Mjpeg => FourCC::new(b"MJPG"),
            PixelFormat::Yuyv => FourCC::new(b"YUYV"),
        }
    }
}

/// Converts one captured buffer to a BGR frame.
pub fn convert_buffer(
    format: PixelFormat,
    width: u32,
    height: u32,
    buf: &[u8],
) -> anyhow::Result<Mat> {
    match format {
        PixelFormat::Mjpeg => vision::decode_image(buf),
        PixelFormat::Yuyv => {
            let need = width as usize * height as usize * 2;
            anyhow::ensure!(
                buf.len() >= need,
                "YUYV buffer has {} bytes, {width}x{height} needs {need}",
                buf.len()
            );
            let packed =
                Mat::new_rows_cols_with_data(height as i32, width as i32 * 2, &buf[..need])?;
            let yuyv = packed.reshape(2, height as i32)?;
            debug_assert_eq!(yuyv.typ(), CV_8UC2);
            let mut bgr = Mat::default();
            imgproc::cvt_color_def(&yuyv, &mut bgr, imgproc::COLOR_YUV2BGR_YUYV)?;
            Ok(bgr)
        }
    }
}

/// A V4L2 capture device.
pub struct V4l2Source {
    path: PathBuf,
    stream: Option<Stream<'static>>,
    format: Option<(PixelFormat, u32, u32)>,
    index: u64,
}

impl V4l2Source {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            stream: None,
            format: None,
            index: 0,
        }
    }
}

impl FrameSource for V4l2Source {
    fn open(&mut self) -> Result<(), SourceError> {
        self.stream = None;
        let lost = |what: &str, e: std::io::Error| {
            SourceError::Lost(format!("{}: {what}: {e}", self.path.display()))
        };
        let dev = Device::with_path(&self.path).map_err(|e| lost("cannot open device", e))?;
        let mut chosen = None;
        for pf in [PixelFormat::Mjpeg, PixelFormat::Yuyv] {
            let mut fmt = dev.format().map_err(|e| lost("cannot read format", e))?;
            fmt.fourcc = pf.fourcc();
            if let Ok(got) = dev.set_format(&fmt) {
                if got.fourcc == pf.fourcc() {
                    chosen = Some((pf, got.width, got.height));
                    break;
                }
            }
        }
        let chosen = chosen.ok_or_else(|| {
            SourceError::Lost(format!(
                "{} offers neither MJPEG nor YUYV",
                self.path.display()
            ))
        })?;
        let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, 4)
            .map_err(|e| lost("cannot start streaming", e))?;
        stream.set_timeout(Duration::from_secs(5));
        self.stream = Some(stream);
        self.format = Some(chosen);
        self.index = 0;
        Ok(())
    }

    fn next_frame(&mut self) -> SourceResult {
        let (stream, (pf, w, h)) = match (self.stream.as_mut(), self.format) {
            (Some(s), Some(f)) => (s, f),
            _ => return Err(SourceError::Lost("not open".into())),
        };
        let (buf, meta) = stream.next().map_err(|e| {
            SourceError::Lost(format!("{}: capture failed: {e}", self.path.display()))
        })?;
        let used = (meta.bytesused as usize).min(buf.len());
        let image = convert_buffer(pf, w, h, &buf[..used])
            .map_err(|e| SourceError::BadFrame(format!("{e:#}")))?;
        self.index += 1;
        Ok(Some(Frame {
            image,
            t: super::process_clock(),
            captured_at: Utc::now(),
            index: self.index,
        }))
    }

    fn is_live(&self) -> bool {
        true
    }

    fn fps(&self) -> Option<f64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Scalar, Vector, CV_8UC3};

    #[test]
    fn yuyv_buffer_converts_to_bgr() {
        // 4x2 YUYV of mid grey (Y=128, U=V=128) → grey BGR.
        let buf = [128u8; 4 * 2 * 2];
        let m = convert_buffer(PixelFormat::Yuyv, 4, 2, &buf).unwrap();
        assert_eq!((m.cols(), m.rows(), m.typ()), (4, 2, CV_8UC3));
        let px = m.at_2d::<opencv::core::Vec3b>(1, 3).unwrap();
        for c in 0..3 {
            assert!((px[c] as i32 - 128).abs() <= 2, "{px:?}");
        }
        assert!(convert_buffer(PixelFormat::Yuyv, 4, 2, &buf[..10]).is_err());
    }

    #[test]
    fn mjpeg_buffer_converts_and_corrupt_is_an_error() {
        let img =
            Mat::new_rows_cols_with_default(16, 24, CV_8UC3, Scalar::new(0.0, 0.0, 255.0, 0.0))
                .unwrap();
        let mut jpeg = Vector::<u8>::new();
        opencv::imgcodecs::imencode_def(".jpg", &img, &mut jpeg).unwrap();
        let m = convert_buffer(PixelFormat::Mjpeg, 24, 16, jpeg.as_slice()).unwrap();
        assert_eq!((m.cols(), m.rows()), (24, 16));
        let px = m.at_2d::<opencv::core::Vec3b>(8, 12).unwrap();
        assert!(px[2] > 240 && px[0] < 15, "{px:?}");
        assert!(convert_buffer(PixelFormat::Mjpeg, 24, 16, &jpeg.as_slice()[..20]).is_err());
    }
}
