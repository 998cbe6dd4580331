//! QR evaluation over folders in the ZXing black-box format: `N.png|jpg|gif` with `N.txt`
//! holding the exact expected text. Each image is decoded at the requested rotations; a decode
//! counts when one of the codes found has exactly the expected text, and is *wrong* when codes
//! were found but none has it.

use anyhow::{Context, Result};
use opencv::core::Mat;
use opencv::prelude::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::QrDecoder;
use crate::tooling::eval::percentile;

/// One labelled image.
#[derive(Debug, Clone)]
pub struct QrSample {
    pub image: PathBuf,
    pub text: String,
}

/// The labelled images of `dir`, and of its direct subfolders (`qrcode-1`, `qrcode-2`, …), by
/// folder and then by number.
pub fn load_dataset(dir: &Path) -> Result<Vec<QrSample>> {
    let mut folders = vec![dir.to_owned()];
    let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read dataset folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subs.sort();
    folders.extend(subs);
    let mut out = Vec::new();
    for folder in folders {
        let mut images: Vec<(u64, PathBuf)> = std::fs::read_dir(&folder)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "png" || e == "jpg" || e == "jpeg" || e == "gif")
            })
            .filter_map(|p| {
                let n = p.file_stem()?.to_str()?.parse().ok()?;
                Some((n, p))
            })
            .collect();
        images.sort();
        for (_, image) in images {
            let txt = image.with_extension("txt");
            let Ok(bytes) = std::fs::read(&txt) else {
                continue;
            };
            let text = String::from_utf8(bytes)
                .with_context(|| format!("{} is not UTF-8", txt.display()))?;
            out.push(QrSample { image, text });
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "no labelled images (N.png + N.txt) in {}",
        dir.display()
    );
    Ok(out)
}

/// Reads an image as 8-bit grey (OpenCV cannot read GIF; those are skipped with an error).
pub fn load_gray(path: &Path) -> Result<Mat> {
    let m = opencv::imgcodecs::imread(path, opencv::imgcodecs::IMREAD_GRAYSCALE)?;
    anyhow::ensure!(!m.empty(), "cannot read image {}", path.display());
    Ok(m)
}

/// Rotates clockwise by 0, 90, 180 or 270 degrees.
pub fn rotate(m: &Mat, degrees: u32) -> Result<Mat> {
    let code = match degrees {
        0 => return Ok(m.try_clone()?),
        90 => opencv::core::ROTATE_90_CLOCKWISE,
        180 => opencv::core::ROTATE_180,
        270 => opencv::core::ROTATE_90_COUNTERCLOCKWISE,
        other => anyhow::bail!("rotation {other} is not one of 0, 90, 180, 270"),
    };
    let mut out = Mat::default();
    opencv::core::rotate(m, &mut out, code)?;
    Ok(out)
}

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct QrEvalOptions {
    pub rotations: Vec<u32>,
    /// Invert every image (light-on-dark codes).
    pub invert: bool,
    /// Decoder fallbacks on (the product's setting) or off (zxing-cpp alone).
    pub fallbacks: bool,
}

/// Decodes every sample at every rotation; returns the JSON summary.
pub fn evaluate(
    samples: &[QrSample],
    opts: &QrEvalOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<Value> {
    let decoder = decoder(opts.fallbacks);
    let rotations = &opts.rotations;
    let mut per_rotation = serde_json::Map::new();
    let (mut decoded_total, mut wrong_total) = (0, 0);
    let total = samples.len() * rotations.len();
    let mut done = 0;
    let mut misses = Vec::new();
    for &deg in rotations {
        let (mut decoded, mut wrong, mut failed) = (0u32, 0u32, 0u32);
        let mut ms = Vec::with_capacity(samples.len());
        for s in samples {
            done += 1;
            progress(done, total);
            let loaded =
                load_gray(&s.image).and_then(|m| if opts.invert { invert(&m) } else { Ok(m) });
            let image = match loaded.and_then(|m| rotate(&m, deg)) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(image = %s.image.display(), error = %format!("{e:#}"), "skipped");
                    failed += 1;
                    continue;
                }
            };
            let t0 = Instant::now();
            let reads = decoder.decode_mat(&image).unwrap_or_default();
            ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            if reads.iter().any(|r| r.raw_text == s.text) {
                decoded += 1;
            } else {
                if !reads.is_empty() {
                    wrong += 1;
                }
                // Evaluation data, not personal data: the texts help to see what went wrong.
                let found: Vec<&str> = reads.iter().map(|r| r.raw_text.as_str()).collect();
                misses.push(
                    json!({"image": s.image, "rotation": deg, "found": found, "expected": s.text}),
                );
            }
        }
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| percentile(&ms, p);
        per_rotation.insert(
            deg.to_string(),
            json!({"decoded": decoded, "wrong": wrong, "unreadable_images": failed,
                   "p50_ms": (pct(0.5) * 100.0).round() / 100.0, "p95_ms": (pct(0.95) * 100.0).round() / 100.0}),
        );
        decoded_total += decoded;
        wrong_total += wrong;
    }
    Ok(json!({
        "images": samples.len(),
        "rotations": per_rotation,
        "decoded": decoded_total,
        "wrong": wrong_total,
        "attempts": total,
        "inverted": opts.invert,
        "engine": engine(opts.fallbacks),
        "misses": misses,
    }))
}

fn engine(fallbacks: bool) -> &'static str {
    if fallbacks {
        "gatewatch: zxing-cpp 0.5.3 (try_harder) + global-histogram and blurred retries (try_invert)"
    } else {
        "zxing-cpp 0.5.3 (try_harder, try_invert, try_downscale)"
    }
}

fn decoder(fallbacks: bool) -> QrDecoder {
    if fallbacks {
        QrDecoder::new()
    } else {
        QrDecoder::zxing_only()
    }
}

/// 255 - v.
pub fn invert(m: &Mat) -> Result<Mat> {
    let mut out = Mat::default();
    opencv::core::bitwise_not_def(m, &mut out)?;
    Ok(out)
}

/// Decodes every image of `dir` (none holds a code) scaled to 1920x1080: false positives and the
/// decode time of a 1080p frame without a code.
pub fn negatives(dir: &Path, fallbacks: bool) -> Result<Value> {
    let decoder = decoder(fallbacks);
    let mut images: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "png" || e == "jpg" || e == "jpeg")
        })
        .collect();
    images.sort();
    let (mut false_positives, mut ms) = (Vec::new(), Vec::new());
    for path in &images {
        let Ok(m) = load_gray(path) else { continue };
        let mut frame = Mat::default();
        opencv::imgproc::resize(
            &m,
            &mut frame,
            opencv::core::Size::new(1920, 1080),
            0.0,
            0.0,
            opencv::imgproc::INTER_LINEAR,
        )?;
        let t0 = Instant::now();
        let reads = decoder.decode_mat(&frame).unwrap_or_default();
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        if !reads.is_empty() {
            false_positives.push(path.display().to_string());
        }
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| percentile(&ms, p);
    Ok(
        json!({"images": ms.len(), "false_positives": false_positives.len(), "false_positive_images": false_positives,
              "p50_ms_1080p": (pct(0.5) * 100.0).round() / 100.0, "p95_ms_1080p": (pct(0.95) * 100.0).round() / 100.0,
              "engine": engine(fallbacks)}),
    )
}
