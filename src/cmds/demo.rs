//! `gatewatch demo`: render the embedded demo input.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::tooling::demo::{ClipSpec, Renderer};

/// `gatewatch demo …`
#[derive(Debug, clap::Subcommand)]
pub enum DemoCmd {
    /// Render the demo lane clip (MJPEG AVI) and print the plates (`{"plate": …}`), QR codes
    /// (`{"qr": …}`) and faces (`{"face": identity or null}`) it shows, one JSON line each.
    Render {
        /// Output video file.
        #[arg(long)]
        out: PathBuf,
        /// Also write the frames as PNG images into this folder.
        #[arg(long)]
        frames: Option<PathBuf>,
        /// Write the enrolment picture of each face the demo enrols into this folder, as
        /// `<identity>.png` (for `gatewatch face enrol`).
        #[arg(long)]
        enrol: Option<PathBuf>,
    },
    /// Render labelled plate photos (OpenALPR benchmark format, for `eval plates`): plates no
    /// public dataset on the registries holds, drawn with real fonts.
    Plates {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "cn")]
        kind: crate::tooling::demo_dataset::PlateKind,
        #[arg(long, default_value_t = 100)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 1280)]
        width: i32,
        #[arg(long, default_value_t = 720)]
        height: i32,
    },
}

pub fn run(cmd: &DemoCmd) -> Result<ExitCode> {
    match cmd {
        DemoCmd::Plates {
            out,
            kind,
            count,
            seed,
            width,
            height,
        } => {
            let plates = crate::tooling::demo_dataset::random_plates(*kind, *count, *seed);
            crate::tooling::demo_dataset::write_dataset(out, plates, *width, *height)?;
            eprintln!(
                "demo: wrote {count} labelled plate images to {}",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DemoCmd::Render { out, frames, enrol } => {
            let r = Renderer::new(ClipSpec::default())?;
            r.write_video(out)?;
            if let Some(dir) = frames {
                r.write_frames(dir)?;
            }
            eprintln!(
                "demo: wrote {} frames to {}",
                r.frame_count(),
                out.display()
            );
            for p in r.plates() {
                println!(
                    "{}",
                    serde_json::json!({"plate": p.expected, "region": p.region, "printed": p.lines})
                );
            }
            for c in r.codes() {
                println!(
                    "{}",
                    serde_json::json!({"qr": c.text, "vehicle": c.vehicle})
                );
            }
            for f in r.faces() {
                println!(
                    "{}",
                    serde_json::json!({"face": f.identity, "photo": f.photo, "vehicle": f.vehicle})
                );
            }
            if let Some(dir) = enrol {
                std::fs::create_dir_all(dir)?;
                let model_dir = crate::models::model_dir(None);
                for f in r.faces() {
                    let Some(id) = f.identity else { continue };
                    let picture = crate::tooling::demo_faces::enrol_picture(&model_dir, f)?;
                    let path = dir.join(format!("{id}.png"));
                    opencv::imgcodecs::imwrite_def(
                        path.to_str().context("path is not UTF-8")?,
                        &picture,
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
