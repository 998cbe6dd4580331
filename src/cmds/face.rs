//! `gatewatch face …`: the face gallery of a box, from its command line. It takes the
//! `state_dir` lock like `run` does: a running gatewatch would not see the change and would
//! overwrite it with its next one, so while it runs the hub commands (`face_enrol`, …) are the
//! way to change its gallery.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Config;
use crate::face::gallery::MAX_EMBEDDINGS_PER_IDENTITY;
use crate::face::service::FaceService;
use crate::state_dir;

/// `gatewatch face …`
#[derive(Debug, clap::Subcommand)]
pub enum FaceCmd {
    /// Enrol one identity from one or more photos, each showing one face.
    Enrol {
        #[arg(long, short)]
        config: PathBuf,
        /// The identity's gallery id (1-64 of A-Z a-z 0-9 . _ -): what face events carry.
        #[arg(long)]
        id: String,
        /// A label kept in the gallery (never published).
        #[arg(long)]
        label: Option<String>,
        /// Replace the identity's embeddings instead of adding to them.
        #[arg(long)]
        replace: bool,
        /// Photos (JPEG, PNG, WebP, BMP), one face each.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Enrol every folder of DIR as an identity named after it, from the photos inside.
    Import {
        #[arg(long, short)]
        config: PathBuf,
        /// Replace existing identities' embeddings instead of adding to them.
        #[arg(long)]
        replace: bool,
        dir: PathBuf,
    },
    /// Remove an identity.
    Remove {
        #[arg(long, short)]
        config: PathBuf,
        id: String,
    },
    /// List the identities (one JSON line each; never the embeddings).
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
}

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp"];

pub fn run(cmd: &FaceCmd) -> Result<ExitCode> {
    let config = match cmd {
        FaceCmd::Enrol { config, .. }
        | FaceCmd::Import { config, .. }
        | FaceCmd::Remove { config, .. }
        | FaceCmd::List { config } => config,
    };
    let cfg = Config::load(config)?;
    state_dir::create_private_dir(&cfg.state_dir)
        .with_context(|| format!("cannot create state_dir {}", cfg.state_dir.display()))?;
    let _lock = state_dir::lock(&cfg.state_dir).map_err(|e| {
        anyhow::anyhow!("{e}. While gatewatch runs, change its gallery with the hub commands face_enrol, face_remove")
    })?;
    let service = FaceService::open(&cfg.state_dir, cfg.face_models())?;
    match cmd {
        FaceCmd::Enrol {
            id,
            label,
            replace,
            images,
            ..
        } => {
            let mut embeddings = Vec::new();
            let mut problems = Vec::new();
            for path in images {
                match embed_file(&service, path) {
                    Ok(e) => embeddings.push(e),
                    Err(e) => problems.push(e),
                }
            }
            if !problems.is_empty() {
                bail!("nothing enrolled:\n  - {}", problems.join("\n  - "));
            }
            let g = service
                .enrol(id, label.as_deref(), embeddings, *replace)
                .map_err(anyhow::Error::msg)?;
            eprintln!(
                "face: {id} enrolled from {} photo(s); gallery version {}, {} identities",
                images.len(),
                g.version,
                g.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        FaceCmd::Import { dir, replace, .. } => import(&service, dir, *replace),
        FaceCmd::Remove { id, .. } => {
            let g = service.remove(id).map_err(anyhow::Error::msg)?;
            eprintln!(
                "face: {id} removed; gallery version {}, {} identities",
                g.version,
                g.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        FaceCmd::List { .. } => {
            let g = service.gallery();
            for line in g.list(0, g.len()) {
                println!("{}", serde_json::to_string(&line)?);
            }
            eprintln!(
                "face: gallery version {}, {} identities",
                g.version,
                g.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The embedding of the one face of a photo file, or what is wrong, naming the file.
fn embed_file(service: &FaceService, path: &Path) -> Result<crate::face::embed::Embedding, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    service
        .face_of_image(&bytes)
        .map(|f| f.embedding)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Enrols each folder of `dir` whose photos all show one usable face; the others are listed and
/// left out (exit 1), so one bad photo does not hold up a whole import.
fn import(service: &Arc<FaceService>, dir: &Path, replace: bool) -> Result<ExitCode> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    if folders.is_empty() {
        bail!(
            "{} has no folders: give one folder per identity, named by its id, holding its photos",
            dir.display()
        );
    }
    let (mut enrolled, mut skipped) = (0, 0);
    for folder in folders {
        let id = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut photos: Vec<PathBuf> = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot read {}", folder.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
            })
            .collect();
        photos.sort();
        let outcome = if let Err(e) = crate::face::gallery::check_id(&id) {
            Err(vec![format!("folder name is not an identity id: {e}")])
        } else if photos.is_empty() {
            Err(vec![format!("no photos ({})", IMAGE_EXTENSIONS.join(", "))])
        } else if photos.len() > MAX_EMBEDDINGS_PER_IDENTITY {
            Err(vec![format!(
                "{} photos: at most {MAX_EMBEDDINGS_PER_IDENTITY} per identity",
                photos.len()
            )])
        } else {
            let (ok, bad): (Vec<_>, Vec<_>) = photos
                .iter()
                .map(|p| embed_file(service, p))
                .partition(Result::is_ok);
            if bad.is_empty() {
                let embeddings = ok.into_iter().map(Result::unwrap).collect();
                service
                    .enrol(&id, None, embeddings, replace)
                    .map_err(|e| vec![e])
            } else {
                Err(bad.into_iter().map(|e| e.unwrap_err()).collect())
            }
        };
        match outcome {
            Ok(_) => {
                enrolled += 1;
                eprintln!("face: {id}: enrolled from {} photo(s)", photos.len());
            }
            Err(problems) => {
                skipped += 1;
                eprintln!(
                    "face: {}: skipped:\n  - {}",
                    folder.display(),
                    problems.join("\n  - ")
                );
            }
        }
    }
    let g = service.gallery();
    eprintln!(
        "face: import done: {enrolled} identities enrolled, {skipped} skipped; gallery version {}, {} identities",
        g.version,
        g.len()
    );
    Ok(if skipped == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
