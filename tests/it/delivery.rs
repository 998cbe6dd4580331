//! Delivery under faults, on a real Mosquitto: broker outage, gatewatch killed with SIGKILL, and a
//! full outbox. Events come from `gatewatch bench delivery`, which drives the same event factory,
//! outbox and broker link as `run`.

use crate::common;

use common::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn bench_config(dir: &std::path::Path, port: u16, outbox: &str) -> std::path::PathBuf {
    let cfg = write_config(dir, port, "folder:/nonexistent", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[plates]", &format!("{outbox}\n[plates]"));
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn bench(cfg: &std::path::Path, events: u64, rate: f64) -> Child {
    bench_logging(cfg, events, rate, Stdio::null())
}

fn bench_logging(cfg: &std::path::Path, events: u64, rate: f64, stderr: Stdio) -> Child {
    gatewatch()
        .args([
            "bench",
            "delivery",
            "--events",
            &events.to_string(),
            "--rate",
            &rate.to_string(),
            "--wait-s",
            "60",
            "--config",
        ])
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Waits (up to `timeout`) until `bench delivery` says that it produced every event; its
/// stderr must be piped.
fn wait_all_produced(child: &mut Child, timeout: Duration) -> bool {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            if line.contains("all events produced") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(timeout).is_ok()
}

/// Waits (up to a minute) until the subscriber has events: the producer is running and
/// delivering, however long it took to start on this machine.
fn wait_first_events(sub: &Subscriber) {
    assert!(
        sub.wait_until(Duration::from_secs(60), |m| !seqs(m).0.is_empty()),
        "no event arrived within a minute of starting the producer"
    );
}

fn summary(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn broker_outage_loses_nothing() {
    outage_loses_nothing("3.1.1");
}

#[test]
fn broker_outage_loses_nothing_over_mqtt5() {
    outage_loses_nothing("5");
}

fn outage_loses_nothing(protocol: &str) {
    let mut broker = Broker::start_persistent();
    let sub = Subscriber::start_persistent(
        broker.port,
        "gatewatch/test/box1/events/#",
        &format!("outage-sub-{protocol}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = bench_config(dir.path(), broker.port, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[mqtt]", &format!("[mqtt]\nprotocol = \"{protocol}\""));
    std::fs::write(&cfg, text).unwrap();
    let n = 300;
    let child = bench(&cfg, n, 20.0); // 15 s of events
    wait_first_events(&sub);
    broker.stop();
    let outage = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    broker.restart();
    println!("outage: {:.1} s", outage.elapsed().as_secs_f64());
    let s = summary(child);
    assert_eq!(s["undelivered"], 0, "{s}");
    let complete = sub.wait_until(Duration::from_secs(30), |m| seqs(m).0.len() as u64 == n);
    let msgs = sub.messages.lock().unwrap().clone();
    let (got, dups) = seqs(&msgs);
    println!(
        "outage (MQTT {protocol}): received {} distinct of {n}, {dups} duplicates",
        got.len()
    );
    assert!(
        complete,
        "missing seqs: {:?}",
        (1..=n).filter(|s| !got.contains(s)).collect::<Vec<_>>()
    );
    assert_eq!(got, (1..=n).collect::<Vec<_>>());
    // Mosquitto names MQTT 3.1.1 `p2` and MQTT 5 `p5`; it writes its log out when it stops.
    let wire = if protocol == "5" { "p5" } else { "p2" };
    broker.stop();
    assert!(
        broker
            .log()
            .contains(&format!("as gatewatch-test-box1 ({wire}")),
        "gatewatch did not connect with MQTT {protocol}:\n{}",
        broker.log()
    );
    let replayed = msgs
        .iter()
        .filter(|m| m.payload["replayed"] == true)
        .count();
    assert!(
        replayed > 0,
        "events produced during the outage are marked replayed"
    );
    for m in msgs.iter().take(5) {
        assert_valid("plate.v1.json", &m.payload);
    }
    assert_valid(
        "plate.v1.json",
        &msgs
            .iter()
            .find(|m| m.payload["replayed"] == true)
            .unwrap()
            .payload,
    );
}

#[test]
fn sigkill_mid_stream_loses_nothing_and_seq_continues() {
    let mut broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/test/box1/events/#");
    let dir = tempfile::tempdir().unwrap();
    let cfg = bench_config(dir.path(), broker.port, "");
    let mut first = bench(&cfg, 1000, 200.0);
    // Some events are delivered, then the uplink goes and a backlog builds up in the outbox,
    // then the process is killed without any chance to clean up. Events are paced by the clock,
    // so the second the broker is down holds some whatever the machine's speed.
    wait_first_events(&sub);
    broker.stop();
    std::thread::sleep(Duration::from_millis(1000));
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    broker.restart();
    // The first subscriber lost its subscription with the broker; a second one takes over.
    let sub2 = Subscriber::start(broker.port, "gatewatch/test/box1/events/#");
    let s = summary(bench(&cfg, 100, 0.0));
    let recovered = s["recovered_at_start"].as_u64().unwrap();
    assert_eq!(s["undelivered"], 0, "{s}");
    assert!(recovered > 0, "the backlog was on disk: {s}");
    let before = sub.messages.lock().unwrap().clone();
    let msgs = sub2.messages.lock().unwrap().clone();
    let all: Vec<Message> = before.iter().chain(&msgs).cloned().collect();
    let (got, dups) = seqs(&all);
    let max = *got.last().unwrap();
    println!("kill -9: {recovered} events recovered from the outbox and delivered after restart; {} distinct seqs up to {max}, {dups} duplicates", got.len());
    assert_eq!(
        got,
        (1..=max).collect::<Vec<_>>(),
        "no seq missing, none reused"
    );
    let first_seen = seqs(&msgs).0[0];
    assert_eq!(
        max - first_seen + 1,
        recovered + 100,
        "backlog + new events after the restart"
    );
    let last = msgs.iter().find(|m| m.payload["seq"] == max).unwrap();
    assert_eq!(
        last.payload["plate"], "BENCH00099",
        "the new run continues the sequence"
    );
    assert!(msgs
        .iter()
        .filter(|m| m.payload["seq"].as_u64().unwrap() < first_seen + recovered)
        .all(|m| m.payload["replayed"] == true));
}

#[test]
fn full_outbox_applies_the_policy_counts_the_loss_and_shows_it_in_status() {
    for policy in ["drop_oldest", "reject_new"] {
        let mut broker = Broker::start();
        broker.stop(); // the broker is down while events pile up
        let dir = tempfile::tempdir().unwrap();
        let cfg = bench_config(
            dir.path(),
            broker.port,
            &format!("[outbox]\nmax_bytes = 65536\npolicy = \"{policy}\""),
        );
        let mut child = bench_logging(&cfg, 500, 0.0, Stdio::piped());
        // The broker comes back once every event met the full outbox, however long producing
        // takes on this machine; the final count is in a status.
        assert!(
            wait_all_produced(&mut child, Duration::from_secs(120)),
            "{policy}: the producer did not finish within two minutes"
        );
        broker.restart();
        let sub = Subscriber::start(broker.port, "gatewatch/#");
        let s = summary(child);
        let dropped = s["dropped_total"].as_u64().unwrap();
        assert!(dropped > 0, "{policy}: {s}");
        assert!(sub.wait_until(Duration::from_secs(20), |m| {
            m.iter().any(|m| {
                m.topic.ends_with("/status")
                    && m.payload["outbox"]["dropped"].as_u64() == Some(dropped)
            })
        }));
        let msgs = sub.messages.lock().unwrap().clone();
        let (got, _) = seqs(&msgs);
        println!(
            "{policy}: {} delivered, {dropped} dropped of 500",
            got.len()
        );
        assert_eq!(
            got.len() as u64 + dropped,
            500,
            "{policy}: every event is delivered or counted"
        );
        match policy {
            // The newest are kept: the last event made it.
            "drop_oldest" => assert!(msgs.iter().any(|m| m.payload["plate"] == "BENCH00499")),
            // The oldest are kept, gap-free from 1.
            _ => assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>()),
        }
        for m in msgs.iter().filter(|m| m.topic.ends_with("/status")) {
            assert_valid("status.v1.json", &m.payload);
        }
    }
}

#[test]
fn stopping_with_the_broker_down_is_prompt_and_the_backlog_goes_out_on_the_next_start() {
    let mut broker = Broker::start_persistent();
    let sub = Subscriber::start_persistent(broker.port, "gatewatch/test/box1/events/#", "stop-sub");
    broker.stop();
    let dir = tempfile::tempdir().unwrap();
    let cfg = bench_config(dir.path(), broker.port, "");
    let run = |events: u64, wait_s: u64| {
        let started = Instant::now();
        let child = gatewatch()
            .args(["bench", "delivery", "--events", &events.to_string()])
            .args(["--wait-s", &wait_s.to_string(), "--config"])
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (summary(child), started.elapsed())
    };
    // More events than the MQTT client's request queue holds, with nobody to take them.
    let (s, took) = run(1000, 0);
    assert_eq!(s["undelivered"], 1000, "{s}");
    assert!(took < Duration::from_secs(30), "stop took {took:?}");

    broker.restart();
    let (s, _) = run(0, 60);
    assert_eq!(
        (s["recovered_at_start"].as_u64(), s["undelivered"].as_u64()),
        (Some(1000), Some(0)),
        "{s}"
    );
    assert!(sub.wait_until(Duration::from_secs(20), |m| seqs(m).0.len() == 1000));
    let msgs = sub.messages.lock().unwrap().clone();
    assert_eq!(seqs(&msgs).0, (1..=1000).collect::<Vec<_>>());
    assert!(msgs.iter().all(|m| m.payload["replayed"] == true));
}

#[test]
fn broker_restarts_during_a_fast_stream_lose_nothing() {
    restarts_during_a_fast_stream_lose_nothing("3.1.1");
}

#[test]
fn broker_restarts_during_a_fast_stream_lose_nothing_over_mqtt5() {
    restarts_during_a_fast_stream_lose_nothing("5");
}

/// Issue 13, item 1: the publishes in flight when the connection drops must be sent again. 12,000
/// events at 1,000 events/s, the broker restarted four times while they flow (each restart once
/// the subscriber has seen a given number, so the test does not depend on the machine's speed),
/// and a persistent QoS 1 subscriber must end up with every seq.
fn restarts_during_a_fast_stream_lose_nothing(protocol: &str) {
    let mut broker = Broker::start_persistent();
    // Mosquitto queues at most 1,000 messages for a client by default and drops the rest without
    // a word; the catch-up burst after an outage can outrun the subscriber by more than that.
    broker.extra_conf = "max_queued_messages 0\n".to_owned();
    broker.restart();
    let sub = Subscriber::start_persistent(
        broker.port,
        "gatewatch/test/box1/events/#",
        &format!("restarts-sub-{protocol}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = bench_config(dir.path(), broker.port, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[mqtt]", &format!("[mqtt]\nprotocol = \"{protocol}\""));
    std::fs::write(&cfg, text).unwrap();
    let n: u64 = 12_000;
    let child = bench(&cfg, n, 1000.0);
    let started = Instant::now();
    for seen in [1_500, 4_000, 6_500, 9_000] {
        assert!(
            sub.wait_until(Duration::from_secs(90), |m| seqs(m).0.len() >= seen),
            "the subscriber never saw {seen} events"
        );
        broker.stop();
        // The length of the outage is not what is tested; any outage drops the connection.
        std::thread::sleep(Duration::from_millis(300));
        broker.restart();
        println!(
            "restarted the broker at {:.1} s, after {seen} events",
            started.elapsed().as_secs_f64()
        );
    }
    let s = summary(child);
    let complete = sub.wait_until(Duration::from_secs(60), |m| seqs(m).0.len() as u64 == n);
    let msgs = sub.messages.lock().unwrap().clone();
    let (got, dups) = seqs(&msgs);
    let missing: Vec<u64> = (1..=n).filter(|s| got.binary_search(s).is_err()).collect();
    println!(
        "4 broker restarts (MQTT {protocol}): {} of {n} seqs received, {} missing, {dups} duplicates; bench {s}",
        got.len(),
        missing.len()
    );
    assert!(complete && missing.is_empty(), "missing seqs: {missing:?}");
    assert_eq!(s["undelivered"], 0, "the outbox is empty at the end: {s}");
    broker.stop();
    let connections = broker.log().matches("as gatewatch-test-box1 (").count();
    assert!(
        connections >= 5,
        "gatewatch connected {connections} times, expected a reconnection after each restart:\n{}",
        broker.log()
    );
}

/// Waits (up to 60 s) for a process that must refuse to start; returns its log.
fn refused(mut cmd: std::process::Command) -> String {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the second gatewatch did not refuse the state_dir in use");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "the second gatewatch ran: {err}");
    err
}

#[test]
fn a_second_gatewatch_on_the_same_state_dir_refuses_to_start() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "gatewatch/test/box1/events/#");
    let dir = tempfile::tempdir().unwrap();
    let cfg = bench_config(dir.path(), broker.port, "");
    // The first one runs for a long while, slowly.
    let _first = Running(bench(&cfg, 100_000, 20.0));
    assert!(
        sub.wait_until(Duration::from_secs(30), |m| !m.is_empty()),
        "the first gatewatch did not deliver"
    );
    let expected = format!(
        "state_dir {} is in use by another gatewatch",
        dir.path().join("state").display()
    );
    let mut second_bench = gatewatch();
    second_bench
        .args(["bench", "delivery", "--events", "10", "--config"])
        .arg(&cfg);
    let err = refused(second_bench);
    assert!(err.contains(&expected), "{err}");
    let mut second_run = gatewatch();
    second_run.args(["run", "--config"]).arg(&cfg);
    let err = refused(second_run);
    assert!(err.contains(&expected), "{err}");
    // Nothing of the second ones reached the broker: no seq twice.
    let (_, dups) = seqs(&sub.messages.lock().unwrap().clone());
    assert_eq!(dups, 0);
}

/// Issue 13 item 3 end to end: an outbox damaged while gatewatch was stopped (a segment gone from
/// the middle, a flipped byte in the newest segment, a cursor beyond everything stored) delivers
/// every intact event at the next start, continues seq above the cursor, keeps the damaged file in
/// `quarantine/` and shows the losses in status.
#[test]
fn a_damaged_outbox_delivers_every_intact_event_and_shows_the_losses_in_status() {
    let mut broker = Broker::start();
    broker.stop();
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB segments: 600 events fill four.
    let cfg = bench_config(dir.path(), broker.port, "[outbox]\nmax_bytes = 1048576");
    let run = |events: u64, wait_s: u64| {
        let child = gatewatch()
            .args(["bench", "delivery", "--events", &events.to_string()])
            .args(["--wait-s", &wait_s.to_string(), "--config"])
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        summary(child)
    };
    let s = run(600, 0);
    assert_eq!(s["undelivered"], 600, "{s}");

    let outbox = dir.path().join("state/outbox");
    let mut segs: Vec<std::path::PathBuf> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("seg-"))
        .collect();
    segs.sort();
    assert!(segs.len() >= 3, "{segs:?}");
    let first_seq = |p: &std::path::Path| -> u64 {
        let name = p.file_name().unwrap().to_string_lossy();
        name["seg-".len()..name.len() - ".log".len()]
            .parse()
            .unwrap()
    };
    let gone = first_seq(&segs[1])..first_seq(&segs[2]);
    std::fs::remove_file(&segs[1]).unwrap();
    let newest = segs.last().unwrap();
    let mut data = std::fs::read(newest).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x01;
    std::fs::write(newest, &data).unwrap();
    std::fs::write(outbox.join("cursor"), "9000 0 9000\n").unwrap();

    broker.restart();
    let sub = Subscriber::start(broker.port, "gatewatch/test/box1/#");
    let s = run(100, 60);
    let kept = 600 - (gone.end - gone.start) - 1;
    assert_eq!(
        (s["recovered_at_start"].as_u64(), s["undelivered"].as_u64()),
        (Some(kept), Some(0)),
        "{s}"
    );
    assert!(
        sub.wait_until(Duration::from_secs(20), |m| seqs(m).0.len() as u64
            == kept + 100)
    );
    let msgs = sub.messages.lock().unwrap().clone();
    let (got, _) = seqs(&msgs);
    let old: Vec<u64> = got.iter().copied().filter(|s| *s <= 600).collect();
    let lost: Vec<u64> = (1..=600)
        .filter(|s| !gone.contains(s) && !old.contains(s))
        .collect();
    assert_eq!(
        lost.len(),
        1,
        "one event lost to the flipped byte: {lost:?}"
    );
    assert!(lost[0] >= first_seq(newest), "{lost:?}");
    assert_eq!(
        got[old.len()..],
        (9001..=9100).collect::<Vec<_>>(),
        "seq continues above the cursor"
    );

    let status: Vec<_> = msgs
        .iter()
        .filter(|m| m.topic.ends_with("/status"))
        .collect();
    assert!(!status.is_empty());
    for m in &status {
        assert_valid("status.v1.json", &m.payload);
        assert_eq!(m.payload["outbox"]["damaged"], 1, "{}", m.payload);
        assert_eq!(
            m.payload["outbox"]["skipped"],
            gone.end - gone.start,
            "{}",
            m.payload
        );
    }
    assert!(outbox
        .join("quarantine")
        .join(newest.file_name().unwrap())
        .exists());
}
