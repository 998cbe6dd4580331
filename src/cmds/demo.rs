//! `gatewatch demo`: render the embedded demo input.

use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::demo::{ClipSpec, Renderer};

/// `gatewatch demo …`
#[derive(Debug, clap::Subcommand)]
pub enum DemoCmd {
    /// Render the demo lane clip (MJPEG AVI) and print the plates it shows, one JSON line each.
    Render {
        /// Output video file.
        #[arg(long)]
        out: PathBuf,
        /// Also write the frames as PNG images into this folder.
        #[arg(long)]
        frames: Option<PathBuf>,
    },
}

pub fn run(cmd: &DemoCmd) -> Result<ExitCode> {
    match cmd {
        DemoCmd::Render { out, frames } => {
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
            Ok(ExitCode::SUCCESS)
        }
    }
}
