//! The broker link's bookkeeping without any I/O: which publishes the MQTT client holds, which the
//! broker has acknowledged, which were lost with a connection and must be sent again, and the
//! retained state topics. `link.rs` feeds it what the forwarder hands over and what the client's
//! event loop reports, and applies what it answers to the outbox.
//!
//! A publish goes through two stages in rumqttc 0.25 (`eventloop.rs`, `state.rs`):
//! 1. **handed over**: in the client's request channel. The event loop takes requests from it in
//!    order and reports each QoS 1 publish it writes as `Outgoing::Publish(pkid)`
//!    (`state.rs:344`, or `state.rs:240` for one held back by a packet-id collision), so the
//!    handed-over queue is popped in order on that event and the packet id gives the publish.
//! 2. **written**: on the connection, awaiting its PUBACK. A PUBACK names its packet id, and
//!    rumqttc never has two unacknowledged publishes with the same id (`state.rs:318`), so it is
//!    matched by id, not by position.
//!
//! When the connection drops, rumqttc moves every written-unacknowledged publish **and every
//! request still in the channel** to `EventLoop::pending` (`eventloop.rs:127-143`), and on the next
//! CONNACK without a session — always, with the clean session the link uses — it clears `pending`
//! (`eventloop.rs:161`). Those publishes are gone: everything written on the lost connection and
//! the oldest `unwritten_lost` handed-over ones (the client adapter counts them in `pending`
//! before they are cleared) go back to the outbox to be sent again. Handed-over publishes that
//! reached the channel after it was drained are still sent on the next connection and stay
//! tracked. Duplicates are possible (a PUBACK lost with the connection); losses are not.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// What a publish carries: an outbox record (its seq) or something that is not stored there
/// (status, a command reply, retained state).
pub type Cargo = Option<u64>;

/// What a PUBACK meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubAckOutcome {
    /// The broker took (or, with MQTT 5, refused) this publish; `seq` leaves the outbox.
    Acked { cargo: Cargo, refused: bool },
    /// No publish with this packet id is awaiting a PUBACK on this connection (never expected;
    /// ignored rather than acknowledging something else).
    Unknown,
}

/// Counters for status and the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkCounters {
    /// Publishes handed to the client.
    pub published: u64,
    /// PUBACKs matched to a publish.
    pub acked: u64,
    /// Of those, refused by the broker (MQTT 5 reason codes).
    pub refused: u64,
    /// Outbox records sent again because their connection was lost before the PUBACK.
    pub requeued: u64,
    /// Connections made.
    pub connections: u64,
}

/// The broker link's state.
#[derive(Debug, Default)]
pub struct LinkState {
    /// Handed to the client and not yet written, oldest first.
    handed: VecDeque<Cargo>,
    /// Written on the current connection, awaiting a PUBACK: packet id → (write order, cargo).
    written: HashMap<u16, (u64, Cargo)>,
    writes: u64,
    /// Latest payload per retained topic suffix, and the suffixes still to publish.
    retained: BTreeMap<String, Vec<u8>>,
    retained_dirty: BTreeSet<String>,
    stopping: bool,
    counters: LinkCounters,
}

impl LinkState {
    pub fn new() -> LinkState {
        LinkState::default()
    }

    /// The forwarder is about to hand a publish to the client. Noted first, so that its
    /// `Outgoing::Publish` cannot be reported before it is known.
    pub fn note_publish(&mut self, cargo: Cargo) {
        self.handed.push_back(cargo);
        self.counters.published += 1;
    }

    /// The client refused the publish just noted (it has shut down).
    pub fn publish_failed(&mut self) {
        self.handed.pop_back();
        self.counters.published -= 1;
    }

    /// The client wrote a QoS 1 publish with packet id `pkid`: the oldest handed-over one.
    /// Returns false (and changes nothing) if nothing was handed over.
    pub fn on_written(&mut self, pkid: u16) -> bool {
        let Some(cargo) = self.handed.pop_front() else {
            return false;
        };
        self.writes += 1;
        self.written.insert(pkid, (self.writes, cargo));
        true
    }

    /// A PUBACK for `pkid` arrived; `refused` is an MQTT 5 refusal.
    pub fn on_puback(&mut self, pkid: u16, refused: bool) -> PubAckOutcome {
        let Some((_, cargo)) = self.written.remove(&pkid) else {
            return PubAckOutcome::Unknown;
        };
        self.counters.acked += 1;
        if refused {
            self.counters.refused += 1;
        }
        PubAckOutcome::Acked { cargo, refused }
    }

    /// A message too large to send was set aside without being handed to the client.
    pub fn refuse_unsendable(&mut self) {
        self.counters.refused += 1;
    }

    /// The connection dropped, and the client discarded the oldest `unwritten_lost` handed-over
    /// publishes along with every written one. Returns the outbox seqs to send again, ascending.
    pub fn on_connection_lost(&mut self, unwritten_lost: usize) -> Vec<u64> {
        let mut lost: Vec<(u64, Cargo)> = self.written.drain().map(|(_, w)| w).collect();
        lost.sort_unstable_by_key(|(order, _)| *order);
        let unwritten = unwritten_lost.min(self.handed.len());
        let mut seqs: Vec<u64> = lost
            .into_iter()
            .map(|(_, cargo)| cargo)
            .chain(self.handed.drain(..unwritten))
            .flatten()
            .collect();
        seqs.sort_unstable();
        self.counters.requeued += seqs.len() as u64;
        seqs
    }

    /// Connected (CONNACK): every retained topic is published again, since the broker may have
    /// lost it (a broker without persistence) and the last will replaced the status.
    pub fn on_connected(&mut self) {
        self.counters.connections += 1;
        self.retained_dirty = self.retained.keys().cloned().collect();
    }

    /// Sets the latest retained payload of a topic; it is published once, whatever the number
    /// of updates before the forwarder gets to it.
    pub fn set_retained(&mut self, topic_suffix: &str, payload: Vec<u8>) {
        self.retained.insert(topic_suffix.to_owned(), payload);
        self.retained_dirty.insert(topic_suffix.to_owned());
    }

    /// Retained topics waiting to be published, with their latest payloads.
    pub fn take_dirty_retained(&mut self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut self.retained_dirty)
            .into_iter()
            .filter_map(|t| self.retained.get(&t).map(|p| (t, p.clone())))
            .collect()
    }

    /// No more publishes will be handed over.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Nothing handed over or written awaits the broker.
    pub fn is_settled(&self) -> bool {
        self.handed.is_empty() && self.written.is_empty()
    }

    /// Publishes the client holds (handed over or written, unacknowledged).
    pub fn in_flight(&self) -> usize {
        self.handed.len() + self.written.len()
    }

    pub fn counters(&self) -> LinkCounters {
        self.counters
    }
}

#[cfg(test)]
#[path = "link_state_tests.rs"]
mod tests;
