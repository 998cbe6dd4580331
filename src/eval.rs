//! Accuracy evaluation over a folder in the OpenALPR benchmark format: one `NAME.txt` per image
//! holding `file<TAB>x<TAB>y<TAB>w<TAB>h<TAB>PLATE`. Uses [`PlateReader::read`], the same code
//! path as `run`, and scores each image's best read ([`PlateRead::best`]).

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::plate::grammar::normalise;
use crate::plate::reader::{PlateRead, PlateReader};
use crate::vision::{self, BBox};

/// One labelled image.
#[derive(Debug, Clone)]
pub struct Sample {
    pub image: PathBuf,
    pub bbox: BBox,
    pub plate: String,
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
        let Some(line) = text.lines().find(|l| !l.trim().is_empty()) else {
            continue;
        };
        let f: Vec<&str> = line.split('\t').collect();
        anyhow::ensure!(
            f.len() >= 6,
            "{}: expected file, x, y, w, h, plate separated by tabs",
            txt.display()
        );
        let num = |i: usize| -> Result<f32> {
            f[i].trim()
                .parse()
                .with_context(|| format!("{}: field {i}", txt.display()))
        };
        out.push(Sample {
            image: dir.join(f[0].trim()),
            bbox: BBox {
                x: num(1)?,
                y: num(2)?,
                w: num(3)?,
                h: num(4)?,
            },
            plate: normalise(f[5]),
        });
    }
    Ok(out)
}

/// The result for one image.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub image: String,
    pub truth: String,
    pub read: Option<String>,
    pub confidence: f32,
    pub detected: bool,
    pub ms: f64,
}

/// The summary line `eval plates` prints last.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub images: usize,
    pub exact_match: f64,
    pub detected: f64,
    pub no_read: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub models: String,
    pub threads: usize,
    /// The plate grammars in use.
    pub regions: Vec<String>,
}

/// Reads every sample; `progress` is called after each.
pub fn evaluate(
    reader: &mut PlateReader,
    samples: &[Sample],
    mut progress: impl FnMut(usize, &Outcome),
) -> Result<Vec<Outcome>> {
    let mut out = Vec::with_capacity(samples.len());
    for (i, s) in samples.iter().enumerate() {
        let img = vision::read_image(&s.image)?;
        let t0 = Instant::now();
        let reads = reader.read(&img)?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let best = PlateRead::best(&reads);
        let o = Outcome {
            image: s
                .image
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            truth: s.plate.clone(),
            read: best.map(|r| normalise(&r.plate)),
            confidence: best.map_or(0.0, |r| r.confidence),
            detected: reads.iter().any(|r| r.bbox.iou(&s.bbox) >= 0.3),
            ms,
        };
        progress(i, &o);
        out.push(o);
    }
    Ok(out)
}

/// The `p` quantile (0-1) of ascending `sorted` values, nearest rank; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
}

/// Summarises outcomes.
pub fn summarise(outcomes: &[Outcome], models: &str, threads: usize) -> Summary {
    let n = outcomes.len().max(1) as f64;
    let mut ms: Vec<f64> = outcomes.iter().map(|o| o.ms).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| percentile(&ms, p);
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    Summary {
        images: outcomes.len(),
        exact_match: round(
            outcomes
                .iter()
                .filter(|o| o.read.as_deref() == Some(o.truth.as_str()))
                .count() as f64
                / n,
        ),
        detected: round(outcomes.iter().filter(|o| o.detected).count() as f64 / n),
        no_read: round(outcomes.iter().filter(|o| o.read.is_none()).count() as f64 / n),
        p50_ms: round(pct(0.5)),
        p95_ms: round(pct(0.95)),
        models: models.to_owned(),
        threads,
        regions: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentile_is_nearest_rank_and_zero_when_empty() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(super::percentile(&v, 0.5), 3.0);
        assert_eq!(super::percentile(&v, 0.99), 5.0);
        assert_eq!(super::percentile(&v, 0.0), 1.0);
        assert_eq!(super::percentile(&[], 0.5), 0.0);
    }
}
