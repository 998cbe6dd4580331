//! The box as a systemd service (`Type=notify`, `WatchdogSec=`): `READY=1` once the app is
//! started, a `STATUS=` line with a short summary, and watchdog pings that are driven by progress.
//! Every few seconds (half the watchdog interval) the watch task reads the heartbeat of each
//! camera's pipeline and of the delivery forwarder ([`crate::heartbeat`]); it pings only when all
//! of them advanced since its last look. A stuck pipeline or forwarder stops the pings and systemd
//! restarts the service; an offline camera does not (its pipeline keeps waking on its empty slot).
//! Outside systemd all of this does nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{App, Shutdown};
use crate::delivery::Delivery;
use crate::heartbeat;
use crate::source::camera::CameraHealth;
use crate::systemd::{self, Notifier};

/// How often the summary is refreshed when no watchdog is asked for.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// A named progress counter: `None` once its loop has ended on purpose.
type Probe = (String, Arc<dyn Fn() -> Option<u64> + Send + Sync>);

/// What the summary and the watchdog read, taken from a started [`App`].
pub struct Watched {
    probes: Vec<Probe>,
    cameras: Vec<Arc<CameraHealth>>,
    delivery: Arc<Delivery>,
}

impl Watched {
    pub fn of(app: &App) -> Watched {
        let mut probes: Vec<Probe> = app
            .lanes
            .iter()
            .map(|(id, lane)| {
                let stats = lane.stats.clone();
                let read: Arc<dyn Fn() -> Option<u64> + Send + Sync> =
                    Arc::new(move || stats.heartbeat.read());
                (format!("pipeline {id}"), read)
            })
            .collect();
        let link = app.delivery.link_stats();
        probes.push((
            "delivery forwarder".to_owned(),
            Arc::new(move || link.heartbeat.read()),
        ));
        Watched {
            probes,
            cameras: app.lanes.iter().map(|(_, l)| l.health.clone()).collect(),
            delivery: app.delivery.clone(),
        }
    }

    fn beats(&self) -> Vec<Option<u64>> {
        self.probes.iter().map(|(_, read)| read()).collect()
    }

    /// One line for `systemctl status`: cameras up, outbox depth, broker.
    pub fn summary(&self) -> String {
        let up = self
            .cameras
            .iter()
            .filter(|h| h.up.load(Ordering::Relaxed))
            .count();
        let depth = self.delivery.outbox_stats().depth.load(Ordering::Relaxed);
        let broker = if self.delivery.link_stats().connected.load(Ordering::Relaxed) {
            "connected"
        } else {
            "unreachable"
        };
        format!(
            "cameras up {up}/{}, outbox depth {depth}, broker {broker}",
            self.cameras.len()
        )
    }
}

/// The service manager, as the environment describes it.
pub struct Service {
    notifier: Option<Arc<Notifier>>,
    watchdog: Option<Duration>,
}

impl Service {
    /// From `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`.
    pub fn from_env() -> Service {
        let notifier = Notifier::from_env().map(Arc::new);
        let watchdog = notifier.as_ref().and(systemd::watchdog_interval());
        if let Some(w) = watchdog {
            tracing::info!(
                watchdog_s = w.as_secs_f64(),
                "systemd watchdog on: pinged while every pipeline and the delivery make progress"
            );
        }
        Service { notifier, watchdog }
    }

    fn send(&self, state: &str) {
        if let Some(n) = &self.notifier {
            n.notify(state);
        }
    }

    /// The box serves: models loaded, outbox open, cameras started.
    pub fn ready(&self, watched: &Watched) {
        self.send(&format!(
            "READY=1\nSTATUS={}",
            systemd::one_line(&watched.summary())
        ));
    }

    /// The box begins a stop of its own (or one it was asked for): no more watchdog pings.
    pub fn stopping(&self, reason: &str) {
        self.send(&format!(
            "STOPPING=1\nSTATUS=stopping: {}",
            systemd::one_line(reason)
        ));
    }

    /// Starts the watch task (inside a Tokio runtime); it ends when a stop is requested.
    pub fn spawn_watch(
        &self,
        watched: Watched,
        shutdown: Shutdown,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let notifier = self.notifier.clone()?;
        let watchdog = self.watchdog;
        let every = watchdog.map_or(STATUS_EVERY, |w| w / 2);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut before = watched.beats();
            let mut reported: Vec<usize> = Vec::new();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.requested() => return,
                }
                let now = watched.beats();
                let stalled = heartbeat::stalled(&before, &now);
                before = now;
                let summary = watched.summary();
                if stalled.is_empty() {
                    if !reported.is_empty() {
                        tracing::info!("every pipeline and the delivery make progress again");
                        reported.clear();
                    }
                    let ping = if watchdog.is_some() {
                        "WATCHDOG=1\n"
                    } else {
                        ""
                    };
                    notifier.notify(&format!("{ping}STATUS={}", systemd::one_line(&summary)));
                    continue;
                }
                let names: Vec<&str> = stalled
                    .iter()
                    .filter_map(|&i| watched.probes.get(i).map(|(n, _)| n.as_str()))
                    .collect();
                if stalled != reported {
                    tracing::error!(stalled = ?names, waited_s = every.as_secs_f64(), "no progress: watchdog pings withheld (systemd restarts the service if this lasts)");
                    reported = stalled;
                }
                notifier.notify(&format!(
                    "STATUS={}",
                    systemd::one_line(&format!("{summary}; no progress: {}", names.join(", ")))
                ));
            }
        }))
    }
}
