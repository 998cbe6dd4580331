//! MQTT delivery: the broker link, the retained status with its last will, and event publishing.
//!
//! Events go from pipeline threads through a bounded channel to one forwarder task, which hands
//! them to rumqttc at QoS 1; the connection task counts broker acknowledgements so shutdown can
//! wait until everything handed over has been acknowledged. rumqttc resends unacknowledged
//! publishes after a reconnect. (Events still in memory when the process dies are lost; the
//! disk-backed outbox of the delivery issue closes that gap.)

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Config;

/// Produces the current status JSON (state `online`).
pub type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Counters of the broker link.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// QoS 1 messages handed to the client.
    pub published: AtomicU64,
    /// Of those, acknowledged by the broker.
    pub acked: AtomicU64,
    pub connected: AtomicBool,
    pub connections: AtomicU64,
}

/// A message ready for the broker.
#[derive(Debug)]
pub struct Outbound {
    /// Topic below the prefix, e.g. `events/plate`.
    pub topic_suffix: String,
    pub payload: Vec<u8>,
}

/// Sends events from any thread to the broker link.
#[derive(Clone)]
pub struct EventSender {
    tx: mpsc::Sender<Outbound>,
}

impl EventSender {
    /// Queues an event for publishing at QoS 1; waits while the queue is full (never drops).
    /// Call from non-async threads.
    pub fn send_blocking<T: Serialize>(&self, topic_suffix: &str, event: &T) -> Result<()> {
        let payload = serde_json::to_vec(event).context("serialise event")?;
        self.tx
            .blocking_send(Outbound {
                topic_suffix: topic_suffix.to_owned(),
                payload,
            })
            .map_err(|_| anyhow::anyhow!("delivery has shut down"))
    }
}

/// The running broker link.
pub struct MqttLink {
    client: AsyncClient,
    prefix: String,
    stats: Arc<LinkStats>,
    forwarder: JoinHandle<()>,
    poller: JoinHandle<()>,
    status_task: JoinHandle<()>,
}

/// Builds the client options from the config, including the retained `offline` last will.
pub fn mqtt_options(cfg: &Config) -> MqttOptions {
    let mut o = MqttOptions::new(cfg.client_id(), cfg.mqtt.host.clone(), cfg.mqtt.port);
    o.set_keep_alive(Duration::from_secs(cfg.mqtt.keep_alive_s));
    o.set_last_will(LastWill::new(
        format!("{}/status", cfg.topic_prefix()),
        serde_json::to_vec(&serde_json::json!({"state": "offline"})).expect("static json"),
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(user) = &cfg.mqtt.username {
        o.set_credentials(user.clone(), cfg.mqtt.password.clone().unwrap_or_default());
    }
    o
}

impl MqttLink {
    /// Connects (in the background, retrying with backoff) and returns the link and the sender
    /// pipeline threads use. Must be called inside a Tokio runtime.
    pub fn start(
        cfg: &Config,
        status: StatusFn,
        status_every: Duration,
    ) -> (MqttLink, EventSender) {
        let (client, eventloop) = AsyncClient::new(mqtt_options(cfg), 256);
        let prefix = cfg.topic_prefix();
        let stats = Arc::new(LinkStats::default());
        let poller = tokio::spawn(poll(
            eventloop,
            client.clone(),
            prefix.clone(),
            stats.clone(),
            status.clone(),
        ));
        let (tx, mut rx) = mpsc::channel::<Outbound>(1024);
        let forwarder = {
            let (client, prefix, stats) = (client.clone(), prefix.clone(), stats.clone());
            tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    let topic = format!("{prefix}/{}", m.topic_suffix);
                    stats.published.fetch_add(1, Ordering::SeqCst);
                    if let Err(e) = client
                        .publish(topic, QoS::AtLeastOnce, false, m.payload)
                        .await
                    {
                        stats.published.fetch_sub(1, Ordering::SeqCst);
                        tracing::error!(error = %e, "MQTT client closed; event not handed over");
                    }
                }
            })
        };
        let status_task = {
            let (client, prefix, stats) = (client.clone(), prefix.clone(), stats.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(status_every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if stats.connected.load(Ordering::Relaxed) {
                        publish_status(&client, &prefix, &stats, status()).await;
                    }
                }
            })
        };
        (
            MqttLink {
                client,
                prefix,
                stats,
                forwarder,
                poller,
                status_task,
            },
            EventSender { tx },
        )
    }

    /// The link's counters.
    pub fn stats(&self) -> Arc<LinkStats> {
        self.stats.clone()
    }

    /// Delivers what is queued (all `EventSender`s must be dropped first), waits up to `timeout`
    /// for the broker to acknowledge everything, publishes the retained `offline` status and
    /// disconnects. Returns how many messages stayed unacknowledged.
    pub async fn shutdown(self, timeout: Duration) -> u64 {
        self.status_task.abort();
        let deadline = tokio::time::Instant::now() + timeout;
        let MqttLink {
            client,
            prefix,
            stats,
            forwarder,
            poller,
            ..
        } = self;
        let _ = tokio::time::timeout_at(deadline, forwarder).await;
        let pending = || {
            stats
                .published
                .load(Ordering::SeqCst)
                .saturating_sub(stats.acked.load(Ordering::SeqCst))
        };
        let offline = serde_json::json!({"state": "offline", "reason": "shutdown"});
        publish_status(&client, &prefix, &stats, offline).await;
        while pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = pending();
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), poller).await;
        left
    }
}

async fn publish_status(
    client: &AsyncClient,
    prefix: &str,
    stats: &LinkStats,
    status: serde_json::Value,
) {
    stats.published.fetch_add(1, Ordering::SeqCst);
    let payload = serde_json::to_vec(&status).expect("json");
    if client
        .publish(format!("{prefix}/status"), QoS::AtLeastOnce, true, payload)
        .await
        .is_err()
    {
        stats.published.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn poll(
    mut eventloop: EventLoop,
    client: AsyncClient,
    prefix: String,
    stats: Arc<LinkStats>,
    status: StatusFn,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(500);
                stats.connected.store(true, Ordering::Relaxed);
                stats.connections.fetch_add(1, Ordering::Relaxed);
                tracing::info!(code = ?ack.code, "connected to MQTT broker");
                // Announce availability (retained) on every (re)connect. try_publish: this task
                // drives the event loop, so it must not wait on the client's queue itself.
                stats.published.fetch_add(1, Ordering::SeqCst);
                let payload = serde_json::to_vec(&status()).expect("json");
                if client
                    .try_publish(format!("{prefix}/status"), QoS::AtLeastOnce, true, payload)
                    .is_err()
                {
                    stats.published.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                stats.acked.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                stats.connected.store(false, Ordering::Relaxed);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                if stats.connected.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "MQTT connection lost; reconnecting");
                } else {
                    tracing::warn!(error = %e, retry_in_s = backoff.as_secs_f64(), "MQTT broker unreachable");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
