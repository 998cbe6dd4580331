//! The whole product on real parts: rendered clip → real models → real Mosquitto → subscriber.

use crate::common;

use common::*;
use gatewatch::tooling::demo::{demo_codes, demo_plates, ClipSpec, Renderer};
use std::time::Duration;

#[test]
fn rendered_clip_gives_exactly_one_valid_event_per_passage() {
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
        "handoff = \"every\"\nat_end = \"stop\"\n[camera.qr]\nscan_fps = 5",
    );

    let log = run_to_end(&cfg);
    assert!(sub.wait_until(Duration::from_secs(10), |m| m
        .iter()
        .any(|m| m.topic.ends_with("/status") && m.payload["state"] == "offline")));

    let events = sub.on("/events/plate");
    let mut got = plates(&events);
    let mut want: Vec<String> = demo_plates()
        .iter()
        .map(|p| p.expected.to_owned())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "exactly one event per plate passage\n{log}");

    // The driver of one truck shows a QR code: one event for it, with its text.
    let codes = sub.on("/events/qr");
    let texts: Vec<&str> = codes
        .iter()
        .filter_map(|e| e.payload["text"].as_str())
        .collect();
    let want_codes: Vec<&str> = demo_codes().iter().map(|c| c.text).collect();
    assert_eq!(texts, want_codes, "one event per code shown\n{log}");
    for e in &codes {
        assert_valid("qr.v1.json", &e.payload);
    }
    // Plate and QR events share one sequence, increasing by one per event.
    let mut seqs: Vec<u64> = events
        .iter()
        .chain(&codes)
        .map(|e| e.payload["seq"].as_u64().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=(events.len() + codes.len()) as u64).collect::<Vec<_>>()
    );

    for e in &events {
        assert_valid("plate.v1.json", &e.payload);
        assert_eq!(e.topic, "gatewatch/test/box1/events/plate");
        assert!(!e.retain);
        let want_region = demo_plates()
            .iter()
            .find(|p| p.expected == e.payload["plate"])
            .unwrap()
            .region;
        assert_eq!(e.payload["region"], want_region);
    }

    let status = sub.on("/status");
    assert_eq!(status.first().unwrap().payload["state"], "online");
    assert_eq!(status.last().unwrap().payload["state"], "offline");
    for s in &status {
        assert_valid("status.v1.json", &s.payload);
    }
    // A late subscriber sees the retained offline state.
    let late = Subscriber::start(broker.port, "gatewatch/test/box1/status");
    assert!(late.wait_until(Duration::from_secs(5), |m| m
        .iter()
        .any(|m| m.retain && m.payload["state"] == "offline")));
}
