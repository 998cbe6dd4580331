//! The embedded demo input: a rendered lane clip with known plates.
//!
//! Plates are drawn with real TrueType fonts from Debian (DejaVu Sans Bold for Latin, Droid Sans
//! Fallback for the Chinese province characters) onto plate boards carried by vehicle bodies that
//! drive up the frame over a textured road, one vehicle at a time with empty road between them.
//! A driver shows a QR code on a phone, and two drivers are seen through the booth window (real
//! face photos, `demo_faces`). The real models read it; nothing in the pipeline knows it is a demo.

use ab_glyph::{Font, FontVec, PxScale, ScaleFont};
use anyhow::{bail, Context, Result};
use opencv::core::{Mat, Point, Rect, Scalar, Size, CV_8UC3};
use opencv::imgproc;
use opencv::prelude::*;
use opencv::videoio::{VideoWriter, VideoWriterTrait};
use std::path::{Path, PathBuf};

use crate::tooling::demo_faces::{demo_faces, DemoFace};

/// A plate in the demo clip.
#[derive(Debug, Clone)]
pub struct DemoPlate {
    /// Lines as printed on the plate.
    pub lines: Vec<&'static str>,
    /// What gatewatch must publish.
    pub expected: &'static str,
    pub region: &'static str,
    /// Board colour (BGR) and text colour (BGR).
    pub board: [f64; 3],
    pub ink: [f64; 3],
}

/// The plates of the demo clip, in order of appearance.
pub fn demo_plates() -> Vec<DemoPlate> {
    const WHITE: [f64; 3] = [245.0, 245.0, 245.0];
    const BLACK: [f64; 3] = [20.0, 20.0, 20.0];
    vec![
        DemoPlate {
            lines: vec!["51A-123.45"],
            expected: "51A12345",
            region: "VN",
            board: WHITE,
            ink: BLACK,
        },
        DemoPlate {
            lines: vec!["29-C1", "234.56"],
            expected: "29C123456",
            region: "VN",
            board: WHITE,
            ink: BLACK,
        },
        DemoPlate {
            lines: vec!["桂A·12345"],
            expected: "桂A12345",
            region: "CN",
            board: [170.0, 60.0, 20.0],
            ink: WHITE,
        },
        DemoPlate {
            lines: vec!["15C-045.67"],
            expected: "15C04567",
            region: "VN",
            board: [40.0, 200.0, 240.0],
            ink: BLACK,
        },
        DemoPlate {
            lines: vec!["粤B·D12345"],
            expected: "粤BD12345",
            region: "CN",
            board: [150.0, 220.0, 150.0],
            ink: BLACK,
        },
    ]
}

/// A QR code a driver shows to the lane camera (an electronic declaration on a phone) while their
/// vehicle is in view.
#[derive(Debug, Clone)]
pub struct DemoCode {
    /// Index of the vehicle (in order of appearance) whose driver shows the code.
    pub vehicle: usize,
    /// The code's text.
    pub text: &'static str,
}

/// The codes of the demo clip.
pub fn demo_codes() -> Vec<DemoCode> {
    vec![DemoCode {
        vehicle: 2,
        text: "TK-2026-000123 VN-CN",
    }]
}

/// Clip geometry and timing.
#[derive(Debug, Clone)]
pub struct ClipSpec {
    pub width: i32,
    pub height: i32,
    pub fps: f64,
    /// Frames a vehicle is in view.
    pub frames_per_vehicle: usize,
    /// Empty-road frames after each vehicle.
    pub gap_frames: usize,
}

impl Default for ClipSpec {
    fn default() -> Self {
        Self {
            width: 960,
            height: 540,
            fps: 5.0,
            frames_per_vehicle: 10,
            gap_frames: 8,
        }
    }
}

const LATIN_FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
];
const CJK_FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
];

fn load_font(candidates: &[&str], package: &str) -> Result<FontVec> {
    for path in candidates {
        if let Ok(bytes) = std::fs::read(path) {
            return FontVec::try_from_vec(bytes)
                .with_context(|| format!("cannot parse font {path}"));
        }
    }
    bail!(
        "no font found (tried {}); install the Debian package {package}",
        candidates.join(", ")
    )
}

/// The renderer with its fonts.
pub struct Renderer {
    latin: FontVec,
    cjk: FontVec,
    spec: ClipSpec,
    plates: Vec<DemoPlate>,
    codes: Vec<DemoCode>,
    /// The drivers' faces with the pictures they are shown with.
    faces: Vec<(DemoFace, Mat)>,
}

impl Renderer {
    /// A renderer for the full demo clip: its plates, its codes and its faces (whose photos the
    /// setup step fetched into the model folder).
    pub fn new(spec: ClipSpec) -> Result<Self> {
        Self::with_plates(spec, demo_plates())?
            .with_codes(demo_codes())
            .with_faces(demo_faces(), &crate::models::model_dir(None))
    }

    /// Shows `faces` too, their photos read from `model_dir`.
    pub fn with_faces(mut self, faces: Vec<DemoFace>, model_dir: &Path) -> Result<Self> {
        let shown = crate::tooling::demo_faces::load_shown(model_dir, &faces)?;
        self.faces = faces.into_iter().zip(shown).collect();
        Ok(self)
    }

    /// The faces shown, in order.
    pub fn faces(&self) -> impl Iterator<Item = &DemoFace> {
        self.faces.iter().map(|(f, _)| f)
    }

    /// A renderer for a clip showing `plates`, one vehicle each.
    pub fn with_plates(spec: ClipSpec, plates: Vec<DemoPlate>) -> Result<Self> {
        Ok(Self {
            latin: load_font(LATIN_FONTS, "fonts-dejavu-core")?,
            cjk: load_font(CJK_FONTS, "fonts-droid-fallback")?,
            spec,
            plates,
            codes: Vec::new(),
            faces: Vec::new(),
        })
    }

    /// Shows `codes` too.
    pub fn with_codes(mut self, codes: Vec<DemoCode>) -> Self {
        self.codes = codes;
        self
    }

    /// The plates shown, in order.
    pub fn plates(&self) -> &[DemoPlate] {
        &self.plates
    }

    /// The codes shown.
    pub fn codes(&self) -> &[DemoCode] {
        &self.codes
    }

    /// Total frames of the clip.
    pub fn frame_count(&self) -> usize {
        self.plates.len() * (self.spec.frames_per_vehicle + self.spec.gap_frames)
            + self.spec.gap_frames
    }

    /// Renders frame `i`.
    pub fn frame(&self, i: usize) -> Result<Mat> {
        let s = &self.spec;
        let mut img =
            Mat::new_size_with_default(Size::new(s.width, s.height), CV_8UC3, Scalar::all(0.0))?;
        draw_road(&mut img, i)?;
        let period = s.frames_per_vehicle + s.gap_frames;
        let lead = s.gap_frames;
        if i >= lead {
            let (vehicle, k) = ((i - lead) / period, (i - lead) % period);
            if let (Some(plate), true) = (self.plates.get(vehicle), k < s.frames_per_vehicle) {
                let progress = k as f64 / (s.frames_per_vehicle - 1).max(1) as f64;
                self.draw_vehicle(&mut img, plate, progress, vehicle)?;
                for code in self.codes.iter().filter(|c| c.vehicle == vehicle) {
                    draw_phone(&mut img, code.text)?;
                }
                for (_, picture) in self.faces.iter().filter(|(f, _)| f.vehicle == vehicle) {
                    crate::tooling::demo_faces::draw_window(&mut img, picture, progress)?;
                }
            }
        }
        Ok(img)
    }

    /// Where vehicle `n`'s plate is at `progress` (0-1 through its pass): centre, size and the
    /// vehicle's scale. The vehicle drives up the frame and grows slightly as it comes closer.
    fn plate_geometry(
        &self,
        plate: &DemoPlate,
        progress: f64,
        n: usize,
    ) -> (f64, f64, f64, f64, f64) {
        let (w, h) = (self.spec.width as f64, self.spec.height as f64);
        let scale = 0.85 + 0.3 * progress;
        let (pw, ph) = if plate.lines.len() == 2 {
            (190.0 * scale, 120.0 * scale)
        } else {
            (300.0 * scale, 66.0 * scale)
        };
        let cx = w * (0.42 + 0.04 * (n % 3) as f64) + 20.0 * progress;
        let cy = h * 0.86 - (h * 0.5) * progress;
        (cx, cy, pw, ph, scale)
    }

    /// The plate's box in frame `i`, if a plate is in view.
    pub fn plate_box(&self, i: usize) -> Option<crate::vision::BBox> {
        let s = &self.spec;
        let period = s.frames_per_vehicle + s.gap_frames;
        let (vehicle, k) = (
            i.checked_sub(s.gap_frames)? / period,
            (i - s.gap_frames) % period,
        );
        let plate = self
            .plates
            .get(vehicle)
            .filter(|_| k < s.frames_per_vehicle)?;
        let progress = k as f64 / (s.frames_per_vehicle - 1).max(1) as f64;
        let (cx, cy, pw, ph, _) = self.plate_geometry(plate, progress, vehicle);
        Some(crate::vision::BBox {
            x: (cx - pw / 2.0) as f32,
            y: (cy - ph / 2.0) as f32,
            w: pw as f32,
            h: ph as f32,
        })
    }

    fn draw_vehicle(
        &self,
        img: &mut Mat,
        plate: &DemoPlate,
        progress: f64,
        n: usize,
    ) -> Result<()> {
        let (cx, cy, pw, ph, scale) = self.plate_geometry(plate, progress, n);
        let two_line = plate.lines.len() == 2;
        let body = Rect::new(
            (cx - 230.0 * scale) as i32,
            (cy - 260.0 * scale) as i32,
            (460.0 * scale) as i32,
            (330.0 * scale) as i32,
        );
        let tones = [
            [70.0, 60.0, 150.0],
            [120.0, 110.0, 100.0],
            [40.0, 90.0, 40.0],
        ];
        let tone = tones[n % tones.len()];
        imgproc::rectangle(
            img,
            body,
            Scalar::new(tone[0], tone[1], tone[2], 0.0),
            imgproc::FILLED,
            imgproc::LINE_AA,
            0,
        )?;
        // Headlights and grille give the detector non-plate structure to ignore.
        for dx in [-170.0, 150.0] {
            let r = Rect::new(
                (cx + dx * scale) as i32,
                (cy - 90.0 * scale) as i32,
                (40.0 * scale) as i32,
                (24.0 * scale) as i32,
            );
            imgproc::rectangle(
                img,
                r,
                Scalar::new(200.0, 230.0, 240.0, 0.0),
                imgproc::FILLED,
                imgproc::LINE_AA,
                0,
            )?;
        }
        let board = Rect::new(
            (cx - pw / 2.0) as i32,
            (cy - ph / 2.0) as i32,
            pw as i32,
            ph as i32,
        );
        imgproc::rectangle(
            img,
            board,
            Scalar::new(plate.board[0], plate.board[1], plate.board[2], 0.0),
            imgproc::FILLED,
            imgproc::LINE_AA,
            0,
        )?;
        imgproc::rectangle(
            img,
            board,
            Scalar::new(plate.ink[0], plate.ink[1], plate.ink[2], 0.0),
            (3.0 * scale) as i32,
            imgproc::LINE_AA,
            0,
        )?;
        let rows = plate.lines.len() as f64;
        let line_h = ph / rows;
        for (li, line) in plate.lines.iter().enumerate() {
            let px = line_h * if two_line { 0.78 } else { 0.8 };
            let baseline = board.y as f64 + line_h * li as f64 + line_h * 0.5 + px * 0.36;
            self.draw_text(img, line, cx, baseline, px, pw * 0.9, plate.ink)?;
        }
        Ok(())
    }

    /// Draws `text` centred on `cx` at `baseline`, squeezed to `max_w` if needed.
    #[allow(clippy::too_many_arguments)]
    fn draw_text(
        &self,
        img: &mut Mat,
        text: &str,
        cx: f64,
        baseline: f64,
        px: f64,
        max_w: f64,
        ink: [f64; 3],
    ) -> Result<()> {
        let font_for = |c: char| -> &FontVec {
            if crate::plate::grammar::is_cjk(c) {
                &self.cjk
            } else {
                &self.latin
            }
        };
        let scale = PxScale::from(px as f32);
        let width: f32 = text
            .chars()
            .map(|c| {
                font_for(c)
                    .as_scaled(scale)
                    .h_advance(font_for(c).glyph_id(c))
            })
            .sum();
        let squeeze = (max_w as f32 / width).min(1.0);
        let mut x = cx as f32 - width * squeeze / 2.0;
        let (cols, rows) = (img.cols(), img.rows());
        for c in text.chars() {
            let font = font_for(c);
            let sx = PxScale {
                x: px as f32 * squeeze,
                y: px as f32,
            };
            let glyph = font
                .glyph_id(c)
                .with_scale_and_position(sx, ab_glyph::point(x, baseline as f32));
            let advance = font.as_scaled(sx).h_advance(font.glyph_id(c));
            if let Some(outline) = font.outline_glyph(glyph) {
                let b = outline.px_bounds();
                let mut err = None;
                outline.draw(|gx, gy, cov| {
                    let (xx, yy) = (b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32);
                    if xx < 0 || yy < 0 || xx >= cols || yy >= rows || cov <= 0.0 {
                        return;
                    }
                    match img.at_2d_mut::<opencv::core::Vec3b>(yy, xx) {
                        Ok(p) => {
                            for ch in 0..3 {
                                let v = p[ch] as f32 * (1.0 - cov) + ink[ch] as f32 * cov;
                                p[ch] = v.round().clamp(0.0, 255.0) as u8;
                            }
                        }
                        Err(e) => err = Some(e),
                    }
                });
                if let Some(e) = err {
                    return Err(e.into());
                }
            }
            x += advance;
        }
        Ok(())
    }

    /// Writes the clip as MJPEG in AVI.
    pub fn write_video(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let fourcc = VideoWriter::fourcc('M', 'J', 'P', 'G')?;
        let size = Size::new(self.spec.width, self.spec.height);
        let p = path.to_str().context("path is not UTF-8")?;
        let mut w = VideoWriter::new(p, fourcc, self.spec.fps, size, true)?;
        if !w.is_opened()? {
            bail!("cannot open {} for writing video", path.display());
        }
        for i in 0..self.frame_count() {
            w.write(&self.frame(i)?)?;
        }
        w.release()?;
        Ok(())
    }

    /// Writes the clip as numbered PNG images into `dir` (for the folder source).
    pub fn write_frames(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut out = Vec::new();
        for i in 0..self.frame_count() {
            let p = dir.join(format!("frame-{i:05}.png"));
            opencv::imgcodecs::imwrite_def(
                p.to_str().context("path is not UTF-8")?,
                &self.frame(i)?,
            )?;
            out.push(p);
        }
        Ok(out)
    }
}

/// Asphalt with texture and lane markings, a little camera noise that changes per frame.
fn draw_road(img: &mut Mat, frame: usize) -> Result<()> {
    let (w, h) = (img.cols(), img.rows());
    let mut seed = 0x9E37_79B9u32 ^ (frame as u32).wrapping_mul(0x85EB_CA6B);
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for y in 0..h {
        let base = 70.0 + 40.0 * y as f32 / h as f32;
        let row = img.at_row_mut::<opencv::core::Vec3b>(y)?;
        for px in row.iter_mut().take(w as usize) {
            let n = (rnd() % 13) as f32 - 6.0;
            let v = (base + n).clamp(0.0, 255.0) as u8;
            *px = opencv::core::Vec3b::from([v, v, v.saturating_add(4)]);
        }
    }
    for x in [w / 6, 5 * w / 6] {
        imgproc::line(
            img,
            Point::new(x, 0),
            Point::new(x + (x - w / 2) / 3, h),
            Scalar::all(220.0),
            6,
            imgproc::LINE_AA,
            0,
        )?;
    }
    // A painted stop line and a sign: text the plate path must not report.
    imgproc::rectangle(
        img,
        Rect::new(w / 6, h / 5, 2 * w / 3, 6),
        Scalar::all(230.0),
        imgproc::FILLED,
        imgproc::LINE_8,
        0,
    )?;
    imgproc::put_text(
        img,
        "STOP",
        Point::new(w / 2 - 60, h / 5 - 12),
        imgproc::FONT_HERSHEY_DUPLEX,
        1.6,
        Scalar::all(235.0),
        3,
        imgproc::LINE_AA,
        false,
    )?;
    Ok(())
}

/// A phone held up at the booth window, top right of the frame (clear of the vehicles' path),
/// showing `text` as a QR code with 4 px modules.
fn draw_phone(img: &mut Mat, text: &str) -> Result<()> {
    let code = qr_image(text, 4)?;
    let mut code_bgr = Mat::default();
    imgproc::cvt_color_def(&code, &mut code_bgr, imgproc::COLOR_GRAY2BGR)?;
    let side = code.cols();
    let x = img.cols() - side - 40;
    let phone = Rect::new(x - 10, 20, side + 20, side + 60);
    imgproc::rectangle(
        img,
        phone,
        Scalar::new(30.0, 30.0, 30.0, 0.0),
        imgproc::FILLED,
        imgproc::LINE_AA,
        0,
    )?;
    code_bgr.copy_to(&mut Mat::roi_mut(img, Rect::new(x, 40, side, side))?)?;
    Ok(())
}

/// A QR code as an 8-bit grey image, `module` pixels per module with the standard 4-module quiet
/// zone: for the demo lane, the tests and the benches.
pub fn qr_image(text: &str, module: i32) -> Result<Mat> {
    use opencv::core::{Rect, Scalar, CV_8UC1};
    let code = qrcode::QrCode::new(text.as_bytes())?;
    let n = code.width() as i32;
    let side = (n + 8) * module;
    let mut m = Mat::new_rows_cols_with_default(side, side, CV_8UC1, Scalar::all(255.0))?;
    for (i, c) in code.to_colors().into_iter().enumerate() {
        if c == qrcode::Color::Dark {
            let (x, y) = ((i as i32 % n + 4) * module, (i as i32 / n + 4) * module);
            let module_rect = Rect::new(x, y, module, module);
            opencv::imgproc::rectangle(
                &mut m,
                module_rect,
                Scalar::all(0.0),
                opencv::imgproc::FILLED,
                opencv::imgproc::LINE_8,
                0,
            )?;
        }
    }
    Ok(m)
}
