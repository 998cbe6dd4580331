//! Reading the outbox back at open, and repairing what is found damaged, without ever deleting an
//! undelivered event:
//!
//! - A record that fails its checks is skipped by scanning forward for the next record whose
//!   length and checksum validate and whose seq is plausible (resynchronisation): a flipped byte
//!   costs the record it hit, not every record after it.
//! - A damaged segment is kept as it was in `quarantine/` (0700, files 0600) and replaced by a
//!   copy of its intact records, so the damage is counted once and nothing is deleted. A torn tail
//!   of the newest segment (a power cut mid-append: the append never returned, so no one was told
//!   the event was stored) is cut off as before, its bytes kept in `quarantine/` too.
//! - Seqs are checked for continuity from the cursor to the highest seq handed out: every missing
//!   undelivered seq is counted and logged with its range, as `damaged` when the segment whose
//!   range holds it is damaged, as `skipped` when no segment file holds it (a file gone). The
//!   ranges are recorded in the cursor, so the next open does not count them again.
//! - A cursor beyond everything the segments hold (it claims events were delivered that were never
//!   stored) is not trusted for delivery: every event on disk is sent again (duplicates are
//!   allowed, losses are not). Its values still raise the sequence, so no seq repeats.

use super::cursor::Cursor;
use super::record::{encode_record, segment_first_seq, sync_dir, Record};
use anyhow::{Context, Result};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Record header: `[u32 length][u32 crc32 of body]`.
const HEADER: usize = 8;
/// The shortest body: `[u64 seq][u16 topic length]`.
const MIN_BODY: usize = 10;
/// The fewest bytes a record takes, which bounds how many records damaged bytes can have held.
const MIN_RECORD: u64 = (HEADER + MIN_BODY) as u64;
/// Subfolder of the outbox where damaged files are kept as they were found.
pub const QUARANTINE: &str = "quarantine";

/// A segment kept after recovery, with its intact records.
pub(super) struct KeptSegment {
    pub path: PathBuf,
    pub bytes: u64,
    /// The last record's seq, or the seq below the one in its name when it has none.
    pub last_seq: u64,
    pub records: Vec<Record>,
}

/// What [`recover`] found.
pub(super) struct Recovered {
    /// Oldest first.
    pub segments: Vec<KeptSegment>,
    /// The last of `segments` is the newest segment on disk: appends go on in it.
    pub newest_kept: bool,
    /// Every seq up to this one is delivered (the cursor's, unless it was not trusted).
    pub acked: u64,
    /// The highest seq ever handed out, as far as any file tells.
    pub last_seq: u64,
    /// Undelivered events newly found lost to damaged segments.
    pub damaged: u64,
    /// Undelivered events newly found missing: no segment file holds them.
    pub skipped: u64,
    /// Seq ranges above `acked` accounted for: the cursor's, the ones newly found lost, and what
    /// a cursor that was not trusted claimed beyond the segments.
    pub lost: Vec<(u64, u64)>,
}

/// One segment file as read.
struct Scanned {
    path: PathBuf,
    /// The first seq, from the file's name.
    first: u64,
    records: Vec<Record>,
    /// Byte ranges that are not records, with intact records after them.
    damaged: Vec<Range<usize>>,
    /// Bytes at the end that are not records and have none after them.
    tail: Option<Range<usize>>,
    /// Bytes the intact records take.
    intact_bytes: u64,
    /// Why the file could not be read at all.
    unreadable: Option<String>,
}

impl Scanned {
    /// The highest seq this segment shows was handed out: its last record's, or the one below its
    /// name's (an empty segment is created for the next seq).
    fn high(&self) -> u64 {
        let below_first = self.first.saturating_sub(1);
        self.records
            .last()
            .map_or(below_first, |r| r.seq.max(below_first))
    }

    fn is_damaged(&self) -> bool {
        self.unreadable.is_some() || !self.damaged.is_empty() || self.tail.is_some()
    }
}

/// Reads every segment in `dir`, repairs what is damaged and accounts for every undelivered seq.
pub(super) fn recover(dir: &Path, cursor: &Cursor) -> Result<Recovered> {
    let segs: Vec<Scanned> = list_segments(dir)?
        .into_iter()
        .map(|(path, first)| scan_segment(path, first))
        .collect();
    let log_high = segs.iter().map(Scanned::high).max().unwrap_or(0);
    let lowest = segs
        .iter()
        .filter_map(|s| s.records.first())
        .map(|r| r.seq)
        .min();
    // Seqs the cursor claims that no segment backs: no loss to count, but a later open must not
    // take them for one when stored events lie on both sides of them.
    let mut unbacked = None;
    let (acked, high) = match lowest {
        Some(lowest) if cursor.acked > log_high => {
            unbacked = Some((log_high + 1, cursor.acked.max(cursor.last)));
            tracing::error!(
                cursor_acked = cursor.acked,
                log_last_seq = log_high,
                "outbox: the cursor says every event up to seq {} was delivered, but the segments end at seq {log_high}: the cursor is not trusted, the events on disk (from seq {lowest}) are sent again (duplicates possible) and seq continues above {}",
                cursor.acked,
                cursor.acked.max(cursor.last)
            );
            (lowest - 1, log_high)
        }
        _ => (cursor.acked, log_high.max(cursor.last)),
    };
    let known: Vec<(u64, u64)> = cursor
        .lost
        .iter()
        .copied()
        .filter(|(_, last)| *last > acked)
        .collect();
    let mut loss = Loss::default();
    for (a, b) in missing(&segs, &known, acked, high) {
        attribute(&segs, a, b, &mut loss);
    }
    let (segments, newest_kept) = keep(dir, segs, acked)?;
    let mut lost = known;
    lost.extend(loss.ranges);
    lost.extend(unbacked);
    lost.sort_unstable();
    Ok(Recovered {
        segments,
        newest_kept,
        acked,
        last_seq: log_high.max(cursor.last).max(cursor.acked),
        damaged: loss.damaged,
        skipped: loss.skipped,
        lost,
    })
}

/// The segment files of `dir` and the first seq their names give, in seq order. A leftover of an
/// interrupted repair (`seg-….log.tmp`, whose original is still in place) is removed.
fn list_segments(dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let mut segs = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.starts_with("seg-") {
            continue;
        }
        if name.ends_with(".log.tmp") {
            let _ = std::fs::remove_file(&path);
        } else if let Some(first) = segment_first_seq(&path) {
            segs.push((path, first));
        } else if name.ends_with(".log") {
            tracing::warn!(file = %path.display(), "outbox: not a segment name gatewatch writes; ignored");
        }
    }
    segs.sort_by_key(|(_, first)| *first);
    Ok(segs)
}

fn scan_segment(path: PathBuf, first: u64) -> Scanned {
    let mut scanned = Scanned {
        path,
        first,
        records: Vec::new(),
        damaged: Vec::new(),
        tail: None,
        intact_bytes: 0,
        unreadable: None,
    };
    match std::fs::read(&scanned.path) {
        Ok(data) => scan(&data, &mut scanned),
        Err(e) => scanned.unreadable = Some(e.to_string()),
    }
    scanned
}

/// Splits a segment's bytes into intact records and damaged ranges.
fn scan(data: &[u8], out: &mut Scanned) {
    let mut prev = out.first.saturating_sub(1);
    let mut pos = 0;
    while pos < data.len() {
        // Between intact records any higher seq is taken: segments of older versions may jump.
        if let Some((r, len)) = parse_at(data, pos, prev + 1, u64::MAX) {
            prev = r.seq;
            out.records.push(r);
            out.intact_bytes += len as u64;
            pos += len;
            continue;
        }
        match resync(data, pos, prev) {
            Some(next) => {
                out.damaged.push(pos..next);
                pos = next;
            }
            None => {
                out.tail = Some(pos..data.len());
                break;
            }
        }
    }
}

/// The offset of the first record after damage found at `from`. Its seq must follow `prev` by at
/// most the records the skipped bytes could have held (a segment's records are consecutive), which
/// together with the length and checksum makes a false match out of stray bytes negligible.
fn resync(data: &[u8], from: usize, prev: u64) -> Option<usize> {
    (from + 1..data.len()).find(|&at| {
        let most = prev + 1 + (at - from) as u64 / MIN_RECORD;
        parse_at(data, at, prev + 1, most).is_some()
    })
}

/// The record at `pos` and its length, if its length and checksum validate and its seq is in
/// `lo..=hi` (checked before the checksum, which makes scanning damaged bytes cheap).
fn parse_at(data: &[u8], pos: usize, lo: u64, hi: u64) -> Option<(Record, usize)> {
    let header = data.get(pos..pos + HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
    if len < MIN_BODY {
        return None;
    }
    let body = data.get(pos + HEADER..pos + HEADER + len)?;
    let seq = u64::from_le_bytes(body[0..8].try_into().unwrap());
    if !(lo..=hi).contains(&seq) || crc32fast::hash(body) != crc {
        return None;
    }
    let tlen = u16::from_le_bytes(body[8..10].try_into().unwrap()) as usize;
    let topic = body.get(MIN_BODY..MIN_BODY + tlen)?;
    let record = Record {
        seq,
        topic_suffix: String::from_utf8_lossy(topic).into_owned(),
        payload: body[MIN_BODY + tlen..].to_vec(),
        catch_up: true,
    };
    Some((record, HEADER + len))
}

/// The ranges of seqs above `acked` and up to `high` that neither an intact record holds nor
/// `known` (lost ranges already counted).
fn missing(segs: &[Scanned], known: &[(u64, u64)], acked: u64, high: u64) -> Vec<(u64, u64)> {
    let mut held: Vec<(u64, u64)> = segs
        .iter()
        .flat_map(|s| &s.records)
        .map(|r| (r.seq, r.seq))
        .chain(known.iter().copied())
        .chain(std::iter::once((high + 1, high + 1)))
        .collect();
    held.sort_unstable();
    let mut gaps = Vec::new();
    // The lowest seq not yet accounted for.
    let mut next = acked + 1;
    for (first, last) in held {
        if first > next {
            gaps.push((next, first - 1));
        }
        next = next.max(last + 1);
    }
    gaps
}

/// Missing seqs found at open.
#[derive(Default)]
struct Loss {
    damaged: u64,
    skipped: u64,
    ranges: Vec<(u64, u64)>,
}

/// Logs and counts the missing seqs `a..=b`, split by the segment whose range holds them (the seqs
/// from its name up to the next segment's name).
fn attribute(segs: &[Scanned], mut a: u64, b: u64, loss: &mut Loss) {
    let name = |s: Option<&Scanned>| s.map_or("none".to_owned(), |s| s.path.display().to_string());
    while a <= b {
        let holder = segs.iter().rposition(|s| s.first <= a);
        let next = segs.get(holder.map_or(0, |i| i + 1));
        let last = b.min(next.map_or(u64::MAX, |n| n.first.saturating_sub(1)));
        let n = last - a + 1;
        match holder.map(|i| &segs[i]) {
            Some(s) if s.is_damaged() => {
                loss.damaged += n;
                tracing::error!(segment = %s.path.display(), first_seq = a, last_seq = last, events = n,
                    "outbox: {n} undelivered events (seq {a}-{last}) lost: segment {} is damaged (the file as found is kept in {QUARANTINE}/)", s.path.display());
            }
            holder => {
                loss.skipped += n;
                tracing::error!(first_seq = a, last_seq = last, events = n, after = %name(holder), before = %name(next),
                    "outbox: {n} undelivered events (seq {a}-{last}) skipped: no segment file holds them (between {} and {})", name(holder), name(next));
            }
        }
        loss.ranges.push((a, last));
        a = last + 1;
    }
}

/// Deletes the delivered segments (except the newest), quarantines unreadable ones and repairs
/// damaged ones; returns the segments kept and whether the newest is among them.
fn keep(dir: &Path, segs: Vec<Scanned>, acked: u64) -> Result<(Vec<KeptSegment>, bool)> {
    let firsts: Vec<u64> = segs.iter().map(|s| s.first).collect();
    let count = segs.len();
    let mut kept = Vec::new();
    let mut newest_kept = false;
    for (i, s) in segs.into_iter().enumerate() {
        let newest = i + 1 == count;
        if let Some(e) = &s.unreadable {
            // Its content is unknown: kept aside, whatever the cursor says.
            let to = quarantine_move(dir, &s.path)?;
            tracing::error!(segment = %s.path.display(), error = %e, "outbox: unreadable segment moved to {}", to.display());
            continue;
        }
        // The newest stays, delivered or empty: it keeps the sequence's high-water mark should the
        // cursor be lost, and new records are appended to it.
        let range_end = firsts.get(i + 1).map_or(u64::MAX, |n| n.saturating_sub(1));
        if !newest && s.high().max(range_end) <= acked {
            std::fs::remove_file(&s.path)
                .with_context(|| format!("remove {}", s.path.display()))?;
            continue;
        }
        let bytes = repair(dir, &s, newest);
        newest_kept |= newest;
        kept.push(KeptSegment {
            last_seq: s.high(),
            path: s.path,
            bytes,
            records: s.records,
        });
    }
    Ok((kept, newest_kept))
}

/// Makes a damaged segment hold only its intact records; returns its length afterwards. A failed
/// repair is logged and leaves the file as it was: it is read (and repaired) again at the next
/// open, and the records are served from memory meanwhile.
fn repair(dir: &Path, s: &Scanned, newest: bool) -> u64 {
    let file_len = s.intact_bytes
        + s.damaged.iter().map(|r| r.len() as u64).sum::<u64>()
        + s.tail.as_ref().map_or(0, |r| r.len() as u64);
    let done = match (&s.tail, s.damaged.is_empty()) {
        (None, true) => return file_len,
        (Some(tail), true) if newest => cut_tail(dir, &s.path, tail),
        _ => rewrite(dir, s),
    };
    match done {
        Ok(()) => s.intact_bytes,
        Err(e) => {
            tracing::error!(segment = %s.path.display(), error = %format!("{e:#}"), "outbox: cannot repair a damaged segment; it is read again at the next start");
            file_len
        }
    }
}

/// Cuts the torn tail off the newest segment, keeping its bytes in quarantine.
fn cut_tail(dir: &Path, path: &Path, tail: &Range<usize>) -> Result<()> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut bytes = Vec::with_capacity(tail.len());
    f.seek(SeekFrom::Start(tail.start as u64))?;
    f.read_to_end(&mut bytes)?;
    let name = format!("{}.tail-at-{}", file_name(path), tail.start);
    let kept = quarantine_save(dir, &name, &bytes)?;
    f.set_len(tail.start as u64)?;
    f.sync_all()?;
    tracing::warn!(segment = %path.display(), bytes = bytes.len(), kept = %kept.display(), "outbox: torn record at the end (power cut mid-append?) cut off; its bytes are kept in {}", kept.display());
    Ok(())
}

/// Keeps the damaged file as it was in quarantine and puts a copy of its intact records in its
/// place. The original is linked into quarantine (and that made durable) before the copy replaces
/// it atomically, so a crash at any point leaves either file whole.
fn rewrite(dir: &Path, s: &Scanned) -> Result<()> {
    let kept = quarantine_link(dir, &s.path)?;
    let tmp = PathBuf::from(format!("{}.tmp", s.path.display()));
    let mut f = crate::state_dir::create_private_file(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    for r in &s.records {
        f.write_all(&encode_record(r))?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, &s.path)
        .with_context(|| format!("cannot replace {}", s.path.display()))?;
    sync_dir(dir)?;
    let ranges: Vec<String> = s
        .damaged
        .iter()
        .chain(&s.tail)
        .map(|r| format!("{}..{}", r.start, r.end))
        .collect();
    tracing::warn!(segment = %s.path.display(), damaged_bytes = %ranges.join(","), intact_records = s.records.len(), kept = %kept.display(),
        "outbox: damaged segment repaired: its {} intact records kept, the file as found moved to {}", s.records.len(), kept.display());
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// The quarantine folder (created 0700) and a name in it not yet taken.
fn quarantine_slot(dir: &Path, name: &str) -> Result<PathBuf> {
    let q = dir.join(QUARANTINE);
    crate::state_dir::create_private_dir(&q)
        .and_then(|()| crate::state_dir::make_private(&q))
        .with_context(|| format!("cannot create {}", q.display()))?;
    let mut to = q.join(name);
    let mut n = 1;
    while to.exists() {
        to = q.join(format!("{name}.{n}"));
        n += 1;
    }
    Ok(to)
}

/// A second name for `path` in quarantine (a copy where links are not possible), made durable.
fn quarantine_link(dir: &Path, path: &Path) -> Result<PathBuf> {
    let to = quarantine_slot(dir, &file_name(path))?;
    if std::fs::hard_link(path, &to).is_err() {
        std::fs::copy(path, &to)
            .with_context(|| format!("cannot copy {} to {}", path.display(), to.display()))?;
    }
    finish_quarantined(dir, &to)?;
    Ok(to)
}

fn quarantine_move(dir: &Path, path: &Path) -> Result<PathBuf> {
    let to = quarantine_slot(dir, &file_name(path))?;
    std::fs::rename(path, &to)
        .with_context(|| format!("cannot move {} to {}", path.display(), to.display()))?;
    finish_quarantined(dir, &to)?;
    Ok(to)
}

fn quarantine_save(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let to = quarantine_slot(dir, name)?;
    let mut f = crate::state_dir::create_private_file(&to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    finish_quarantined(dir, &to)?;
    Ok(to)
}

/// Events hold personal data: a quarantined file is 0600 like the rest of the outbox, and its new
/// name is synced before anything relies on it.
fn finish_quarantined(dir: &Path, to: &Path) -> Result<()> {
    let mode = std::fs::Permissions::from_mode(crate::state_dir::FILE_MODE);
    std::fs::set_permissions(to, mode)
        .with_context(|| format!("cannot make {} private", to.display()))?;
    sync_dir(&dir.join(QUARANTINE))?;
    sync_dir(dir)?;
    Ok(())
}

#[cfg(test)]
#[path = "recover_tests.rs"]
mod tests;
