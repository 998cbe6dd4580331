//! Per-stage and whole-frame latency of the plate path at 1280×720 and 1920×1080, on rendered lane
//! frames with one plate. Run with `make bench` (or `cargo bench`); models come from the setup step.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gatewatch::models::{self, ModelSet};
use gatewatch::motion::{parts_share, Motion, MotionConfig, MotionGate};
use gatewatch::plate::grammar::Region;
use gatewatch::plate::reader::{PlateRead, PlateReader, ReaderOptions};
use gatewatch::plate::text_det::TextDetector;
use gatewatch::plate::text_rec::TextRecogniser;
use gatewatch::tooling::demo::{demo_plates, ClipSpec, Renderer};
use gatewatch::vision;
use opencv::core::Mat;
use opencv::prelude::*;
use std::time::Duration;

const SIZES: [(i32, i32); 2] = [(1280, 720), (1920, 1080)];

fn frame(w: i32, h: i32) -> Mat {
    let spec = ClipSpec {
        width: w,
        height: h,
        ..ClipSpec::default()
    };
    let gap = spec.gap_frames;
    Renderer::new(spec).unwrap().frame(gap + 5).unwrap()
}

fn session(file: &str) -> ort::session::Session {
    let env = models::ort_environment(None).unwrap();
    let path = models::verified_model(&models::model_dir(None), file).unwrap();
    models::open_session(env, &path, 1).unwrap()
}

fn stages(c: &mut Criterion) {
    let mut g = c.benchmark_group("stages");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    // The default set's detector (two convolutions in int8), and the float one the fast-alpr set
    // reads lines of Chinese plate boxes with.
    let mut det = TextDetector::new(session("ppocr_v4_det_int8.onnx"), 960);
    let mut det_float = TextDetector::new(session("ppocr_v4_det.onnx"), 960);
    // The same for the Latin recogniser (18 convolutions in int8; fast-alpr's second opinion).
    let mut rec = TextRecogniser::new(session("ppocr_v6_rec_small_int8.onnx")).unwrap();
    let mut rec_float = TextRecogniser::new(session("ppocr_v6_rec_small.onnx")).unwrap();
    for (w, h) in SIZES {
        let f = frame(w, h);
        let id = format!("{w}x{h}");
        g.bench_function(BenchmarkId::new("preprocess_resize_normalise", &id), |b| {
            b.iter(|| det.preprocess(&f).unwrap())
        });
        g.bench_function(BenchmarkId::new("text_detector", &id), |b| {
            b.iter(|| det.detect(&f).unwrap())
        });
        g.bench_function(BenchmarkId::new("text_detector_float", &id), |b| {
            b.iter(|| det_float.detect(&f).unwrap())
        });
        let boxes = det.detect(&f).unwrap();
        let crops: Vec<Mat> = boxes
            .iter()
            .map(|b| vision::warp_quad(&f, &b.quad).unwrap())
            .collect();
        if let Some(crop) = crops.first() {
            let one = [crop.try_clone().unwrap()];
            g.bench_function(BenchmarkId::new("recogniser_v6_one_line", &id), |b| {
                b.iter(|| rec.recognise(&one).unwrap())
            });
            g.bench_function(BenchmarkId::new("recogniser_v6_float_one_line", &id), |b| {
                b.iter(|| rec_float.recognise(&one).unwrap())
            });
        }
    }
    g.finish();
}

fn full_frame(c: &mut Criterion) {
    let mut g = c.benchmark_group("full_frame");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    // The config default reads VN, CN and generic plates; without CN the CJK recogniser is not
    // asked, which is what a Latin-only lane pays.
    let latin_only = vec![Region::Vn, Region::Generic];
    for (set, regions, name) in [
        (ModelSet::Default, None, "default"),
        (ModelSet::Default, Some(&latin_only), "default_no_cn"),
        (ModelSet::FastAlpr, None, "fast-alpr"),
        (ModelSet::FastAlpr, Some(&latin_only), "fast-alpr_no_cn"),
    ] {
        let mut opts = ReaderOptions::default();
        if let Some(r) = regions {
            opts.regions = r.clone();
        }
        let Ok(mut reader) = PlateReader::load(set, &models::model_dir(None), None, opts) else {
            eprintln!("bench: model set {set} unavailable, skipped");
            continue;
        };
        for (w, h) in SIZES {
            // The first frame of the first vehicle's pass in which this set reads its plate: the
            // bench times reading one plate, not missing it.
            let spec = ClipSpec {
                width: w,
                height: h,
                ..ClipSpec::default()
            };
            let renderer = Renderer::new(spec.clone()).unwrap();
            let f = (spec.gap_frames..spec.gap_frames + spec.frames_per_vehicle)
                .map(|i| renderer.frame(i).unwrap())
                .find(|f| reader.read(f).unwrap().len() == 1)
                .unwrap_or_else(|| panic!("{name} reads no frame of the first vehicle at {w}x{h}"));
            g.bench_function(BenchmarkId::new(name, format!("{w}x{h}")), |b| {
                b.iter(|| reader.read(&f).unwrap())
            });
        }
    }
    g.finish();
}

/// The default set reading only the part of a 1080p lane that moved, as `run` does on a frame
/// where a vehicle moves through a still lane (`[camera.motion] part_reads`). The part is the
/// motion gate's between two frames of the vehicle's pass 0.2 s apart (`run` read about 6 frames
/// a second of the 25 fps demo clip with parts): the first such frame, from the second of the
/// pass, whose parts read as the whole frame does. Two scenes: the vehicle alone, and the demo's
/// (its driver's face moving in the booth window at the top left too: two parts).
fn moved_part(c: &mut Criterion) {
    let mut g = c.benchmark_group("moved_part");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    let Ok(mut reader) = PlateReader::load(
        ModelSet::Default,
        &models::model_dir(None),
        None,
        ReaderOptions::default(),
    ) else {
        eprintln!("bench: model set default unavailable, skipped");
        return;
    };
    let (w, h) = (1920, 1080);
    let spec = ClipSpec {
        width: w,
        height: h,
        ..ClipSpec::default()
    };
    let vehicle_only = Renderer::with_plates(spec.clone(), demo_plates()).unwrap();
    let demo = Renderer::new(spec.clone()).unwrap();
    let plates =
        |reads: Vec<PlateRead>| -> Vec<String> { reads.into_iter().map(|r| r.plate).collect() };
    for (scene, renderer) in [("vehicle", vehicle_only), ("vehicle_and_driver", demo)] {
        let pass = spec.gap_frames..spec.gap_frames + spec.frames_per_vehicle;
        let (f, parts) = (pass.start + 1..pass.end)
            .filter_map(|i| {
                let mut gate = MotionGate::new(MotionConfig::default());
                gate.judge(&renderer.frame(i - 1).unwrap(), 0.0).unwrap();
                let f = renderer.frame(i).unwrap();
                match gate.judge(&f, 0.2).unwrap() {
                    Motion::Parts(parts) => Some((f, parts)),
                    _ => None,
                }
            })
            .find(|(f, parts)| {
                let whole = plates(reader.read(f).unwrap());
                let in_parts: Vec<String> = parts
                    .iter()
                    .flat_map(|p| plates(reader.read_part(f, Some(*p)).unwrap()))
                    .collect();
                whole.len() == 1 && in_parts == whole
            })
            .unwrap_or_else(|| panic!("{scene}: no moved part read as the whole frame"));
        eprintln!(
            "bench: {scene}: moved parts {:?}, {:.2} of the frame",
            parts
                .iter()
                .map(|p| format!("{}x{} at ({}, {})", p.width, p.height, p.x, p.y))
                .collect::<Vec<_>>(),
            parts_share(&parts, w, h)
        );
        g.bench_function(BenchmarkId::new(format!("default/{w}x{h}"), scene), |b| {
            b.iter(|| {
                for p in &parts {
                    reader.read_part(&f, Some(*p)).unwrap();
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, stages, full_frame, moved_part);
criterion_main!(benches);
