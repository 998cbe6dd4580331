//! Face accuracy over a folder in the shared format (`../shared/data/faces`):
//! - `detection.json`: per image, `faces` to be found and `ignore` boxes (blurred or partial
//!   background faces) that count neither as hit nor as false positive, each `[x1, y1, x2, y2]`;
//! - `identities.json`: `[{image, identity, box}]`, one face each; every pair of entries is a
//!   verification pair, genuine when the identities are the same;
//! - `images/`: the photos.
//!
//! Detection: a found face is a hit when it overlaps a labelled face by IoU ≥ 0.5 (one-to-one,
//! best overlaps first); an unmatched one is ignored when it overlaps an `ignore` box by IoU ≥ 0.5
//! and a false positive otherwise. Verification: each identity entry is embedded from the detected
//! face that best overlaps its box, through [`FaceReader`], the code a camera stage will run.

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::embed::Embedding;
use super::FaceReader;
use crate::tooling::eval::percentile;
use crate::vision::{self, BBox};

/// IoU at which a found face counts as a labelled one (or as an ignored one).
pub const MATCH_IOU: f32 = 0.5;

/// The labelled faces of one image.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DetectionLabels {
    #[serde(deserialize_with = "corner_boxes")]
    pub faces: Vec<BBox>,
    #[serde(default, deserialize_with = "corner_boxes")]
    pub ignore: Vec<BBox>,
}

/// One face of a known person.
#[derive(Debug, Clone, Deserialize)]
pub struct IdentityLabel {
    pub image: String,
    pub identity: String,
    #[serde(rename = "box", deserialize_with = "corner_box")]
    pub bbox: BBox,
}

fn to_bbox(c: [f32; 4]) -> BBox {
    BBox {
        x: c[0],
        y: c[1],
        w: c[2] - c[0],
        h: c[3] - c[1],
    }
}

fn corner_box<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BBox, D::Error> {
    <[f32; 4]>::deserialize(d).map(to_bbox)
}

fn corner_boxes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<BBox>, D::Error> {
    Ok(Vec::<[f32; 4]>::deserialize(d)?
        .into_iter()
        .map(to_bbox)
        .collect())
}

/// A face dataset folder.
#[derive(Debug, Clone)]
pub struct FaceDataset {
    pub images: PathBuf,
    /// Image file name → labels.
    pub detection: BTreeMap<String, DetectionLabels>,
    pub identities: Vec<IdentityLabel>,
}

/// Loads `detection.json` and `identities.json` of `dir`; errors name the file.
pub fn load_dataset(dir: &Path) -> Result<FaceDataset> {
    fn json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read {} (is this a face dataset folder?)",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not in the expected format", path.display()))
    }
    let detection: BTreeMap<String, DetectionLabels> = json(&dir.join("detection.json"))?;
    let identities: Vec<IdentityLabel> = json(&dir.join("identities.json"))?;
    for b in detection
        .values()
        .flat_map(|l| l.faces.iter().chain(&l.ignore))
        .chain(identities.iter().map(|i| &i.bbox))
    {
        ensure!(
            b.w > 0.0 && b.h > 0.0,
            "a box in {} has x2 <= x1 or y2 <= y1: {b:?}",
            dir.display()
        );
    }
    Ok(FaceDataset {
        images: dir.join("images"),
        detection,
        identities,
    })
}

/// How the faces found in one image score against its labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectionScore {
    pub hits: usize,
    pub false_positives: usize,
    /// Found faces on an `ignore` box.
    pub ignored: usize,
}

/// Scores found boxes against one image's labels (see the module comment).
pub fn score_detections(labels: &DetectionLabels, found: &[BBox]) -> DetectionScore {
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (l, label) in labels.faces.iter().enumerate() {
        for (f, b) in found.iter().enumerate() {
            let iou = label.iou(b);
            if iou >= MATCH_IOU {
                pairs.push((iou, l, f));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut label_taken = vec![false; labels.faces.len()];
    let mut found_taken = vec![false; found.len()];
    let mut score = DetectionScore::default();
    for (_, l, f) in pairs {
        if !label_taken[l] && !found_taken[f] {
            label_taken[l] = true;
            found_taken[f] = true;
            score.hits += 1;
        }
    }
    for (b, _) in found.iter().zip(&found_taken).filter(|(_, t)| !**t) {
        if labels.ignore.iter().any(|i| i.iou(b) >= MATCH_IOU) {
            score.ignored += 1;
        } else {
            score.false_positives += 1;
        }
    }
    score
}

/// The equal error rate: where the share of genuine pairs rejected (score below the threshold)
/// meets the share of impostor pairs accepted, over every threshold the scores offer.
pub fn equal_error_rate(genuine: &[f32], impostor: &[f32]) -> f64 {
    let sorted = |v: &[f32]| {
        let mut v = v.to_vec();
        v.sort_by(f32::total_cmp);
        v
    };
    let (g, i) = (sorted(genuine), sorted(impostor));
    if g.is_empty() || i.is_empty() {
        return f64::NAN;
    }
    let mut best = (f64::MAX, f64::NAN);
    for t in g.iter().chain(&i).copied().chain([f32::INFINITY]) {
        let frr = g.partition_point(|&s| s < t) as f64 / g.len() as f64;
        let far = (i.len() - i.partition_point(|&s| s < t)) as f64 / i.len() as f64;
        let gap = (far - frr).abs();
        if gap < best.0 {
            best = (gap, (far + frr) / 2.0);
        }
    }
    best.1
}

/// The share of genuine pairs accepted at the lowest threshold that accepts at most `far` of the
/// impostor pairs (a pair is accepted when its score is above the threshold), and that threshold.
pub fn tar_at_far(genuine: &[f32], impostor: &[f32], far: f64) -> (f64, f32) {
    let mut i = impostor.to_vec();
    i.sort_by(|a, b| b.total_cmp(a));
    let allowed = (far * i.len() as f64).floor() as usize;
    let threshold = i.get(allowed).copied().unwrap_or(f32::NEG_INFINITY);
    let accepted = genuine.iter().filter(|&&s| s > threshold).count();
    (accepted as f64 / genuine.len().max(1) as f64, threshold)
}

/// The summary line `eval faces` prints last.
#[derive(Debug, Clone, Serialize)]
pub struct FaceSummary {
    pub images: usize,
    /// Labelled faces to be found.
    pub faces: usize,
    pub detected: usize,
    pub recall: f64,
    pub false_positives: usize,
    /// Found faces on `ignore` boxes.
    pub ignored: usize,
    /// Images with a labelled face not found, or a false positive.
    pub detection_errors: Vec<String>,
    /// Identity entries (faces of known people).
    pub identities: usize,
    /// Identity entries with no detected face overlapping their box: left out of the pairs.
    pub identities_not_found: Vec<String>,
    pub genuine_pairs: usize,
    pub impostor_pairs: usize,
    pub genuine_mean: f64,
    pub genuine_std: f64,
    pub impostor_mean: f64,
    pub impostor_std: f64,
    pub eer: f64,
    pub tar_at_far_1e3: f64,
    /// Cosine similarity above which a pair is accepted at FAR 1e-3.
    pub threshold_at_far_1e3: f64,
    /// Detector time per image (images of every size), median and 95th percentile.
    pub detect_p50_ms: f64,
    pub detect_p95_ms: f64,
    /// Alignment + embedding time per face, median.
    pub embed_p50_ms: f64,
    pub long_side: u32,
    pub threads: usize,
}

/// What `evaluate` has done so far, for progress lines.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub image: usize,
    pub images: usize,
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// Runs detection on every image of the dataset (those of `detection.json` and those of
/// `identities.json`), scores it, and scores verification over all identity pairs.
pub fn evaluate(
    reader: &mut FaceReader,
    data: &FaceDataset,
    threads: usize,
    mut progress: impl FnMut(Progress),
) -> Result<FaceSummary> {
    let mut names: Vec<&str> = data.detection.keys().map(String::as_str).collect();
    names.extend(data.identities.iter().map(|i| i.image.as_str()));
    names.sort_unstable();
    names.dedup();

    let mut score = DetectionScore::default();
    let mut detection_errors = Vec::new();
    let mut embeddings: Vec<Option<Embedding>> = vec![None; data.identities.len()];
    let mut identities_not_found = Vec::new();
    let (mut detect_ms, mut embed_ms) = (Vec::new(), Vec::new());
    for (n, name) in names.iter().enumerate() {
        let frame = vision::read_image(&data.images.join(name))?;
        let t0 = Instant::now();
        let faces = reader.detect(&frame)?;
        detect_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        if let Some(labels) = data.detection.get(*name) {
            let boxes: Vec<BBox> = faces.iter().map(|f| f.bbox).collect();
            let s = score_detections(labels, &boxes);
            if s.hits < labels.faces.len() || s.false_positives > 0 {
                detection_errors.push(format!(
                    "{name}: {}/{} found, {} false positive(s)",
                    s.hits,
                    labels.faces.len(),
                    s.false_positives
                ));
            }
            score.hits += s.hits;
            score.false_positives += s.false_positives;
            score.ignored += s.ignored;
        }
        for (k, id) in data.identities.iter().enumerate() {
            if id.image != *name {
                continue;
            }
            let best = faces
                .iter()
                .map(|f| (f.bbox.iou(&id.bbox), f))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            match best {
                Some((iou, face)) if iou >= MATCH_IOU => {
                    let t0 = Instant::now();
                    let read = reader.embed(&frame, std::slice::from_ref(face))?;
                    embed_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                    embeddings[k] = read.into_iter().next().map(|r| r.embedding);
                }
                other => identities_not_found.push(format!(
                    "{name} ({}): best detected IoU {:.2}",
                    id.identity,
                    other.map_or(0.0, |o| o.0)
                )),
            }
        }
        progress(Progress {
            image: n + 1,
            images: names.len(),
        });
    }

    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for a in 0..data.identities.len() {
        for b in a + 1..data.identities.len() {
            let (Some(ea), Some(eb)) = (&embeddings[a], &embeddings[b]) else {
                continue;
            };
            let s = ea.cosine(eb);
            if data.identities[a].identity == data.identities[b].identity {
                genuine.push(s);
            } else {
                impostor.push(s);
            }
        }
    }
    let faces: usize = data.detection.values().map(|l| l.faces.len()).sum();
    let (genuine_mean, genuine_std) = mean_std(&genuine);
    let (impostor_mean, impostor_std) = mean_std(&impostor);
    let (tar, threshold) = tar_at_far(&genuine, &impostor, 1e-3);
    detect_ms.sort_by(f64::total_cmp);
    embed_ms.sort_by(f64::total_cmp);
    let round = |v: f64, places: i32| {
        let k = 10f64.powi(places);
        (v * k).round() / k
    };
    Ok(FaceSummary {
        images: names.len(),
        faces,
        detected: score.hits,
        recall: round(score.hits as f64 / faces.max(1) as f64, 4),
        false_positives: score.false_positives,
        ignored: score.ignored,
        detection_errors,
        identities: data.identities.len(),
        identities_not_found,
        genuine_pairs: genuine.len(),
        impostor_pairs: impostor.len(),
        genuine_mean: round(genuine_mean, 4),
        genuine_std: round(genuine_std, 4),
        impostor_mean: round(impostor_mean, 4),
        impostor_std: round(impostor_std, 4),
        eer: round(equal_error_rate(&genuine, &impostor), 5),
        tar_at_far_1e3: round(tar, 4),
        threshold_at_far_1e3: round(f64::from(threshold), 4),
        detect_p50_ms: round(percentile(&detect_ms, 0.5), 2),
        detect_p95_ms: round(percentile(&detect_ms, 0.95), 2),
        embed_p50_ms: round(percentile(&embed_ms, 0.5), 2),
        long_side: reader.detector_options().long_side,
        threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corners(x1: f32, y1: f32, x2: f32, y2: f32) -> BBox {
        to_bbox([x1, y1, x2, y2])
    }

    #[test]
    fn detections_match_one_to_one_and_ignore_boxes_count_as_neither() {
        let labels = DetectionLabels {
            faces: vec![
                corners(0.0, 0.0, 100.0, 100.0),
                corners(200.0, 0.0, 300.0, 100.0),
            ],
            ignore: vec![corners(500.0, 500.0, 540.0, 540.0)],
        };
        let found = [
            corners(5.0, 5.0, 100.0, 100.0),     // hit
            corners(0.0, 0.0, 95.0, 100.0),      // second box on the first face: false positive
            corners(502.0, 500.0, 540.0, 538.0), // on the ignore box
            corners(900.0, 0.0, 950.0, 50.0),    // nothing there
            corners(260.0, 0.0, 360.0, 100.0),   // IoU 0.25 with the second face: not a hit
        ];
        let s = score_detections(&labels, &found);
        assert_eq!(
            s,
            DetectionScore {
                hits: 1,
                false_positives: 3,
                ignored: 1
            }
        );
    }

    #[test]
    fn separated_scores_have_zero_eer_and_full_tar() {
        let genuine = [0.95, 0.96, 0.97, 0.99];
        let impostor: Vec<f32> = (0..2000).map(|k| 0.7 + k as f32 * 1e-4).collect();
        assert_eq!(equal_error_rate(&genuine, &impostor), 0.0);
        let (tar, threshold) = tar_at_far(&genuine, &impostor, 1e-3);
        assert_eq!(tar, 1.0);
        // Two impostors (1e-3 of 2000) may score above the threshold: the third highest is it.
        assert!(
            (threshold - (0.7 + 1997.0 * 1e-4)).abs() < 1e-6,
            "{threshold}"
        );
    }

    #[test]
    fn overlapping_scores_give_the_crossing_rate() {
        // 10 genuine, 10 impostor; the lowest 2 genuine sit among the impostors.
        let genuine = [0.1, 0.3, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9];
        let impostor = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.4];
        // At threshold 0.3: FRR 1/10, FAR 1/10.
        assert!((equal_error_rate(&genuine, &impostor) - 0.1).abs() < 1e-9);
        // FAR 0 allowed: only scores above 0.4 are accepted, 8 of 10.
        let (tar, threshold) = tar_at_far(&genuine, &impostor, 0.0);
        assert_eq!((tar, threshold), (0.8, 0.4));
    }

    #[test]
    fn datasets_load_with_corner_boxes_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("detection.json"),
            r#"{"a.jpg": {"faces": [[10, 20, 110, 140]], "ignore": []}, "b.jpg": {"faces": []}}"#,
        )
        .unwrap();
        let err = load_dataset(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("identities.json"), "{err:#}");
        std::fs::write(
            dir.path().join("identities.json"),
            r#"[{"image": "a.jpg", "identity": "x", "box": [10, 20, 110, 140]}]"#,
        )
        .unwrap();
        let d = load_dataset(dir.path()).unwrap();
        assert_eq!(
            d.detection["a.jpg"].faces[0],
            BBox {
                x: 10.0,
                y: 20.0,
                w: 100.0,
                h: 120.0
            }
        );
        assert_eq!(d.identities[0].bbox.h, 120.0);
        std::fs::write(dir.path().join("identities.json"), "[{\"image\": 3}]").unwrap();
        let err = format!("{:#}", load_dataset(dir.path()).unwrap_err());
        assert!(
            err.contains("identities.json is not in the expected format"),
            "{err}"
        );
    }
}
