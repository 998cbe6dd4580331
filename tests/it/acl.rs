//! The broker ACL that `docs/events.md` asks a site to set (`config/mosquitto-acl.example`), on a
//! real Mosquitto: the box can do its job under it, the hub can command it, and another client —
//! here a second gate box, a valid user of the same broker — can neither command the box nor
//! forge its events.

use crate::common::{self, Broker, Publisher, Subscriber};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PREFIX: &str = "gatewatch/test/box1";

/// Adds `user` with `password` to a Mosquitto password file.
fn add_user(file: &Path, user: &str, password: &str) {
    let mut cmd = Command::new("mosquitto_passwd");
    cmd.arg("-b");
    if !file.exists() {
        cmd.arg("-c");
    }
    let ok = cmd.arg(file).args([user, password]).status().unwrap();
    assert!(ok.success(), "mosquitto_passwd failed");
}

/// The example ACL for this test's box, plus a second box laid out the same way.
fn acl_from_example() -> String {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mosquitto-acl.example"),
    )
    .unwrap();
    let ours = example.replace("gatewatch/mongcai/lane1", PREFIX);
    assert_ne!(ours, example, "the example names a box prefix to replace");
    let other_box: String = ours
        .lines()
        .skip_while(|l| !l.starts_with("user gw-mongcai-lane1"))
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            l.replace("gw-mongcai-lane1", "gw-other-box")
                .replace(PREFIX, "gatewatch/test/box2")
        })
        .collect::<Vec<_>>()
        .join("\n");
    format!("{ours}\n{other_box}\n")
}

/// Publishes as `user` and returns once the broker has taken the message (its PUBACK): under
/// MQTT 3.1.1 a denied publish is acknowledged and dropped, so after this the broker has decided.
fn publish_as(port: u16, user: &str, topic: &str, payload: &str) {
    let mut opts = rumqttc::MqttOptions::new(format!("test-{user}"), "127.0.0.1", port);
    opts.set_credentials(user, "pw-other");
    let (client, mut conn) = rumqttc::Client::new(opts, 10);
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.as_bytes())
        .unwrap();
    for ev in conn.iter() {
        match ev {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("{user} could not publish: {e}"),
        }
    }
    let _ = client.disconnect();
}

#[test]
fn under_the_documented_acl_only_the_hub_commands_a_box_and_nobody_forges_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwd");
    add_user(&passwords, "gw-mongcai-lane1", "pw-box");
    add_user(&passwords, "hub", "pw-hub");
    add_user(&passwords, "gw-other-box", "pw-other");
    let acl = dir.path().join("acl");
    std::fs::write(&acl, acl_from_example()).unwrap();
    let mut broker = Broker::start();
    broker.allow_anonymous = false;
    broker.extra_conf = format!(
        // Debug logging: Mosquitto logs a denied publish only at that level.
        "password_file {}\nacl_file {}\nlog_type all\n",
        passwords.display(),
        acl.display()
    );
    broker.restart();

    let box_password = dir.path().join("box-password");
    std::fs::write(&box_password, "pw-box\n").unwrap();
    let url = common::demo_frames(dir.path(), 1);
    let cfg = common::write_config(dir.path(), broker.port, &url, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "transport = \"tcp\"",
        &format!(
            "transport = \"tcp\"\nusername = \"gw-mongcai-lane1\"\npassword_file = \"{}\"",
            box_password.display()
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    // The box's config must be one `check` accepts.
    let checked = common::check_config(&cfg);
    assert!(checked.status.success(), "{checked:?}");

    let hub = Subscriber::start_as(broker.port, &format!("{PREFIX}/#"), Some(("hub", "pw-hub")));
    let _box = common::run_in_background(&cfg);
    // The box may publish its retained status under its prefix.
    common::wait_online(&hub);

    // Another box tries to command this one and to forge one of its plate events; the broker
    // takes both messages and drops them.
    publish_as(
        broker.port,
        "gw-other-box",
        &format!("{PREFIX}/cmd/ping"),
        r#"{"id":"intruder"}"#,
    );
    publish_as(
        broker.port,
        "gw-other-box",
        &format!("{PREFIX}/events/plate"),
        r#"{"plate":"FORGED1"}"#,
    );
    // The hub's command is answered: the box may read its commands and publish replies.
    let commander = Publisher::new_as(broker.port, Some(("hub", "pw-hub")));
    commander.send("ping", r#"{"id":"hub-1"}"#);
    assert_eq!(common::reply(&hub, "ping", "hub-1")["ok"], true);
    // The box's own plate event arrives (it may publish events); the forged one never does: the
    // broker's queue to the hub is in order, and the forgery went in before the hub's command.
    let from_box = |m: &[common::Message]| {
        m.iter()
            .any(|m| m.topic.ends_with("/events/plate") && m.payload["seq"].is_u64())
    };
    assert!(
        hub.wait_until(Duration::from_secs(60), from_box),
        "no plate event from the box"
    );
    let plates: Vec<_> = hub
        .on("/events/plate")
        .into_iter()
        .map(|m| m.payload["plate"].clone())
        .collect();
    assert!(!plates.iter().any(|p| p == "FORGED1"), "{plates:?}");
    assert!(
        hub.on("/cmd/ping/reply")
            .iter()
            .all(|m| m.payload["id"] != "intruder"),
        "the box ran a command from another box"
    );
    assert!(
        broker
            .log()
            .contains("Denied PUBLISH from test-gw-other-box"),
        "the broker says why: {}",
        broker.log()
    );
}
