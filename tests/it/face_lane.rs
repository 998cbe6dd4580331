//! Faces in the product: the rendered demo clip (plates, a QR code, two drivers' real faces from
//! scikit-image: one enrolled, one not) through `gatewatch run` on a real Mosquitto; the gallery
//! surviving a SIGKILL in the middle of its writes; hub commands for the gallery on a running box.

use crate::common;

use base64::Engine;
use common::*;
use gatewatch::face::embed::{Embedding, EMBEDDING_DIM};
use gatewatch::face::gallery::{Gallery, Identity};
use gatewatch::face::store::GalleryStore;
use gatewatch::models;
use gatewatch::tooling::demo::{demo_codes, demo_plates, ClipSpec, Renderer};
use gatewatch::tooling::demo_faces::{demo_faces, enrol_picture};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// Writes the enrolment picture of every enrolled demo face into `dir`; returns (id, path).
fn enrol_pictures(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    std::fs::create_dir_all(dir).unwrap();
    demo_faces()
        .iter()
        .filter_map(|f| {
            let id = f.identity?;
            let picture = enrol_picture(&models::model_dir(None), f).unwrap();
            let path = dir.join(format!("{id}.png"));
            opencv::imgcodecs::imwrite_def(path.to_str().unwrap(), &picture).unwrap();
            Some((id.to_owned(), path))
        })
        .collect()
}

fn face_cli(cfg: &Path, args: &[&str]) -> std::process::Output {
    gatewatch()
        .arg("face")
        .args(&args[..1])
        .arg("--config")
        .arg(cfg)
        .args(&args[1..])
        .output()
        .unwrap()
}

#[test]
fn the_enrolled_driver_is_named_the_other_is_null_one_event_each_in_one_seq_stream() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/#");
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.avi");
    Renderer::new(ClipSpec::default())
        .unwrap()
        .write_video(&clip)
        .unwrap();
    let cfg = write_config(
        dir.path(),
        broker.port,
        clip.to_str().unwrap(),
        "handoff = \"every\"\nat_end = \"stop\"\n[camera.qr]\nscan_fps = 5\n[camera.face]\nscan_fps = 5",
    );
    for (id, picture) in enrol_pictures(&dir.path().join("enrol")) {
        let out = face_cli(&cfg, &["enrol", "--id", &id, picture.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = face_cli(&cfg, &["list"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("\"identity\":\"demo-astronaut\""), "{text}");

    let log = run_to_end(&cfg);
    assert!(sub.wait_until(Duration::from_secs(10), |m| m
        .iter()
        .any(|m| m.topic.ends_with("/status") && m.payload["state"] == "offline")));

    let faces = sub.on("/events/face");
    let mut ids: Vec<Option<&str>> = faces
        .iter()
        .map(|e| e.payload["identity"].as_str())
        .collect();
    ids.sort();
    let mut want: Vec<Option<&str>> = demo_faces().iter().map(|f| f.identity).collect();
    want.sort();
    assert_eq!(ids, want, "one event per driver\n{log}");
    for e in &faces {
        assert_valid("face.v1.json", &e.payload);
        assert!(
            e.payload.get("image_jpeg_b64").is_none(),
            "images are off by default"
        );
        assert_eq!(e.payload["threshold"], 0.926);
        let score = e.payload["score"].as_f64().unwrap();
        if e.payload["identity"].is_null() {
            assert!(
                score < 0.9,
                "the other driver is far from the gallery: {score}"
            );
        } else {
            assert!(score > 0.95, "the enrolled driver matches clearly: {score}");
        }
        assert!(e.payload["margin"].is_null(), "one identity: no runner-up");
    }
    // Who was seen is not logged, nor any descriptor.
    assert!(!log.contains("demo-astronaut"), "{log}");

    // Plates, the QR code and the faces share one sequence, +1 per event.
    let plates = sub.on("/events/plate");
    let codes = sub.on("/events/qr");
    assert_eq!(plates.len(), demo_plates().len(), "{log}");
    assert_eq!(codes.len(), demo_codes().len(), "{log}");
    let mut seqs: Vec<u64> = plates
        .iter()
        .chain(&codes)
        .chain(&faces)
        .map(|e| e.payload["seq"].as_u64().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

    let status = sub.on("/status");
    for s in &status {
        assert_valid("status.v1.json", &s.payload);
    }
    let online = status
        .iter()
        .rev()
        .find(|s| s.payload["state"] == "online")
        .unwrap();
    assert_eq!(online.payload["faces"]["gallery"]["identities"], 1);
    assert_eq!(online.payload["faces"]["gallery"]["version"], 1);
    assert!(online.payload["cameras"]["cam1"]["face"]["scanned"]
        .as_u64()
        .is_some());
}

/// A unit embedding from a seed (xorshift; no randomness that changes between runs).
fn embedding(seed: u32) -> Embedding {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    Embedding::from_raw(
        (0..EMBEDDING_DIM)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2000) as f32 / 1000.0 - 1.0
            })
            .collect(),
    )
    .unwrap()
}

#[test]
fn a_sigkill_during_enrolment_leaves_the_old_or_the_new_gallery_never_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), free_port(), "folder:/nonexistent", "");
    let state = dir.path().join("state");
    // A large gallery (about 14 MB) makes every save long enough for kills to land inside it.
    let store = GalleryStore::open(&state.join("faces")).unwrap();
    let base: Vec<Identity> = (0..20_000)
        .map(|i| Identity {
            id: format!("base-{i:05}"),
            label: None,
            embeddings: vec![embedding(i)],
            added_at: "2026-12-02T00:00:00.000Z".into(),
        })
        .collect();
    let base_version = 100;
    store
        .save(&Gallery::from_identities(base_version, base).unwrap())
        .unwrap();
    // An import of 12 identities saves 12 times.
    let import = dir.path().join("import");
    let (_, picture) = enrol_pictures(&dir.path().join("enrol")).remove(0);
    for i in 0..12 {
        let folder = import.join(format!("p{i:02}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(&picture, folder.join("a.png")).unwrap();
    }
    let mut last_version = base_version;
    let mut torn_saves = 0;
    for round in 0..6u64 {
        let tmp = store.path().with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut child = Running(
            gatewatch()
                .args(["face", "import", "--config"])
                .arg(&cfg)
                .arg(&import)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Killed as soon as a save has begun (its temporary file exists), a little later each
        // round: before, during or after the write of about 14 MB. Whenever the kill lands, the
        // check below must hold; the count printed says how many landed inside a save.
        let until = std::time::Instant::now() + Duration::from_secs(120);
        while !tmp.exists()
            && child.try_wait().unwrap().is_none()
            && std::time::Instant::now() < until
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(3 * round));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let g = store
            .load()
            .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
        assert!(g.version >= last_version, "the version never goes back");
        assert!(g.len() >= 20_000 && g.len() <= 20_012, "{}", g.len());
        // Each import change adds one identity or one embedding: version and content agree.
        let added: usize = g
            .identities()
            .iter()
            .filter(|i| i.id.starts_with('p'))
            .map(|i| i.embeddings.len())
            .sum();
        assert_eq!(added as u64, g.version - base_version, "round {round}");
        // A leftover temporary file means the kill landed inside a save.
        let torn = store.path().with_extension("json.tmp").exists();
        println!(
            "round {round}: version {}, killed mid-save: {torn}",
            g.version
        );
        last_version = g.version;
        torn_saves += torn as u32;
    }
    println!("{torn_saves} of 6 kills landed inside a save");
    assert!(
        torn_saves > 0,
        "no kill landed inside a save: the test showed nothing"
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(store.path()), 0o600);
    assert_eq!(mode(&state.join("faces")), 0o700);
}

#[test]
fn gallery_commands_on_a_running_box_are_answered_and_bad_ones_change_nothing() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/#");
    let dir = tempfile::tempdir().unwrap();
    let url = demo_frames(dir.path(), 1);
    let cfg = write_config(dir.path(), broker.port, &url, "fps = 2.0");
    let _gw = run_in_background(&cfg);
    wait_online(&sub);
    let hub = Publisher::new(broker.port);

    // The enrolment picture as a JPEG small enough for a command (16 KiB with its base64).
    let (_, picture) = enrol_pictures(&dir.path().join("enrol")).remove(0);
    let image = opencv::imgcodecs::imread_def(picture.to_str().unwrap()).unwrap();
    let mut jpeg = opencv::core::Vector::<u8>::new();
    let params =
        opencv::core::Vector::<i32>::from_slice(&[opencv::imgcodecs::IMWRITE_JPEG_QUALITY, 85]);
    opencv::imgcodecs::imencode(".jpg", &image, &mut jpeg, &params).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(jpeg.as_slice());
    use opencv::prelude::MatTraitConst;
    println!(
        "face_enrol photo: {}x{} JPEG quality 85, {} bytes, {} as base64",
        image.cols(),
        image.rows(),
        jpeg.len(),
        b64.len()
    );
    assert!(b64.len() < 15_000, "{} bytes of base64", b64.len());
    hub.send(
        "face_enrol",
        serde_json::json!({"id": "e1", "identity": "driver-1", "label": "Test", "image_b64": b64})
            .to_string(),
    );
    let r = reply(&sub, "face_enrol", "e1");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["version"], 1);

    // No face: a grey picture.
    let grey = opencv::core::Mat::new_rows_cols_with_default(
        200,
        200,
        opencv::core::CV_8UC3,
        opencv::core::Scalar::all(120.0),
    )
    .unwrap();
    let mut png = opencv::core::Vector::<u8>::new();
    opencv::imgcodecs::imencode_def(".png", &grey, &mut png).unwrap();
    let grey_b64 = base64::engine::general_purpose::STANDARD.encode(png.as_slice());
    let bad = [
        (
            serde_json::json!({"id": "b1", "identity": "x", "image_b64": grey_b64}),
            "no face",
        ),
        (
            serde_json::json!({"id": "b2", "identity": "x", "image_b64": "aGVsbG8="}),
            "bad image",
        ),
        (
            serde_json::json!({"id": "b3", "identity": "x", "embedding": [0.5, 0.5]}),
            "expected 128",
        ),
    ];
    for (req, want) in &bad {
        hub.send("face_enrol", req.to_string());
        let r = reply(&sub, "face_enrol", req["id"].clone());
        let err = r["error"].as_str().unwrap_or_default().to_owned();
        assert!(r["ok"] == false && err.contains(want), "{req}: {r}");
    }
    // An oversized photo is refused unread (so its reply carries no id).
    let big = serde_json::json!({"id": "b4", "identity": "x", "image_b64": "A".repeat(20_000)});
    hub.send("face_enrol", big.to_string());
    assert!(
        sub.wait_until(Duration::from_secs(15), |m| m.iter().any(|m| m
            .topic
            .ends_with("/cmd/face_enrol/reply")
            && m.payload["id"].is_null()
            && m.payload["error"]
                .as_str()
                .is_some_and(|e| e.contains("exceeds the limit"))))
    );
    hub.send("face_list", r#"{"id":"l1","limit":10}"#);
    let r = reply(&sub, "face_list", "l1");
    assert_eq!(r["result"]["total"], 1, "{r}");
    assert_eq!(
        r["result"]["version"], 1,
        "the refused ones changed nothing"
    );
    assert_eq!(r["result"]["identities"][0]["identity"], "driver-1");
    hub.send("face_remove", r#"{"id":"r1","identity":"driver-1"}"#);
    assert_eq!(reply(&sub, "face_remove", "r1")["result"]["version"], 2);
    hub.send("status", r#"{"id":"s1"}"#);
    let s = reply(&sub, "status", "s1");
    assert_valid("status.v1.json", &s["result"]);
    assert_eq!(s["result"]["faces"]["gallery"]["version"], 2);
}

#[test]
fn with_publish_images_the_event_carries_the_aligned_face_and_check_warns() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/#");
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.avi");
    // One vehicle whose driver is the astronaut, who is not enrolled here.
    let face = demo_faces().remove(0);
    Renderer::with_plates(
        ClipSpec::default(),
        demo_plates().into_iter().take(1).collect(),
    )
    .unwrap()
    .with_faces(vec![face], &models::model_dir(None))
    .unwrap()
    .write_video(&clip)
    .unwrap();
    let cfg = write_config(
        dir.path(),
        broker.port,
        clip.to_str().unwrap(),
        "handoff = \"every\"\nat_end = \"stop\"\n[camera.face]\npublish_images = true",
    );
    let check = gatewatch()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let warned = String::from_utf8_lossy(&check.stderr);
    assert!(
        warned.contains("warning: camera[0].face.publish_images is on"),
        "{warned}"
    );
    let log = run_to_end(&cfg);
    assert!(sub.wait_until(Duration::from_secs(10), |m| m
        .iter()
        .any(|m| m.topic.ends_with("/status") && m.payload["state"] == "offline")));
    let faces = sub.on("/events/face");
    assert_eq!(faces.len(), 1, "{log}");
    let e = &faces[0].payload;
    assert_valid("face.v1.json", e);
    assert!(
        e["identity"].is_null() && e["score"].is_null(),
        "empty gallery: {e}"
    );
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(e["image_jpeg_b64"].as_str().expect("an image"))
        .unwrap();
    let img = gatewatch::vision::decode_image(&jpeg).unwrap();
    use opencv::prelude::MatTraitConst;
    assert_eq!((img.cols(), img.rows()), (150, 150));
    // The image went to the broker only, never to the log.
    assert!(!log.contains(&e["image_jpeg_b64"].as_str().unwrap()[..40]));
}
