//! The broker link's tasks over a test double of the MQTT client: the test plays rumqttc's event
//! loop (writes with packet ids, PUBACKs, a lost connection) and checks what is published and
//! what leaves the outbox.

use super::*;
use crate::delivery::client::{LinkClient, LinkEvent, LinkEvents};
use crate::delivery::{FullPolicy, OutboxOptions};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

#[derive(Debug, Clone)]
struct Sent {
    topic: String,
    retain: bool,
    payload: serde_json::Value,
}

/// Records what the link hands over; DISCONNECT is echoed as the event rumqttc would report.
#[derive(Clone)]
struct RecordingClient {
    sent: Arc<Mutex<Vec<Sent>>>,
    events: UnboundedSender<LinkEvent>,
}

impl LinkClient for RecordingClient {
    async fn publish(&self, topic: String, retain: bool, payload: Vec<u8>) -> Result<(), ()> {
        let payload = serde_json::from_slice(&payload).expect("json payload");
        self.sent.lock().unwrap().push(Sent {
            topic,
            retain,
            payload,
        });
        Ok(())
    }

    fn try_subscribe(&self, _filter: String) -> Result<(), String> {
        Ok(())
    }

    async fn disconnect(&self) -> Result<(), ()> {
        self.events.send(LinkEvent::Disconnected).map_err(drop)
    }
}

/// The events the test scripts.
struct ScriptedEvents(UnboundedReceiver<LinkEvent>);

impl LinkEvents for ScriptedEvents {
    async fn poll(&mut self) -> LinkEvent {
        match self.0.recv().await {
            Some(e) => e,
            None => std::future::pending().await,
        }
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    delivery: Arc<Delivery>,
    sent: Arc<Mutex<Vec<Sent>>>,
    events: UnboundedSender<LinkEvent>,
    link: MqttLink<RecordingClient>,
}

impl Harness {
    fn start(events_before: u64) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(OutboxOptions {
            dir: dir.path().to_owned(),
            max_bytes: 4 << 20,
            policy: FullPolicy::DropOldest,
            segment_bytes: 1 << 16,
        })
        .unwrap();
        let delivery = Delivery::new(outbox);
        for _ in 0..events_before {
            delivery
                .emit("events/plate", |seq| {
                    serde_json::to_vec(&serde_json::json!({ "seq": seq })).unwrap()
                })
                .unwrap();
        }
        let (events, rx) = unbounded_channel();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let client = RecordingClient {
            sent: sent.clone(),
            events: events.clone(),
        };
        let status: StatusFn = Arc::new(|| serde_json::json!({"state": "online"}));
        let link = MqttLink::start_with(
            client,
            ScriptedEvents(rx),
            "p".to_owned(),
            delivery.clone(),
            status,
            Duration::from_secs(3600),
            None,
        );
        Harness {
            _dir: dir,
            delivery,
            sent,
            events,
            link,
        }
    }

    fn send(&self, e: LinkEvent) {
        self.events.send(e).unwrap();
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    fn depth(&self) -> u64 {
        self.delivery.outbox_stats().depth.load(Ordering::Relaxed)
    }

    /// Waits (up to 10 s) until `cond` holds.
    async fn until(&self, what: &str, cond: impl Fn(&Harness) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn connack() -> LinkEvent {
    LinkEvent::ConnAck {
        code: "Success".to_owned(),
    }
}

fn puback(pkid: u16) -> LinkEvent {
    LinkEvent::PubAck {
        pkid,
        refused: None,
    }
}

fn seq_of(s: &Sent) -> Option<u64> {
    s.topic
        .ends_with("/events/plate")
        .then(|| s.payload["seq"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_lost_connection_took_are_published_again_and_pubacks_match_by_packet_id() {
    let h = Harness::start(4);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(h.sent().is_empty(), "nothing is handed over before CONNACK");

    h.send(connack());
    // Four events and the online status, in some order.
    h.until("the first hand-over", |h| h.sent().len() == 5)
        .await;
    let first = h.sent();
    for pkid in 1..=5 {
        h.send(LinkEvent::Written { pkid });
    }
    let pkid_of = |seq: u64| 1 + first.iter().position(|s| seq_of(s) == Some(seq)).unwrap() as u16;
    // A PUBACK for a packet id nobody awaits acknowledges nothing.
    h.send(puback(99));
    h.send(puback(pkid_of(2)));
    h.send(LinkEvent::PubAck {
        pkid: pkid_of(4),
        refused: Some("QuotaExceeded".to_owned()),
    });
    h.until("two acknowledgements", |h| h.depth() == 2).await;
    assert_eq!(h.delivery.link_stats().refused.load(Ordering::Relaxed), 1);
    assert_eq!(h.delivery.status_fields()["refused"], 1);

    // The connection drops with 1 and 3 unacknowledged (and the status): they come back.
    h.send(LinkEvent::ConnectionLost {
        error: "test".to_owned(),
        unwritten_lost: 0,
    });
    h.until("the link to notice", |h| {
        !h.delivery.link_stats().connected.load(Ordering::Relaxed)
    })
    .await;
    assert_eq!(h.depth(), 2, "still undelivered");
    h.send(connack());
    h.until("the resend", |h| {
        h.sent().iter().filter(|s| seq_of(s).is_some()).count() == 6
    })
    .await;
    let again: Vec<Sent> = h.sent()[5..]
        .iter()
        .filter(|s| seq_of(s).is_some())
        .cloned()
        .collect();
    assert_eq!(
        again.iter().map(|s| seq_of(s).unwrap()).collect::<Vec<_>>(),
        [1, 3],
        "oldest first"
    );
    assert!(again
        .iter()
        .all(|s| s.payload["replayed"] == true && !s.retain));
    assert_eq!(h.delivery.link_stats().requeued.load(Ordering::Relaxed), 2);

    // The new connection's packet ids start over; they acknowledge what was written on it.
    h.until("the status again", |h| h.sent().len() >= 8).await;
    let second = h.sent()[5..].to_vec();
    for pkid in 1..=second.len() as u16 {
        h.send(LinkEvent::Written { pkid });
        h.send(puback(pkid));
    }
    h.until("everything acknowledged", |h| h.depth() == 0).await;
    assert_eq!(h.link.shutdown(Duration::from_millis(200)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritten_publishes_the_client_dropped_come_back_and_the_rest_stay_tracked() {
    let h = Harness::start(0);
    h.send(connack());
    h.until("the online status", |h| h.sent().len() == 1).await;
    h.send(LinkEvent::Written { pkid: 1 });
    h.send(puback(1));
    for _ in 0..3 {
        h.delivery
            .emit("events/plate", |seq| {
                serde_json::to_vec(&serde_json::json!({ "seq": seq })).unwrap()
            })
            .unwrap();
    }
    h.until("three events", |h| h.sent().len() == 4).await;
    // Event 1 is written; the client drops it and event 2 from its queue; event 3 reached the
    // queue later and is written on the next connection.
    h.send(LinkEvent::Written { pkid: 2 });
    h.send(LinkEvent::ConnectionLost {
        error: "test".to_owned(),
        unwritten_lost: 1,
    });
    h.until("the link to notice", |h| {
        h.delivery.link_stats().requeued.load(Ordering::Relaxed) == 2
    })
    .await;
    h.send(connack());
    h.until("the resend", |h| h.sent().len() >= 7).await;
    let resent: Vec<u64> = h.sent()[4..].iter().filter_map(seq_of).collect();
    assert_eq!(resent, [1, 2]);
    // Event 3 is written first (it was queued first), then the status and the two resent.
    let order: Vec<Option<u64>> = std::iter::once(Some(3))
        .chain(h.sent()[4..].iter().map(seq_of))
        .collect();
    for (i, _) in order.iter().enumerate() {
        h.send(LinkEvent::Written { pkid: i as u16 + 1 });
        h.send(puback(i as u16 + 1));
    }
    h.until("everything acknowledged", |h| h.depth() == 0).await;
    assert_eq!(h.link.shutdown(Duration::from_millis(200)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_record_larger_than_the_packet_limit_is_set_aside_and_the_queue_moves_on() {
    let h = Harness::start(0);
    // As an older version could have stored it: bigger than any MQTT packet the client sends.
    let pad = "x".repeat(client::MAX_PACKET);
    for pad in [pad.as_str(), ""] {
        h.delivery
            .emit("events/plate", |seq| {
                serde_json::to_vec(&serde_json::json!({ "seq": seq, "pad": pad })).unwrap()
            })
            .unwrap();
    }
    h.send(connack());
    h.until("the small event and the status", |h| h.sent().len() == 2)
        .await;
    let seqs: Vec<u64> = h.sent().iter().filter_map(seq_of).collect();
    assert_eq!(
        seqs,
        [2],
        "the oversized record is never handed to the client"
    );
    assert_eq!(h.delivery.link_stats().refused.load(Ordering::Relaxed), 1);
    for pkid in 1..=2 {
        h.send(LinkEvent::Written { pkid });
        h.send(puback(pkid));
    }
    h.until("everything settled", |h| h.depth() == 0).await;
    assert_eq!(h.delivery.status_fields()["refused"], 1);
    assert_eq!(h.link.shutdown(Duration::from_millis(200)).await, 0);
}

/// A client whose request queue is full: nothing it is handed ever completes (rumqttc with the
/// broker unreachable and its queue filled by the outage).
#[derive(Clone)]
struct StuckClient;

impl LinkClient for StuckClient {
    async fn publish(&self, _topic: String, _retain: bool, _payload: Vec<u8>) -> Result<(), ()> {
        std::future::pending().await
    }

    fn try_subscribe(&self, _filter: String) -> Result<(), String> {
        Ok(())
    }

    async fn disconnect(&self) -> Result<(), ()> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn with_the_broker_unreachable_the_stop_does_not_wait_for_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(OutboxOptions {
        dir: dir.path().to_owned(),
        max_bytes: 1 << 20,
        policy: FullPolicy::DropOldest,
        segment_bytes: 1 << 16,
    })
    .unwrap();
    let delivery = Delivery::new(outbox);
    let (events, rx) = unbounded_channel();
    let status: StatusFn = Arc::new(|| serde_json::json!({"state": "online"}));
    let link = MqttLink::start_with(
        StuckClient,
        ScriptedEvents(rx),
        "p".to_owned(),
        delivery.clone(),
        status,
        Duration::from_secs(3600),
        None,
    );
    // Connected once (the online status goes into the queue and sticks), then the broker goes.
    events.send(connack()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    events
        .send(LinkEvent::ConnectionLost {
            error: "broker gone".to_owned(),
            unwritten_lost: 0,
        })
        .unwrap();
    for _ in 0..3 {
        delivery
            .emit("events/plate", |seq| {
                serde_json::to_vec(&serde_json::json!({ "seq": seq })).unwrap()
            })
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!delivery.link_stats().connected.load(Ordering::Relaxed));

    // Virtual time: the measure is what the stop waits for, not how fast this machine is.
    let started = tokio::time::Instant::now();
    let left = link.shutdown(Duration::from_secs(15)).await;
    let took = started.elapsed();
    assert_eq!(left, 3, "the events stay in the outbox for the next start");
    assert!(took <= Duration::from_secs(4), "stop took {took:?}");
}
