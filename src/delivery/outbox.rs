//! The disk-backed outbox: every event is on disk before it counts as produced, and leaves only
//! once the broker has acknowledged it.
//!
//! Layout of `dir`:
//! - `seg-<first seq, 20 digits>.log`: append-only segments of records
//!   `[u32 length][u32 crc32 of body][body]`, body = `[u64 seq][u16 topic length][topic][payload]`,
//!   little-endian. Every append is synced before it returns.
//! - `cursor`: `acked dropped last` — every seq up to `acked` is delivered or dropped (counted);
//!   `last` is the highest seq handed out when it was written (absent in older cursors).
//!
//! The sequence must never repeat, so its high-water mark is kept where the loss of any one file
//! cannot take it: in the cursor, and in the newest segment, which is never deleted even when
//! fully delivered (its name and its records give the last seq). At open, seq continues from the
//! highest of the two. When the cursor is lost, the records still in segments are sent again
//! (same seq and event_id: a duplicate the subscriber recognises, never a reused number).
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

use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
}

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub topic_suffix: String,
    pub payload: Vec<u8>,
    /// Catch-up rather than live: recovered from disk at start-up, or produced while the broker
    /// was unreachable. Not stored; published as `"replayed": true`.
    pub catch_up: bool,
}

impl Record {
    fn encoded_len(&self) -> u64 {
        (8 + 8 + 2 + self.topic_suffix.len() + self.payload.len()) as u64
    }
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
        let (acked, dropped, cursor_last) = read_cursor(&opts.dir.join("cursor"))?;
        let mut names: Vec<PathBuf> = std::fs::read_dir(&opts.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("seg-") && n.ends_with(".log"))
            })
            .collect();
        names.sort();
        let stats = Arc::new(OutboxStats::default());
        let mut ob = Outbox {
            opts,
            segments: VecDeque::new(),
            writer: None,
            unsent: VecDeque::new(),
            inflight: VecDeque::new(),
            sizes: VecDeque::new(),
            acked,
            cursor_written: acked,
            stats,
            recovered: 0,
        };
        let mut last_seq = acked.max(cursor_last);
        let count = names.len();
        for (i, path) in names.into_iter().enumerate() {
            let newest = i + 1 == count;
            // The name holds the first seq the segment was created for: everything below it was
            // handed out, even when the segment is empty.
            if let Some(first) = segment_first_seq(&path) {
                last_seq = last_seq.max(first.saturating_sub(1));
            }
            let (records, valid_len) = read_segment(&path)?;
            let file_len = std::fs::metadata(&path)?.len();
            if valid_len < file_len {
                if newest {
                    tracing::warn!(segment = %path.display(), "outbox: torn record at the end (power cut?) cut off");
                    OpenOptions::new()
                        .write(true)
                        .open(&path)?
                        .set_len(valid_len)?;
                } else {
                    bail!(
                        "outbox segment {} is corrupt in the middle; move it away to continue",
                        path.display()
                    );
                }
            }
            let last = records.last().map(|r| r.seq);
            if let Some(last) = last {
                last_seq = last_seq.max(last);
            }
            // The newest segment stays, delivered or empty: it keeps the sequence's high-water
            // mark should the cursor be lost, and new records are appended to it.
            if newest {
                ob.writer = Some(
                    OpenOptions::new()
                        .append(true)
                        .open(&path)
                        .with_context(|| format!("open {}", path.display()))?,
                );
            } else if last.is_none_or(|last| last <= acked) {
                std::fs::remove_file(&path)?;
                continue;
            }
            for r in records.into_iter().filter(|r| r.seq > acked) {
                ob.sizes.push_back((r.seq, r.encoded_len()));
                ob.unsent.push_back(r);
            }
            ob.segments.push_back(Segment {
                last_seq: last.unwrap_or(last_seq),
                path,
                bytes: valid_len,
            });
        }
        ob.recovered = ob.unsent.len() as u64;
        ob.stats.dropped.store(dropped, Ordering::Relaxed);
        ob.stats.last_seq.store(last_seq, Ordering::Relaxed);
        ob.update_stats();
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
    /// sequence's high-water mark on disk next to the cursor. Cheap to call often; it writes only
    /// when the cursor moved.
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
        Ok(())
    }

    fn write_cursor(&mut self) -> Result<()> {
        let path = self.opts.dir.join("cursor");
        let tmp = self.opts.dir.join("cursor.tmp");
        let mut f = crate::state_dir::create_private_file(&tmp)?;
        writeln!(
            f,
            "{} {} {}",
            self.acked,
            self.stats.dropped.load(Ordering::Relaxed),
            self.last_seq()
        )?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        self.cursor_written = self.acked;
        Ok(())
    }
}

/// `(acked, dropped, last seq handed out)`; an older cursor without the last seq gives `acked`.
fn read_cursor(path: &Path) -> Result<(u64, u64, u64)> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let mut it = s.split_whitespace().map(str::parse::<u64>);
            match (it.next(), it.next(), it.next()) {
                (Some(Ok(a)), Some(Ok(d)), None) => Ok((a, d, a)),
                (Some(Ok(a)), Some(Ok(d)), Some(Ok(l))) => Ok((a, d, l.max(a))),
                _ => bail!("outbox cursor {} is corrupt ({s:?})", path.display()),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, 0, 0)),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The first seq in a segment's name `seg-<seq>.log`.
fn segment_first_seq(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("seg-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// Reads the valid records of a segment and the length of its valid prefix.
fn read_segment(path: &Path) -> Result<(Vec<Record>, u64)> {
    let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut data = Vec::new();
    f.seek(SeekFrom::Start(0))?;
    f.read_to_end(&mut data)?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap());
        let Some(body) = data.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if len < 10 || crc32fast::hash(body) != crc {
            break;
        }
        let seq = u64::from_le_bytes(body[0..8].try_into().unwrap());
        let tlen = u16::from_le_bytes(body[8..10].try_into().unwrap()) as usize;
        let Some(topic) = body.get(10..10 + tlen) else {
            break;
        };
        out.push(Record {
            seq,
            topic_suffix: String::from_utf8_lossy(topic).into_owned(),
            payload: body[10 + tlen..].to_vec(),
            catch_up: true,
        });
        pos += 8 + len;
    }
    Ok((out, pos as u64))
}

/// A record as stored: `[u32 length][u32 crc32 of body][body]`, body =
/// `[u64 seq][u16 topic length][topic][payload]`, little-endian.
fn encode_record(r: &Record) -> Vec<u8> {
    let mut body = Vec::with_capacity(r.encoded_len() as usize);
    body.extend_from_slice(&r.seq.to_le_bytes());
    body.extend_from_slice(&(r.topic_suffix.len() as u16).to_le_bytes());
    body.extend_from_slice(r.topic_suffix.as_bytes());
    body.extend_from_slice(&r.payload);
    let mut buf = Vec::with_capacity(body.len() + 8);
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    buf.extend_from_slice(&body);
    buf
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
