use super::*;

fn opts(dir: &Path, max: u64, policy: FullPolicy) -> OutboxOptions {
    OutboxOptions {
        dir: dir.to_owned(),
        max_bytes: max,
        policy,
        segment_bytes: 200,
    }
}

fn push(ob: &mut Outbox, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            ob.append("events/plate", false, |s| {
                format!("{{\"seq\":{s}}}").into_bytes()
            })
            .unwrap()
        })
        .collect()
}

#[test]
fn the_outbox_is_readable_by_gatewatch_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    // An outbox folder an older version left open to everyone.
    std::fs::create_dir(&outbox).unwrap();
    std::fs::set_permissions(&outbox, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut ob = Outbox::open(opts(&outbox, 1 << 20, FullPolicy::DropOldest)).unwrap();
    push(&mut ob, 5);
    let r = ob.next_unsent().unwrap();
    ob.acknowledge(r.seq);
    ob.checkpoint().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&outbox), 0o700);
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.iter().any(|p| p.ends_with("cursor")), "{files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
}

#[test]
fn undelivered_events_survive_restart_in_order_and_seq_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(opts(dir.path(), 1 << 20, FullPolicy::DropOldest)).unwrap();
    assert_eq!(push(&mut ob, 10), (1..=10).collect::<Vec<_>>());
    for _ in 0..4 {
        let r = ob.next_unsent().unwrap();
        assert!(!r.catch_up);
        ob.acknowledge(r.seq);
    }
    // 5 and 6 are in flight, not acknowledged, when the process dies.
    ob.next_unsent();
    ob.next_unsent();
    ob.checkpoint().unwrap();
    drop(ob);
    let mut ob = Outbox::open(opts(dir.path(), 1 << 20, FullPolicy::DropOldest)).unwrap();
    assert_eq!(ob.recovered(), 6);
    let again: Vec<(u64, bool)> =
        std::iter::from_fn(|| ob.next_unsent().map(|r| (r.seq, r.catch_up))).collect();
    assert_eq!(again, (5..=10).map(|s| (s, true)).collect::<Vec<_>>());
    assert_eq!(push(&mut ob, 1), [11]);
    assert!(!ob.next_unsent().unwrap().catch_up, "new events are live");
}

#[test]
fn requeued_records_go_back_to_the_head_in_seq_order_as_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(opts(dir.path(), 1 << 20, FullPolicy::DropOldest)).unwrap();
    push(&mut ob, 6);
    for _ in 0..4 {
        ob.next_unsent();
    }
    ob.acknowledge(2);
    // The link lost 3 and 1 with its connection (99 was never in flight); 4 is still held
    // by the client.
    ob.requeue(&[3, 1, 99]);
    assert_eq!(ob.in_flight(), 1);
    let order: Vec<(u64, bool)> =
        std::iter::from_fn(|| ob.next_unsent().map(|r| (r.seq, r.catch_up))).collect();
    assert_eq!(order, [(1, true), (3, true), (5, false), (6, false)]);
    assert_eq!(ob.stats().depth.load(Ordering::Relaxed), 5);
    for seq in [1, 3, 4, 5, 6] {
        ob.acknowledge(seq);
    }
    assert_eq!(ob.stats().depth.load(Ordering::Relaxed), 0);
    ob.checkpoint().unwrap();
    drop(ob);
    let ob = Outbox::open(opts(dir.path(), 1 << 20, FullPolicy::DropOldest)).unwrap();
    assert_eq!(ob.recovered(), 0);
}

#[test]
fn delivered_segments_are_deleted_and_cursor_keeps_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(opts(dir.path(), 1 << 20, FullPolicy::DropOldest)).unwrap();
    push(&mut ob, 30);
    while let Some(r) = ob.next_unsent() {
        ob.acknowledge(r.seq);
    }
    ob.checkpoint().unwrap();
    let segs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("seg-")
        })
        .count();
    assert!(segs <= 1, "{segs} segments left");
    drop(ob);
    let mut ob = Outbox::open(opts(dir.path(), 1 << 20, FullPolicy::DropOldest)).unwrap();
    assert_eq!(ob.recovered(), 0);
    assert_eq!(push(&mut ob, 1), [31]);
}

#[test]
fn a_torn_final_record_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(opts(dir.path(), 1 << 20, FullPolicy::DropOldest)).unwrap();
    push(&mut ob, 3);
    drop(ob);
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("seg-"))
        .unwrap();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[40, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    let mut ob = Outbox::open(opts(dir.path(), 1 << 20, FullPolicy::DropOldest)).unwrap();
    assert_eq!(ob.recovered(), 3);
    assert_eq!(push(&mut ob, 1), [4]);
    drop(ob);
    assert_eq!(
        Outbox::open(opts(dir.path(), 1 << 20, FullPolicy::DropOldest))
            .unwrap()
            .recovered(),
        4
    );
}

#[test]
fn full_outbox_applies_the_policy_and_counts_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(opts(dir.path(), 150, FullPolicy::RejectNew)).unwrap();
    let mut stored = 0;
    for _ in 0..10 {
        if ob
            .append("e", false, |s| format!("{{\"seq\":{s}}}").into_bytes())
            .is_ok()
        {
            stored += 1;
        }
    }
    assert_eq!(
        stored as u64 + ob.stats().dropped.load(Ordering::Relaxed),
        10
    );
    assert!(ob.stats().bytes.load(Ordering::Relaxed) <= 150);
    // Rejected events do not consume a seq: the stored ones are gap-free.
    assert_eq!(ob.last_seq(), stored as u64);

    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(opts(dir.path(), 150, FullPolicy::DropOldest)).unwrap();
    push(&mut ob, 10);
    let dropped = ob.stats().dropped.load(Ordering::Relaxed);
    assert!(dropped > 0);
    let left: Vec<u64> = std::iter::from_fn(|| ob.next_unsent().map(|r| r.seq)).collect();
    assert_eq!(*left.last().unwrap(), 10, "the newest are kept");
    assert_eq!(left.len() as u64 + dropped, 10);
    ob.checkpoint().unwrap();
    drop(ob);
    let ob = Outbox::open(opts(dir.path(), 150, FullPolicy::DropOldest)).unwrap();
    assert_eq!(
        ob.stats().dropped.load(Ordering::Relaxed),
        dropped,
        "loss count survives restart"
    );
}

fn deliver_all(ob: &mut Outbox) {
    while let Some(r) = ob.next_unsent() {
        ob.acknowledge(r.seq);
    }
    ob.checkpoint().unwrap();
}

#[test]
fn seq_continues_when_the_cursor_is_lost_after_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let o = || opts(dir.path(), 1 << 20, FullPolicy::DropOldest);
    let mut ob = Outbox::open(o()).unwrap();
    push(&mut ob, 30);
    deliver_all(&mut ob);
    drop(ob);
    // A restart with everything delivered, then more events delivered.
    let mut ob = Outbox::open(o()).unwrap();
    assert_eq!(ob.recovered(), 0);
    assert_eq!(push(&mut ob, 5), (31..=35).collect::<Vec<_>>());
    deliver_all(&mut ob);
    drop(ob);
    drop(Outbox::open(o()).unwrap());
    std::fs::remove_file(dir.path().join("cursor")).unwrap();
    let mut ob = Outbox::open(o()).unwrap();
    assert_eq!(
        push(&mut ob, 1),
        [36],
        "the sequence goes on, no seq is reused"
    );
    // Without the cursor, what is still on disk goes out again with its own seq: duplicates a
    // subscriber recognises, never a new event under an old number.
    let again: Vec<u64> = std::iter::from_fn(|| ob.next_unsent().map(|r| r.seq)).collect();
    assert!(again.iter().all(|s| *s <= 36), "{again:?}");
    assert_eq!(again.last(), Some(&36));
}

#[test]
fn seq_continues_when_the_segments_are_lost_after_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let o = || opts(dir.path(), 1 << 20, FullPolicy::DropOldest);
    let mut ob = Outbox::open(o()).unwrap();
    push(&mut ob, 30);
    deliver_all(&mut ob);
    drop(ob);
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("seg-") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let mut ob = Outbox::open(o()).unwrap();
    assert_eq!(ob.recovered(), 0);
    assert_eq!(push(&mut ob, 1), [31]);
}

#[test]
fn an_empty_newest_segment_keeps_the_seq_its_name_gives() {
    let dir = tempfile::tempdir().unwrap();
    // A segment created for seq 42 just before a power cut, its record never written, and no
    // cursor.
    std::fs::write(dir.path().join(format!("seg-{:020}.log", 42)), b"").unwrap();
    let mut ob = Outbox::open(opts(dir.path(), 1 << 20, FullPolicy::DropOldest)).unwrap();
    assert_eq!(push(&mut ob, 2), [42, 43]);
    drop(ob);
    let ob = Outbox::open(opts(dir.path(), 1 << 20, FullPolicy::DropOldest)).unwrap();
    assert_eq!(ob.recovered(), 2);
    assert_eq!(ob.last_seq(), 43);
}
