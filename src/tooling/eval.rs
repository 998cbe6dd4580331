//! Accuracy evaluation over a folder in the OpenALPR benchmark format: one `NAME.txt` per image
//! holding one line per labelled plate, `file<TAB>x<TAB>y<TAB>w<TAB>h<TAB>PLATE`.
//!
//! Two paths, both through [`PlateReader::read`], the code `run` uses:
//! - per frame ([`evaluate`]): every read of each image, as the reader returns them;
//! - as run ([`evaluate_as_run`]): each image shown to a [`PlateLane`] for a while like a camera
//!   would see a still vehicle, with empty road between, so the motion gate, tracker, voting and
//!   withholding of `run` decide what is published.
//!
//! Every labelled plate of an image counts, and so does every read that matches none of them
//! (`wrong`): a published wrong plate is what costs a site an investigation.

use anyhow::{Context, Result};
use opencv::core::{Mat, Rect, Scalar};
use opencv::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::motion::MotionConfig;
use crate::plate::grammar::normalise;
use crate::plate::lane::PlateLane;
use crate::plate::lane_view::LaneViewConfig;
use crate::plate::reader::PlateReader;
use crate::plate::tracker::TrackerOptions;
use crate::vision::{self, BBox};

/// One labelled plate.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub bbox: BBox,
    pub plate: String,
}

/// One labelled image.
#[derive(Debug, Clone)]
pub struct Sample {
    pub image: PathBuf,
    /// Every labelled plate, in the label file's order.
    pub labels: Vec<Label>,
}

/// Loads every labelled image of `dir`, sorted by name.
pub fn load_dataset(dir: &Path) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read dataset folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    entries.sort();
    for txt in entries {
        let text = std::fs::read_to_string(&txt)?;
        let mut image = None;
        let mut labels = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split('\t').collect();
            anyhow::ensure!(
                f.len() >= 6,
                "{} line {}: expected file, x, y, w, h, plate separated by tabs",
                txt.display(),
                n + 1
            );
            let num = |i: usize| -> Result<f32> {
                f[i].trim()
                    .parse()
                    .with_context(|| format!("{} line {}: field {i}", txt.display(), n + 1))
            };
            image.get_or_insert_with(|| dir.join(f[0].trim()));
            labels.push(Label {
                bbox: BBox {
                    x: num(1)?,
                    y: num(2)?,
                    w: num(3)?,
                    h: num(4)?,
                },
                plate: normalise(f[5]),
            });
        }
        if let Some(image) = image {
            out.push(Sample { image, labels });
        }
    }
    Ok(out)
}

/// A plate reported for an image: read in a frame, or published by the product path.
#[derive(Debug, Clone, Serialize)]
pub struct Reported {
    pub plate: String,
    pub confidence: f32,
    #[serde(skip)]
    pub bbox: BBox,
}

/// The result for one image.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub image: String,
    /// The labelled plates.
    pub truth: Vec<String>,
    /// What was reported, most plate-like and confident first.
    pub reads: Vec<Reported>,
    /// Labelled plates that were reported exactly.
    pub right: usize,
    /// Reports that match no labelled plate.
    pub wrong: Vec<String>,
    /// Of `wrong`, those whose box touches no labelled plate's box (another, unlabelled plate,
    /// or text that is not a plate).
    pub wrong_elsewhere: usize,
    /// Reports of a labelled plate already reported for this image.
    pub duplicates: usize,
    /// Labelled plates a report's box overlaps (IoU ≥ 0.3; boxes drawn by eye are loose).
    pub detected: usize,
    pub ms: f64,
}

impl Outcome {
    /// Whether the image was read perfectly: every labelled plate, nothing else.
    pub fn perfect(&self) -> bool {
        self.right == self.truth.len() && self.wrong.is_empty()
    }
}

/// Scores what was reported for one image against its labels.
pub fn score(image: String, labels: &[Label], reads: Vec<Reported>, ms: f64) -> Outcome {
    let mut matched = vec![false; labels.len()];
    let (mut right, mut duplicates) = (0, 0);
    let mut wrong = Vec::new();
    let mut wrong_elsewhere = 0;
    for r in &reads {
        let same: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i].plate == r.plate)
            .collect();
        if let Some(&i) = same.iter().find(|&&i| !matched[i]) {
            matched[i] = true;
            right += 1;
        } else if !same.is_empty() {
            duplicates += 1;
        } else {
            wrong.push(r.plate.clone());
            if labels.iter().all(|l| !touches(&l.bbox, &r.bbox)) {
                wrong_elsewhere += 1;
            }
        }
    }
    let detected = labels
        .iter()
        .filter(|l| reads.iter().any(|r| r.bbox.iou(&l.bbox) >= 0.3))
        .count();
    Outcome {
        image,
        truth: labels.iter().map(|l| l.plate.clone()).collect(),
        reads,
        right,
        wrong,
        wrong_elsewhere,
        duplicates,
        detected,
        ms,
    }
}

fn touches(a: &BBox, b: &BBox) -> bool {
    a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads every sample frame by frame: every read of the reader is reported. `progress` is called
/// after each.
pub fn evaluate(
    reader: &mut PlateReader,
    samples: &[Sample],
    mut progress: impl FnMut(usize, &Outcome),
) -> Result<Vec<Outcome>> {
    let mut out = Vec::with_capacity(samples.len());
    for (i, s) in samples.iter().enumerate() {
        let img = vision::read_image(&s.image)?;
        let t0 = Instant::now();
        let mut reads = reader.read(&img)?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        // Best first: a caller that takes one read takes this one.
        reads.sort_by(|a, b| {
            (b.plausibility().cmp(&a.plausibility())).then(b.confidence.total_cmp(&a.confidence))
        });
        let reported = reads
            .iter()
            .map(|r| Reported {
                plate: normalise(&r.plate),
                confidence: r.confidence,
                bbox: r.bbox,
            })
            .collect();
        let o = score(file_name(&s.image), &s.labels, reported, ms);
        progress(i, &o);
        out.push(o);
    }
    Ok(out)
}

/// How `--as-run` plays a folder: each image is a still scene in front of a camera.
#[derive(Debug, Clone)]
pub struct AsRunOptions {
    /// Frames per second of the simulated camera.
    pub fps: f64,
    /// How long each image is shown.
    pub show_s: f64,
    /// Empty road between images; longer than the tracker's `lost_after` so every vehicle has
    /// left before the next image.
    pub gap_s: f64,
    pub tracker: TrackerOptions,
    pub motion: MotionConfig,
}

impl AsRunOptions {
    /// `run`'s tracking (`tracker`) at 5 fps, each image shown for one second.
    pub fn with_tracker(tracker: TrackerOptions) -> Self {
        Self {
            fps: 5.0,
            show_s: 1.0,
            gap_s: tracker.lost_after + 1.0,
            tracker,
            motion: MotionConfig::default(),
        }
    }
}

/// Plays every sample through one [`PlateLane`] as `run` would see it; what the lane publishes
/// while an image is shown and during the road gap after it is reported for that image.
pub fn evaluate_as_run(
    reader: &mut PlateReader,
    samples: &[Sample],
    opts: &AsRunOptions,
    mut progress: impl FnMut(usize, &Outcome),
) -> Result<(Vec<Outcome>, u64)> {
    let mut lane = PlateLane::new(
        LaneViewConfig::default(),
        opts.motion.clone(),
        opts.tracker.clone(),
        reader.reads_parts(),
    );
    let step = 1.0 / opts.fps;
    let shown = (opts.show_s * opts.fps).round().max(1.0) as usize;
    let gap = (opts.gap_s * opts.fps).round().max(1.0) as usize;
    let mut t = 0.0;
    let mut withheld = 0;
    let mut out = Vec::with_capacity(samples.len());
    for (i, s) in samples.iter().enumerate() {
        let img = vision::read_image(&s.image)?;
        let road = Mat::new_rows_cols_with_default(
            img.rows(),
            img.cols(),
            img.typ(),
            Scalar::new(96.0, 96.0, 96.0, 0.0),
        )?;
        let mut read_ms = 0.0;
        let mut published = Vec::new();
        for k in 0..shown + gap {
            let frame = if k < shown { &img } else { &road };
            let mut read = |lane_image: &Mat, part: Option<Rect>| {
                let reads = reader.read_part(lane_image, part)?;
                Ok((reads, reader.unread().to_vec()))
            };
            let done = lane.on_frame(frame, t, &mut read)?;
            read_ms += done.read.as_secs_f64() * 1000.0;
            published.extend(done.passages);
            withheld += lane.take_withheld().len() as u64;
            t += step;
        }
        let reported = published
            .into_iter()
            .map(|p| Reported {
                plate: p.plate,
                confidence: p.confidence,
                bbox: p.bbox,
            })
            .collect();
        let o = score(file_name(&s.image), &s.labels, reported, read_ms);
        progress(i, &o);
        out.push(o);
    }
    let late = lane.finish();
    anyhow::ensure!(
        late.is_empty(),
        "as-run: {} passages outlived their image (gap shorter than lost_after?)",
        late.len()
    );
    withheld += lane.take_withheld().len() as u64;
    Ok((out, withheld))
}

/// The `p` quantile (0-1) of ascending `sorted` values, nearest rank; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
}

/// The summary line `eval plates` prints last.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub images: usize,
    /// Labelled plates (an image may have several).
    pub plates: usize,
    /// Share of labelled plates reported exactly.
    pub exact_match: f64,
    /// Reports that match no labelled plate: wrong plate events in the product path.
    pub wrong: usize,
    /// Of `wrong`, those away from every labelled plate (possibly an unlabelled plate).
    pub wrong_elsewhere: usize,
    /// Second reports of a plate already reported for the same image.
    pub duplicates: usize,
    /// As-run only: vehicles whose reads disagreed, so nothing was published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld: Option<u64>,
    /// Chinese reads the reader refused because their layout contradicts the plate's colour
    /// (over every frame the models ran on).
    pub colour_refused: u64,
    /// Plates the reader refused because two looks at them read differently (over every frame
    /// the models ran on).
    pub looks_disagreed: u64,
    /// Share of images whose first report is their first labelled plate (the measure of
    /// earlier notes, for comparison).
    pub best_read_match: f64,
    /// Share of labelled plates a report's box overlaps.
    pub detected: f64,
    /// Share of images with no report at all.
    pub no_read: f64,
    /// Per image: one frame's read time, or (as run) the read time of all its frames.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub models: String,
    pub threads: usize,
    /// The plate grammars in use.
    pub regions: Vec<String>,
    /// `frame` or `as-run`.
    pub mode: String,
    /// The text-detector set's locating look (`plates.locate_max_side`, 0 = off); absent for
    /// the sets with a plate detector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locate_max_side: Option<u32>,
    /// Reads (frames, or as run the frames the models ran on) whose plates came from the
    /// locating look's parts rather than a whole look.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub located: Option<u64>,
}

/// Summarises outcomes.
pub fn summarise(outcomes: &[Outcome], models: &str, threads: usize) -> Summary {
    let n = outcomes.len().max(1) as f64;
    let plates: usize = outcomes.iter().map(|o| o.truth.len()).sum();
    let mut ms: Vec<f64> = outcomes.iter().map(|o| o.ms).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| percentile(&ms, p);
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    let share = |k: usize, of: f64| round(k as f64 / of.max(1.0));
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    Summary {
        images: outcomes.len(),
        plates,
        exact_match: share(sum(|o| o.right), plates as f64),
        wrong: sum(|o| o.wrong.len()),
        wrong_elsewhere: sum(|o| o.wrong_elsewhere),
        duplicates: sum(|o| o.duplicates),
        withheld: None,
        colour_refused: 0,
        looks_disagreed: 0,
        best_read_match: share(
            outcomes
                .iter()
                .filter(|o| o.reads.first().map(|r| &r.plate) == o.truth.first())
                .count(),
            n,
        ),
        detected: share(sum(|o| o.detected), plates as f64),
        no_read: share(outcomes.iter().filter(|o| o.reads.is_empty()).count(), n),
        p50_ms: round(pct(0.5)),
        p95_ms: round(pct(0.95)),
        models: models.to_owned(),
        threads,
        regions: Vec::new(),
        mode: "frame".into(),
        locate_max_side: None,
        located: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bbox(x: f32) -> BBox {
        BBox {
            x,
            y: 100.0,
            w: 100.0,
            h: 30.0,
        }
    }

    fn rep(plate: &str, x: f32) -> Reported {
        Reported {
            plate: plate.into(),
            confidence: 0.9,
            bbox: bbox(x),
        }
    }

    #[test]
    fn percentile_is_nearest_rank_and_zero_when_empty() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.99), 5.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn every_label_counts_and_every_unmatched_report_is_wrong() {
        let labels = [
            Label {
                bbox: bbox(0.0),
                plate: "粤ZR066港".into(),
            },
            Label {
                bbox: bbox(400.0),
                plate: "SN6497".into(),
            },
        ];
        let reads = vec![
            rep("SN6497", 400.0),
            rep("ZR066", 0.0),    // a misread of the first plate
            rep("SN6497", 410.0), // the same plate twice
            rep("51A12345", 900.0),
        ];
        let o = score("x.jpg".into(), &labels, reads, 1.0);
        assert_eq!(o.right, 1);
        assert_eq!(o.wrong, ["ZR066", "51A12345"]);
        assert_eq!(o.wrong_elsewhere, 1);
        assert_eq!(o.duplicates, 1);
        assert_eq!(o.detected, 2);
        assert!(!o.perfect());
        let s = summarise(&[o], "default", 1);
        assert_eq!((s.plates, s.exact_match, s.wrong), (2, 0.5, 2));
        assert_eq!(
            s.best_read_match, 0.0,
            "first report is not the first label"
        );
    }

    #[test]
    fn every_label_line_of_a_file_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.txt"),
            "a.jpg\t1\t2\t3\t4\t粤Z·R066港\na.jpg\t10\t20\t30\t40\tSN 6497\n\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("b.txt"), "b.jpg\t1\t2\t3\n").unwrap();
        let err = load_dataset(dir.path()).unwrap_err().to_string();
        assert!(err.contains("b.txt line 1"), "{err}");
        std::fs::remove_file(dir.path().join("b.txt")).unwrap();
        let samples = load_dataset(dir.path()).unwrap();
        assert_eq!(samples.len(), 1);
        let plates: Vec<&str> = samples[0].labels.iter().map(|l| l.plate.as_str()).collect();
        assert_eq!(plates, ["粤ZR066港", "SN6497"]);
        assert_eq!(samples[0].labels[1].bbox.w, 30.0);
    }
}
