//! Face path latency on a 1280×720 frame holding one real face (scikit-image's public-domain
//! `astronaut.png`, fetched by the setup step like the models): detect, align + embed one face,
//! and the whole read. One intra-op thread, as the product runs. Then the 1:N gallery search
//! (brute force over one f32 matrix) at 10k and 100k identities; the target is at most 5 ms at
//! 100k on the 2-core development box. Run with `make bench` (or `cargo bench --bench faces`).

use criterion::{criterion_group, criterion_main, Criterion};
use gatewatch::face::embed::{Embedding, EMBEDDING_DIM};
use gatewatch::face::gallery::{Gallery, Identity};
use gatewatch::face::{FaceOptions, FaceReader};
use gatewatch::models;
use gatewatch::vision;
use opencv::core::{Mat, Rect, Scalar, CV_8UC3};
use opencv::prelude::*;
use std::time::Duration;

/// The 512×512 photo in the middle of a grey 720p frame, as a camera over a lane would frame a
/// driver (the face is about 110 px wide).
fn frame() -> Mat {
    let dir = models::model_dir(None);
    let path = models::verified_asset(&dir, models::FACE_BENCH_FRAME).unwrap();
    let photo = vision::read_image(&path).unwrap();
    let mut frame =
        Mat::new_rows_cols_with_default(720, 1280, CV_8UC3, Scalar::all(110.0)).unwrap();
    let at = Rect::new(384, 104, photo.cols(), photo.rows());
    photo
        .copy_to(&mut Mat::roi_mut(&mut frame, at).unwrap())
        .unwrap();
    frame
}

fn faces(c: &mut Criterion) {
    let mut g = c.benchmark_group("faces_720p");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    let frame = frame();
    let mut reader =
        FaceReader::load(&models::model_dir(None), None, FaceOptions::default()).unwrap();
    let found = reader.detect(&frame).unwrap();
    assert_eq!(found.len(), 1, "the bench frame holds one face: {found:?}");
    g.bench_function("detect", |b| b.iter(|| reader.detect(&frame).unwrap()));
    g.bench_function("align_embed_one_face", |b| {
        b.iter(|| reader.embed(&frame, &found).unwrap())
    });
    g.bench_function("detect_align_embed", |b| {
        b.iter(|| {
            let read = reader.read(&frame).unwrap();
            assert_eq!(read.len(), 1);
            read
        })
    });
    g.finish();
}

/// `n` unit embeddings from a fixed xorshift sequence (the same gallery every run).
fn embeddings(n: usize) -> Vec<Embedding> {
    let mut s = 0x9E37_79B9u32;
    (0..n)
        .map(|_| {
            let v = (0..EMBEDDING_DIM)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    (s % 2000) as f32 / 1000.0 - 1.0
                })
                .collect();
            Embedding::from_raw(v).unwrap()
        })
        .collect()
}

fn gallery_search(c: &mut Criterion) {
    let mut g = c.benchmark_group("face_gallery_search");
    g.sample_size(30)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    let probe = embeddings(1).remove(0);
    for n in [10_000usize, 100_000] {
        let identities = embeddings(n)
            .into_iter()
            .enumerate()
            .map(|(i, e)| Identity {
                id: format!("id-{i:06}"),
                label: None,
                embeddings: vec![e],
                added_at: String::new(),
            })
            .collect();
        let gallery = Gallery::from_identities(1, identities).unwrap();
        g.bench_function(format!("{}k_identities", n / 1000), |b| {
            b.iter(|| gallery.search(std::hint::black_box(&probe)))
        });
    }
    g.finish();
}

criterion_group!(benches, faces, gallery_search);
criterion_main!(benches);
