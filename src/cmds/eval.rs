//! `gatewatch eval`: measure accuracy and latency on labelled data.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::PlateConfig;
use crate::face::detect::DetectorOptions;
use crate::face::{self, FaceOptions, FaceReader};
use crate::models::{self, ModelSet};
use crate::plate::grammar::{self, Region};
use crate::plate::reader::{default_locate_max_side, PlateReader, ReaderOptions};
use crate::tooling::eval;

/// `gatewatch eval …`
#[derive(Debug, clap::Subcommand)]
pub enum EvalCmd {
    /// Plate accuracy over an OpenALPR-benchmark-format folder; last stdout line is a JSON summary.
    Plates {
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long, default_value = "default")]
        models: ModelSet,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Write each image not read perfectly (labels, reports, wrong reports) to this file, one
        /// JSON object per line.
        #[arg(long)]
        errors: Option<PathBuf>,
        /// Only the first N images.
        #[arg(long)]
        limit: Option<usize>,
        /// Plate grammars, as `plates.regions` in the config (default: the config default).
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
        /// Longest side given to full-frame detectors, as `plates.detector_max_side`.
        #[arg(long)]
        detector_max_side: Option<u32>,
        /// Look again, larger, up to this longest side when an image gives no plate-like read, as
        /// `plates.retry_max_side` (0 = off; set, every image may be looked at again; default:
        /// the config default, which leaves camera-sized images alone).
        #[arg(long)]
        retry_max_side: Option<u32>,
        /// Find where text is at this longest side first and read only there, as
        /// `plates.locate_max_side` (0 = off; default: the config default).
        #[arg(long)]
        locate_max_side: Option<u32>,
        /// The product path: each image is shown to the lane core of `run` (motion gate, tracker,
        /// voting, withholding, config defaults) for a second at 5 fps with empty road between,
        /// and what it publishes is scored.
        #[arg(long)]
        as_run: bool,
    },
    /// Face detection and verification over a folder in the shared face format
    /// (`detection.json`, `identities.json`, `images/`); last stdout line is a JSON summary.
    Faces {
        #[arg(long)]
        dataset: PathBuf,
        /// Longer side of the frame as the face detector sees it (960 finds smaller faces).
        #[arg(long, default_value_t = DetectorOptions::default().long_side)]
        long_side: u32,
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// QR decoding over ZXing black-box folders (`N.png` + `N.txt`, also in subfolders); last
    /// stdout line is a JSON summary.
    Qr {
        #[arg(long, required_unless_present = "negatives")]
        dataset: Option<PathBuf>,
        /// Clockwise rotations to test each image at.
        #[arg(long, value_delimiter = ',', default_value = "0,90,180,270")]
        rotations: Vec<u32>,
        /// Write each miss (image, rotation, codes found) to this file, one JSON object per line.
        #[arg(long)]
        errors: Option<PathBuf>,
        /// Invert every image first (light-on-dark codes).
        #[arg(long)]
        invert: bool,
        /// zxing-cpp alone, without gatewatch's retries (for comparison).
        #[arg(long)]
        no_fallbacks: bool,
        /// Instead: a folder of photos without codes, each scaled to 1920x1080; reports false
        /// positives and the decode time of a frame without a code.
        #[arg(long, conflicts_with = "dataset")]
        negatives: Option<PathBuf>,
    },
}

pub fn run(cmd: &EvalCmd) -> Result<ExitCode> {
    match cmd {
        EvalCmd::Plates {
            dataset,
            models: set,
            threads,
            errors,
            limit,
            regions,
            detector_max_side,
            retry_max_side,
            locate_max_side,
            as_run,
        } => {
            let mut samples = eval::load_dataset(dataset)?;
            if let Some(n) = limit {
                samples.truncate(*n);
            }
            let defaults = PlateConfig::default();
            let names = if regions.is_empty() {
                &defaults.regions
            } else {
                regions
            };
            let regions = names
                .iter()
                .map(|r| {
                    Region::parse(r).with_context(|| {
                        format!("unknown region {r:?}: allowed {}", grammar::REGION_NAMES)
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let first_side = detector_max_side.unwrap_or(defaults.detector_max_side);
            let retry = crate::config::retry_in_effect(*retry_max_side, first_side);
            let locate_side =
                locate_max_side.unwrap_or_else(|| default_locate_max_side(first_side));
            let opts = ReaderOptions {
                regions: regions.clone(),
                min_confidence: defaults.min_confidence,
                detector_max_side: first_side,
                retry_max_side: retry.0,
                retry_camera_sized: retry.1,
                locate_max_side: locate_side,
                threads: *threads,
                ..ReaderOptions::default()
            };
            let mut reader = PlateReader::load(*set, &models::model_dir(None), None, opts)?;
            let total = samples.len();
            let progress = |i: usize, _: &eval::Outcome| {
                if (i + 1).is_multiple_of(10) || i + 1 == total {
                    eprint!("\reval: {}/{} images", i + 1, total);
                }
            };
            let (outcomes, withheld) = if *as_run {
                let opts = eval::AsRunOptions::with_tracker(defaults.tracker_options());
                let (o, w) = eval::evaluate_as_run(&mut reader, &samples, &opts, progress)?;
                (o, Some(w))
            } else {
                (eval::evaluate(&mut reader, &samples, progress)?, None)
            };
            eprintln!();
            if let Some(path) = errors {
                let mut f = std::fs::File::create(path)?;
                for o in outcomes.iter().filter(|o| !o.perfect()) {
                    writeln!(f, "{}", serde_json::to_string(o)?)?;
                }
            }
            let mut summary = eval::summarise(&outcomes, set.as_str(), *threads);
            summary.regions = regions.iter().map(|r| r.as_str().to_owned()).collect();
            summary.withheld = withheld;
            let refused = reader.refused();
            summary.colour_refused = refused.colour;
            summary.looks_disagreed = refused.looks_disagreed;
            if *as_run {
                summary.mode = "as-run".into();
            }
            summary.locate_max_side = reader.reads_parts().then_some(locate_side);
            summary.located = reader.reads_parts().then_some(reader.located());
            println!("{}", serde_json::to_string(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
        EvalCmd::Faces {
            dataset,
            long_side,
            threads,
        } => {
            let data = face::eval::load_dataset(dataset)?;
            let opts = FaceOptions {
                detector: DetectorOptions {
                    long_side: *long_side,
                    ..DetectorOptions::default()
                },
                threads: *threads,
            };
            let mut reader = FaceReader::load(&models::model_dir(None), None, opts)?;
            let summary = face::eval::evaluate(&mut reader, &data, *threads, |p| {
                if p.image % 10 == 0 || p.image == p.images {
                    eprint!("\reval faces: {}/{} images", p.image, p.images);
                }
            })?;
            eprintln!();
            for e in summary
                .detection_errors
                .iter()
                .chain(&summary.identities_not_found)
            {
                eprintln!("eval faces: {e}");
            }
            println!("{}", serde_json::to_string(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
        EvalCmd::Qr {
            dataset,
            rotations,
            errors,
            invert,
            no_fallbacks,
            negatives,
        } => {
            if let Some(dir) = negatives {
                println!("{}", crate::qr::eval::negatives(dir, !no_fallbacks)?);
                return Ok(ExitCode::SUCCESS);
            }
            let dataset = dataset.as_ref().expect("clap requires it");
            let samples = crate::qr::eval::load_dataset(dataset)?;
            let opts = crate::qr::eval::QrEvalOptions {
                rotations: rotations.clone(),
                invert: *invert,
                fallbacks: !no_fallbacks,
            };
            let mut summary = crate::qr::eval::evaluate(&samples, &opts, |i, n| {
                if i % 20 == 0 || i == n {
                    eprint!("\reval qr: {i}/{n} decodes");
                }
            })?;
            eprintln!();
            let misses = summary
                .as_object_mut()
                .and_then(|o| o.remove("misses"))
                .unwrap_or_default();
            if let Some(path) = errors {
                let mut f = std::fs::File::create(path)?;
                for m in misses.as_array().into_iter().flatten() {
                    writeln!(f, "{m}")?;
                }
            }
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
