//! QR codes in the lane: decoding (zxing-cpp, chosen by measurement, see `docs/qr.md`) and the
//! payload hygiene every consumer of a read relies on.
//!
//! The decoder is C++ behind FFI and sees hostile input (anything a camera films). Every call is
//! wrapped so that a panic on the Rust side of the binding becomes an error that is counted, and
//! the process keeps serving.

pub mod config;
pub mod eval;
pub mod stage;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use zxingcpp::{BarcodeFormat, BarcodeReader, ImageFormat, ImageView};

/// Payloads longer than this are cut (a QR code holds at most 2953 bytes, so this only guards
/// against a misbehaving decoder).
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// One code found in a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QrRead {
    /// The decoded text with control characters (other than tab and newline) removed; `None`
    /// when the payload is not valid UTF-8 text.
    pub text: Option<String>,
    /// The text exactly as decoded, for evaluation; never published or logged.
    #[serde(skip)]
    pub raw_text: String,
    /// The payload bytes.
    pub bytes: Vec<u8>,
    /// Corners in frame pixels: top left, top right, bottom right, bottom left (of the symbol
    /// as printed, so they also tell its rotation).
    pub corners: [[i32; 2]; 4],
    /// `qr` or `micro_qr`.
    pub symbol: String,
    /// Error-correction level (`L`, `M`, `Q`, `H`) when the decoder reports it.
    pub ecc_level: Option<String>,
    /// Whether the code was light on dark.
    pub inverted: bool,
}

/// Decoder counters.
#[derive(Debug, Default)]
pub struct DecoderStats {
    pub frames: AtomicU64,
    pub codes: AtomicU64,
    /// Decoder failures (errors and caught panics): the frame is skipped.
    pub failures: AtomicU64,
}

/// A QR decoder. Not `Send` (it owns C++ state): make one per thread.
///
/// A frame goes through up to three passes, the later ones only when the earlier found nothing
/// (measured in `docs/qr.md`): zxing-cpp at full resolution for dark-on-light codes, then on a
/// half-size copy (frames over 1.2 MP) the global-histogram binarizer and a blurred copy, both
/// also looking for light-on-dark codes. A frame without a code, the common case in a lane, pays
/// for all three, so each is chosen for what it adds per millisecond: zxing-cpp's own inverted
/// pass and downscale pyramid cost 1.1 and 2.8 ms per 1080p frame and found nothing the retries
/// do not.
pub struct QrDecoder {
    reader: BarcodeReader,
    /// Second attempt with the global-histogram binarizer, for low-contrast prints.
    global: BarcodeReader,
    /// Third attempt, on a blurred copy.
    blurred: BarcodeReader,
    fallbacks: bool,
    stats: std::sync::Arc<DecoderStats>,
}

impl QrDecoder {
    /// The product's decoder for QR and Micro QR codes: see the type's documentation.
    pub fn new() -> QrDecoder {
        QrDecoder {
            reader: Self::reader().try_invert(false),
            global: Self::reader().binarizer(zxingcpp::Binarizer::GlobalHistogram),
            blurred: Self::reader(),
            fallbacks: true,
            stats: Default::default(),
        }
    }

    /// zxing-cpp alone as its authors recommend for camera frames (try harder, try inverted,
    /// downscale pyramid), without gatewatch's passes: the reference the product is measured
    /// against.
    pub fn zxing_only() -> QrDecoder {
        QrDecoder {
            reader: Self::reader().try_downscale(true),
            global: Self::reader(),
            blurred: Self::reader(),
            fallbacks: false,
            stats: Default::default(),
        }
    }

    /// Try harder (without it, small codes in 1080p frames were lost), inverted codes, no
    /// rotation search (QR finder patterns are rotation-free), no downscale pyramid.
    fn reader() -> BarcodeReader {
        BarcodeReader::new()
            .formats([BarcodeFormat::QRCode, BarcodeFormat::MicroQRCode])
            .try_harder(true)
            .try_invert(true)
            .try_rotate(false)
            .try_downscale(false)
            // Plain: the payload's characters as they are (HRI mode would render control
            // characters as `<SOH>`); hygiene for publishing is done by `clean_text`.
            .text_mode(zxingcpp::TextMode::Plain)
    }

    /// The decoder's counters.
    pub fn stats(&self) -> std::sync::Arc<DecoderStats> {
        self.stats.clone()
    }

    /// Decodes every code in an 8-bit grey image of `width` × `height` (row-major, no padding).
    pub fn decode_gray(&self, gray: &[u8], width: usize, height: usize) -> Result<Vec<QrRead>> {
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            anyhow::ensure!(
                width > 0 && height > 0 && gray.len() >= width * height,
                "image of {width}x{height} needs {} bytes, got {}",
                width * height,
                gray.len()
            );
            let gray = &gray[..width * height];
            let view =
                || ImageView::from_slice(gray, width as i32, height as i32, ImageFormat::Lum);
            let mut codes = (self.reader.from(view()?)?, 1);
            if codes.0.is_empty() && self.fallbacks {
                codes = self.retry(gray, width, height)?;
            }
            Ok(codes
                .0
                .iter()
                .map(|b| to_read(b, codes.1))
                .collect::<Vec<_>>())
        }));
        let result = outcome
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the QR decoder panicked on this frame")));
        match &result {
            Ok(reads) => {
                self.stats
                    .codes
                    .fetch_add(reads.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// When the first pass finds nothing: the global-histogram binarizer (low-contrast prints),
    /// then a Gaussian blur that washes out print texture and picture detail inside the modules,
    /// both also trying light-on-dark. Frames over 1.2 MP are retried at half size: it keeps a
    /// frame without a code cheap, and the cost is that a light-on-dark code in such a frame
    /// needs modules twice as large as a dark-on-light one.
    /// Returns the codes and the factor that maps their positions back to the frame.
    fn retry(
        &self,
        gray: &[u8],
        width: usize,
        height: usize,
    ) -> Result<(Vec<zxingcpp::Barcode>, i32)> {
        use opencv::prelude::*;
        let full = opencv::core::Mat::new_rows_cols_with_data(height as i32, width as i32, gray)?;
        let src = if width * height > 1_200_000 {
            let mut half = opencv::core::Mat::default();
            let size = opencv::core::Size::new(width as i32 / 2, height as i32 / 2);
            opencv::imgproc::resize(
                &full,
                &mut half,
                size,
                0.0,
                0.0,
                opencv::imgproc::INTER_AREA,
            )?;
            half
        } else {
            full.try_clone()?
        };
        let src = &src;
        let (w, h) = (src.cols(), src.rows());
        let codes = self.global.from(ImageView::from_slice(
            src.data_bytes()?,
            w,
            h,
            ImageFormat::Lum,
        )?)?;
        if !codes.is_empty() {
            return Ok((codes, width as i32 / w));
        }
        let mut blurred = opencv::core::Mat::default();
        opencv::imgproc::gaussian_blur_def(src, &mut blurred, opencv::core::Size::new(5, 5), 0.0)?;
        let codes = self.blurred.from(ImageView::from_slice(
            blurred.data_bytes()?,
            w,
            h,
            ImageFormat::Lum,
        )?)?;
        Ok((codes, width as i32 / w))
    }

    /// Decodes an OpenCV image (grey or BGR).
    pub fn decode_mat(&self, image: &opencv::core::Mat) -> Result<Vec<QrRead>> {
        use opencv::prelude::*;
        if image.channels() == 1 && image.is_continuous() {
            return self.decode_gray(
                image.data_bytes()?,
                image.cols() as usize,
                image.rows() as usize,
            );
        }
        let gray = if image.channels() == 1 {
            image.try_clone()?
        } else {
            let mut g = opencv::core::Mat::default();
            opencv::imgproc::cvt_color_def(image, &mut g, opencv::imgproc::COLOR_BGR2GRAY)?;
            g
        };
        self.decode_gray(
            gray.data_bytes()?,
            gray.cols() as usize,
            gray.rows() as usize,
        )
    }
}

impl Default for QrDecoder {
    fn default() -> Self {
        Self::new()
    }
}

fn to_read(b: &zxingcpp::Barcode, scale: i32) -> QrRead {
    let mut bytes = b.bytes();
    bytes.truncate(MAX_PAYLOAD_BYTES);
    let raw_text = b.text();
    // zxing-cpp turns text in other character sets (ECI, Shift_JIS, …) into UTF-8 itself.
    let is_text =
        b.content_type() == zxingcpp::ContentType::Text || std::str::from_utf8(&bytes).is_ok();
    let text = is_text.then(|| clean_text(&raw_text));
    let p = b.position();
    let corner = |pt: zxingcpp::PointI| [pt.x * scale, pt.y * scale];
    let ecc = b.extra_with_key("ECLevel");
    QrRead {
        text,
        raw_text,
        bytes,
        corners: [
            corner(p.top_left),
            corner(p.top_right),
            corner(p.bottom_right),
            corner(p.bottom_left),
        ],
        symbol: if b.format() == BarcodeFormat::MicroQRCode {
            "micro_qr"
        } else {
            "qr"
        }
        .into(),
        ecc_level: (!ecc.is_empty()).then_some(ecc),
        inverted: b.is_inverted(),
    }
}

/// Removes control characters other than tab and newline, and caps the length.
pub fn clean_text(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .take(MAX_PAYLOAD_BYTES)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_stripped_but_lines_kept() {
        assert_eq!(
            clean_text("a\u{0}b\u{1b}[31mc\r\nd\te\u{7f}"),
            "ab[31mc\nd\te"
        );
    }

    #[test]
    fn nonsense_input_is_an_error_or_nothing_never_a_panic() {
        let d = QrDecoder::new();
        assert!(
            d.decode_gray(&[0u8; 10], 100, 100).is_err(),
            "too few bytes"
        );
        assert!(d.decode_gray(&[], 0, 0).is_err());
        let mut seed = 0x9E37_79B9u32;
        for size in [1usize, 7, 64, 333] {
            let noise: Vec<u8> = (0..size * size)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            assert!(
                d.decode_gray(&noise, size, size).unwrap().is_empty(),
                "no code in noise"
            );
        }
        assert_eq!(d.stats().failures.load(Ordering::Relaxed), 2);
    }
}
