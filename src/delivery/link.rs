//! The broker link: drains the outbox to the broker at QoS 1 and acknowledges records on PUBACK.
//!
//! Two tasks share one [`LinkState`] (the bookkeeping, without I/O, in `link_state.rs`): the
//! forwarder, the only thing that publishes (events, status, replies, retained state), notes each
//! publish there before handing it to rumqttc; the event-loop task reports what the client wrote
//! (packet id), the PUBACKs (matched by packet id) and lost connections. A lost connection takes
//! its unacknowledged publishes with it (rumqttc keeps no session: clean session, see
//! `link_state.rs`); those records go back to the head of the outbox and are sent again after the
//! reconnection. An MQTT 5 PUBACK may also refuse a message, which is counted and logged
//! (retrying a refused message would only block the queue behind it).

use super::client::{self, Client, LinkClient, LinkEvent, LinkEvents, MqttOptions};
use super::link_state::{LinkCounters, LinkState, PubAckOutcome};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::outbox::{AppendError, Outbox, OutboxStats};
use crate::hub::{Commands, Reply};

/// Produces the current status JSON (state `online`).
pub type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Counters of the broker link (a copy of [`LinkCounters`] readable without a lock).
#[derive(Debug, Default)]
pub struct LinkStats {
    /// QoS 1 messages handed to the client.
    pub published: AtomicU64,
    /// Of those, acknowledged by the broker.
    pub acked: AtomicU64,
    /// Of the acknowledged, refused by the broker (MQTT 5 reason codes: not authorised, quota
    /// exceeded, …). Events among them are not retried: they are counted in status.
    pub refused: AtomicU64,
    /// Events sent again because their connection was lost before the PUBACK.
    pub requeued: AtomicU64,
    /// Retained messages on command topics, ignored.
    pub retained_commands: AtomicU64,
    pub connected: AtomicBool,
    pub connections: AtomicU64,
    /// Bumped by the forwarder every loop (at least twice a second), for the service watchdog.
    pub heartbeat: crate::heartbeat::Heartbeat,
}

impl LinkStats {
    fn mirror(&self, c: LinkCounters) {
        self.published.store(c.published, Ordering::Relaxed);
        self.acked.store(c.acked, Ordering::Relaxed);
        self.refused.store(c.refused, Ordering::Relaxed);
        self.requeued.store(c.requeued, Ordering::Relaxed);
        self.connections.store(c.connections, Ordering::Relaxed);
    }
}

/// Where producers put events: the outbox plus a wake-up for the forwarder. Cheap to share.
pub struct Delivery {
    outbox: Mutex<Outbox>,
    state: Mutex<LinkState>,
    wake: Notify,
    link: Arc<LinkStats>,
    outbox_stats: Arc<OutboxStats>,
}

impl Delivery {
    pub fn new(outbox: Outbox) -> Arc<Delivery> {
        let outbox_stats = outbox.stats();
        Arc::new(Delivery {
            outbox: Mutex::new(outbox),
            state: Mutex::new(LinkState::new()),
            wake: Notify::new(),
            link: Arc::new(LinkStats::default()),
            outbox_stats,
        })
    }

    /// Stores an event durably (the outbox assigns its seq and `build` makes the payload from it);
    /// from then on it counts as produced and will reach the broker.
    pub fn emit(
        &self,
        topic_suffix: &str,
        build: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<u64, AppendError> {
        let catch_up = !self.link.connected.load(Ordering::Relaxed);
        let seq = self
            .outbox
            .lock()
            .expect("outbox lock")
            .append(topic_suffix, catch_up, build)?;
        self.wake.notify_one();
        Ok(seq)
    }

    /// Sets the retained state on `<prefix>/<topic_suffix>`. Only the latest payload per topic
    /// matters, so it is not stored in the outbox: it is published after the pending events and
    /// again on every (re)connection.
    pub fn set_retained(&self, topic_suffix: &str, payload: Vec<u8>) {
        self.with_state(|s| s.set_retained(topic_suffix, payload));
        self.wake.notify_one();
    }

    /// Runs `f` on the link state and refreshes the counters.
    fn with_state<T>(&self, f: impl FnOnce(&mut LinkState) -> T) -> T {
        let mut state = self.state.lock().expect("link state lock");
        let out = f(&mut state);
        self.link.mirror(state.counters());
        out
    }

    /// Outbox counters.
    pub fn outbox_stats(&self) -> Arc<OutboxStats> {
        self.outbox_stats.clone()
    }

    /// Link counters.
    pub fn link_stats(&self) -> Arc<LinkStats> {
        self.link.clone()
    }

    /// The status JSON fields that describe delivery.
    pub fn status_fields(&self) -> serde_json::Value {
        let o = &self.outbox_stats;
        serde_json::json!({
            "depth": o.depth.load(Ordering::Relaxed),
            "bytes": o.bytes.load(Ordering::Relaxed),
            "dropped": o.dropped.load(Ordering::Relaxed),
            "last_seq": o.last_seq.load(Ordering::Relaxed),
            "refused": self.link.refused.load(Ordering::Relaxed),
            "write_failed": o.write_failed.load(Ordering::Relaxed),
            "damaged": o.damaged.load(Ordering::Relaxed),
            "skipped": o.skipped.load(Ordering::Relaxed),
        })
    }
}

/// What the forwarder is asked to do besides draining the outbox.
enum Control {
    Status(serde_json::Value),
    /// A command reply (not retained, not from the outbox).
    Reply(Reply),
    Stop,
}

/// The running broker link, over rumqttc's client or (in tests) a double.
pub struct MqttLink<C: LinkClient = Client> {
    client: C,
    delivery: Arc<Delivery>,
    control: mpsc::UnboundedSender<Control>,
    forwarder: JoinHandle<()>,
    poller: JoinHandle<()>,
    status_task: JoinHandle<()>,
}

impl MqttLink {
    /// Starts the link (connecting in the background, retrying with backoff). Must be called
    /// inside a Tokio runtime.
    pub fn start(
        opts: &MqttOptions,
        delivery: Arc<Delivery>,
        status: StatusFn,
        status_every: Duration,
        commands: Option<Arc<Commands>>,
    ) -> MqttLink {
        let (client, eventloop) = client::connect(opts, 64);
        MqttLink::start_with(
            client,
            eventloop,
            opts.topic_prefix.clone(),
            delivery,
            status,
            status_every,
            commands,
        )
    }
}

impl<C: LinkClient> MqttLink<C> {
    /// Starts the link's tasks over `client` and its `events`, publishing under `prefix`.
    pub fn start_with(
        client: C,
        eventloop: impl LinkEvents,
        prefix: String,
        delivery: Arc<Delivery>,
        status: StatusFn,
        status_every: Duration,
        commands: Option<Arc<Commands>>,
    ) -> MqttLink<C> {
        let (control, control_rx) = mpsc::unbounded_channel();
        let poller = tokio::spawn(poll(
            eventloop,
            PollParts {
                client: client.clone(),
                prefix: prefix.clone(),
                delivery: delivery.clone(),
                control: control.clone(),
                status: status.clone(),
                commands,
            },
        ));
        let forwarder = tokio::spawn(forward(
            client.clone(),
            prefix,
            delivery.clone(),
            control_rx,
        ));
        let status_task = {
            let (control, link) = (control.clone(), delivery.link.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(status_every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if link.connected.load(Ordering::Relaxed)
                        && control.send(Control::Status(status())).is_err()
                    {
                        return;
                    }
                }
            })
        };
        MqttLink {
            client,
            delivery,
            control,
            forwarder,
            poller,
            status_task,
        }
    }

    /// Hands over what is stored, publishes the retained `offline` status, waits up to `timeout`
    /// for the broker to acknowledge everything and disconnects. Returns how many events stay in
    /// the outbox; they are delivered after the next start.
    pub async fn shutdown(self, timeout: Duration) -> u64 {
        self.status_task.abort();
        let deadline = tokio::time::Instant::now() + timeout;
        // The last word carries the outbox counters: the hub learns what was dropped and how
        // much waits for the next start, even when no periodic status went out after the last
        // change (a backlog that was still being counted when the broker came back).
        let _ = self.control.send(Control::Status(serde_json::json!({
            "state": "offline",
            "reason": "shutdown",
            "outbox": self.delivery.status_fields(),
        })));
        let _ = self.control.send(Control::Stop);
        // Acknowledgements can only come over a live connection: without one, waiting for them
        // (or for a hand-over stuck in the client's full queue) would only hold the stop until the
        // deadline. An aborted hand-over loses nothing: its record stays in the outbox on disk.
        let connected = || self.delivery.link.connected.load(Ordering::Relaxed);
        let mut forwarder = self.forwarder;
        loop {
            if forwarder.is_finished() {
                break;
            }
            if !connected() || tokio::time::Instant::now() >= deadline {
                forwarder.abort();
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), &mut forwarder).await;
        }
        while connected()
            && !self.delivery.with_state(|s| s.is_settled())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = {
            let mut ob = self.delivery.outbox.lock().expect("outbox lock");
            if let Err(e) = ob.checkpoint() {
                tracing::error!(error = %format!("{e:#}"), "outbox checkpoint failed");
            }
            self.delivery.outbox_stats.depth.load(Ordering::Relaxed)
        };
        // With the broker unreachable the client's request queue may be full and nobody drains
        // it: then the DISCONNECT gets one second, not the rest of the deadline (the broker's last
        // will says `offline` for us).
        let grace = if connected() {
            deadline.max(tokio::time::Instant::now() + Duration::from_secs(1))
        } else {
            tokio::time::Instant::now() + Duration::from_secs(1)
        };
        if tokio::time::timeout_at(grace, self.client.disconnect())
            .await
            .is_err()
        {
            tracing::warn!("broker unreachable at shutdown; stopping without a clean disconnect");
        }
        let mut poller = self.poller;
        if tokio::time::timeout(Duration::from_secs(2), &mut poller)
            .await
            .is_err()
        {
            poller.abort();
        }
        left
    }
}

/// Adds `"replayed": true` to a JSON object payload.
fn mark_replayed(mut payload: Vec<u8>) -> Vec<u8> {
    if payload.last() == Some(&b'}') {
        payload.pop();
        payload.extend_from_slice(b",\"replayed\":true}");
    }
    payload
}

async fn forward(
    client: impl LinkClient,
    prefix: String,
    delivery: Arc<Delivery>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let publish = |topic: String, payload: Vec<u8>, retain: bool, seq: Option<u64>| {
        let (client, delivery) = (client.clone(), delivery.clone());
        async move {
            if !client::fits_packet(&topic, &payload) {
                // Only a record stored by an older version can be this large (events are bounded
                // when they are made): set aside and counted, so the queue behind it moves on.
                tracing::error!(%topic, bytes = payload.len(), ?seq, "message larger than the MQTT packet limit not sent (counted as refused)");
                delivery.with_state(|s| s.refuse_unsendable());
                if let Some(seq) = seq {
                    delivery
                        .outbox
                        .lock()
                        .expect("outbox lock")
                        .acknowledge(seq);
                }
                return true;
            }
            // Noted before the hand-over, so that its write cannot be reported first.
            delivery.with_state(|s| s.note_publish(seq));
            if client.publish(topic, retain, payload).await.is_err() {
                delivery.with_state(|s| s.publish_failed());
                return false;
            }
            true
        }
    };
    loop {
        delivery.link.heartbeat.beat();
        // Records are handed over only while connected: during an outage they would only fill the
        // client's queue, and the records a lost connection took with it must go out first.
        while delivery.link.connected.load(Ordering::Relaxed) {
            let next = delivery.outbox.lock().expect("outbox lock").next_unsent();
            let Some(r) = next else { break };
            let payload = if r.catch_up {
                mark_replayed(r.payload)
            } else {
                r.payload
            };
            if !publish(
                format!("{prefix}/{}", r.topic_suffix),
                payload,
                false,
                Some(r.seq),
            )
            .await
            {
                tracing::error!("MQTT client closed; events stay in the outbox");
                return;
            }
        }
        if delivery.link.connected.load(Ordering::Relaxed) {
            for (suffix, payload) in delivery.with_state(|s| s.take_dirty_retained()) {
                if !publish(format!("{prefix}/{suffix}"), payload, true, None).await {
                    return;
                }
            }
        }
        if delivery.with_state(|s| s.is_stopping()) {
            return;
        }
        tokio::select! {
            _ = delivery.wake.notified() => {}
            // Wakes idle, so the heartbeat shows the forwarder is not stuck.
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            c = control.recv() => match c {
                // Status and replies are for now: during an outage they would only fill the
                // client's queue (and block this task on it); the last will covers `offline`, and
                // the status is published again on reconnection.
                Some(Control::Status(_) | Control::Reply(_))
                    if !delivery.link.connected.load(Ordering::Relaxed) => {}
                Some(Control::Status(v)) => {
                    let payload = serde_json::to_vec(&v).expect("json");
                    if !publish(format!("{prefix}/status"), payload, true, None).await {
                        return;
                    }
                }
                Some(Control::Reply(r)) => {
                    let payload = serde_json::to_vec(&r.body).expect("json");
                    if !publish(format!("{prefix}/{}", r.topic_suffix), payload, false, None).await {
                        return;
                    }
                }
                Some(Control::Stop) | None => delivery.with_state(|s| s.stop()),
            },
        }
    }
}

/// What the event-loop task needs besides the event loop.
struct PollParts<C> {
    client: C,
    prefix: String,
    delivery: Arc<Delivery>,
    control: mpsc::UnboundedSender<Control>,
    status: StatusFn,
    commands: Option<Arc<Commands>>,
}

async fn poll(mut events: impl LinkEvents, parts: PollParts<impl LinkClient>) {
    let PollParts {
        client,
        prefix,
        delivery,
        control,
        status,
        commands,
    } = parts;
    let cmd_prefix = format!("{prefix}/cmd/");
    let link = delivery.link.clone();
    let mut backoff = Duration::from_millis(500);
    let mut last_checkpoint = Instant::now();
    loop {
        match events.poll().await {
            LinkEvent::ConnAck { code } => {
                backoff = Duration::from_millis(500);
                delivery.with_state(|s| s.on_connected());
                link.connected.store(true, Ordering::Relaxed);
                tracing::info!(%code, "connected to MQTT broker");
                let _ = control.send(Control::Status(status()));
                // The forwarder hands records over again, lost ones first, then retained state.
                delivery.wake.notify_one();
                if commands.is_some() {
                    // Subscribing is not a publish: the link state does not track it.
                    if let Err(e) = client.try_subscribe(format!("{cmd_prefix}+")) {
                        tracing::error!(error = %e, "cannot subscribe to commands");
                    }
                }
            }
            LinkEvent::Publish {
                topic,
                payload,
                retained,
            } => {
                let (Some(handler), Some(name)) =
                    (commands.clone(), topic.strip_prefix(&cmd_prefix))
                else {
                    continue;
                };
                if name.is_empty() || name.contains('/') {
                    continue;
                }
                if retained {
                    // A retained command would run again at every reconnect (a retained
                    // `reload_config` restarted the box forever). MQTT 5 subscriptions ask the
                    // broker not to send them; MQTT 3.1.1 cannot, so they are dropped here.
                    let n = link.retained_commands.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(%topic, ignored = n, "retained message on a command topic ignored: commands must be sent without the retain flag (clear it on the broker with an empty retained message)");
                    continue;
                }
                let (name, control) = (name.to_owned(), control.clone());
                // Handlers may take a while (a snapshot encodes a JPEG): off the event loop.
                tokio::task::spawn_blocking(move || {
                    let reply = handler.dispatch(&name, &payload);
                    let _ = control.send(Control::Reply(reply));
                });
            }
            LinkEvent::Written { pkid } => {
                if !delivery.with_state(|s| s.on_written(pkid)) {
                    tracing::warn!(
                        pkid,
                        "the MQTT client wrote a publish the link did not hand over"
                    );
                }
            }
            LinkEvent::PubAck { pkid, refused } => {
                let outcome = delivery.with_state(|s| s.on_puback(pkid, refused.is_some()));
                let PubAckOutcome::Acked { cargo, .. } = outcome else {
                    tracing::warn!(pkid, "PUBACK for no publish awaiting one; ignored");
                    continue;
                };
                if let Some(reason) = refused {
                    tracing::error!(%reason, seq = ?cargo, "the broker refused a message; it is not retried (counted in status as outbox.refused)");
                }
                if let Some(seq) = cargo {
                    let mut ob = delivery.outbox.lock().expect("outbox lock");
                    ob.acknowledge(seq);
                    if last_checkpoint.elapsed() >= Duration::from_millis(50) {
                        if let Err(e) = ob.checkpoint() {
                            tracing::error!(error = %format!("{e:#}"), "outbox checkpoint failed");
                        }
                        last_checkpoint = Instant::now();
                    }
                }
            }
            LinkEvent::ConnectionLost {
                error,
                unwritten_lost,
            } => {
                let was_connected = link.connected.swap(false, Ordering::Relaxed);
                let lost = delivery.with_state(|s| s.on_connection_lost(unwritten_lost));
                if !lost.is_empty() {
                    delivery.outbox.lock().expect("outbox lock").requeue(&lost);
                    tracing::info!(
                        events = lost.len(),
                        "events unacknowledged when the connection dropped will be sent again"
                    );
                }
                if was_connected {
                    tracing::warn!(%error, "MQTT connection lost; events are kept in the outbox");
                } else {
                    tracing::warn!(%error, retry_in_s = backoff.as_secs_f64(), "MQTT broker unreachable");
                }
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            LinkEvent::Disconnected => {
                link.connected.store(false, Ordering::Relaxed);
                return;
            }
            LinkEvent::Other => {}
        }
    }
}

/// `d` scaled by a random factor in [0.75, 1.25), so that many boxes that lost the same uplink do
/// not all reconnect at the same instant.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    // Scramble the clock's low bits (splitmix64 finaliser) into a factor.
    let mut z = u64::from(nanos).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let unit = ((z ^ (z >> 31)) % 10_000) as f64 / 10_000.0;
    d.mul_f64(0.75 + 0.5 * unit)
}

#[cfg(test)]
mod tests {
    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..100 {
            let j = super::jitter(std::time::Duration::from_secs(4)).as_secs_f64();
            assert!((3.0..5.0).contains(&j), "{j}");
        }
    }

    use super::*;

    #[test]
    fn replayed_flag_is_added_to_the_object() {
        let v: serde_json::Value =
            serde_json::from_slice(&mark_replayed(br#"{"seq":1}"#.to_vec())).unwrap();
        assert_eq!(v, serde_json::json!({"seq": 1, "replayed": true}));
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod double_tests;
