//! The cursor file accounts for seqs: one line
//! `acked dropped last damaged skipped [first-last ...]`.
//!
//! - every seq up to `acked` is delivered or dropped;
//! - `dropped`, `damaged`, `skipped`: events lost to the size limit, to damaged files, to missing
//!   files, ever;
//! - `last`: the highest seq handed out when it was written;
//! - `first-last` ranges: seqs above `acked` already accounted for, so that a later open does not
//!   count them as lost again: found lost (damaged or skipped) and counted, or claimed by a cursor
//!   that no segment backed (see `recover.rs`). A range goes once `acked` passes it.
//!
//! Older versions wrote `acked dropped` or `acked dropped last` and read only those three fields,
//! so they can still read this one.

use anyhow::{bail, Context, Result};
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Cursor {
    pub acked: u64,
    pub dropped: u64,
    pub last: u64,
    pub damaged: u64,
    pub skipped: u64,
    /// Seq ranges above `acked` already accounted for, inclusive, in order.
    pub lost: Vec<(u64, u64)>,
}

impl Cursor {
    /// Reads the cursor at `path`; none gives zeros.
    pub fn read(path: &Path) -> Result<Cursor> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cursor::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        match Cursor::parse(&text) {
            Some(c) => Ok(c),
            None => bail!("outbox cursor {} is corrupt ({text:?})", path.display()),
        }
    }

    fn parse(text: &str) -> Option<Cursor> {
        let mut numbers = Vec::new();
        let mut lost = Vec::new();
        for field in text.split_whitespace() {
            match field.split_once('-') {
                None if lost.is_empty() && numbers.len() < 5 => numbers.push(field.parse().ok()?),
                Some((a, b)) if numbers.len() == 5 => lost.push((a.parse().ok()?, b.parse().ok()?)),
                _ => return None,
            }
        }
        let n = |i: usize| numbers.get(i).copied();
        let acked = n(0)?;
        Some(Cursor {
            acked,
            dropped: n(1)?,
            last: n(2).unwrap_or(acked).max(acked),
            damaged: n(3).unwrap_or(0),
            skipped: n(4).unwrap_or(0),
            lost,
        })
    }

    /// The line written to the file.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} {} {} {} {}",
            self.acked, self.dropped, self.last, self.damaged, self.skipped
        );
        for (a, b) in &self.lost {
            line.push_str(&format!(" {a}-{b}"));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_cursors_read_and_the_line_reads_back() {
        let c = Cursor::parse("7 2\n").unwrap();
        assert_eq!((c.acked, c.dropped, c.last, c.damaged), (7, 2, 7, 0));
        assert_eq!(Cursor::parse("7 2 9").unwrap().last, 9);
        let c = Cursor {
            acked: 7,
            dropped: 2,
            last: 90,
            damaged: 3,
            skipped: 5,
            lost: vec![(10, 12), (40, 44)],
        };
        assert_eq!(c.line(), "7 2 90 3 5 10-12 40-44");
        assert_eq!(Cursor::parse(&c.line()), Some(c));
        for bad in ["", "x 1", "1", "1 2 3 4 5 6", "1 2 3 4-5", "1 2 3 4 5 6-x"] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }
}
