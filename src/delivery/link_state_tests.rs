use super::*;
use proptest::prelude::*;

#[test]
fn a_puback_acknowledges_the_publish_with_its_packet_id() {
    let mut s = LinkState::new();
    for cargo in [Some(1), None, Some(2)] {
        s.note_publish(cargo);
    }
    assert!(s.on_written(7));
    assert!(s.on_written(8));
    assert!(s.on_written(9));
    // Acknowledged out of order: each PUBACK still finds its own publish.
    assert_eq!(
        s.on_puback(9, false),
        PubAckOutcome::Acked {
            cargo: Some(2),
            refused: false
        }
    );
    assert_eq!(
        s.on_puback(8, false),
        PubAckOutcome::Acked {
            cargo: None,
            refused: false
        }
    );
    assert_eq!(s.on_puback(9, false), PubAckOutcome::Unknown, "only once");
    assert_eq!(
        s.on_puback(7, true),
        PubAckOutcome::Acked {
            cargo: Some(1),
            refused: true
        }
    );
    assert!(s.is_settled());
    let c = s.counters();
    assert_eq!((c.published, c.acked, c.refused), (3, 3, 1));
}

#[test]
fn a_write_with_nothing_handed_over_is_ignored() {
    let mut s = LinkState::new();
    assert!(!s.on_written(1));
    assert_eq!(s.on_puback(1, false), PubAckOutcome::Unknown);
}

#[test]
fn a_refused_hand_over_is_forgotten() {
    let mut s = LinkState::new();
    s.note_publish(Some(1));
    s.note_publish(Some(2));
    s.publish_failed();
    assert_eq!(s.in_flight(), 1);
    assert!(s.on_written(1));
    assert_eq!(
        s.on_puback(1, false),
        PubAckOutcome::Acked {
            cargo: Some(1),
            refused: false
        }
    );
    assert_eq!(s.counters().published, 1);
}

/// The defect of issue 13: the client dropped what it held, and the link went on acknowledging
/// records by position. Now the lost records come back, and the next connection's PUBACKs only
/// acknowledge what was written on it.
#[test]
fn a_lost_connection_returns_written_and_dropped_records_and_keeps_the_rest() {
    let mut s = LinkState::new();
    for seq in 1..=6 {
        s.note_publish(Some(seq));
    }
    s.note_publish(None);
    assert!(s.on_written(1)); // seq 1
    assert!(s.on_written(2)); // seq 2
    assert!(s.on_written(3)); // seq 3
    assert_eq!(
        s.on_puback(2, false),
        PubAckOutcome::Acked {
            cargo: Some(2),
            refused: false
        }
    );
    // Written 1 and 3 are lost, and the client drained 4 and 5 from its queue; 6 and the status
    // reached the queue afterwards and will be written on the next connection.
    assert_eq!(s.on_connection_lost(2), vec![1, 3, 4, 5]);
    assert_eq!(s.counters().requeued, 4);
    assert_eq!(s.on_puback(1, false), PubAckOutcome::Unknown);
    s.on_connected();
    assert!(s.on_written(1));
    assert_eq!(
        s.on_puback(1, false),
        PubAckOutcome::Acked {
            cargo: Some(6),
            refused: false
        }
    );
    assert!(s.on_written(2));
    assert_eq!(
        s.on_puback(2, false),
        PubAckOutcome::Acked {
            cargo: None,
            refused: false
        }
    );
    assert!(s.is_settled());
}

#[test]
fn a_drop_count_larger_than_the_queue_takes_the_queue() {
    let mut s = LinkState::new();
    s.note_publish(Some(4));
    assert_eq!(s.on_connection_lost(10), vec![4]);
    assert!(s.is_settled());
}

#[test]
fn retained_topics_keep_the_latest_payload_and_come_back_on_every_connection() {
    let mut s = LinkState::new();
    s.set_retained("status", b"1".to_vec());
    s.set_retained("status", b"2".to_vec());
    s.set_retained("yard/a", b"y".to_vec());
    assert_eq!(
        s.take_dirty_retained(),
        vec![
            ("status".to_owned(), b"2".to_vec()),
            ("yard/a".to_owned(), b"y".to_vec())
        ]
    );
    assert!(s.take_dirty_retained().is_empty());
    s.on_connected();
    assert_eq!(s.take_dirty_retained().len(), 2);
    assert_eq!(s.counters().connections, 1);
}

#[test]
fn stop_is_remembered() {
    let mut s = LinkState::new();
    assert!(!s.is_stopping());
    s.stop();
    assert!(s.is_stopping());
}

/// One step of the simulated link: the forwarder, rumqttc's event loop and the broker.
#[derive(Debug, Clone)]
enum Step {
    /// The forwarder notes a publish (an outbox record or not) and is about to hand it over.
    Note { is_event: bool },
    /// The noted publish reaches the client's request channel.
    Send,
    /// The event loop writes the oldest request on the connection.
    Write,
    /// The broker acknowledges one of the written publishes (any of them: matching must not
    /// depend on the order), possibly refusing it.
    Ack { pick: usize, refused: bool },
    /// The connection drops; the client keeps nothing of it.
    Drop,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<bool>().prop_map(|is_event| Step::Note { is_event }),
        3 => Just(Step::Send),
        3 => Just(Step::Write),
        3 => (any::<usize>(), proptest::bool::weighted(0.05))
            .prop_map(|(pick, refused)| Step::Ack { pick, refused }),
        1 => Just(Step::Drop),
    ]
}

/// Packet ids in the simulated client: few, so that they are reused often.
const MAX_INFLIGHT: usize = 8;

/// What rumqttc 0.25 does with the publishes it is given, with a clean session: packet ids are
/// reused once acknowledged, and a dropped connection loses the written publishes and whatever is
/// in the request channel.
#[derive(Default)]
struct SimClient {
    /// Noted by the forwarder, not yet sent to the channel (at most one in the real forwarder,
    /// any number here).
    noted: VecDeque<(u64, Cargo)>,
    channel: VecDeque<(u64, Cargo)>,
    /// pkid → (publish id, cargo)
    written: BTreeMap<u16, (u64, Cargo)>,
    last_pkid: u16,
}

impl SimClient {
    fn free_pkid(&mut self) -> u16 {
        loop {
            self.last_pkid = self.last_pkid % MAX_INFLIGHT as u16 + 1;
            if !self.written.contains_key(&self.last_pkid) {
                return self.last_pkid;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever the interleaving, a PUBACK only acknowledges the seq the broker acknowledged on
    /// the connection it was written on, a lost connection returns exactly the seqs it took with
    /// it, and in the end every seq is acknowledged once or sent again.
    #[test]
    fn pubacks_never_acknowledge_a_seq_the_broker_did_not_take(
        steps in proptest::collection::vec(step(), 1..200)
    ) {
        let mut s = LinkState::new();
        let mut sim = SimClient::default();
        let (mut next_id, mut next_seq) = (0u64, 0u64);
        let mut acked_seqs: Vec<u64> = Vec::new();
        let mut requeued: Vec<u64> = Vec::new();
        let mut all_seqs: Vec<u64> = Vec::new();
        let mut published = 0u64;
        for st in steps {
            match st {
                Step::Note { is_event } => {
                    next_id += 1;
                    let cargo = is_event.then(|| { next_seq += 1; next_seq });
                    all_seqs.extend(cargo);
                    published += 1;
                    s.note_publish(cargo);
                    sim.noted.push_back((next_id, cargo));
                }
                Step::Send => {
                    if let Some(p) = sim.noted.pop_front() {
                        sim.channel.push_back(p);
                    }
                }
                // Like rumqttc, take no request while every packet id is in use.
                Step::Write if sim.written.len() < MAX_INFLIGHT => {
                    if let Some(p) = sim.channel.pop_front() {
                        let pkid = sim.free_pkid();
                        sim.written.insert(pkid, p);
                        prop_assert!(s.on_written(pkid));
                    }
                }
                Step::Write => {}
                Step::Ack { pick, refused } => {
                    if sim.written.is_empty() {
                        continue;
                    }
                    let pkid = *sim.written.keys().nth(pick % sim.written.len()).unwrap();
                    let (_, cargo) = sim.written.remove(&pkid).unwrap();
                    prop_assert_eq!(s.on_puback(pkid, refused), PubAckOutcome::Acked { cargo, refused });
                    acked_seqs.extend(cargo);
                }
                Step::Drop => {
                    let mut lost: Vec<u64> = sim.written.values().filter_map(|(_, c)| *c).collect();
                    lost.extend(sim.channel.iter().filter_map(|(_, c)| *c));
                    lost.sort_unstable();
                    let drained = sim.channel.len();
                    sim.written.clear();
                    sim.channel.clear();
                    let back = s.on_connection_lost(drained);
                    prop_assert_eq!(&back, &lost);
                    requeued.extend(back);
                    s.on_connected();
                    // No PUBACK of the old connection can acknowledge anything now.
                    for pkid in 1..=MAX_INFLIGHT as u16 {
                        prop_assert_eq!(s.on_puback(pkid, false), PubAckOutcome::Unknown);
                    }
                }
            }
            prop_assert_eq!(
                s.in_flight(),
                sim.noted.len() + sim.channel.len() + sim.written.len()
            );
        }
        // Whatever the client still holds is either written on the next connection or lost with
        // this one: drop it, and every seq is accounted for exactly once.
        let still_noted: Vec<u64> = sim.noted.iter().filter_map(|(_, c)| *c).collect();
        let mut lost: Vec<u64> = sim.written.values().filter_map(|(_, c)| *c).collect();
        lost.extend(sim.channel.iter().filter_map(|(_, c)| *c));
        lost.extend(&still_noted);
        lost.sort_unstable();
        let back = s.on_connection_lost(sim.channel.len() + sim.noted.len());
        prop_assert_eq!(&back, &lost);
        requeued.extend(back);
        prop_assert!(s.is_settled());
        let mut accounted: Vec<u64> = acked_seqs.iter().chain(&requeued).copied().collect();
        accounted.sort_unstable();
        prop_assert_eq!(accounted, all_seqs);
        prop_assert_eq!(s.counters().published, published);
    }
}
