//! Frame sources end to end: the image-folder replay path, the RTSP path on loopback, and a
//! camera that disappears and comes back.

use crate::common;

use common::*;
use gatewatch::tooling::demo::{demo_plates, ClipSpec, Renderer};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn two_vehicle_renderer() -> Renderer {
    Renderer::with_plates(
        ClipSpec::default(),
        demo_plates().into_iter().take(2).collect(),
    )
    .unwrap()
}

#[test]
fn image_folder_replay_and_seq_continues_across_restart() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/+/+/events/#");
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    let r = two_vehicle_renderer();
    r.write_frames(&frames).unwrap();
    // A corrupt image in the middle is skipped with an error, not fatal.
    std::fs::write(frames.join("frame-00003b.png"), b"\x89PNG truncated").unwrap();
    let url = format!("folder:{}", frames.display());
    let cfg = write_config(
        dir.path(),
        broker.port,
        &url,
        "fps = 5.0\nhandoff = \"every\"\nat_end = \"stop\"",
    );

    for run in 0..2 {
        let out = gatewatch()
            .args(["run", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "run {run} failed: {log}");
        assert!(log.contains("bad frame skipped"), "{log}");
        assert!(
            sub.wait_until(Duration::from_secs(10), |m| m.len() == 2 * (run + 1)),
            "{log}"
        );
    }
    let events = sub.on("/events/plate");
    assert_eq!(
        plates(&events),
        ["51A12345", "29C123456", "51A12345", "29C123456"]
    );
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e.payload["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        [1, 2, 3, 4],
        "seq continues across restarts, never reused"
    );
}

struct RtspServer {
    child: Child,
}

impl RtspServer {
    fn start(port: u16, clip: &std::path::Path) -> RtspServer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rtsp-serve.py");
        let child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(port.to_string())
            .arg(clip)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start the GStreamer RTSP server (run `make setup`)");
        assert!(
            wait_listening(port, Duration::from_secs(15)),
            "RTSP server did not start"
        );
        RtspServer { child }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(msgs: &[Message], plate: &str) -> usize {
    msgs.iter()
        .filter(|m| m.topic.ends_with("/events/plate") && m.payload["plate"] == plate)
        .count()
}

#[test]
fn rtsp_camera_is_read_and_comes_back_after_it_disappears() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/#");
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.avi");
    // A live stream is only readable once FFmpeg has probed it (a few seconds at 5 fps): the
    // first vehicle comes after a longer stretch of empty road. Each vehicle stays in view for
    // 6 s, so that however slowly this machine reads frames (newest frame wins), its plate is
    // read often enough to be confirmed and to settle on both rows of the two-line plate.
    let spec = ClipSpec {
        gap_frames: 35,
        frames_per_vehicle: 30,
        ..ClipSpec::default()
    };
    Renderer::with_plates(spec, demo_plates().into_iter().take(2).collect())
        .unwrap()
        .write_video(&clip)
        .unwrap();
    let rtsp_port = free_port();
    let mut server = RtspServer::start(rtsp_port, &clip);
    let url = format!("rtsp://127.0.0.1:{rtsp_port}/lane");
    let cfg = write_config(dir.path(), broker.port, &url, "");
    let log_path = dir.path().join("gatewatch.log");
    let mut gw = Running(
        gatewatch()
            .args(["--log-format", "json", "run", "--config"])
            .arg(&cfg)
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );

    // Live input, newest frame wins: both plates of the clip are read off the stream.
    let ok = sub.wait_until(Duration::from_secs(90), |m| {
        count(m, "51A12345") >= 1 && count(m, "29C123456") >= 1
    });
    assert!(
        ok,
        "plates not read over RTSP: {}",
        std::fs::read_to_string(&log_path).unwrap()
    );

    // The camera disappears for a few seconds and comes back; the process keeps serving.
    drop(server);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        gw.try_wait().unwrap().is_none(),
        "gatewatch must survive a lost camera"
    );
    let before = count(&sub.messages.lock().unwrap(), "51A12345");
    server = RtspServer::start(rtsp_port, &clip);
    let ok = sub.wait_until(Duration::from_secs(90), |m| count(m, "51A12345") > before);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(ok, "no plate read after the camera came back: {log}");
    assert!(
        log.contains("camera lost") || log.contains("camera unavailable"),
        "{log}"
    );

    // SIGTERM: clean shutdown, offline status.
    unsafe_kill_term(gw.id());
    let status = gw.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Precision: nothing but the clip's plates was ever published (no single row of the
    // two-line plate, no partial read).
    let published = plates(&sub.on("/events/plate"));
    assert!(
        published
            .iter()
            .all(|p| p == "51A12345" || p == "29C123456"),
        "wrong plate events over RTSP: {published:?}"
    );
    assert!(sub.wait_until(Duration::from_secs(5), |m| m
        .iter()
        .any(|m| m.payload["state"] == "offline")));
    drop(server);
}

fn unsafe_kill_term(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn oversized_images_are_skipped_with_a_clear_error_and_the_camera_keeps_going() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/#");
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    write_plain_png(&frames.join("a-good.png"), 64, 48);
    // Issue 13: a 1x30000 strip (a real PNG of a few hundred bytes) and a 20000x20000 header.
    write_plain_png(&frames.join("b-strip.png"), 1, 30_000);
    std::fs::write(
        frames.join("c-huge.png"),
        gatewatch::vision::png_header_only(20_000, 20_000),
    )
    .unwrap();
    let url = format!("folder:{}", frames.display());
    let cfg = write_config(dir.path(), broker.port, &url, "fps = 5.0");
    let log_path = dir.path().join("gatewatch.log");
    let mut gw = run_logged(&cfg, &log_path);
    wait_online(&sub);
    let hub = Publisher::new(broker.port);
    // The folder is looked at until a good frame and both bad ones were met, however long that
    // takes on this machine (a minute at most).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut asked = 0;
    let cam = loop {
        asked += 1;
        let cam = camera_status(&sub, &hub, "cam1", &format!("st{asked}"));
        let seen = |k: &str, n: u64| cam[k].as_u64().is_some_and(|v| v >= n);
        if (seen("frames", 1) && seen("bad_frames", 2)) || Instant::now() > deadline {
            break cam;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(gw.try_wait().unwrap().is_none(), "gatewatch keeps serving");
    assert_eq!(cam["up"], true, "{cam}");
    assert!(cam["frames"].as_u64().unwrap() >= 1, "{cam}");
    assert!(cam["bad_frames"].as_u64().unwrap() >= 2, "{cam}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    for (file, size) in [("b-strip.png", "1x30000"), ("c-huge.png", "20000x20000")] {
        assert!(
            log.lines()
                .any(|l| l.contains("bad frame skipped") && l.contains(file) && l.contains(size)),
            "no clear error for {file}: {log}"
        );
    }
}

#[test]
fn a_looping_folder_keeps_its_fps_and_one_with_nothing_decodable_backs_off() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/#");
    let dir = tempfile::tempdir().unwrap();
    let (one, bad) = (dir.path().join("one"), dir.path().join("bad"));
    std::fs::create_dir(&one).unwrap();
    std::fs::create_dir(&bad).unwrap();
    write_plain_png(&one.join("a.png"), 64, 48);
    std::fs::write(bad.join("a.png"), b"\x89PNG not really").unwrap();
    let cfg = write_config(
        dir.path(),
        broker.port,
        &format!("folder:{}", one.display()),
        "fps = 2.0",
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[plates]", "[runtime]\nreaders = 1\n[plates]")
        + &format!(
            "[[camera]]\nid = \"cam2\"\nlane = \"in-2\"\nurl = \"folder:{}\"\nfps = 2.0\n",
            bad.display()
        );
    std::fs::write(&cfg, text).unwrap();
    let log_path = dir.path().join("gatewatch.log");
    let _gw = run_logged(&cfg, &log_path);
    wait_online(&sub);
    let hub = Publisher::new(broker.port);
    let frames = |v: &serde_json::Value| v["frames"].as_u64().unwrap();
    let before = camera_status(&sub, &hub, "cam1", "a");
    let asked = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let after = camera_status(&sub, &hub, "cam1", "b");
    // Between the two snapshots: 3 s, and as long again as the second answer took to come.
    let secs = asked.elapsed().as_secs_f64();
    let bad_cam = camera_status(&sub, &hub, "cam2", "c");
    let log = std::fs::read_to_string(&log_path).unwrap();

    // One image at 2 fps: about 2 frames a second (it ran at 150 frames/s). The bounds leave a
    // slow machine room on both sides without letting a spinning loop through.
    let n = frames(&after) - frames(&before);
    let (low, high) = ((secs - 1.5).max(0.0) * 2.0 * 0.5, (secs + 1.0) * 2.0 * 1.5);
    assert!(
        (low..=high).contains(&(n as f64)),
        "{n} frames in {secs:.1} s at fps 2: {after}"
    );
    assert_eq!(
        after["reconnects"], 0,
        "a restart is not a reconnect: {after}"
    );
    // Nothing decodable: passes back off (1 s, 2 s, 4 s, …) instead of spinning, and the log
    // stays short (it was ~30,000 lines/s).
    let bad_frames = bad_cam["bad_frames"].as_u64().unwrap();
    assert!((1..=8).contains(&bad_frames), "{bad_cam}");
    assert_eq!(bad_cam["reconnects"], 0, "{bad_cam}");
    assert!(log.lines().count() < 100, "{log}");
    // The state directory gatewatch created holds plates: private to its user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("state"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "state_dir mode {mode:o}");
}
