//! `gatewatch models`: list and verify model files against the manifest.

use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::models::{self, Manifest, ModelSet};

/// `gatewatch models …`
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCmd {
    /// Check every model file, and the ONNX Runtime library this binary loads, against the
    /// manifest's sha256.
    Verify {
        /// Folder holding the models (default: models.dir resolution).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Fail only for this set's models (default: the default set's, and any file present but
        /// wrong).
        #[arg(long)]
        set: Option<ModelSet>,
    },
    /// List the manifest: files, roles, sets, sources and licences.
    List,
}

pub fn run(cmd: &ModelsCmd) -> Result<ExitCode> {
    let manifest = Manifest::builtin();
    match cmd {
        ModelsCmd::List => {
            for m in &manifest.model {
                let pkg = manifest.package_of(m);
                // Pinned as each registry's client writes it: pip `name==1.0`, npm `name@1.0`.
                let pin = if pkg.is_some_and(|p| p.registry == "npm") {
                    "@"
                } else {
                    "=="
                };
                println!(
                    "{:<28} {:<22} sets={:<20} {} {}{pin}{} [{}]",
                    m.file,
                    m.role,
                    m.sets.join(","),
                    pkg.map_or("?", |p| p.registry.as_str()),
                    pkg.map_or("?", |p| p.name.as_str()),
                    pkg.and_then(|p| p.version.as_deref()).unwrap_or("-"),
                    m.licence
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCmd::Verify { dir, set } => {
            let dir = models::model_dir(dir.as_deref());
            println!("verifying models in {}", dir.display());
            let mut failed = 0;
            for v in models::verify_all(&dir) {
                // A box needs the default set (what the Debian package installs); the other sets'
                // files may be absent, but one that is present must be right.
                let needed = match set {
                    Some(s) => v.sets.iter().any(|x| x == s.as_str()),
                    None => v.sets.iter().any(|x| x == ModelSet::Default.as_str()),
                };
                let present = dir.join(&v.file).exists();
                match &v.status {
                    Ok(()) => println!("ok       {}", v.file),
                    Err(e) if needed || present => {
                        failed += 1;
                        println!("FAILED   {}: {e}", v.file)
                    }
                    Err(_) => println!(
                        "absent   {} ({}sets {} unavailable)",
                        v.file,
                        if v.optional { "optional; " } else { "" },
                        v.sets.join(",")
                    ),
                }
            }
            // The runtime this binary would load, checked for this binary's architecture.
            match models::verify_runtime(None) {
                Ok(lib) => println!("ok       {} ({})", lib.display(), std::env::consts::ARCH),
                Err(e) => {
                    failed += 1;
                    println!("FAILED   ONNX Runtime: {e:#}")
                }
            }
            if failed > 0 {
                println!("{failed} model or runtime file(s) missing or corrupt");
                return Ok(ExitCode::from(1));
            }
            println!("all required models and the ONNX Runtime verified");
            Ok(ExitCode::SUCCESS)
        }
    }
}
