//! Progress counters for the service watchdog. Every loop that must keep moving (a camera's plate
//! pipeline, the delivery forwarder) bumps its [`Heartbeat`] once per iteration, idle iterations
//! included (a pipeline wakes every 500 ms when its camera sends nothing, the forwarder too), so
//! the watchdog interval must be several times that: the unit sets `WatchdogSec=30`, the look is
//! every 15 s. The watchdog task (`app::watchdog`) pings systemd only when every heartbeat has
//! advanced since its last look ([`all_advanced`]): a loop stuck in a deadlock or a hung inference
//! stops the pings, and systemd restarts the service. A camera that is merely offline does not:
//! its pipeline keeps waking on its empty frame slot.

use std::sync::atomic::{AtomicU64, Ordering};

/// The value that marks a loop that has ended on purpose (its camera stopped at the end of a
/// recording): it no longer counts.
const ENDED: u64 = u64::MAX;

/// One loop's progress counter.
#[derive(Debug, Default)]
pub struct Heartbeat(AtomicU64);

impl Heartbeat {
    /// One more iteration.
    pub fn beat(&self) {
        // Never reaches ENDED by counting (2^64 iterations).
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n != ENDED).then_some(n + 1)
            });
    }

    /// The loop ended on purpose; the watchdog stops watching it.
    pub fn end(&self) {
        self.0.store(ENDED, Ordering::Relaxed);
    }

    /// The count so far, or `None` once the loop has ended.
    pub fn read(&self) -> Option<u64> {
        let n = self.0.load(Ordering::Relaxed);
        (n != ENDED).then_some(n)
    }
}

/// Whether every loop made progress between two looks: each count read `now` differs from the
/// one read `before` (same order, same loops), or the loop has ended. With no loop at all, there
/// is nothing stuck.
pub fn all_advanced(before: &[Option<u64>], now: &[Option<u64>]) -> bool {
    stalled(before, now).is_empty()
}

/// The indices of the loops that made no progress between two looks (see [`all_advanced`]). A
/// loop missing from either look counts as stalled: the caller must compare like with like.
pub fn stalled(before: &[Option<u64>], now: &[Option<u64>]) -> Vec<usize> {
    (0..before.len().max(now.len()))
        .filter(|&i| match (before.get(i), now.get(i)) {
            (_, Some(None)) => false,
            (Some(Some(a)), Some(Some(b))) => a == b,
            // A loop cannot come back from having ended, nor appear or vanish.
            _ => true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_loop_must_advance_for_a_ping() {
        assert!(all_advanced(&[Some(1), Some(7)], &[Some(2), Some(9)]));
        assert!(!all_advanced(&[Some(1), Some(7)], &[Some(2), Some(7)]));
        assert_eq!(
            stalled(&[Some(1), Some(7)], &[Some(1), Some(7)]),
            vec![0, 1]
        );
    }

    #[test]
    fn an_ended_loop_no_longer_counts_and_nothing_to_watch_is_fine() {
        assert!(all_advanced(&[Some(3), Some(7)], &[None, Some(8)]));
        assert!(all_advanced(&[None], &[None]));
        assert!(all_advanced(&[], &[]));
    }

    #[test]
    fn looks_that_do_not_match_count_as_stalled() {
        assert!(!all_advanced(&[Some(1)], &[Some(2), Some(3)]));
        assert!(!all_advanced(&[None], &[Some(3)]));
    }

    #[test]
    fn a_heartbeat_counts_until_it_ends() {
        let h = Heartbeat::default();
        assert_eq!(h.read(), Some(0));
        h.beat();
        h.beat();
        assert_eq!(h.read(), Some(2));
        h.end();
        h.beat();
        assert_eq!(h.read(), None);
    }
}
