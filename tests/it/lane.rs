//! A camera's lane settings on the real product: the region of interest and the minimum plate
//! height keep plates out, motion gating skips still frames and reads only the part of the lane
//! that moved (counted in status) without changing what is read, and `check` names bad settings.

use crate::common;

use common::*;
use gatewatch::tooling::demo::demo_plates;
use std::time::Duration;

#[test]
fn roi_and_min_height_keep_plates_out_and_still_frames_skip_inference() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/#");
    let dir = tempfile::tempdir().unwrap();
    let url = demo_frames(dir.path(), 2);
    // cam1 (the control) reads everything; cam2 only looks at the top fifth of the frame, where
    // no plate passes; cam3 wants plates taller than the frame's plates are.
    let more = format!(
        r#"fps = 5.0
handoff = "every"
at_end = "restart"
[[camera]]
id = "cam2"
lane = "in-2"
url = "{url}"
fps = 5.0
handoff = "every"
at_end = "restart"
roi = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.2], [0.0, 0.2]]
[[camera]]
id = "cam3"
lane = "in-3"
url = "{url}"
fps = 5.0
handoff = "every"
at_end = "restart"
min_plate_height_px = 300
"#
    );
    let cfg = write_config(dir.path(), broker.port, &url, &more);
    let check = check_config(&cfg);
    assert!(check.status.success(), "{check:?}");
    let _gw = run_in_background(&cfg);
    let want: Vec<String> = demo_plates()
        .iter()
        .take(2)
        .map(|p| p.expected.to_owned())
        .collect();
    assert!(
        sub.wait_until(Duration::from_secs(120), |m| {
            let cam1: Vec<_> = m
                .iter()
                .filter(|m| m.topic.ends_with("/events/plate") && m.payload["camera"] == "cam1")
                .collect();
            want.iter()
                .all(|w| cam1.iter().any(|m| m.payload["plate"] == w.as_str()))
        }),
        "the control camera reads both plates"
    );
    let hub = Publisher::new(broker.port);
    hub.send("status", r#"{"id":"st"}"#);
    assert!(sub.wait_until(Duration::from_secs(15), |m| m
        .iter()
        .any(|m| m.topic.ends_with("/cmd/status/reply"))));
    let status = sub.on("/cmd/status/reply").remove(0).payload["result"].clone();
    assert_valid("status.v1.json", &status);

    let events = sub.on("/events/plate");
    for cam in ["cam2", "cam3"] {
        let theirs: Vec<_> = events
            .iter()
            .filter(|e| e.payload["camera"] == cam)
            .map(|e| e.payload["plate"].clone())
            .collect();
        assert!(theirs.is_empty(), "{cam} must not report {theirs:?}");
        let p = &status["cameras"][cam]["pipeline"];
        assert!(
            p["inferred"].as_u64().unwrap() > 0,
            "{cam} still reads: {p}"
        );
    }
    // The clip has empty-road frames between vehicles: the gate skips them, and every frame is
    // either read or found still.
    for cam in ["cam1", "cam2", "cam3"] {
        let p = &status["cameras"][cam]["pipeline"];
        let (frames, inferred, still) = (
            p["frames"].as_u64().unwrap(),
            p["inferred"].as_u64().unwrap(),
            p["still"].as_u64().unwrap(),
        );
        assert!(still > 0, "{cam}: {p}");
        assert_eq!(inferred + still, frames, "{cam}: {p}");
    }
    // A vehicle moving up the still road is read where it moved (the default set reads parts),
    // and the control camera read both plates all the same.
    let p = &status["cameras"]["cam1"]["pipeline"];
    let part = p["inferred_part"].as_u64().unwrap();
    assert!(
        part > 0 && part < p["inferred"].as_u64().unwrap(),
        "some reads on a part, the first and refreshes whole: {p}"
    );
}

#[test]
fn check_names_bad_lane_settings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        1883,
        "folder:/nonexistent",
        "roi = [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]\nmin_plate_height_px = 9000\n[camera.motion]\nmin_changed = 2.0\nmax_part = 0",
    );
    let out = check_config(&cfg);
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    for want in [
        "camera[0].roi: edges 0 and 2 cross",
        "camera[0].min_plate_height_px: 9000 is out of range",
        "camera[0].motion.min_changed: 2 is out of range",
        "camera[0].motion.max_part: 0 is out of range",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}
