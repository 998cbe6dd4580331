//! The disk-backed outbox: every event is on disk before it counts as produced, and leaves only
//! once the broker has acknowledged it.
//!
//! Layout of `dir`:
//! - `seg-<first seq, 20 digits>.log`: append-only segments of records
//!   `[u32 length][u32 crc32 of body][body]`, body = `[u64 seq][u16 topic length][topic][payload]`,
//!   little-endian. Every append is synced before it returns.
//! - `cursor`: `acked dropped last damaged skipped [lost ranges]` — every seq up to `acked` is
//!   delivered or dropped (counted); `last` is the highest seq handed out when it was written
//!   (absent in older cursors); see `cursor.rs`.
//! - `quarantine/`: damaged files as they were found at open (see `recover.rs`, which reads the
//!   segments back, resynchronises past damaged records and accounts for every missing seq).
//!
//! The sequence must never repeat, so its high-water mark is kept where the loss of any one file
//! cannot take it: in the cursor, and in the newest segment, which is never deleted even when
//! fully delivered (its name and its records give the last seq). At open, seq continues from the
//! highest of the two. When the cursor is lost, the records still in segments are sent again
//! (same seq and event_id: a duplicate the subscriber recognises, never a reused number). A
//! segment is only ever appended the seq that follows its last record, so its records are
//! consecutive from the seq in its name (which makes resynchronising past damage safe).
//!
//! A torn record at the end of the newest segment (power cut mid-write) is cut off on open. An
//! append that fails (full disk, I/O error) is cut back at once, so the segment stays a clean
//! sequence of records and later appends never land behind a partial one; the producer gets an
//! error and the failure is counted (`write_failed`). The outbox also assigns `seq` under the same
//! lock as the append, so a number is never handed out without its event being stored: the
//! subscriber sees no gaps except counted drops.
//!
//! Why own segment files and not an embedded database: the access pattern is a FIFO (append at the
//! tail, acknowledge from the head, delete whole segments), which a log does with one sequential
//! write and one sync per event and trivially bounded disk use; no compaction, no extra crate.

use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod cursor;
mod record;
mod recover;
use cursor::Cursor;
pub use record::Record;
use record::{encode_record, sync_dir};
pub use recover::QUARANTINE;

/// A fully delivered newest segment at least this large is replaced by an empty one at the next
/// checkpoint ([`Outbox::roll_delivered`]): at most this much delivered data stays on disk.
pub const DELIVERED_ROLL_BYTES: u64 = 64 << 10;

/// What to do when the outbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Drop the oldest undelivered events to make room (counted).
    #[default]
    DropOldest,
    /// Refuse new events (counted).
    RejectNew,
}

/// Outbox settings.
#[derive(Debug, Clone)]
pub struct OutboxOptions {
    pub dir: PathBuf,
    /// Limit on undelivered bytes on disk.
    pub max_bytes: u64,
    pub policy: FullPolicy,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
}

/// Counters shared with status reporting.
#[derive(Debug, Default)]
pub struct OutboxStats {
    /// Undelivered events.
    pub depth: AtomicU64,
    /// Bytes of undelivered events on disk.
    pub bytes: AtomicU64,
    /// Events lost to the size limit, ever (persisted).
    pub dropped: AtomicU64,
    /// Highest seq handed out.
    pub last_seq: AtomicU64,
    /// Events not stored because the disk write failed (full disk, I/O error), since start. The
    /// producer got an error and no seq was used; the segment was left as it was.
    pub write_failed: AtomicU64,
    /// Undelivered events lost to damaged outbox files, found at open (each logged with its seq
    /// range; the files as found are kept in `quarantine/`).
    pub damaged: AtomicU64,
    /// Undelivered events no outbox file held at open (a segment file gone), each range logged.
    pub skipped: AtomicU64,
}

struct Segment {
    last_seq: u64,
    path: PathBuf,
    bytes: u64,
}

/// Why an event was not stored.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("outbox full ({bytes} of {max} bytes) and the policy is reject_new: event rejected")]
    Rejected { bytes: u64, max: u64 },
    #[error("event of {0} bytes is larger than the outbox limit")]
    TooLarge(u64),
    #[error("outbox disk full: event of {bytes} bytes not stored in {}; the events already stored are kept", path.display())]
    DiskFull { path: PathBuf, bytes: u64 },
    #[error("outbox write failed, event not stored: {0:#}")]
    Io(#[from] anyhow::Error),
}

/// The outbox. Not thread-safe by itself; the delivery layer holds it behind a mutex.
pub struct Outbox {
    opts: OutboxOptions,
    segments: VecDeque<Segment>,
    writer: Option<File>,
    /// Undelivered records, oldest first, not yet handed to the broker link.
    unsent: VecDeque<Record>,
    /// Records handed to the link, awaiting acknowledgement. Kept whole: a record the MQTT client
    /// lost with its connection goes back to `unsent` ([`Outbox::requeue`]).
    inflight: VecDeque<Record>,
    /// Per record seq → encoded length, for the byte count (oldest first).
    sizes: VecDeque<(u64, u64)>,
    acked: u64,
    cursor_written: u64,
    /// Seq ranges above `acked` accounted for at open (found lost and counted, or unbacked by
    /// any segment), kept in the cursor so that no later open counts them as lost.
    lost: Vec<(u64, u64)>,
    stats: Arc<OutboxStats>,
    /// Records found on disk at open: they are catch-up, not live.
    recovered: u64,
}

impl Outbox {
    /// Opens (creating) the outbox, recovering undelivered records from disk.
    pub fn open(opts: OutboxOptions) -> Result<Outbox> {
        // Events hold plates and QR payloads: the outbox is gatewatch's user's only (0700 folder,
        // 0600 files), and one an older version made 0755 is tightened.
        crate::state_dir::create_private_dir(&opts.dir)
            .and_then(|()| crate::state_dir::make_private(&opts.dir))
            .with_context(|| format!("cannot create outbox directory {}", opts.dir.display()))?;
        let cursor = Cursor::read(&opts.dir.join("cursor"))?;
        let found = recover::recover(&opts.dir, &cursor)?;
        let mut ob = Outbox {
            opts,
            segments: VecDeque::new(),
            writer: None,
            unsent: VecDeque::new(),
            inflight: VecDeque::new(),
            sizes: VecDeque::new(),
            acked: found.acked,
            cursor_written: cursor.acked,
            lost: found.lost,
            stats: Arc::new(OutboxStats::default()),
            recovered: 0,
        };
        let mut newest = None;
        for seg in found.segments {
            for r in seg.records.into_iter().filter(|r| r.seq > found.acked) {
                // Overlapping segments (never written so) would otherwise send a record twice.
                if ob.unsent.back().is_some_and(|b| b.seq >= r.seq) {
                    continue;
                }
                ob.sizes.push_back((r.seq, r.encoded_len()));
                ob.unsent.push_back(r);
            }
            newest = Some(seg.path.clone());
            ob.segments.push_back(Segment {
                last_seq: seg.last_seq,
                path: seg.path,
                bytes: seg.bytes,
            });
        }
        if let Some(path) = newest.filter(|_| found.newest_kept) {
            ob.writer = Some(
                OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("open {}", path.display()))?,
            );
        }
        ob.recovered = ob.unsent.len() as u64;
        let stats = &ob.stats;
        stats.dropped.store(cursor.dropped, Ordering::Relaxed);
        stats.last_seq.store(found.last_seq, Ordering::Relaxed);
        stats
            .damaged
            .store(cursor.damaged + found.damaged, Ordering::Relaxed);
        stats
            .skipped
            .store(cursor.skipped + found.skipped, Ordering::Relaxed);
        ob.update_stats();
        // What recovery found is recorded at once, so that a crash does not count it again; a
        // cursor that was not trusted is replaced. Should the write fail (full disk), it goes out
        // with the cursor's next move, and a crash before that only repeats the count and the log.
        if found.damaged + found.skipped > 0 || found.acked != cursor.acked {
            if let Err(e) = ob.write_cursor() {
                tracing::error!(error = %format!("{e:#}"), "outbox: cannot write the cursor");
            }
        }
        Ok(ob)
    }

    /// Shared counters.
    pub fn stats(&self) -> Arc<OutboxStats> {
        self.stats.clone()
    }

    /// The highest seq handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.stats.last_seq.load(Ordering::Relaxed)
    }

    /// Events found undelivered on disk at open.
    pub fn recovered(&self) -> u64 {
        self.recovered
    }

    fn undelivered_bytes(&self) -> u64 {
        self.sizes.iter().map(|(_, n)| n).sum()
    }

    fn update_stats(&self) {
        self.stats
            .depth
            .store(self.sizes.len() as u64, Ordering::Relaxed);
        self.stats
            .bytes
            .store(self.undelivered_bytes(), Ordering::Relaxed);
    }

    /// Stores a new event: assigns the next seq, calls `build(seq)` for the payload, appends and
    /// syncs. Applies the size policy first.
    pub fn append(
        &mut self,
        topic_suffix: &str,
        catch_up: bool,
        build: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<u64, AppendError> {
        let seq = self.last_seq() + 1;
        let record = Record {
            seq,
            topic_suffix: topic_suffix.to_owned(),
            payload: build(seq),
            catch_up,
        };
        let len = record.encoded_len();
        if len > self.opts.max_bytes {
            self.count_dropped(1);
            return Err(AppendError::TooLarge(len));
        }
        let mut bytes = self.undelivered_bytes();
        if bytes + len > self.opts.max_bytes {
            match self.opts.policy {
                FullPolicy::RejectNew => {
                    self.count_dropped(1);
                    return Err(AppendError::Rejected {
                        bytes,
                        max: self.opts.max_bytes,
                    });
                }
                FullPolicy::DropOldest => {
                    let mut n = 0;
                    // Only events not yet handed to the broker can be dropped.
                    while bytes + len > self.opts.max_bytes {
                        let Some(old) = self.unsent.pop_front() else {
                            break;
                        };
                        let pos = self
                            .sizes
                            .iter()
                            .position(|(s, _)| *s == old.seq)
                            .expect("sized");
                        bytes -= self.sizes.remove(pos).expect("sized").1;
                        n += 1;
                    }
                    self.count_dropped(n);
                    tracing::warn!(
                        dropped = n,
                        "outbox full: oldest undelivered events dropped (policy drop_oldest)"
                    );
                    self.advance_acked();
                }
            }
        }
        self.write_record(&record)?;
        self.stats.last_seq.store(seq, Ordering::Relaxed);
        self.sizes.push_back((seq, len));
        self.unsent.push_back(record);
        self.update_stats();
        Ok(seq)
    }

    fn count_dropped(&mut self, n: u64) {
        if n > 0 {
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
            // Persist the loss count right away: it must survive a crash.
            let _ = self.write_cursor();
        }
    }

    /// Appends `r` to the newest segment (starting one when needed) and syncs it. A failed write
    /// or sync is undone: the segment is cut back to where the record began, so the next append
    /// does not land behind a partial record (which the next open would take for a torn tail,
    /// cutting off every event stored after it).
    fn write_record(&mut self, r: &Record) -> Result<(), AppendError> {
        let buf = encode_record(r);
        if self.needs_new_segment(r.seq) {
            let path = self.segment_path(r.seq);
            if let Err(e) = self.start_segment(r.seq) {
                return Err(self.write_failed(&path, buf.len() as u64, e));
            }
        }
        let seg = self.segments.back().expect("segment");
        let (start, path) = (seg.bytes, seg.path.clone());
        let w = self.writer.as_mut().expect("open segment");
        if let Err(e) = w.write_all(&buf).and_then(|()| w.sync_data()) {
            self.undo_partial_write(start);
            return Err(self.write_failed(&path, buf.len() as u64, e.into()));
        }
        let seg = self.segments.back_mut().expect("segment");
        seg.bytes += buf.len() as u64;
        seg.last_seq = r.seq;
        Ok(())
    }

    /// A new segment is started when there is none to append to, when the newest is full, and
    /// when `seq` does not follow its last record: records of a segment are then consecutive from
    /// the seq in its name, which lets [`recover`] judge whether a record found past damage is
    /// plausible.
    fn needs_new_segment(&self, seq: u64) -> bool {
        match self.segments.back() {
            None => true,
            Some(s) => {
                self.writer.is_none()
                    || s.bytes >= self.opts.segment_bytes
                    || s.last_seq.checked_add(1) != Some(seq)
            }
        }
    }

    fn segment_path(&self, first_seq: u64) -> PathBuf {
        self.opts.dir.join(format!("seg-{first_seq:020}.log"))
    }

    /// Creates the segment `seg-<first_seq>.log` and makes it the one appended to. Its name keeps
    /// the high-water mark (`first_seq - 1` handed out) even while it is empty.
    fn start_segment(&mut self, first_seq: u64) -> Result<()> {
        let path = self.segment_path(first_seq);
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(crate::state_dir::FILE_MODE)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        sync_dir(&self.opts.dir)
            .with_context(|| format!("cannot sync {}", self.opts.dir.display()))?;
        self.writer = Some(f);
        self.segments.push_back(Segment {
            last_seq: first_seq - 1,
            path,
            bytes: 0,
        });
        Ok(())
    }

    /// Cuts the newest segment back to `len` after a failed append. Should even that fail, the
    /// segment is no longer appended to: the next append starts a new one, and the next open
    /// finds the partial record at the end of an older segment and repairs it (nothing after it
    /// is lost).
    fn undo_partial_write(&mut self, len: u64) {
        let w = self.writer.as_mut().expect("open segment");
        if let Err(e) = w.set_len(len).and_then(|()| w.sync_all()) {
            let path = &self.segments.back().expect("segment").path;
            tracing::error!(segment = %path.display(), error = %e, "outbox: cannot cut a failed append back; a new segment is started");
            self.writer = None;
        }
    }

    /// Counts and logs an event the disk did not take, and says why.
    fn write_failed(&mut self, path: &Path, bytes: u64, e: anyhow::Error) -> AppendError {
        self.stats.write_failed.fetch_add(1, Ordering::Relaxed);
        let full = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                )
            })
        });
        let err = if full {
            AppendError::DiskFull {
                path: path.to_owned(),
                bytes,
            }
        } else {
            AppendError::Io(e.context(format!("cannot append to {}", path.display())))
        };
        tracing::error!(error = %err, "outbox: event not stored (counted in status as outbox.write_failed)");
        err
    }

    /// The next record to hand to the broker, moved to the in-flight list.
    pub fn next_unsent(&mut self) -> Option<Record> {
        let r = self.unsent.pop_front()?;
        self.inflight.push_back(r.clone());
        Some(r)
    }

    /// The broker link lost these in-flight records with its connection: they go back to the head
    /// of the queue, in seq order, to be sent again (as catch-up) before anything newer. Seqs not
    /// in flight (acknowledged meanwhile) are ignored.
    pub fn requeue(&mut self, seqs: &[u64]) {
        let mut back: Vec<Record> = Vec::with_capacity(seqs.len());
        self.inflight.retain(|r| {
            if seqs.contains(&r.seq) {
                back.push(Record {
                    catch_up: true,
                    ..r.clone()
                });
                false
            } else {
                true
            }
        });
        if back.is_empty() {
            return;
        }
        back.extend(self.unsent.drain(..));
        back.sort_by_key(|r| r.seq);
        self.unsent = back.into();
    }

    /// Records handed to the link and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Whether records wait to be handed over.
    pub fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// The broker acknowledged `seq`.
    pub fn acknowledge(&mut self, seq: u64) {
        if let Some(pos) = self.inflight.iter().position(|r| r.seq == seq) {
            self.inflight.remove(pos);
        }
        if let Some(pos) = self.sizes.iter().position(|(s, _)| *s == seq) {
            self.sizes.remove(pos);
        }
        self.advance_acked();
        self.update_stats();
    }

    /// Moves the cursor to just below the oldest undelivered record.
    fn advance_acked(&mut self) {
        let oldest = self.sizes.front().map(|(s, _)| *s);
        self.acked = match oldest {
            Some(s) => s - 1,
            None => self.last_seq(),
        };
    }

    /// Persists the cursor and deletes fully delivered segments, except the newest: it keeps the
    /// sequence's high-water mark on disk next to the cursor (a fully delivered newest segment of
    /// some size is replaced by an empty one, see [`Outbox::roll_delivered`]). Cheap to call
    /// often; it writes only when the cursor moved.
    pub fn checkpoint(&mut self) -> Result<()> {
        if self.acked == self.cursor_written {
            return Ok(());
        }
        self.write_cursor()?;
        while let Some(seg) = self.segments.front() {
            if seg.last_seq > self.acked || self.segments.len() == 1 {
                break;
            }
            std::fs::remove_file(&seg.path)
                .with_context(|| format!("remove {}", seg.path.display()))?;
            self.segments.pop_front();
        }
        self.roll_delivered()
    }

    /// Events hold plates and QR payloads, which should not stay on disk once delivered; but the
    /// newest segment is never deleted (its name keeps the high-water mark), and it only fills up
    /// at `segment_bytes` (16 MiB by default: weeks at a quiet gate). So when everything in it is
    /// delivered and it holds at least [`DELIVERED_ROLL_BYTES`], an empty segment named after the
    /// next seq takes its place (it keeps the mark) and the old one is deleted. Not at every
    /// checkpoint: that would cost a file creation and a directory sync per handful of events.
    fn roll_delivered(&mut self) -> Result<()> {
        let Some(seg) = self.segments.back() else {
            return Ok(());
        };
        let threshold = DELIVERED_ROLL_BYTES.min(self.opts.segment_bytes);
        if self.segments.len() > 1 || seg.last_seq > self.acked || seg.bytes < threshold {
            return Ok(());
        }
        let old = seg.path.clone();
        // The new segment is created and synced before the old one goes: a crash in between
        // leaves a delivered older segment, which the next open deletes.
        self.start_segment(self.last_seq() + 1)?;
        std::fs::remove_file(&old).with_context(|| format!("remove {}", old.display()))?;
        self.segments.pop_front();
        Ok(())
    }

    fn write_cursor(&mut self) -> Result<()> {
        let path = self.opts.dir.join("cursor");
        let tmp = self.opts.dir.join("cursor.tmp");
        // Lost ranges the cursor has passed need no remembering.
        let acked = self.acked;
        self.lost.retain(|(_, last)| *last > acked);
        let cursor = Cursor {
            acked,
            dropped: self.stats.dropped.load(Ordering::Relaxed),
            last: self.last_seq(),
            damaged: self.stats.damaged.load(Ordering::Relaxed),
            skipped: self.stats.skipped.load(Ordering::Relaxed),
            lost: self.lost.clone(),
        };
        let mut f = crate::state_dir::create_private_file(&tmp)?;
        writeln!(f, "{}", cursor.line())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        self.cursor_written = self.acked;
        Ok(())
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
