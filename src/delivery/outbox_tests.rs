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

/// A tmpfs of a given size, mounted under a temp dir while the value lives (the tests run as
/// root). `None`, with a message saying why, where mounting is not permitted.
struct SmallDisk {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { mnt, _dir: dir }),
            Ok(o) => {
                println!(
                    "SKIPPED: cannot mount a {size} tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                println!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Before the temp dir is removed (fields drop after this).
        let _ = std::process::Command::new("umount").arg(&self.mnt).status();
    }
}

/// Writes to `path` until the disk refuses more.
fn fill_disk(path: &Path) {
    let mut f = File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                break;
            }
        }
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("seg-"))
        .collect();
    segs.sort();
    segs
}

/// Issue 13 item 2: an append cut off by a full disk left a partial record, later appends went
/// behind it, and the next open cut them all off as a torn tail.
#[test]
fn a_full_disk_fails_the_append_cleanly_and_nothing_stored_is_lost() {
    let Some(disk) = SmallDisk::mount("2m") else {
        return;
    };
    let o = || OutboxOptions {
        dir: disk.mnt.join("outbox"),
        max_bytes: 64 << 20,
        policy: FullPolicy::DropOldest,
        segment_bytes: 16 << 20,
    };
    // Records larger than a page: the one that meets the full disk is partly written.
    let event = |s: u64| format!("{{\"seq\":{s},\"pad\":\"{}\"}}", "x".repeat(5000)).into_bytes();
    let mut ob = Outbox::open(o()).unwrap();
    let mut stored: Vec<u64> = (0..100)
        .map(|_| ob.append("events/plate", false, event).unwrap())
        .collect();
    let seg = segment_files(&o().dir).pop().unwrap();
    let len = || std::fs::metadata(&seg).unwrap().len();
    let before = len();
    assert_ne!(before % 4096, 0, "room left in the segment's last page");
    fill_disk(&disk.mnt.join("filler"));

    for n in 1..=3 {
        let err = ob.append("events/plate", false, event).unwrap_err();
        assert!(matches!(err, AppendError::DiskFull { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("disk full") && msg.contains("seg-"), "{msg}");
        assert_eq!(
            len(),
            before,
            "the failed append left the segment as it was"
        );
        assert_eq!(ob.stats().write_failed.load(Ordering::Relaxed), n);
    }
    assert_eq!(ob.last_seq(), 100, "a failed append uses no seq");

    // A restart on the still full disk finds every stored event and nothing damaged.
    drop(ob);
    let mut ob = Outbox::open(o()).unwrap();
    assert_eq!(ob.recovered(), 100);
    assert_eq!(ob.stats().damaged.load(Ordering::Relaxed), 0);
    assert!(matches!(
        ob.append("events/plate", false, event),
        Err(AppendError::DiskFull { .. })
    ));
    assert_eq!(len(), before);
    // The outbox keeps serving: what is stored goes out and is acknowledged.
    for _ in 0..10 {
        let r = ob.next_unsent().unwrap();
        ob.acknowledge(r.seq);
    }

    // Space comes back: appends go on with the next seq, behind the intact records.
    std::fs::remove_file(disk.mnt.join("filler")).unwrap();
    stored.extend((0..40).map(|_| ob.append("events/plate", false, event).unwrap()));
    assert_eq!(stored, (1..=140).collect::<Vec<_>>());
    ob.checkpoint().unwrap();
    drop(ob);

    let mut ob = Outbox::open(o()).unwrap();
    let back: Vec<u64> = std::iter::from_fn(|| ob.next_unsent().map(|r| r.seq)).collect();
    assert_eq!(
        back,
        (11..=140).collect::<Vec<_>>(),
        "every stored event is there, in order; none after the failure was cut"
    );
    let stats = ob.stats();
    assert_eq!(
        (
            stats.damaged.load(Ordering::Relaxed),
            stats.skipped.load(Ordering::Relaxed)
        ),
        (0, 0)
    );
    assert!(!o().dir.join(QUARANTINE).exists(), "nothing to repair");
    assert_eq!(push(&mut ob, 1), [141]);
}

/// Issue 13, also seen: delivered events stayed on disk until a 16 MiB segment filled.
#[test]
fn a_delivered_newest_segment_is_rolled_so_delivered_events_do_not_linger() {
    let dir = tempfile::tempdir().unwrap();
    let o = || OutboxOptions {
        dir: dir.path().to_owned(),
        max_bytes: 256 << 20,
        policy: FullPolicy::DropOldest,
        segment_bytes: 16 << 20,
    };
    let on_disk = || -> u64 {
        segment_files(dir.path())
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum()
    };
    let event = |s: u64| format!("{{\"seq\":{s},\"plate\":\"{}\"}}", "A".repeat(400)).into_bytes();
    let mut ob = Outbox::open(o()).unwrap();
    for _ in 0..200 {
        ob.append("events/plate", false, event).unwrap();
    }
    assert!(on_disk() > DELIVERED_ROLL_BYTES);
    deliver_all(&mut ob);
    assert_eq!(on_disk(), 0, "delivered events are off the disk");
    let segs = segment_files(dir.path());
    assert_eq!(segs.len(), 1, "the newest segment is kept: {segs:?}");
    assert!(
        segs[0].ends_with(format!("seg-{:020}.log", 201)),
        "{segs:?}"
    );

    // Below the threshold a delivered segment stays (bounded), and the sequence survives both the
    // roll and the loss of the cursor.
    assert_eq!(push(&mut ob, 3), [201, 202, 203]);
    deliver_all(&mut ob);
    assert!((1..DELIVERED_ROLL_BYTES).contains(&on_disk()));
    drop(ob);
    std::fs::remove_file(dir.path().join("cursor")).unwrap();
    let mut ob = Outbox::open(o()).unwrap();
    assert_eq!(push(&mut ob, 1), [204]);
}
