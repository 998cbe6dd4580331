//! Yard occupancy through the real product: rendered plates pass an entry camera and an exit
//! camera of `gatewatch run` on a real broker; the state survives restarts; the hub reconciles.

use crate::common;

use common::*;
use gatewatch::tooling::demo::{demo_plates, ClipSpec, Renderer};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

fn frames(dir: &Path, name: &str, plates: &[&str]) -> String {
    let out = dir.join(name);
    let chosen = demo_plates()
        .into_iter()
        .filter(|p| plates.contains(&p.expected))
        .collect();
    Renderer::with_plates(ClipSpec::default(), chosen)
        .unwrap()
        .write_frames(&out)
        .unwrap();
    format!("folder:{}", out.display())
}

/// A yard of capacity 2 with an entry and an exit camera; `None` disables that camera.
fn config(dir: &Path, port: u16, entry: Option<&str>, exit: Option<&str>) -> std::path::PathBuf {
    let path = dir.join("gatewatch.toml");
    let cam = |id: &str, lane: &str, role: &str, url: Option<&str>| {
        format!(
            "[[camera]]\nid = \"{id}\"\nlane = \"{lane}\"\nurl = \"{}\"\nenabled = {}\nfps = 5.0\nhandoff = \"every\"\nat_end = \"stop\"\n[camera.yard]\nid = \"yard-a\"\nrole = \"{role}\"\n",
            url.unwrap_or("folder:/nonexistent"),
            url.is_some()
        )
    };
    let text = format!(
        "site = \"test\"\ndevice = \"box1\"\nstate_dir = \"{}\"\n[mqtt]\nhost = \"127.0.0.1\"\ntransport = \"tcp\"\nport = {port}\n[plates]\nconfirm_frames = 3\nlost_after_s = 1.0\n[[yard]]\nid = \"yard-a\"\nname = \"Yard A\"\ncapacity = 2\n{}{}",
        dir.join("state").display(),
        cam("gate-in", "in-1", "entry", entry),
        cam("gate-out", "out-1", "exit", exit),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs to the end and keeps the log next to the config (for a failing assertion's reader).
fn run_and_keep_log(cfg: &Path) {
    std::fs::write(cfg.with_extension("log"), run_to_end(cfg)).unwrap();
}

fn yard_events(sub: &Subscriber) -> Vec<serde_json::Value> {
    sub.on("/events/yard")
        .into_iter()
        .map(|m| m.payload)
        .collect()
}

/// For `wait_until` predicates, which already hold the message lock.
fn count_yard_events(m: &[Message]) -> usize {
    m.iter()
        .filter(|m| m.topic.ends_with("/events/yard"))
        .count()
}

fn occupancy(sub: &Subscriber) -> serde_json::Value {
    sub.on("/yard/yard-a/occupancy")
        .last()
        .expect("occupancy")
        .payload
        .clone()
}

#[test]
fn entries_and_exits_are_counted_kept_across_restarts_and_reconciled() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/#");
    let dir = tempfile::tempdir().unwrap();
    let entry = frames(dir.path(), "in", &["51A12345", "29C123456"]);
    let exit = frames(dir.path(), "out", &["51A12345"]);

    // Two trucks enter: the yard is full.
    run_and_keep_log(&config(dir.path(), broker.port, Some(&entry), None));
    assert!(
        sub.wait_until(Duration::from_secs(10), |m| count_yard_events(m) == 3),
        "{:?} {:?}",
        yard_events(&sub),
        plates(&sub.on("/events/plate"))
    );
    let kinds: Vec<_> = yard_events(&sub)
        .iter()
        .map(|e| (e["kind"].clone(), e["plate"].clone(), e["occupied"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("entry".into(), "51A12345".into(), 1.into()),
            ("entry".into(), "29C123456".into(), 2.into()),
            ("full".into(), serde_json::Value::Null, 2.into()),
        ]
    );
    let first_entry = yard_events(&sub)[0]["event_id"].clone();

    // Restart with the exit camera: the state came back from disk, 51A12345 leaves.
    run_and_keep_log(&config(dir.path(), broker.port, None, Some(&exit)));
    assert!(sub.wait_until(Duration::from_secs(10), |m| count_yard_events(m) == 5));
    let events = yard_events(&sub);
    assert_eq!(
        (events[3]["kind"].as_str(), events[3]["match"].as_str()),
        (Some("exit"), Some("exact"))
    );
    assert_eq!(events[3]["entry_event_id"], first_entry);
    assert!(events[3]["dwell_s"].as_i64().unwrap() >= 0);
    assert_eq!(
        (events[4]["kind"].as_str(), events[4]["occupied"].as_u64()),
        (Some("available"), Some(1))
    );
    let occ = occupancy(&sub);
    assert_eq!(
        (
            occ["occupied"].as_u64(),
            occ["free"].as_u64(),
            occ["seq"].clone()
        ),
        (Some(1), Some(1), events[4]["seq"].clone())
    );

    // A running box (cameras idle) and the hub reconciling it.
    // (A camera whose folder does not exist is retried forever: the process keeps serving.)
    let cfg = config(dir.path(), broker.port, Some("folder:/nonexistent"), None);
    let mut gw = Running(
        gatewatch()
            .args(["run", "--config"])
            .arg(&cfg)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The retained occupancy is re-published at start-up.
    let before = sub.on("/yard/yard-a/occupancy").len();
    assert!(sub.wait_until(Duration::from_secs(30), |m| m
        .iter()
        .filter(|m| m.topic.ends_with("/yard/yard-a/occupancy"))
        .count()
        > before));
    let hub = Publisher::new(broker.port);
    let send = |name: &str, body: &str| hub.send(name, body);
    send("yard_list", r#"{"id":"l1"}"#);
    let list = reply(&sub, "yard_list", "l1");
    assert_eq!(list["result"]["inside"][0]["plate"], "29C123456", "{list}");
    assert_eq!(list["result"]["listed"], 1);
    send(
        "yard_remove",
        r#"{"id":"r1","yard":"yard-a","plate":"51A12345"}"#,
    );
    assert!(reply(&sub, "yard_remove", "r1")["error"]
        .as_str()
        .unwrap()
        .contains("not inside"));
    send(
        "yard_set",
        r#"{"id":"s1","yard":"yard-a","occupied":2,"inside":["29c-123.456"]}"#,
    );
    let r = reply(&sub, "yard_set", "s1");
    assert_eq!(r["result"]["occupancy"]["occupied"], 2, "{r}");
    assert!(sub.wait_until(Duration::from_secs(10), |m| count_yard_events(m) == 7));
    let events = yard_events(&sub);
    assert_eq!(
        (
            events[5]["kind"].as_str(),
            events[5]["command_id"].as_str(),
            events[5]["unidentified"].as_u64()
        ),
        (Some("set"), Some("s1"), Some(1))
    );
    assert_eq!(
        events[5]["inside"][0]["entry_event_id"], events[1]["event_id"],
        "a listed vehicle keeps its entry"
    );
    assert_eq!(events[6]["kind"], "full");
    assert!(sub.wait_until(Duration::from_secs(10), |m| m
        .iter()
        .rfind(|m| m.topic.ends_with("/occupancy"))
        .is_some_and(|m| m.payload["occupied"] == 2)));
    assert!(gw.try_wait().unwrap().is_none());

    for e in yard_events(&sub) {
        assert_valid("yard.v1.json", &e);
    }
    for m in sub.on("/occupancy") {
        assert!(m.retain || m.payload["seq"].is_u64());
        assert_valid("occupancy.v1.json", &m.payload);
    }
    let seqs: Vec<u64> = yard_events(&sub)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[test]
fn check_names_every_yard_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        r#"site = "s"
device = "d"
[mqtt]
host = "127.0.0.1"
transport = "tcp"
[[yard]]
id = "a"
capacity = 0
[[camera]]
id = "c1"
lane = "in"
url = "folder:/tmp"
[camera.yard]
id = "b"
role = "both"
line = [0.1, 0.5, 1.4, 0.5]
inside = [0.5, 0.9]
"#,
    )
    .unwrap();
    let out = check_config(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for needle in [
        "yard[0].capacity: 0 is not allowed",
        "yard \"a\" has no entry lane",
        "yard \"a\" has no exit lane",
        "camera[0].yard.id: \"b\" is not a configured yard: known yards: [a]",
        "camera[0].yard.line: [0.1, 0.5, 1.4, 0.5] lies outside the frame",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

/// One `both` camera on a yard: the clip's vehicles drive up the frame across a gate line at
/// 60 % height, towards the yard's side at the top. `extra` goes into the config's top level.
fn both_lane_config(dir: &Path, port: u16, url: &str, top: &str) -> std::path::PathBuf {
    let path = dir.join("gatewatch.toml");
    let text = format!(
        "site = \"test\"\ndevice = \"box1\"\nstate_dir = \"{}\"\n{top}\n[mqtt]\nhost = \"127.0.0.1\"\ntransport = \"tcp\"\nport = {port}\n[plates]\nconfirm_frames = 3\nlost_after_s = 1.0\n[[yard]]\nid = \"yard-a\"\ncapacity = 10\n[[camera]]\nid = \"gate\"\nlane = \"gate-1\"\nurl = \"{url}\"\nfps = 5.0\nhandoff = \"every\"\nat_end = \"stop\"\n[camera.yard]\nid = \"yard-a\"\nrole = \"both\"\nline = [0.0, 0.6, 1.0, 0.6]\ninside = [0.5, 0.1]\n",
        dir.join("state").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_both_lane_takes_the_direction_from_the_whole_track() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/#");
    let dir = tempfile::tempdir().unwrap();
    let url = frames(dir.path(), "up", &["51A12345", "15C04567"]);
    // Each plate is published after 3 reads, before it reaches the line; the yard must still see
    // it cross, from the track's first box to its last.
    run_and_keep_log(&both_lane_config(dir.path(), broker.port, &url, ""));
    assert!(sub.wait_until(Duration::from_secs(10), |m| count_yard_events(m) >= 2));
    let events = yard_events(&sub);
    let kinds: Vec<_> = events
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["plate"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("entry", "51A12345"), ("entry", "15C04567")]);
    assert_eq!(occupancy(&sub)["occupied"], 2);
}

#[test]
fn a_vehicle_whose_plate_cannot_be_read_still_counts() {
    if shared_dir("models/fast-alpr").is_none() {
        return; // the plate detector (which sees plates it cannot read) is the fast-alpr set's
    }
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/#");
    let dir = tempfile::tempdir().unwrap();
    // A readable plate, then a plate whose text fits no grammar (letters only, four of them).
    let mut plates: Vec<_> = demo_plates().into_iter().take(1).collect();
    plates.push(gatewatch::tooling::demo::DemoPlate {
        lines: vec!["QX-ZW"],
        expected: "",
        ..plates[0].clone()
    });
    let out = dir.path().join("unread");
    Renderer::with_plates(ClipSpec::default(), plates)
        .unwrap()
        .write_frames(&out)
        .unwrap();
    let url = format!("folder:{}", out.display());
    run_and_keep_log(&both_lane_config(
        dir.path(),
        broker.port,
        &url,
        "[models]\nset = \"fast-alpr\"",
    ));
    assert!(sub.wait_until(Duration::from_secs(10), |m| count_yard_events(m) >= 2));
    let events = yard_events(&sub);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (events[0]["kind"].as_str(), events[0]["plate"].as_str()),
        (Some("entry"), Some("51A12345"))
    );
    assert_eq!(events[1]["kind"], "entry");
    assert!(events[1]["plate"].is_null(), "{}", events[1]);
    for e in &events {
        assert_valid("yard.v1.json", e);
    }
    let occ = occupancy(&sub);
    assert_eq!(
        (occ["occupied"].as_i64(), occ["free"].as_i64()),
        (Some(2), Some(8))
    );
    // No plate event for the unread vehicle.
    assert_eq!(plates_of(&sub), ["51A12345"]);
}

fn plates_of(sub: &Subscriber) -> Vec<String> {
    plates(&sub.on("/events/plate"))
}

/// Two yards, each with disabled lanes, and a looping camera outside the yards.
fn two_yards_config(dir: &Path, port: u16) -> std::path::PathBuf {
    let url = demo_frames(dir, 1);
    let lane = |id: &str, lane: &str, yard: &str, role: &str| {
        format!("[[camera]]\nid = \"{id}\"\nlane = \"{lane}\"\nurl = \"folder:/nonexistent\"\nenabled = false\n[camera.yard]\nid = \"{yard}\"\nrole = \"{role}\"\n")
    };
    let text = format!(
        "site = \"test\"\ndevice = \"box1\"\nstate_dir = \"{}\"\n[mqtt]\nhost = \"127.0.0.1\"\ntransport = \"tcp\"\nport = {port}\n[plates]\nconfirm_frames = 3\nlost_after_s = 1.0\n[[yard]]\nid = \"yard-a\"\ncapacity = 5\n[[yard]]\nid = \"yard-b\"\ncapacity = 5\n[[camera]]\nid = \"cam1\"\nlane = \"in-1\"\nurl = \"{url}\"\nfps = 5.0\n{}{}{}{}",
        dir.join("state").display(),
        lane("a-in", "a-in", "yard-a", "entry"),
        lane("a-out", "a-out", "yard-a", "exit"),
        lane("b-in", "b-in", "yard-b", "entry"),
        lane("b-out", "b-out", "yard-b", "exit"),
    );
    let path = dir.join("gatewatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_corrupt_yard_file_takes_out_that_yard_only_and_unstored_changes_are_errors() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/#");
    let hub = Publisher::new(broker.port);
    let dir = tempfile::tempdir().unwrap();
    let cfg = two_yards_config(dir.path(), broker.port);
    let yard_dir = dir.path().join("state/yard");
    std::fs::create_dir_all(&yard_dir).unwrap();
    // The reported file: 4294967295 unidentified wrapped the occupancy to 1 and was published.
    let bad = yard_dir.join("yard-b.json");
    std::fs::write(
        &bad,
        r#"{"version":1,"state":{"inside":{"51A12345":{"entered_at":"2026-11-24T08:00:00.000Z","entry_lane":"b-in","entry_event_id":"019ab6d2-0000-7000-8000-000000000000"}},"unidentified":4294967295,"unpaired_exits":0,"full":false,"updated_at":"2026-11-24T08:00:00.000Z"},"last_seq":3,"pending":[]}"#,
    )
    .unwrap();
    let log = dir.path().join("run.log");
    let mut box1 = run_logged(&cfg, &log);
    wait_online(&sub);

    // The box serves: status, the good yard, the camera.
    hub.send("status", r#"{"id":"s1"}"#);
    let r = reply(&sub, "status", "s1");
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["result"]["cameras"]["cam1"].is_object(), "{r}");
    hub.send("yard_list", r#"{"id":"l1","yard":"yard-a"}"#);
    let r = reply(&sub, "yard_list", "l1");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["occupancy"]["occupied"], 0, "{r}");
    // The broken yard answers why, naming the file and the invariant; nothing of it is published.
    for (name, id, body) in [
        ("yard_list", "l2", r#"{"id":"l2","yard":"yard-b"}"#),
        (
            "yard_set",
            "b1",
            r#"{"id":"b1","yard":"yard-b","occupied":1}"#,
        ),
    ] {
        hub.send(name, body);
        let r = reply(&sub, name, id);
        assert_eq!(r["ok"], false, "{r}");
        let err = r["error"].as_str().unwrap();
        assert!(
            err.contains(&bad.display().to_string()) && err.contains("unidentified = 4294967295"),
            "{err}"
        );
    }
    assert!(sub.on("/yard/yard-b/occupancy").is_empty());
    assert!(sub.on("/yard/yard-a/occupancy").last().is_some());

    // A yard change that cannot be stored is an error, and nothing changes.
    hub.send("yard_set", r#"{"id":"a1","yard":"yard-a","occupied":2}"#);
    assert_eq!(reply(&sub, "yard_set", "a1")["ok"], true);
    let tmp = yard_dir.join("yard-a.json.tmp");
    std::fs::create_dir(&tmp).unwrap();
    hub.send("yard_set", r#"{"id":"a2","yard":"yard-a","occupied":4}"#);
    let r = reply(&sub, "yard_set", "a2");
    assert_eq!(r["ok"], false, "{r}");
    let err = r["error"].as_str().unwrap();
    assert!(
        err.contains("not stored") && err.contains("yard-a.json"),
        "{err}"
    );
    hub.send("yard_list", r#"{"id":"l3","yard":"yard-a"}"#);
    assert_eq!(
        reply(&sub, "yard_list", "l3")["result"]["occupancy"]["occupied"],
        2
    );
    assert_eq!(box1.try_wait().unwrap(), None, "still running");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("yard out of service"), "{text}");
}
