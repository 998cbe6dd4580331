use super::*;
use crate::yard::store::{Stored, StoredEvent, YardStore};
use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::json;

fn rules(capacity: u32) -> YardRules {
    YardRules {
        id: "y1".into(),
        name: "Yard 1".into(),
        capacity,
        overstay_after: Some(chrono::Duration::hours(24)),
        confusions: vec![('O', '0'), ('I', '1'), ('B', '8')],
    }
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, h, m, 0).unwrap()
}

fn pass(y: &mut Yard, dir: Direction, plate: Option<&str>, t: DateTime<Utc>) -> Vec<Emitted> {
    y.passage(PassageInput {
        plate: plate.map(String::from),
        direction: dir,
        camera: if dir == Direction::Entry {
            "cam-in"
        } else {
            "cam-out"
        }
        .into(),
        lane: if dir == Direction::Entry {
            "in-1"
        } else {
            "out-1"
        }
        .into(),
        at: t,
    })
}

fn step(
    log: &mut Vec<Emitted>,
    events: Vec<Emitted>,
    want: &[(YardEventKind, u32)],
) -> Vec<Emitted> {
    assert_eq!(kinds(&events), want);
    log.extend(events.clone());
    events
}

fn kinds(events: &[Emitted]) -> Vec<(YardEventKind, u32)> {
    events
        .iter()
        .map(|e| (e.body.kind, e.body.occupied))
        .collect()
}

/// Replays events from empty, through the JSON a consumer receives.
fn replay(log: &[Emitted]) -> YardState {
    let mut s = YardState::default();
    for (i, e) in log.iter().enumerate() {
        let env = Envelope {
            schema: <YardEvent as crate::event::EventKind>::SCHEMA.into(),
            event_id: e.event_id,
            seq: i as u64 + 1,
            ts: format_ts(e.at),
            site: "s".into(),
            device: "d".into(),
            camera: e.camera.clone(),
            lane: e.lane.clone(),
            replayed: false,
            body: e.body.clone(),
        };
        let wire = serde_json::to_string(&env).unwrap();
        let back: Envelope<YardEvent> = serde_json::from_str(&wire).unwrap();
        s.apply(&Emitted::from_envelope(&back).unwrap());
    }
    s
}

#[test]
fn a_scripted_day_in_a_yard() {
    use Direction::{Entry as In, Exit as Out};
    use YardEventKind::*;
    let mut y = Yard::new(rules(3), YardState::default());
    let mut log = Vec::new();
    step(
        &mut log,
        pass(&mut y, In, Some("51A12345"), at(8, 0)),
        &[(Entry, 1)],
    );
    step(
        &mut log,
        pass(&mut y, In, Some("29C12845"), at(8, 10)),
        &[(Entry, 2)],
    );
    let dup = step(
        &mut log,
        pass(&mut y, In, Some("51A12345"), at(8, 20)),
        &[(DuplicateEntry, 2)],
    );
    assert_eq!(dup[0].body.entry_event_id, Some(log[0].event_id));
    // An unreadable plate still counts, and fills the yard.
    step(
        &mut log,
        pass(&mut y, In, None, at(8, 30)),
        &[(Entry, 3), (Full, 3)],
    );
    assert_eq!(log.last().unwrap().body.free, 0);
    // B/8 confusion: paired with 29C12845, dwell 50 minutes.
    let exit = step(
        &mut log,
        pass(&mut y, Out, Some("29C12B45"), at(9, 0)),
        &[(Exit, 2), (Available, 2)],
    );
    let b = &exit[0].body;
    assert_eq!(
        (b.match_, b.inside_plate.as_deref(), b.dwell_s),
        (Some(Match::Fuzzy), Some("29C12845"), Some(3000))
    );
    assert_eq!(b.entry_event_id, Some(log[1].event_id));

    // Restart: the state goes to disk and comes back.
    let dir = tempfile::tempdir().unwrap();
    let store = YardStore::open(dir.path(), "y1").unwrap();
    store
        .save(&Stored {
            version: 1,
            state: y.state.clone(),
            last_seq: 6,
            pending: vec![],
        })
        .unwrap();
    let mut y = Yard::new(rules(3), store.load().unwrap().state);
    assert_eq!(y.state.occupied(), 2);

    // A plate that never entered leaves: the unidentified vehicle is counted out.
    step(
        &mut log,
        pass(&mut y, Out, Some("30E99999"), at(10, 0)),
        &[(UnmatchedExit, 1)],
    );
    assert_eq!(log.last().unwrap().body.unidentified, 0);
    // Audit: the hub says two vehicles are inside; one is known.
    let set = y.set(Some(2), None, json!("audit-1"), at(10, 30)).unwrap();
    step(&mut log, set, &[(Set, 2)]);
    assert_eq!(log.last().unwrap().body.command_id, Some(json!("audit-1")));
    assert_eq!(y.state.unidentified, 1);
    // 51A12345 was towed away unseen.
    let removed = y
        .remove(Some("51A12345".into()), json!(7), at(11, 0))
        .unwrap();
    step(&mut log, removed, &[(Removed, 1)]);
    assert_eq!(log.last().unwrap().body.dwell_s, Some(3 * 3600));
    assert!(y
        .remove(Some("51A12345".into()), json!(8), at(11, 0))
        .unwrap_err()
        .contains("not inside"));
    step(&mut log, pass(&mut y, Out, None, at(11, 30)), &[(Exit, 0)]);
    // Nothing inside: an exit cannot take the count below zero.
    step(
        &mut log,
        pass(&mut y, Out, Some("51A99999"), at(12, 0)),
        &[(UnmatchedExit, 0)],
    );

    // Three trucks stay overnight: full, then each overstays once.
    for (i, p) in ["15C04567", "桂A12345", "粤BD12345"]
        .into_iter()
        .enumerate()
    {
        let want: &[(YardEventKind, u32)] = if i == 2 {
            &[(Entry, 3), (Full, 3)]
        } else {
            &[(Entry, i as u32 + 1)]
        };
        step(&mut log, pass(&mut y, In, Some(p), at(13, i as u32)), want);
    }
    assert!(y.tick(at(23, 0), usize::MAX).is_empty());
    let next_day = at(13, 2) + chrono::Duration::hours(24);
    let over = y.tick(next_day, usize::MAX);
    step(&mut log, over, &[(Overstay, 3), (Overstay, 3)]);
    assert!(y
        .tick(next_day + chrono::Duration::hours(1), usize::MAX)
        .iter()
        .all(|e| e.body.inside_plate.as_deref() == Some("粤BD12345")));

    let state = &y.state;
    assert_eq!(
        (
            state.occupied(),
            state.unidentified,
            state.unpaired_exits,
            state.full
        ),
        (3, 0, 0, true)
    );
    assert_eq!(
        state.inside.keys().cloned().collect::<Vec<_>>(),
        ["15C04567", "桂A12345", "粤BD12345"]
    );
    // The published log explains the state.
    let mut expected = state.clone();
    // The last tick's event is not in `log`; its flag is the only difference.
    expected
        .inside
        .get_mut("粤BD12345")
        .unwrap()
        .overstay_reported = false;
    expected.updated_at = log.last().map(|e| format_ts(e.at));
    assert_eq!(replay(&log), expected);
}

#[test]
fn fuzzy_matching_needs_a_configured_confusion_and_a_unique_candidate() {
    let pairs = [('O', '0'), ('B', '8')];
    assert!(one_confusion_apart("51A1234O", "51A12340", &pairs));
    assert!(
        !one_confusion_apart("51A12344", "51A12340", &pairs),
        "4/0 is not a confusion"
    );
    assert!(
        !one_confusion_apart("51A1B34O", "51A18340", &pairs),
        "two differences"
    );
    // Unique candidate: 51A123BO is one O/0 from 51A123B0, two away from 51A12380.
    let mut y = Yard::new(rules(10), YardState::default());
    pass(&mut y, Direction::Entry, Some("51A12380"), at(8, 0));
    pass(&mut y, Direction::Entry, Some("51A123B0"), at(8, 1));
    let e = pass(&mut y, Direction::Exit, Some("51A123BO"), at(9, 0));
    assert_eq!(
        (e[0].body.match_, e[0].body.inside_plate.as_deref()),
        (Some(Match::Fuzzy), Some("51A123B0"))
    );
    // Ambiguous: 30E1B340 is one confusion from both listed plates → not guessed.
    let mut y = Yard::new(rules(10), YardState::default());
    pass(&mut y, Direction::Entry, Some("30E18340"), at(8, 0));
    pass(&mut y, Direction::Entry, Some("30E1B34O"), at(8, 1));
    let e = pass(&mut y, Direction::Exit, Some("30E1B340"), at(9, 0));
    assert_eq!(e[0].body.kind, YardEventKind::UnmatchedExit);
    // Exact wins over fuzzy.
    let e = pass(&mut y, Direction::Exit, Some("30E18340"), at(9, 1));
    assert_eq!(e[0].body.match_, Some(Match::Exact));
    // No confusions configured: exact only.
    let mut r = rules(10);
    r.confusions.clear();
    let mut y = Yard::new(r, YardState::default());
    pass(&mut y, Direction::Entry, Some("51A12340"), at(8, 0));
    assert_eq!(
        pass(&mut y, Direction::Exit, Some("51A1234O"), at(9, 0))[0]
            .body
            .kind,
        YardEventKind::UnmatchedExit
    );
}

#[test]
fn an_exit_misread_beyond_repair_marks_a_listed_vehicle_as_probably_gone() {
    let mut y = Yard::new(rules(10), YardState::default());
    pass(&mut y, Direction::Entry, Some("51A12345"), at(8, 0));
    pass(&mut y, Direction::Entry, Some("51A67890"), at(8, 1));
    let e = pass(&mut y, Direction::Exit, Some("99Z99999"), at(9, 0));
    assert_eq!(
        (e[0].body.kind, e[0].body.occupied, e[0].body.unpaired_exits),
        (YardEventKind::UnmatchedExit, 1, 1)
    );
    // The other one leaves properly: the yard is empty; 51A12345 stays listed as probably gone
    // (overstay will flag it, the hub can remove it).
    pass(&mut y, Direction::Exit, Some("51A67890"), at(9, 1));
    assert_eq!(
        (
            y.state.occupied(),
            y.state.unpaired_exits,
            y.state.inside.len()
        ),
        (0, 1, 1)
    );
    let e = pass(&mut y, Direction::Exit, None, at(9, 2));
    assert_eq!(
        (e[0].body.kind, e[0].body.occupied),
        (YardEventKind::UnmatchedExit, 0)
    );
}

#[derive(Debug, Clone)]
enum Op {
    In(Option<usize>),
    Out(Option<usize>),
    Remove(Option<usize>),
    Set(Option<u32>, Option<Vec<usize>>),
    Wait(u32),
}

const POOL: [&str; 6] = [
    "51A12345",
    "51A12346",
    "5IA12345",
    "29C12845",
    "29C12B45",
    "桂A12345",
];

#[test]
fn many_overstays_come_in_bounded_batches_oldest_first_each_once() {
    let mut y = Yard::new(rules(1000), YardState::default());
    for i in 0..250u32 {
        let plate = format!("51A{i:05}");
        pass(
            &mut y,
            Direction::Entry,
            Some(&plate),
            at(0, 0) + chrono::Duration::seconds(i.into()),
        );
    }
    let later = at(0, 0) + chrono::Duration::days(3);
    let mut reported = Vec::new();
    loop {
        let batch = y.tick(later, 100);
        assert!(batch.len() <= 100, "{}", batch.len());
        if batch.is_empty() {
            break;
        }
        reported.extend(batch.into_iter().map(|e| e.body.inside_plate.unwrap()));
    }
    let want: Vec<String> = (0..250).map(|i| format!("51A{i:05}")).collect();
    assert_eq!(reported, want, "every vehicle once, longest inside first");
}

fn set_vehicles(n: usize, plate_len: usize) -> Vec<SetVehicle> {
    (0..n)
        .map(|i| SetVehicle {
            plate: format!("{i:0>plate_len$}"),
            entered_at: None,
        })
        .collect()
}

#[test]
fn a_set_listing_more_than_the_bound_is_refused_and_changes_nothing() {
    let mut y = Yard::new(rules(100_000), YardState::default());
    let err = y
        .set(
            None,
            Some(set_vehicles(SET_LIST_MAX + 1, 8)),
            json!(1),
            at(8, 0),
        )
        .unwrap_err();
    assert!(err.contains(&format!("at most {SET_LIST_MAX}")), "{err}");
    assert_eq!(y.state.occupied(), 0);

    // A yard that grew past the bound through its lanes: a count-only set would have to list
    // them all, so it is refused with what to do instead.
    for i in 0..=SET_LIST_MAX {
        pass(
            &mut y,
            Direction::Entry,
            Some(&format!("51A{i:05}")),
            at(9, 0),
        );
    }
    let err = y.set(Some(5), None, json!(2), at(10, 0)).unwrap_err();
    assert!(err.contains("yard_remove"), "{err}");
    assert_eq!(y.state.occupied() as usize, SET_LIST_MAX + 1);
}

#[test]
fn the_largest_allowed_set_event_fits_the_event_limit() {
    use crate::event::{Envelope, MAX_EVENT_BYTES};
    let mut y = Yard::new(rules(100_000), YardState::default());
    // The longest plates and lane ids there can be, all listed.
    let lane = "l".repeat(64);
    for v in set_vehicles(SET_LIST_MAX, PLATE_MAX_CHARS) {
        y.passage(PassageInput {
            plate: Some(v.plate),
            direction: Direction::Entry,
            camera: "c".repeat(64),
            lane: lane.clone(),
            at: at(9, 0),
        });
    }
    let events = y
        .set(
            Some(SET_LIST_MAX as u32),
            None,
            json!("x".repeat(64)),
            at(10, 0),
        )
        .unwrap();
    let set = &events[0];
    assert_eq!(set.body.inside.as_ref().map(Vec::len), Some(SET_LIST_MAX));
    let envelope = Envelope {
        schema: "gatewatch.yard/1".into(),
        event_id: set.event_id,
        seq: u64::MAX,
        ts: crate::event::format_ts(set.at),
        site: "s".repeat(64),
        device: "d".repeat(64),
        camera: set.camera.clone(),
        lane: set.lane.clone(),
        replayed: true,
        body: &set.body,
    };
    let bytes = serde_json::to_vec(&envelope).unwrap().len();
    assert!(bytes < MAX_EVENT_BYTES, "{bytes} bytes");
}

fn op() -> impl Strategy<Value = Op> {
    let plate = proptest::option::of(0..POOL.len());
    prop_oneof![
        4 => plate.clone().prop_map(Op::In),
        4 => plate.clone().prop_map(Op::Out),
        1 => plate.prop_map(Op::Remove),
        1 => (proptest::option::of(0u32..8), proptest::option::of(proptest::collection::vec(0..POOL.len(), 0..4)))
            .prop_map(|(n, l)| Op::Set(n, l)),
        1 => (1u32..40).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn any_interleaving_keeps_counts_sane_and_the_log_replays_to_the_state(ops in proptest::collection::vec(op(), 1..60)) {
        let mut y = Yard::new(rules(4), YardState::default());
        let mut now = at(6, 0);
        let mut log: Vec<Emitted> = Vec::new();
        // Upper bound the log allows: the last set's count plus entries counted since.
        let mut bound: u32 = 0;
        for op in ops {
            now += chrono::Duration::minutes(7);
            let events = match op {
                Op::In(p) => pass(&mut y, Direction::Entry, p.map(|i| POOL[i]), now),
                Op::Out(p) => pass(&mut y, Direction::Exit, p.map(|i| POOL[i]), now),
                Op::Remove(p) => y.remove(p.map(|i| POOL[i].to_owned()), json!(1), now).unwrap_or_default(),
                Op::Set(n, l) => {
                    let list = l.map(|ix| {
                        let mut v: Vec<SetVehicle> = Vec::new();
                        for i in ix {
                            if v.iter().all(|s| s.plate != POOL[i]) {
                                v.push(SetVehicle { plate: POOL[i].into(), entered_at: None });
                            }
                        }
                        v
                    });
                    y.set(n, list, json!(2), now).unwrap_or_default()
                }
                Op::Wait(h) => { now += chrono::Duration::hours(h.into()); y.tick(now, usize::MAX) }
            };
            for e in &events {
                match e.body.kind {
                    YardEventKind::Set => bound = e.body.occupied,
                    YardEventKind::Entry => bound += 1,
                    _ => {}
                }
                prop_assert!(e.body.occupied <= bound, "{:?} above {}", e.body, bound);
                prop_assert_eq!(e.body.free, 4u32.saturating_sub(e.body.occupied));
            }
            prop_assert!(y.state.unpaired_exits as usize <= y.state.inside.len());
            // Every state the events build passes the check a state read from disk must pass.
            prop_assert_eq!(y.state.check(), Ok(()));
            prop_assert_eq!(events.last().map_or(y.state.occupied(), |e| e.body.occupied), y.state.occupied());
            prop_assert_eq!(y.state.full, y.state.occupied() >= 4);
            log.extend(events);
        }
        prop_assert_eq!(replay(&log), y.state.clone());
        // The stored form round-trips too.
        let stored: Vec<StoredEvent> = log.iter().map(StoredEvent::from).collect();
        let mut s = YardState::default();
        for e in &stored { s.apply(&e.to_emitted().unwrap()); }
        prop_assert_eq!(s, y.state);
    }
}
