//! Hub commands against a running `gatewatch run` on a real broker: every command with an id is
//! answered, bad input gets an error reply, and the process keeps serving.

use crate::common;

use base64::Engine;
use common::*;
use std::time::Duration;

#[test]
fn commands_are_answered_and_bad_ones_do_not_hurt() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/#");
    let dir = tempfile::tempdir().unwrap();
    let url = demo_frames(dir.path(), 1);
    let cfg = write_config(dir.path(), broker.port, &url, "fps = 5.0");
    let mut gw = run_in_background(&cfg);
    wait_online(&sub);
    let hub = Publisher::new(broker.port);

    hub.send("ping", r#"{"id":"p1"}"#);
    let r = reply(&sub, "ping", "p1");
    assert_eq!(r["ok"], true);
    assert!(r["result"]["pong"].is_string());

    hub.send("status", r#"{"id":2}"#);
    let r = reply(&sub, "status", 2);
    assert_eq!(r["result"]["state"], "online");
    assert_valid("status.v1.json", &r["result"]);

    // Until the camera's first frame (later on a busy machine) a snapshot is refused, saying so.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let r = (0..)
        .map(|n| {
            let id = format!("s1-{n}");
            hub.send(
                "snapshot",
                format!(r#"{{"id":"{id}","camera":"cam1","max_bytes":50000}}"#),
            );
            reply(&sub, "snapshot", id)
        })
        .find(|r| {
            if r["ok"] == true {
                return true;
            }
            let error = r["error"].as_str().unwrap_or_default();
            assert!(error.contains("delivered no frame yet"), "{r}");
            assert!(
                std::time::Instant::now() < deadline,
                "no frame in 90 s: {r}"
            );
            std::thread::sleep(Duration::from_millis(250));
            false
        })
        .unwrap();
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(r["result"]["jpeg_b64"].as_str().unwrap())
        .unwrap();
    assert!(jpeg.len() <= 50000);
    let img = gatewatch::vision::decode_image(&jpeg).unwrap();
    use opencv::prelude::MatTraitConst;
    assert_eq!(
        (img.cols() as u64, img.rows() as u64),
        (
            r["result"]["width"].as_u64().unwrap(),
            r["result"]["height"].as_u64().unwrap()
        )
    );

    hub.send("snapshot", r#"{"id":"s2","camera":"nope"}"#);
    assert!(reply(&sub, "snapshot", "s2")["error"]
        .as_str()
        .unwrap()
        .contains("unknown camera"));
    hub.send("reboot", r#"{"id":"r1"}"#);
    assert!(reply(&sub, "reboot", "r1")["error"]
        .as_str()
        .unwrap()
        .contains("unknown command"));
    hub.send("ping", "{{{ not json");
    hub.send(
        "ping",
        format!(r#"{{"id":"big","pad":"{}"}}"#, "x".repeat(200_000)),
    );
    let mut seed = 0x2545F491u32;
    for i in 0..50 {
        let junk: Vec<u8> = (0..(i * 7 % 200))
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        hub.send("ping", junk);
    }
    // Every message on the ping topic got a reply: 1 good + malformed + oversized + 50 junk.
    let all_answered = sub.wait_until(Duration::from_secs(15), |m| {
        m.iter()
            .filter(|m| m.topic.ends_with("/cmd/ping/reply"))
            .count()
            == 53
    });
    assert!(
        all_answered,
        "{:#?}",
        sub.on("/cmd/ping/reply")
            .iter()
            .map(|m| &m.payload)
            .collect::<Vec<_>>()
    );
    let errors = sub
        .on("/cmd/ping/reply")
        .iter()
        .filter(|m| m.payload["ok"] == false)
        .count();
    assert_eq!(errors, 52);
    assert!(gw.try_wait().unwrap().is_none(), "still serving");

    // reload_config: an invalid file is refused and the running config kept ...
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, good.replace("lane = \"in-1\"", "lane = \"\"")).unwrap();
    hub.send("reload_config", r#"{"id":"c1"}"#);
    let r = reply(&sub, "reload_config", "c1");
    assert!(
        r["error"].as_str().unwrap().contains("camera[0].lane"),
        "{r}"
    );
    hub.send("ping", r#"{"id":"p2"}"#);
    assert_eq!(reply(&sub, "ping", "p2")["ok"], true);
    // ... a valid one restarts cleanly to apply it.
    std::fs::write(&cfg, good).unwrap();
    hub.send("reload_config", r#"{"id":"c2"}"#);
    assert_eq!(
        reply(&sub, "reload_config", "c2")["result"]["restarting"],
        true
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = gw.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "did not restart");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
}

#[test]
fn commands_status_and_last_will_over_mqtt5() {
    let mut broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/#");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), broker.port, "folder:/nonexistent", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[mqtt]", "[mqtt]\nprotocol = \"5\"");
    std::fs::write(&cfg, text).unwrap();
    let mut gw = run_in_background(&cfg);
    wait_online(&sub);
    let hub = Publisher::new(broker.port);
    hub.send("ping", r#"{"id":"v5"}"#);
    assert_eq!(reply(&sub, "ping", "v5")["ok"], true);
    hub.send("status", "not json");
    assert!(sub.wait_until(Duration::from_secs(15), |m| m
        .iter()
        .any(|m| m.topic.ends_with("/cmd/status/reply") && m.payload["ok"] == false)));
    // Killed without a goodbye: the broker publishes the MQTT 5 client's last will.
    gw.kill().unwrap();
    gw.wait().unwrap();
    assert!(
        sub.wait_until(Duration::from_secs(60), |m| m
            .iter()
            .any(|m| m.topic.ends_with("/status")
                && m.payload == serde_json::json!({"state": "offline"}))),
        "last will"
    );
    broker.stop();
    assert!(broker.log().contains("as gatewatch-test-box1 (p5"));
}

#[test]
fn retained_commands_are_never_run() {
    for protocol in ["3.1.1", "5"] {
        let broker = Broker::start();
        let sub = Subscriber::start(broker.port, "gatewatch/#");
        // A hub left commands behind with the retain flag before the box started.
        let hub = Publisher::new(broker.port);
        hub.send_retained("ping", r#"{"id":"stale"}"#);
        hub.send_retained("reload_config", r#"{"id":"stale-reload"}"#);
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), broker.port, "folder:/nonexistent", "");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("[mqtt]", &format!("[mqtt]\nprotocol = \"{protocol}\""));
        std::fs::write(&cfg, text).unwrap();
        let mut gw = run_in_background(&cfg);
        wait_online(&sub);
        // Once a fresh command is answered the subscription is live, and the broker sent the
        // retained ones (if it sends them) before it.
        let mut answered = false;
        for n in 0..15 {
            let id = format!("fresh-{n}");
            hub.send("ping", format!(r#"{{"id":"{id}"}}"#));
            answered = sub.wait_until(Duration::from_secs(2), |m| {
                m.iter()
                    .any(|m| m.topic.ends_with("/cmd/ping/reply") && m.payload["id"] == id.as_str())
            });
            if answered {
                break;
            }
        }
        assert!(answered, "{protocol}: a fresh command was never answered");
        hub.send("status", r#"{"id":"st"}"#);
        let status = reply(&sub, "status", "st");
        let replies: Vec<_> = sub
            .messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.topic.ends_with("/reply"))
            .map(|m| m.payload["id"].clone())
            .collect();
        assert!(
            !replies
                .iter()
                .any(|id| id == "stale" || id == "stale-reload"),
            "{protocol}: a retained command ran: {replies:?}"
        );
        assert!(
            gw.try_wait().unwrap().is_none(),
            "{protocol}: the box stopped"
        );
        assert_valid("status.v1.json", &status["result"]);
        let ignored = status["result"]["commands"]["retained_ignored"].as_u64();
        // MQTT 3.1.1 cannot ask the broker to hold retained messages back: the box drops them.
        // MQTT 5 subscribes with "retain handling: never", so the broker does not send them.
        let want = if protocol == "5" { 0 } else { 2 };
        assert_eq!(ignored, Some(want), "{protocol}: {status}");
        gw.kill().unwrap();
        gw.wait().unwrap();
    }
}
