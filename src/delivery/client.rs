//! The MQTT client behind the broker link, in the protocol version the config asks for: rumqttc has
//! separate clients for MQTT 3.1.1 and 5, and the link's state machine should not care which. This
//! module builds either from the config and presents both as one client and one event stream.

use anyhow::Context;
use std::time::Duration;

use crate::config::{Config, MqttProtocol, Transport};

/// What the link needs to know of the broker's traffic.
#[derive(Debug)]
pub enum LinkEvent {
    /// Connected; `code` is the broker's return code, for the log.
    ConnAck { code: String },
    /// A message on a subscribed topic.
    Publish { topic: String, payload: Vec<u8> },
    /// The broker acknowledged the oldest unacknowledged QoS 1 publish. With MQTT 5 it may refuse
    /// it: `refused` holds the reason (the message will not be delivered by retrying).
    PubAck { refused: Option<String> },
    /// The client sent DISCONNECT (a clean stop).
    Disconnected,
    /// Anything else (pings, subscription acks, outgoing packets).
    Other,
}

/// Either version's client; cheap to clone.
#[derive(Clone)]
pub enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// Either version's event loop.
pub enum EventStream {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// Builds the client and its event loop for `cfg.mqtt.protocol`, with `cap` queued requests.
pub fn connect(cfg: &Config, cap: usize) -> anyhow::Result<(Client, EventStream)> {
    Ok(match cfg.mqtt.protocol {
        MqttProtocol::V311 => {
            let (c, e) = rumqttc::AsyncClient::new(v4_options(cfg)?, cap);
            (Client::V4(c), EventStream::V4(Box::new(e)))
        }
        MqttProtocol::V5 => {
            let (c, e) = rumqttc::v5::AsyncClient::new(v5_options(cfg)?, cap);
            (Client::V5(c), EventStream::V5(Box::new(e)))
        }
    })
}

impl Client {
    /// Queues a QoS 1 publish; an error means the client has shut down.
    pub async fn publish(&self, topic: String, retain: bool, payload: Vec<u8>) -> Result<(), ()> {
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

    /// Subscribes at QoS 1 without waiting (from inside the event loop's task).
    pub fn try_subscribe(&self, filter: String) -> Result<(), String> {
        match self {
            Client::V4(c) => c
                .try_subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
        }
    }

    /// Sends DISCONNECT (waits while the request queue is full: bound it with a timeout).
    pub async fn disconnect(&self) -> Result<(), ()> {
        match self {
            Client::V4(c) => c.disconnect().await.map_err(drop),
            Client::V5(c) => c.disconnect().await.map_err(drop),
        }
    }
}

impl EventStream {
    /// The next event; an error is a connection problem (the loop reconnects on the next poll).
    pub async fn poll(&mut self) -> Result<LinkEvent, String> {
        match self {
            EventStream::V4(e) => {
                use rumqttc::{Event, Outgoing, Packet};
                Ok(match e.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::ConnAck(a)) => LinkEvent::ConnAck {
                        code: format!("{:?}", a.code),
                    },
                    Event::Incoming(Packet::Publish(p)) => LinkEvent::Publish {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                    },
                    Event::Incoming(Packet::PubAck(_)) => LinkEvent::PubAck { refused: None },
                    Event::Outgoing(Outgoing::Disconnect) => LinkEvent::Disconnected,
                    _ => LinkEvent::Other,
                })
            }
            EventStream::V5(e) => {
                use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
                use rumqttc::v5::Event;
                use rumqttc::Outgoing;
                Ok(match e.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::ConnAck(a)) => LinkEvent::ConnAck {
                        code: format!("{:?}", a.code),
                    },
                    Event::Incoming(Packet::Publish(p)) => LinkEvent::Publish {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.to_vec(),
                    },
                    Event::Incoming(Packet::PubAck(a)) => LinkEvent::PubAck {
                        // "No matching subscribers" is a success: the broker took the message.
                        refused: match a.reason {
                            PubAckReason::Success | PubAckReason::NoMatchingSubscribers => None,
                            other => Some(format!("{other:?}")),
                        },
                    },
                    Event::Outgoing(Outgoing::Disconnect) => LinkEvent::Disconnected,
                    _ => LinkEvent::Other,
                })
            }
        }
    }
}

/// The parts of the options both versions share, read from the config.
struct Common {
    client_id: String,
    host: String,
    port: u16,
    tls: Option<rumqttc::Transport>,
    keep_alive: Duration,
    will_topic: String,
    will_payload: Vec<u8>,
    credentials: Option<(String, String)>,
}

/// rumqttc's default limit is 10 KiB both ways: too small for a snapshot reply. Incoming packets
/// may be up to 1 MiB so that an oversized command (refused above 16 KiB) is read and answered
/// with an error instead of breaking the connection; only larger ones drop it (logged).
const MAX_PACKET: usize = 1024 * 1024;

fn common(cfg: &Config) -> anyhow::Result<Common> {
    let m = &cfg.mqtt;
    let tls = if m.transport == Transport::Tls {
        let read = |p: &std::path::Path, what: &str| {
            std::fs::read(p).with_context(|| format!("cannot read {what} {}", p.display()))
        };
        let ca = read(&m.ca_file(), "mqtt.ca_file")?;
        let client_auth = match (&m.client_cert_file, &m.client_key_file) {
            (Some(c), Some(k)) => Some((
                read(c, "mqtt.client_cert_file")?,
                read(k, "mqtt.client_key_file")?,
            )),
            _ => None,
        };
        Some(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            },
        ))
    } else {
        None
    };
    let credentials = match &m.username {
        Some(user) => {
            let password = m.password().context("cannot read mqtt.password_file")?;
            Some((user.clone(), password.unwrap_or_default()))
        }
        None => None,
    };
    Ok(Common {
        client_id: cfg.client_id(),
        host: m.host.clone(),
        port: m.port(),
        tls,
        keep_alive: Duration::from_secs(m.keep_alive_s),
        will_topic: format!("{}/status", cfg.topic_prefix()),
        will_payload: serde_json::to_vec(&serde_json::json!({"state": "offline"}))
            .expect("static json"),
        credentials,
    })
}

/// MQTT 3.1.1 options: transport (TLS with CA and optional client certificate, or plain TCP when
/// configured), credentials, and the retained `offline` last will.
pub fn v4_options(cfg: &Config) -> anyhow::Result<rumqttc::MqttOptions> {
    let c = common(cfg)?;
    let mut o = rumqttc::MqttOptions::new(c.client_id, c.host, c.port);
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if let Some(t) = c.tls {
        o.set_transport(t);
    }
    o.set_keep_alive(c.keep_alive);
    o.set_last_will(rumqttc::LastWill::new(
        c.will_topic,
        c.will_payload,
        rumqttc::QoS::AtLeastOnce,
        true,
    ));
    if let Some((user, password)) = c.credentials {
        o.set_credentials(user, password);
    }
    Ok(o)
}

/// MQTT 5 options: the same settings as [`v4_options`].
pub fn v5_options(cfg: &Config) -> anyhow::Result<rumqttc::v5::MqttOptions> {
    let c = common(cfg)?;
    let mut o = rumqttc::v5::MqttOptions::new(c.client_id, c.host, c.port);
    o.set_max_packet_size(Some(MAX_PACKET as u32));
    if let Some(t) = c.tls {
        o.set_transport(t);
    }
    o.set_keep_alive(c.keep_alive);
    o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
        c.will_topic,
        c.will_payload,
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        true,
        None,
    ));
    if let Some((user, password)) = c.credentials {
        o.set_credentials(user, password);
    }
    Ok(o)
}
