//! The face path: accuracy on the shared face photos (skipped when ../shared is absent) and clear
//! errors for bad input. The embedder converter's determinism is tested with the other converted
//! models (`models.rs`).

use gatewatch::face::eval::{evaluate, load_dataset};
use gatewatch::face::{FaceOptions, FaceReader};
use gatewatch::models;
use opencv::core::{Mat, Scalar, CV_8UC3};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `../shared/<sub>` (or `$GATEWATCH_SHARED/<sub>`), or None with a printed reason.
fn shared_dir(sub: &str) -> Option<PathBuf> {
    let base = std::env::var_os("GATEWATCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("../shared"));
    let p = base.join(sub);
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (set GATEWATCH_SHARED to the shared folder to run this test)",
            p.display()
        );
        None
    }
}

fn reader() -> FaceReader {
    FaceReader::load(&models::model_dir(None), None, FaceOptions::default()).unwrap()
}

#[test]
fn faces_on_the_shared_photos() {
    let Some(dir) = shared_dir("data/faces") else {
        return;
    };
    let data = load_dataset(&dir).unwrap();
    let mut reader = reader();
    let s = evaluate(&mut reader, &data, 1, |_| {}).unwrap();
    println!("faces: {}", serde_json::to_string(&s).unwrap());
    // Detection: the reference recipe's figures (docs/accuracy.md).
    assert_eq!(s.faces, 105);
    assert!(s.detected >= 104, "{} of 105 faces found", s.detected);
    assert!(
        s.false_positives <= 1,
        "{} false positives",
        s.false_positives
    );
    // Verification: a wrong conversion or alignment shows here first.
    assert!(
        s.identities_not_found.is_empty(),
        "{:?}",
        s.identities_not_found
    );
    assert!(s.genuine_pairs > 150 && s.impostor_pairs > 3000);
    assert!(s.eer <= 0.01, "EER {}", s.eer);
    assert!(
        s.tar_at_far_1e3 >= 0.99,
        "TAR at FAR 1e-3 {}",
        s.tar_at_far_1e3
    );
}

#[test]
fn a_frame_without_a_face_gives_none_and_bad_frames_are_errors() {
    let mut reader = reader();
    let grey = Mat::new_rows_cols_with_default(720, 1280, CV_8UC3, Scalar::all(128.0)).unwrap();
    assert!(reader.read(&grey).unwrap().is_empty());

    let err = format!("{:#}", reader.read(&Mat::default()).unwrap_err());
    assert!(err.contains("empty frame"), "{err}");
    let grey_8u =
        Mat::new_rows_cols_with_default(720, 1280, opencv::core::CV_8UC1, Scalar::all(0.0))
            .unwrap();
    let err = format!("{:#}", reader.read(&grey_8u).unwrap_err());
    assert!(err.contains("not 8-bit BGR"), "{err}");
}

#[test]
fn eval_faces_names_what_is_wrong_with_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let eval = |dataset: &Path| {
        Command::new(env!("CARGO_BIN_EXE_gatewatch"))
            .args(["eval", "faces", "--dataset"])
            .arg(dataset)
            .output()
            .unwrap()
    };
    let out = eval(dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("detection.json"), "{err}");

    // A corrupt photo stops the evaluation with its name.
    std::fs::write(
        dir.path().join("detection.json"),
        r#"{"broken.jpg": {"faces": [[0, 0, 10, 10]], "ignore": []}}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("identities.json"), "[]").unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    std::fs::write(
        dir.path().join("images/broken.jpg"),
        b"\xff\xd8\xff not a jpeg",
    )
    .unwrap();
    let out = eval(dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.jpg"), "{err}");
}

#[test]
fn models_verify_lists_the_face_models() {
    let out = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["models", "verify"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for file in [models::FACE_DETECTOR, models::FACE_EMBEDDER] {
        assert!(text.contains(&format!("ok       {file}")), "{text}");
    }
}
