//! Image operations shared by the model stages: frames, crops and tensor packing.
//!
//! Frames are OpenCV `Mat`s in BGR order (what cameras and decoders give), so no stage converts
//! formats on the hot path unless its model needs another layout.

use anyhow::{ensure, Context, Result};
use opencv::core::{Mat, Point2f, Rect, Size, Vector, CV_8UC3};
use opencv::imgproc;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};

/// An axis-aligned box in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct BBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl BBox {
    /// The bounding box of a set of points.
    pub fn around(points: &[Point2f]) -> BBox {
        let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for p in points {
            x0 = x0.min(p.x);
            y0 = y0.min(p.y);
            x1 = x1.max(p.x);
            y1 = y1.max(p.y);
        }
        BBox {
            x: x0,
            y: y0,
            w: (x1 - x0).max(0.0),
            h: (y1 - y0).max(0.0),
        }
    }

    /// Intersection over union.
    pub fn iou(&self, o: &BBox) -> f32 {
        let ix = (self.x + self.w).min(o.x + o.w) - self.x.max(o.x);
        let iy = (self.y + self.h).min(o.y + o.h) - self.y.max(o.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        inter / (self.w * self.h + o.w * o.h - inter)
    }

    /// The box's centre point.
    pub fn centre(&self) -> (f32, f32) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }

    /// Whether the point lies in the box (edges included).
    pub fn contains(&self, (x, y): (f32, f32)) -> bool {
        x >= self.x && x <= self.x + self.w && y >= self.y && y <= self.y + self.h
    }

    /// The smallest box holding both.
    pub fn union(&self, o: &BBox) -> BBox {
        let x = self.x.min(o.x);
        let y = self.y.min(o.y);
        BBox {
            x,
            y,
            w: (self.x + self.w).max(o.x + o.w) - x,
            h: (self.y + self.h).max(o.y + o.h) - y,
        }
    }

    /// Rounded `[x, y, w, h]` for events.
    pub fn to_px(self) -> [i32; 4] {
        [
            self.x.round() as i32,
            self.y.round() as i32,
            self.w.round() as i32,
            self.h.round() as i32,
        ]
    }
}

/// Checks that a frame is a non-empty 8-bit BGR image: corrupt frames stop here with a clear error.
pub fn ensure_bgr(frame: &Mat) -> Result<()> {
    ensure!(!frame.empty(), "empty frame");
    ensure!(
        frame.typ() == CV_8UC3,
        "frame is not 8-bit BGR (OpenCV type {})",
        frame.typ()
    );
    ensure!(
        frame.cols() >= 16 && frame.rows() >= 16,
        "frame too small: {}x{}",
        frame.cols(),
        frame.rows()
    );
    Ok(())
}

/// Resizes with bilinear interpolation into `dst` (reused between calls).
pub fn resize_into(src: &Mat, dst: &mut Mat, w: i32, h: i32) -> Result<()> {
    imgproc::resize(src, dst, Size::new(w, h), 0.0, 0.0, imgproc::INTER_LINEAR).context("resize")
}

/// Orders four corners as top-left, top-right, bottom-right, bottom-left.
pub fn order_quad(pts: [Point2f; 4]) -> [Point2f; 4] {
    let mut by_x = pts;
    by_x.sort_by(|a, b| a.x.total_cmp(&b.x));
    let (mut left, mut right) = ([by_x[0], by_x[1]], [by_x[2], by_x[3]]);
    left.sort_by(|a, b| a.y.total_cmp(&b.y));
    right.sort_by(|a, b| a.y.total_cmp(&b.y));
    [left[0], right[0], right[1], left[1]]
}

/// Cuts the quadrilateral `quad` (tl, tr, br, bl) out of `frame` and straightens it: this is the
/// crop's deskew. The output size follows the quad's own side lengths.
pub fn warp_quad(frame: &Mat, quad: &[Point2f; 4]) -> Result<Mat> {
    let d = |a: Point2f, b: Point2f| ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
    let w = d(quad[0], quad[1])
        .max(d(quad[3], quad[2]))
        .round()
        .max(2.0);
    let h = d(quad[0], quad[3])
        .max(d(quad[1], quad[2]))
        .round()
        .max(2.0);
    let dst = [
        Point2f::new(0.0, 0.0),
        Point2f::new(w, 0.0),
        Point2f::new(w, h),
        Point2f::new(0.0, h),
    ];
    let m = imgproc::get_perspective_transform_slice_def(*quad, dst)
        .context("perspective transform")?;
    let mut out = Mat::default();
    imgproc::warp_perspective(
        frame,
        &mut out,
        &m,
        Size::new(w as i32, h as i32),
        imgproc::INTER_LINEAR,
        opencv::core::BORDER_REPLICATE,
        opencv::core::Scalar::default(),
    )
    .context("warp crop")?;
    Ok(out)
}

/// The pixels of `frame` inside `b` grown by `pad_x` and `pad_y` (fractions of the box's width and
/// height on each side), clamped to the frame.
pub fn padded_rect(frame: &Mat, b: &BBox, pad_x: f32, pad_y: f32) -> Rect {
    let (fw, fh) = (frame.cols() as f32, frame.rows() as f32);
    let x0 = (b.x - b.w * pad_x).clamp(0.0, fw - 1.0);
    let y0 = (b.y - b.h * pad_y).clamp(0.0, fh - 1.0);
    let x1 = (b.x + b.w * (1.0 + pad_x)).clamp(x0 + 1.0, fw);
    let y1 = (b.y + b.h * (1.0 + pad_y)).clamp(y0 + 1.0, fh);
    Rect::new(x0 as i32, y0 as i32, (x1 - x0) as i32, (y1 - y0) as i32)
}

/// The part of `frame` in [`padded_rect`]; copied (a plate crop is a few kilobytes).
pub fn crop_padded(frame: &Mat, b: &BBox, pad_x: f32, pad_y: f32) -> Result<Mat> {
    let r = padded_rect(frame, b, pad_x, pad_y);
    Ok(Mat::roi(frame, r)?.try_clone()?)
}

/// Packs a BGR `Mat` into `dst` at `offset` as planar CHW f32 with `(v * scale - mean[c]) * inv_std`
/// per channel. `swap_rb` gives RGB order. `dst` must already hold `3 * plane` values from
/// `offset`, where `plane` is the destination plane size (`plane_w * rows`); columns beyond the
/// image's width are left as they are (padding).
#[allow(clippy::too_many_arguments)]
pub fn pack_chw(
    img: &Mat,
    dst: &mut [f32],
    offset: usize,
    plane_w: usize,
    plane_h: usize,
    swap_rb: bool,
    scale: f32,
    mean: [f32; 3],
    inv_std: [f32; 3],
) -> Result<()> {
    ensure!(img.typ() == CV_8UC3, "pack_chw needs 8-bit BGR");
    let (w, h) = (img.cols() as usize, img.rows() as usize);
    ensure!(
        w <= plane_w && h <= plane_h,
        "image {w}x{h} larger than tensor plane {plane_w}x{plane_h}"
    );
    let plane = plane_w * plane_h;
    ensure!(dst.len() >= offset + 3 * plane, "tensor buffer too small");
    let cont = if img.is_continuous() {
        None
    } else {
        Some(img.try_clone()?)
    };
    let data = cont.as_ref().unwrap_or(img).data_bytes()?;
    for y in 0..h {
        let row = &data[y * w * 3..(y + 1) * w * 3];
        for x in 0..w {
            for c in 0..3 {
                let src_c = if swap_rb { 2 - c } else { c };
                let v = row[x * 3 + src_c] as f32;
                dst[offset + c * plane + y * plane_w + x] = (v * scale - mean[c]) * inv_std[c];
            }
        }
    }
    Ok(())
}

/// Largest image decoded, in pixels (40 Mpx, 120 MB as BGR). 8K UHD (7680x4320, 33 Mpx) fits; a
/// 20000x20000 PNG, which drove a box to 1.5 GB, does not.
pub const MAX_IMAGE_PIXELS: u64 = 40_000_000;
/// Longest side accepted, in pixels: a 1x30000 strip is refused although it is few pixels, as the
/// stages that scale a frame to a fixed width or height (motion thumbnail, detectors) would blow
/// it up to gigabytes.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Shortest side accepted, in pixels (the pipeline refuses smaller frames, see [`ensure_bgr`]).
pub const MIN_IMAGE_SIDE: u32 = 16;
/// Largest image file read: the file is read whole before it is decoded.
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

/// Refuses image sizes the pipeline cannot afford, before anything that size is allocated.
pub fn check_image_size(width: u32, height: u32) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    ensure!(
        (MIN_IMAGE_SIDE..=MAX_IMAGE_SIDE).contains(&width)
            && (MIN_IMAGE_SIDE..=MAX_IMAGE_SIDE).contains(&height)
            && pixels <= MAX_IMAGE_PIXELS,
        "image is {width}x{height} pixels: allowed {MIN_IMAGE_SIDE} to {MAX_IMAGE_SIDE} pixels per \
         side and at most {MAX_IMAGE_PIXELS} pixels in all"
    );
    Ok(())
}

/// Decodes an encoded image (JPEG, PNG, BMP or WebP) into a BGR `Mat`.
///
/// The size is read from the image's header first and checked with [`check_image_size`]: a
/// 199-byte PNG can declare a size that takes gigabytes to decode.
pub fn decode_image(bytes: &[u8]) -> Result<Mat> {
    let (width, height) = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .context("read image header")?
        .into_dimensions()
        .with_context(|| {
            format!(
                "not a JPEG, PNG, BMP or WebP image, or its header is broken ({} bytes)",
                bytes.len()
            )
        })?;
    check_image_size(width, height)?;
    let buf = Vector::<u8>::from_slice(bytes);
    let m = opencv::imgcodecs::imdecode(&buf, opencv::imgcodecs::IMREAD_COLOR)
        .context("decode image")?;
    ensure!(!m.empty(), "not a decodable image ({} bytes)", bytes.len());
    Ok(m)
}

/// Reads an image file into a BGR `Mat`; errors name the file (and its size, when that is the
/// problem).
pub fn read_image(path: &std::path::Path) -> Result<Mat> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("read {}", path.display()))?
        .len();
    ensure!(
        len <= MAX_IMAGE_FILE_BYTES,
        "{} is {len} bytes: image files of at most {MAX_IMAGE_FILE_BYTES} bytes are read",
        path.display()
    );
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    decode_image(&bytes).with_context(|| format!("decode {} ({len} bytes)", path.display()))
}

/// A PNG that declares `width` x `height` but holds no pixels (an empty compressed stream):
/// what an attacker sends, a few dozen bytes for any size. For tests of the size limits.
#[doc(hidden)]
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        let body = [kind, data].concat();
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    };
    // 8-bit RGB, deflate, no filter, no interlace.
    let ihdr = [
        &width.to_be_bytes()[..],
        &height.to_be_bytes(),
        &[8, 2, 0, 0, 0],
    ]
    .concat();
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    png
}

/// The prior boxes (anchors) of a RetinaFace-style detector on a `w` x `h` input, as `[cx, cy, w, h]`
/// fractions of the input, in the network's output order: stride by stride, row by row, cell by
/// cell, the sizes of a cell in turn. The plate detector (`plate::clp`) and the face detector
/// (`face::detect`) are both of this family and differ only in their sizes.
pub fn retina_priors(w: u32, h: u32, strides: &[u32], sizes: &[[f32; 2]]) -> Vec<[f32; 4]> {
    let mut out = Vec::new();
    let (wf, hf) = (w as f32, h as f32);
    for (stride, sizes) in strides.iter().zip(sizes) {
        for row in 0..h.div_ceil(*stride) {
            for col in 0..w.div_ceil(*stride) {
                for size in sizes {
                    out.push([
                        (col as f32 + 0.5) * *stride as f32 / wf,
                        (row as f32 + 0.5) * *stride as f32 / hf,
                        size / wf,
                        size / hf,
                    ]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_and_union() {
        let a = BBox {
            x: 0.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        let b = BBox {
            x: 5.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&BBox { x: 20.0, ..a }), 0.0);
        assert_eq!(
            a.union(&b),
            BBox {
                x: 0.0,
                y: 0.0,
                w: 15.0,
                h: 10.0
            }
        );
        assert_eq!(b.centre(), (10.0, 5.0));
        assert!(a.contains((10.0, 10.0)) && a.contains((0.0, 3.0)));
        assert!(!a.contains((10.5, 5.0)) && !a.contains((5.0, -0.1)));
    }

    #[test]
    fn a_padded_box_is_clamped_to_the_frame_and_its_crop_is_that_rect() {
        use opencv::core::{Scalar, CV_8UC3};
        let frame = Mat::new_rows_cols_with_default(100, 200, CV_8UC3, Scalar::all(0.0)).unwrap();
        let b = |x, y, w, h| BBox { x, y, w, h };
        // Inside: grown by half the width each side and the height above and below.
        let r = padded_rect(&frame, &b(80.0, 40.0, 20.0, 10.0), 0.5, 1.0);
        assert_eq!((r.x, r.y, r.width, r.height), (70, 30, 40, 30));
        // At the corner: cut at the frame's edges, never empty.
        let r = padded_rect(&frame, &b(190.0, -5.0, 30.0, 10.0), 0.5, 1.0);
        assert_eq!((r.x, r.y, r.width, r.height), (175, 0, 25, 15));
        let r = padded_rect(&frame, &b(500.0, 500.0, 10.0, 10.0), 0.0, 0.0);
        assert_eq!((r.x, r.y, r.width, r.height), (199, 99, 1, 1));
        let crop = crop_padded(&frame, &b(80.0, 40.0, 20.0, 10.0), 0.5, 1.0).unwrap();
        assert_eq!((crop.cols(), crop.rows()), (40, 30));
    }

    #[test]
    fn quad_order_is_clockwise_from_top_left() {
        let p = |x, y| Point2f::new(x, y);
        let q = order_quad([p(10.0, 10.0), p(0.0, 0.0), p(0.0, 10.0), p(10.0, 0.0)]);
        assert_eq!(q, [p(0.0, 0.0), p(10.0, 0.0), p(10.0, 10.0), p(0.0, 10.0)]);
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        assert!(decode_image(b"\xff\xd8\xff\xe0 truncated jpeg").is_err());
        assert!(decode_image(&[]).is_err());
    }

    #[test]
    fn oversized_images_are_refused_from_their_header() {
        let err = format!(
            "{:#}",
            decode_image(&png_header_only(20_000, 20_000)).unwrap_err()
        );
        assert!(err.contains("image is 20000x20000 pixels"), "{err}");
        assert!(err.contains("at most 40000000 pixels"), "{err}");
        let err = format!(
            "{:#}",
            decode_image(&png_header_only(1, 30_000)).unwrap_err()
        );
        assert!(err.contains("image is 1x30000 pixels"), "{err}");

        // A real 1x30000 PNG is a few hundred bytes (issue 13's was 199).
        use image::codecs::png::{CompressionType, FilterType, PngEncoder};
        let strip = image::RgbImage::new(1, 30_000);
        let mut png = Vec::new();
        strip
            .write_with_encoder(PngEncoder::new_with_quality(
                &mut png,
                CompressionType::Best,
                FilterType::NoFilter,
            ))
            .unwrap();
        assert!(png.len() < 1000, "{}", png.len());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strip.png");
        std::fs::write(&path, &png).unwrap();
        let err = format!("{:#}", read_image(&path).unwrap_err());
        assert!(
            err.contains("strip.png") && err.contains("1x30000"),
            "names the file and its size: {err}"
        );

        assert!(check_image_size(7680, 4320).is_ok(), "8K fits");
        assert!(check_image_size(16, 16).is_ok());
        assert!(check_image_size(16_385, 100).is_err());
    }

    #[test]
    fn pack_chw_normalises_and_swaps_channels() {
        let m = Mat::new_rows_cols_with_default(
            1,
            2,
            CV_8UC3,
            opencv::core::Scalar::new(10.0, 20.0, 30.0, 0.0),
        )
        .unwrap();
        let mut dst = vec![-9.0f32; 3 * 3];
        pack_chw(&m, &mut dst, 0, 3, 1, true, 1.0, [0.0; 3], [1.0; 3]).unwrap();
        assert_eq!(
            dst,
            vec![30.0, 30.0, -9.0, 20.0, 20.0, -9.0, 10.0, 10.0, -9.0]
        );
    }
}
