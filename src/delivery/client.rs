//! The MQTT client behind the broker link, in the protocol version the config asks for: rumqttc has
//! separate clients for MQTT 3.1.1 and 5, and the link's state machine should not care which. This
//! module builds either from [`MqttOptions`] and presents both as one client and one event stream.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// The MQTT protocol version spoken to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum MqttProtocol {
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5: the same contract, and the broker's refusals of a publish become visible.
    #[serde(rename = "5")]
    V5,
}

/// How to reach the broker, resolved from the configuration (`Config::mqtt_options`): the TLS
/// files and the password are already read. Not `Debug`: it holds the password and the key.
#[derive(Clone)]
pub struct MqttOptions {
    pub protocol: MqttProtocol,
    pub client_id: String,
    pub host: String,
    pub port: u16,
    /// TLS with this trust and client certificate; plain TCP when `None`.
    pub tls: Option<TlsMaterial>,
    pub keep_alive: Duration,
    /// Every topic is under it; the retained offline status (last will) is `<prefix>/status`.
    pub topic_prefix: String,
    /// User name and password.
    pub credentials: Option<(String, String)>,
}

/// PEM contents for TLS.
#[derive(Clone)]
pub struct TlsMaterial {
    /// CA certificates the broker's certificate must chain to.
    pub ca: Vec<u8>,
    /// Client certificate and private key, for mutual TLS.
    pub client_auth: Option<(Vec<u8>, Vec<u8>)>,
}

/// What the link needs to know of the broker's traffic.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// Connected; `code` is the broker's return code, for the log.
    ConnAck { code: String },
    /// A message on a subscribed topic.
    /// `retained`: the broker kept it and sent it because we subscribed (not a new message).
    Publish {
        topic: String,
        payload: Vec<u8>,
        retained: bool,
    },
    /// The client wrote the oldest QoS 1 publish it was given, with packet id `pkid`.
    Written { pkid: u16 },
    /// The broker acknowledged the QoS 1 publish `pkid`. With MQTT 5 it may refuse it: `refused`
    /// holds the reason (the message will not be delivered by retrying).
    PubAck { pkid: u16, refused: Option<String> },
    /// The connection is lost or could not be made (the client reconnects on the next poll).
    /// The client dropped every publish written on it and the oldest `unwritten_lost` publishes
    /// it had been given but not written.
    ConnectionLost {
        error: String,
        unwritten_lost: usize,
    },
    /// The client sent DISCONNECT (a clean stop).
    Disconnected,
    /// Anything else (pings, subscription acks, other outgoing packets).
    Other,
}

/// The client side the broker link publishes through: rumqttc's [`Client`], or a test double.
pub trait LinkClient: Clone + Send + Sync + 'static {
    /// Queues a QoS 1 publish; an error means the client has shut down.
    fn publish(
        &self,
        topic: String,
        retain: bool,
        payload: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<(), ()>> + Send;
    /// Subscribes at QoS 1 without waiting (from inside the event loop's task).
    fn try_subscribe(&self, filter: String) -> Result<(), String>;
    /// Sends DISCONNECT (may wait while the request queue is full: bound it with a timeout).
    fn disconnect(&self) -> impl std::future::Future<Output = Result<(), ()>> + Send;
}

/// The event side the broker link reads: rumqttc's [`EventStream`], or a test double.
pub trait LinkEvents: Send + 'static {
    /// The next event; reconnecting is the implementation's business.
    fn poll(&mut self) -> impl std::future::Future<Output = LinkEvent> + Send;
}

/// Either version's client; cheap to clone.
#[derive(Clone)]
pub enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// Either version's event loop, and the events it buffered for a connection that is gone.
pub struct EventStream {
    event_loop: EventLoop,
    left_over: VecDeque<LinkEvent>,
}

enum EventLoop {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// Builds the client and its event loop for `opts.protocol`, with `cap` queued requests.
pub fn connect(opts: &MqttOptions, cap: usize) -> (Client, EventStream) {
    match opts.protocol {
        MqttProtocol::V311 => {
            let (c, e) = rumqttc::AsyncClient::new(v4_options(opts), cap);
            (Client::V4(c), EventStream::new(EventLoop::V4(Box::new(e))))
        }
        MqttProtocol::V5 => {
            let (c, e) = rumqttc::v5::AsyncClient::new(v5_options(opts), cap);
            (Client::V5(c), EventStream::new(EventLoop::V5(Box::new(e))))
        }
    }
}

impl LinkClient for Client {
    async fn publish(&self, topic: String, retain: bool, payload: Vec<u8>) -> Result<(), ()> {
        match self {
            Client::V4(c) => c
                .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
                .await
                .map_err(drop),
            Client::V5(c) => c
                .publish(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    retain,
                    payload,
                )
                .await
                .map_err(drop),
        }
    }

    fn try_subscribe(&self, filter: String) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .try_subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
            Client::V5(c) => {
                use rumqttc::v5::mqttbytes::v5::{Filter, RetainForwardRule};
                // Retained messages on a command topic are never commands (a hub must not
                // leave a command behind to run at every reconnect): MQTT 5 lets the broker
                // keep them to itself, which also keeps an oversized one off the connection.
                let mut f = Filter::new(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce);
                f.retain_forward_rule = RetainForwardRule::Never;
                c.try_subscribe_many([f]).map_err(|e| e.to_string())
            }
        }
    }

    async fn disconnect(&self) -> Result<(), ()> {
        match self {
            Client::V4(c) => c.disconnect().await.map_err(drop),
            Client::V5(c) => c.disconnect().await.map_err(drop),
        }
    }
}

impl EventStream {
    fn new(event_loop: EventLoop) -> EventStream {
        EventStream {
            event_loop,
            left_over: VecDeque::new(),
        }
    }

    /// The next event. A lost connection is reported after the events rumqttc had buffered from
    /// it, and says how many unwritten publishes went with it.
    async fn next_event(&mut self) -> LinkEvent {
        if let Some(e) = self.left_over.pop_front() {
            return e;
        }
        let error = match &mut self.event_loop {
            EventLoop::V4(e) => match e.poll().await {
                Ok(ev) => return v4_event(ev),
                Err(err) => err.to_string(),
            },
            EventLoop::V5(e) => match e.poll().await {
                Ok(ev) => return v5_event(ev),
                Err(err) => err.to_string(),
            },
        };
        let unwritten_lost = self.take_lost_connection();
        self.left_over.push_back(LinkEvent::ConnectionLost {
            error,
            unwritten_lost,
        });
        self.left_over.pop_front().expect("just pushed")
    }

    /// After a failed poll, rumqttc 0.25 has (`eventloop.rs:127-143`, `v5/eventloop.rs:123-139`):
    /// - left in `state.events` what it read or wrote on the lost connection before the error
    ///   (PUBACKs read in the same batch, the `Outgoing::Publish` of a publish whose write failed);
    ///   it would report them only after the next CONNACK (3.1.1) or just before it (5). They are
    ///   taken here and reported now, so that the link sees them as the old connection's.
    /// - moved to `pending` every written-unacknowledged publish (packet id set) and every request
    ///   still in its channel (publishes with packet id 0), to be cleared by the next CONNACK
    ///   without a session (`eventloop.rs:161`). The latter are counted: they are the oldest the
    ///   link handed over and has not seen written. The publishes are removed from `pending` so
    ///   that none is ever written later, whatever the broker says about the session: the link
    ///   sends the records again itself.
    /// - possibly kept in `state.collision` a publish taken from the channel but held back for a
    ///   packet-id collision; `clean` does not clear it, and it would block every later request
    ///   on the next connection (its PUBACK never comes). It is taken and counted as unwritten.
    ///
    /// Returns how many handed-over, unwritten publishes were dropped.
    fn take_lost_connection(&mut self) -> usize {
        match &mut self.event_loop {
            EventLoop::V4(e) => {
                use rumqttc::Request;
                let buffered = std::mem::take(&mut e.state.events);
                self.left_over.extend(buffered.into_iter().map(v4_event));
                let held = usize::from(e.state.collision.take().is_some());
                let unwritten = e
                    .pending
                    .iter()
                    .filter(|r| matches!(r, Request::Publish(p) if p.pkid == 0))
                    .count();
                e.pending.retain(|r| !matches!(r, Request::Publish(_)));
                held + unwritten
            }
            EventLoop::V5(e) => {
                use rumqttc::v5::Request;
                let buffered = std::mem::take(&mut e.state.events);
                self.left_over.extend(buffered.into_iter().map(v5_event));
                let held = usize::from(e.state.collision.take().is_some());
                let unwritten = e
                    .pending
                    .iter()
                    .filter(|r| matches!(r, Request::Publish(p) if p.pkid == 0))
                    .count();
                e.pending.retain(|r| !matches!(r, Request::Publish(_)));
                held + unwritten
            }
        }
    }
}

impl LinkEvents for EventStream {
    async fn poll(&mut self) -> LinkEvent {
        self.next_event().await
    }
}

fn v4_event(ev: rumqttc::Event) -> LinkEvent {
    use rumqttc::{Event, Outgoing, Packet};
    match ev {
        Event::Incoming(Packet::ConnAck(a)) => LinkEvent::ConnAck {
            code: format!("{:?}", a.code),
        },
        Event::Incoming(Packet::Publish(p)) => LinkEvent::Publish {
            retained: p.retain,
            topic: p.topic,
            payload: p.payload.to_vec(),
        },
        Event::Incoming(Packet::PubAck(a)) => LinkEvent::PubAck {
            pkid: a.pkid,
            refused: None,
        },
        Event::Outgoing(Outgoing::Publish(pkid)) => LinkEvent::Written { pkid },
        Event::Outgoing(Outgoing::Disconnect) => LinkEvent::Disconnected,
        _ => LinkEvent::Other,
    }
}

fn v5_event(ev: rumqttc::v5::Event) -> LinkEvent {
    use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
    use rumqttc::v5::Event;
    use rumqttc::Outgoing;
    match ev {
        Event::Incoming(Packet::ConnAck(a)) => LinkEvent::ConnAck {
            code: format!("{:?}", a.code),
        },
        Event::Incoming(Packet::Publish(p)) => LinkEvent::Publish {
            retained: p.retain,
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload.to_vec(),
        },
        Event::Incoming(Packet::PubAck(a)) => LinkEvent::PubAck {
            pkid: a.pkid,
            // "No matching subscribers" is a success: the broker took the message.
            refused: match a.reason {
                PubAckReason::Success | PubAckReason::NoMatchingSubscribers => None,
                other => Some(format!("{other:?}")),
            },
        },
        Event::Outgoing(Outgoing::Publish(pkid)) => LinkEvent::Written { pkid },
        Event::Outgoing(Outgoing::Disconnect) => LinkEvent::Disconnected,
        _ => LinkEvent::Other,
    }
}

/// rumqttc's default limit is 10 KiB both ways: too small for a snapshot reply. Incoming packets
/// may be up to 1 MiB so that an oversized command (refused above 16 KiB) is read and answered
/// with an error instead of breaking the connection; only larger ones drop it (logged).
pub(super) const MAX_PACKET: usize = 1024 * 1024;

/// Whether a publish fits [`MAX_PACKET`]: rumqttc refuses a bigger one only when it writes it,
/// by dropping the connection, so it would be sent, refused and reconnected forever.
pub(super) fn fits_packet(topic: &str, payload: &[u8]) -> bool {
    // Fixed header (5), topic length (2), packet id (2), MQTT 5 properties (a few bytes).
    topic.len() + payload.len() + 32 <= MAX_PACKET
}

fn transport(tls: &TlsMaterial) -> rumqttc::Transport {
    rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
        ca: tls.ca.clone(),
        alpn: None,
        client_auth: tls.client_auth.clone(),
    })
}

fn will_topic(opts: &MqttOptions) -> String {
    format!("{}/status", opts.topic_prefix)
}

fn will_payload() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"state": "offline"})).expect("static json")
}

/// MQTT 3.1.1 options: transport (TLS with CA and optional client certificate, or plain TCP when
/// configured), credentials, and the retained `offline` last will.
pub fn v4_options(opts: &MqttOptions) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(&opts.client_id, &opts.host, opts.port);
    // The link resends what a lost connection took with it (`link_state`); a session kept by
    // the broker would only add a second, unordered copy of the same publishes.
    o.set_clean_session(true);
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if let Some(tls) = &opts.tls {
        o.set_transport(transport(tls));
    }
    o.set_keep_alive(opts.keep_alive);
    o.set_last_will(rumqttc::LastWill::new(
        will_topic(opts),
        will_payload(),
        rumqttc::QoS::AtLeastOnce,
        true,
    ));
    if let Some((user, password)) = &opts.credentials {
        o.set_credentials(user, password);
    }
    o
}

/// MQTT 5 options: the same settings as [`v4_options`].
pub fn v5_options(opts: &MqttOptions) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(&opts.client_id, &opts.host, opts.port);
    o.set_clean_start(true); // as in `v4_options`
    o.set_max_packet_size(Some(MAX_PACKET as u32));
    if let Some(tls) = &opts.tls {
        o.set_transport(transport(tls));
    }
    o.set_keep_alive(opts.keep_alive);
    o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
        will_topic(opts),
        will_payload(),
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        true,
        None,
    ));
    if let Some((user, password)) = &opts.credentials {
        o.set_credentials(user, password);
    }
    o
}
