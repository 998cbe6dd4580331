//! The outbox's on-disk units: a stored event and its encoding, and segment naming. A leaf, so
//! that the outbox and its recovery both build on it without depending on each other.

use std::fs::File;
use std::path::Path;

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
    pub(super) fn encoded_len(&self) -> u64 {
        (8 + 8 + 2 + self.topic_suffix.len() + self.payload.len()) as u64
    }
}

/// The first seq in a segment's name `seg-<seq>.log`.
pub(super) fn segment_first_seq(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("seg-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// A record as stored: `[u32 length][u32 crc32 of body][body]`, body =
/// `[u64 seq][u16 topic length][topic][payload]`, little-endian.
pub(super) fn encode_record(r: &Record) -> Vec<u8> {
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

pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
