//! `gatewatch bench pipeline` on the rendered demo clip: what it reports is checked against what
//! the clip shows, plates and faces on one camera.

use crate::common;

use common::*;

/// The bench's last stdout line (its summary).
fn bench_pipeline(args: &[&str]) -> serde_json::Value {
    let out = gatewatch()
        .args(["bench", "pipeline"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let last = out
        .stdout
        .split(|b| *b == b'\n')
        .rfind(|l| !l.is_empty())
        .unwrap_or_else(|| panic!("no summary line\n{stderr}"));
    serde_json::from_slice(last).unwrap()
}

#[test]
fn bench_with_faces_reads_every_plate_right_and_names_only_the_enrolled_driver() {
    // 30 s of the 16 s clip: each driver is shown in full twice (the enrolled one at 1-3 s and
    // 17-19 s, the other at 10-12 s and 26-28 s), so a slow, busy box that scans few frames still
    // has two chances at each (the clock starts after the models have loaded).
    let s = bench_pipeline(&["--faces", "--cameras", "1", "--seconds", "30"]);
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("{v} in {s}"));

    // Plates: every passage is a plate the clip showed, none twice.
    let shown = n(&s["vehicles_shown"]);
    assert_eq!(shown, 9, "{s}");
    assert_eq!(n(&s["passages_wrong"]), 0, "{s}");
    let right = n(&s["passages_correct"]);
    // At most one vehicle still in view at the end is published on top of those shown.
    assert!((1..=shown + 1).contains(&right), "{s}");

    // Faces: the enrolled driver named, the other one unknown, nobody named wrongly.
    let f = &s["faces"];
    assert_eq!(n(&f["shown_enrolled"]), 2, "{s}");
    assert_eq!(n(&f["shown_not_enrolled"]), 2, "{s}");
    assert!(n(&f["right"]) >= 1, "{s}");
    assert_eq!(n(&f["wrong"]), 0, "{s}");
    assert_eq!(n(&f["identified"]), n(&f["right"]), "{s}");
    assert!(n(&f["unknown_as_expected"]) >= 1, "{s}");
    // Every face event the stage counted is in the outbox.
    let counted = n(&s["per_camera"]["cam1"]["face"]["events"]);
    assert_eq!(n(&f["events"]), counted, "{s}");

    // The face stage ran on the camera and its scans were timed.
    let scanned = n(&s["per_camera"]["cam1"]["face"]["scanned"]);
    let timed = n(&s["stages"]["face"]["n"]);
    assert!(timed >= 1 && timed <= scanned, "{s}");
}
