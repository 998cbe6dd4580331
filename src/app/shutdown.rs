//! One shutdown signal for the whole box, usable from threads (a flag they poll between frames)
//! and from tasks (a future they await). Whoever sees the reason to stop first — a signal, the
//! last camera ending, a valid `reload_config`, the end of a bench — requests it; its reason is
//! kept for the log, later requests change nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A cloneable handle on the signal.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Shared with components that only poll (camera and pipeline threads take an
    /// `Arc<AtomicBool>`, so they do not depend on this module).
    flag: Arc<AtomicBool>,
    reason: Mutex<Option<String>>,
    notify: tokio::sync::Notify,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks everything to stop. The first reason is the one reported.
    pub fn request(&self, reason: impl Into<String>) {
        {
            let mut r = self.inner.reason.lock().expect("shutdown reason lock");
            if r.is_none() {
                *r = Some(reason.into());
            }
        }
        self.inner.flag.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Whether a stop was requested (for threads, between units of work).
    pub fn is_requested(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// The flag itself, for components that poll it.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.inner.flag.clone()
    }

    /// Waits until a stop is requested and returns its reason (for tasks).
    pub async fn requested(&self) -> String {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a request between the two is not missed.
            notified.as_mut().enable();
            if self.is_requested() {
                return self.reason().unwrap_or_default();
            }
            notified.await;
        }
    }

    /// Why the stop was requested, once it was.
    pub fn reason(&self) -> Option<String> {
        self.inner
            .reason
            .lock()
            .expect("shutdown reason lock")
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_from_a_thread_wakes_a_waiting_task_with_the_first_reason() {
        let s = Shutdown::new();
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.requested().await }
        });
        let flag = s.flag();
        assert!(!flag.load(Ordering::SeqCst));
        let t = std::thread::spawn({
            let s = s.clone();
            move || {
                s.request("all cameras ended");
                s.request("terminated");
            }
        });
        t.join().unwrap();
        assert_eq!(waiter.await.unwrap(), "all cameras ended");
        assert!(flag.load(Ordering::SeqCst) && s.is_requested());
        // Awaited after the request: returns at once.
        assert_eq!(s.requested().await, "all cameras ended");
    }
}
