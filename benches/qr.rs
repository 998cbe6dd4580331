//! QR decode time per 1920×1080 lane frame, with no code and with one code, on one core. Run with
//! `make bench` (or `cargo bench --bench qr`).

use criterion::{criterion_group, criterion_main, Criterion};
use gatewatch::qr::QrDecoder;
use gatewatch::tooling::demo::{qr_image, ClipSpec, Renderer};
use opencv::core::{Mat, Rect};
use opencv::prelude::*;
use std::time::Duration;

fn lane_frame() -> Mat {
    let spec = ClipSpec {
        width: 1920,
        height: 1080,
        ..ClipSpec::default()
    };
    let gap = spec.gap_frames;
    let bgr = Renderer::new(spec).unwrap().frame(gap + 5).unwrap();
    let mut gray = Mat::default();
    opencv::imgproc::cvt_color_def(&bgr, &mut gray, opencv::imgproc::COLOR_BGR2GRAY).unwrap();
    gray
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("qr_1080p");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    let empty = lane_frame();
    let mut with_code = empty.clone();
    let code = qr_image("TK-2026-000123 VN-CN", 5).unwrap();
    code.copy_to(
        &mut Mat::roi_mut(
            &mut with_code,
            Rect::new(1300, 200, code.cols(), code.rows()),
        )
        .unwrap(),
    )
    .unwrap();
    for fallbacks in [true, false] {
        let d = if fallbacks {
            QrDecoder::new()
        } else {
            QrDecoder::zxing_only()
        };
        let name = if fallbacks { "gatewatch" } else { "zxing_only" };
        assert!(d.decode_mat(&empty).unwrap().is_empty());
        assert_eq!(d.decode_mat(&with_code).unwrap().len(), 1);
        g.bench_function(format!("{name}/no_code"), |b| {
            b.iter(|| d.decode_mat(&empty).unwrap())
        });
        g.bench_function(format!("{name}/one_code"), |b| {
            b.iter(|| d.decode_mat(&with_code).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
