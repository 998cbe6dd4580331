//! Issue 13 item 3: damaged outbox files, made for real on disk, and what the next open keeps,
//! counts and logs.

use super::super::record::{encode_record, segment_first_seq, Record};
use super::super::{FullPolicy, Outbox, OutboxOptions};
use super::QUARANTINE;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

fn opts(dir: &Path, segment_bytes: u64) -> OutboxOptions {
    OutboxOptions {
        dir: dir.to_owned(),
        max_bytes: 1 << 30,
        policy: FullPolicy::DropOldest,
        segment_bytes,
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

/// Hands over everything unsent; returns the seqs in the order handed over.
fn drain(ob: &mut Outbox) -> Vec<u64> {
    std::iter::from_fn(|| ob.next_unsent().map(|r| r.seq)).collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("seg-"))
        .collect();
    segs.sort();
    segs
}

fn first_seq(seg: &Path) -> u64 {
    segment_first_seq(seg).unwrap()
}

fn counts(ob: &Outbox) -> (u64, u64) {
    let s = ob.stats();
    (
        s.damaged.load(Ordering::Relaxed),
        s.skipped.load(Ordering::Relaxed),
    )
}

/// Log lines written while `f` runs on this thread.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }
    let buf = Buf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buf.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_flipped_byte_in_the_newest_segment_costs_one_record_not_those_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = || opts(dir.path(), 4096);
    let mut ob = Outbox::open(o()).unwrap();
    push(&mut ob, 150);
    drop(ob);
    let newest = segments(dir.path()).pop().unwrap();
    let first = first_seq(&newest);
    assert!(first > 1, "more than one segment");
    let mut data = std::fs::read(&newest).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x10;
    std::fs::write(&newest, &data).unwrap();

    let (mut ob, log) = logged(|| Outbox::open(o()).unwrap());
    let back = drain(&mut ob);
    let lost: Vec<u64> = (1..=150).filter(|s| !back.contains(s)).collect();
    assert_eq!(lost.len(), 1, "one record lost: {lost:?}");
    let lost = lost[0];
    assert!(lost > first + 5 && lost < 145, "hit mid-segment: {lost}");
    assert_eq!(
        back,
        (1..=150).filter(|s| *s != lost).collect::<Vec<_>>(),
        "the records after the damaged one are kept, in order"
    );
    assert_eq!(counts(&ob), (1, 0));
    let name = newest.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        log.contains(&format!("seq {lost}-{lost}")) && log.contains(&name),
        "the loss is logged with its seq and file:\n{log}"
    );
    // The file as found is kept aside, private like the rest of the outbox.
    let kept = dir.path().join(QUARANTINE).join(&name);
    assert_eq!(std::fs::read(&kept).unwrap(), data);
    assert_eq!(mode(&dir.path().join(QUARANTINE)), 0o700);
    assert_eq!(mode(&kept), 0o600);

    assert_eq!(push(&mut ob, 1), [151]);
    drop(ob);
    // The repair holds and the loss was recorded: counted once, the count kept.
    let (mut ob, log) = logged(|| Outbox::open(o()).unwrap());
    assert_eq!(counts(&ob), (1, 0));
    assert!(!log.contains("ERROR"), "{log}");
    assert_eq!(drain(&mut ob).len(), 150);
}

#[test]
fn a_missing_middle_segment_is_logged_and_counted_and_later_records_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let o = || opts(dir.path(), 200);
    let mut ob = Outbox::open(o()).unwrap();
    push(&mut ob, 30);
    for _ in 0..3 {
        let r = ob.next_unsent().unwrap();
        ob.acknowledge(r.seq);
    }
    ob.checkpoint().unwrap();
    drop(ob);
    let segs = segments(dir.path());
    assert!(segs.len() >= 5, "{segs:?}");
    let (gone, next) = (first_seq(&segs[2]), first_seq(&segs[3]));
    std::fs::remove_file(&segs[2]).unwrap();

    let (mut ob, log) = logged(|| Outbox::open(o()).unwrap());
    assert_eq!(
        drain(&mut ob),
        (4..=30)
            .filter(|s| !(gone..next).contains(s))
            .collect::<Vec<_>>(),
        "the records after the gap are kept"
    );
    assert_eq!(counts(&ob), (0, next - gone));
    let line = log
        .lines()
        .find(|l| l.contains(&format!("seq {gone}-{}", next - 1)))
        .unwrap_or_else(|| panic!("the gap is not logged:\n{log}"));
    assert!(line.contains("ERROR") && line.contains("skipped"), "{line}");
    for neighbour in [&segs[1], &segs[3]] {
        let name = neighbour.file_name().unwrap().to_string_lossy();
        assert!(line.contains(&*name), "{line}");
    }
    assert_eq!(push(&mut ob, 1), [31]);
    drop(ob);
    // Counted once: the next open knows the gap (the cursor records it) and keeps the count.
    let (mut ob, log) = logged(|| Outbox::open(o()).unwrap());
    assert_eq!(counts(&ob), (0, next - gone));
    assert!(!log.contains("ERROR"), "{log}");
    for seq in drain(&mut ob) {
        ob.acknowledge(seq);
    }
    ob.checkpoint().unwrap();
    let cursor = std::fs::read_to_string(dir.path().join("cursor")).unwrap();
    assert_eq!(
        cursor.trim(),
        format!("31 0 31 0 {}", next - gone),
        "delivered past the gap: the range is no longer needed, the count stays"
    );
}

#[test]
fn a_cursor_beyond_the_log_deletes_nothing_and_seq_continues_above_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = || opts(dir.path(), 4096);
    let mut ob = Outbox::open(o()).unwrap();
    push(&mut ob, 600);
    for _ in 0..100 {
        let r = ob.next_unsent().unwrap();
        ob.acknowledge(r.seq);
    }
    ob.checkpoint().unwrap();
    drop(ob);
    let segs = segments(dir.path());
    // A cursor that claims far more was delivered than was ever stored.
    std::fs::write(dir.path().join("cursor"), "5000 0 5000\n").unwrap();

    let (mut ob, log) = logged(|| Outbox::open(o()).unwrap());
    assert_eq!(segments(dir.path()), segs, "no segment deleted at open");
    assert!(log.contains("not trusted"), "{log}");
    let back = drain(&mut ob);
    assert!(
        back.ends_with(&(101..=600).collect::<Vec<_>>()),
        "the undelivered events are sent, in order: {back:?}"
    );
    assert!(back.windows(2).all(|w| w[1] == w[0] + 1), "{back:?}");
    assert_eq!(counts(&ob), (0, 0), "no loss is made up");
    assert_eq!(
        push(&mut ob, 1),
        [5001],
        "seq continues above the highest ever handed out"
    );
    drop(ob);
    // Restarted before anything was delivered: the jump from 600 to 5001 is no loss.
    let (mut ob, log) = logged(|| Outbox::open(o()).unwrap());
    assert!(!log.contains("ERROR"), "{log}");
    assert_eq!(counts(&ob), (0, 0));
    let mut again = back.clone();
    again.push(5001);
    assert_eq!(drain(&mut ob), again);
    for seq in again {
        ob.acknowledge(seq);
    }
    ob.checkpoint().unwrap();
    drop(ob);
    let mut ob = Outbox::open(o()).unwrap();
    assert_eq!(ob.recovered(), 0);
    assert_eq!(push(&mut ob, 1), [5002]);
}

/// What the full-disk bug of older versions left behind: a partial record, then the same seq
/// written again after it, in a segment that is no longer the newest. Open used to refuse to start
/// ("corrupt in the middle"); the cut-off newest segment lost everything after it.
#[test]
fn a_partial_record_in_an_older_segment_is_skipped_and_nothing_after_it_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let record = |seq: u64| {
        encode_record(&Record {
            seq,
            topic_suffix: "events/plate".into(),
            payload: format!("{{\"seq\":{seq}}}").into_bytes(),
            catch_up: false,
        })
    };
    let mut old = Vec::new();
    (1..=5).for_each(|s| old.extend(record(s)));
    old.extend(&record(6)[..20]);
    (6..=10).for_each(|s| old.extend(record(s)));
    let first = dir.path().join(format!("seg-{:020}.log", 1));
    std::fs::write(&first, &old).unwrap();
    let newest: Vec<u8> = (11..=15).flat_map(record).collect();
    std::fs::write(dir.path().join(format!("seg-{:020}.log", 11)), newest).unwrap();

    let (mut ob, log) = logged(|| Outbox::open(opts(dir.path(), 1 << 20)).unwrap());
    assert_eq!(drain(&mut ob), (1..=15).collect::<Vec<_>>());
    assert_eq!(counts(&ob), (0, 0), "no seq is missing");
    assert!(log.contains("repaired"), "{log}");
    let kept = dir.path().join(QUARANTINE).join(first.file_name().unwrap());
    assert_eq!(std::fs::read(kept).unwrap(), old);
    assert_eq!(push(&mut ob, 1), [16]);
}

/// A segment that cannot be read at all (here a directory in its place) is moved aside, never
/// deleted, and the events it held are counted as damaged.
#[test]
fn an_unreadable_segment_is_moved_to_quarantine_and_its_range_counted() {
    let dir = tempfile::tempdir().unwrap();
    let o = || opts(dir.path(), 200);
    let mut ob = Outbox::open(o()).unwrap();
    push(&mut ob, 20);
    drop(ob);
    let segs = segments(dir.path());
    let (bad, next) = (first_seq(&segs[1]), first_seq(&segs[2]));
    std::fs::remove_file(&segs[1]).unwrap();
    std::fs::create_dir(&segs[1]).unwrap();

    let mut ob = Outbox::open(o()).unwrap();
    assert_eq!(counts(&ob), (next - bad, 0));
    assert_eq!(
        drain(&mut ob),
        (1..=20)
            .filter(|s| !(bad..next).contains(s))
            .collect::<Vec<_>>()
    );
    assert!(!segs[1].exists());
    assert!(dir
        .path()
        .join(QUARANTINE)
        .join(segs[1].file_name().unwrap())
        .is_dir());
}
