//! The runtime assembly of a box: the plate models, the outbox and its delivery, the event
//! factory, the yards, the face gallery and the lanes, started in that order and stopped through one
//! [`Shutdown`]. `run` adds the broker link and hub commands around it; `bench pipeline` runs it
//! for a fixed time without a broker. Neither repeats the assembly.
//!
//! It takes resolved options ([`AppOptions`], built by `config::resolve`), never the configuration
//! itself.

pub mod lanes;
pub mod service;
pub mod shutdown;
pub mod status;

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::delivery::{Delivery, Outbox, OutboxOptions, StatusFn};
use crate::event::EventFactory;
use crate::face::service::{FaceModels, FaceService};
use crate::pipeline::StageTimes;
use crate::yard::config::YardConfig;
use crate::yard::service::YardService;
use lanes::{LaneDeps, LaneOptions, Lanes, ReaderSetOptions};
pub use shutdown::Shutdown;
use status::StatusSources;

/// Everything the assembly needs, resolved.
pub struct AppOptions {
    pub site: String,
    pub device: String,
    /// Holds the yards' state files.
    pub state_dir: PathBuf,
    pub outbox: OutboxOptions,
    pub yards: Vec<YardConfig>,
    pub readers: ReaderSetOptions,
    /// The face models (loaded per face-scanning camera, and for enrolment from images).
    pub faces: FaceModels,
    pub lanes: Vec<LaneOptions>,
    /// Per-stage latencies are recorded when set (benchmarks).
    pub timings: Option<Arc<StageTimes>>,
}

/// A started box.
pub struct App {
    pub delivery: Arc<Delivery>,
    pub events: Arc<EventFactory>,
    pub yards: Arc<YardService>,
    /// The face gallery (`<state_dir>/faces`), opened whether or not a camera recognises faces,
    /// so the hub can enrol before the first camera is switched on.
    pub faces: Arc<FaceService>,
    pub lanes: Lanes,
    pub shutdown: Shutdown,
    /// Copies of the plate model set loaded.
    pub model_copies: usize,
    status: Arc<StatusSources>,
    yard_timer: Option<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Loads the models (first: a missing model fails before anything else is touched), opens the
    /// outbox and the yards, and starts the lanes.
    pub fn start(opts: AppOptions) -> Result<App> {
        Self::start_with(opts, || {})
    }

    /// [`start`](Self::start), calling `lanes_starting` just before the lanes start (a bench
    /// starts its clock there, after the models have loaded).
    pub fn start_with(opts: AppOptions, lanes_starting: impl FnOnce()) -> Result<App> {
        let readers = lanes::load_readers(&opts.readers, opts.lanes.len())?;
        tracing::info!(set = opts.readers.set.as_str(), dir = %opts.readers.model_dir.display(), copies = readers.len(), "models loaded");
        let outbox = Outbox::open(opts.outbox.clone())
            .with_context(|| format!("cannot open the outbox in {}", opts.outbox.dir.display()))?;
        tracing::info!(
            last_seq = outbox.last_seq(),
            undelivered = outbox.recovered(),
            dir = %opts.outbox.dir.display(),
            "outbox opened; undelivered events are sent first"
        );
        let delivery = Delivery::new(outbox);
        let events = Arc::new(EventFactory::new(opts.site, opts.device, delivery.clone()));
        let yards = YardService::open(
            &opts.yards,
            &opts.state_dir,
            events.clone(),
            delivery.clone(),
        )
        .context("cannot open the yard state")?;
        let faces = FaceService::open(&opts.state_dir, opts.faces.clone())
            .context("cannot open the face gallery")?;
        let shutdown = Shutdown::new();
        let model_copies = readers.len();
        lanes_starting();
        let lanes = Lanes::start(
            &opts.lanes,
            &LaneDeps {
                readers,
                events: events.clone(),
                yards: yards.clone(),
                faces: faces.clone(),
                face_models: opts.faces.clone(),
                shutdown: shutdown.clone(),
                timings: opts.timings,
            },
        )?;
        let status = Arc::new(StatusSources::new(
            &lanes,
            delivery.clone(),
            events.clone(),
            yards.clone(),
            faces.clone(),
        ));
        Ok(App {
            delivery,
            events,
            yards,
            faces,
            lanes,
            shutdown,
            model_copies,
            status,
            yard_timer: None,
        })
    }

    /// Builds the status document on demand.
    pub fn status(&self) -> StatusFn {
        let status = self.status.clone();
        Arc::new(move || status.document())
    }

    /// The latest frame of each camera, for snapshots.
    pub fn latest_frames(&self) -> BTreeMap<String, Arc<Mutex<Option<opencv::core::Mat>>>> {
        self.lanes
            .iter()
            .map(|(id, lane)| (id.clone(), lane.latest.clone()))
            .collect()
    }

    /// Starts the yards' minute timer (overstays). Call inside a Tokio runtime.
    pub fn start_yard_timer(&mut self) {
        let yards = self.yards.clone();
        self.yard_timer = Some(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                let yards = yards.clone();
                let _ = tokio::task::spawn_blocking(move || yards.tick(chrono::Utc::now())).await;
            }
        }));
    }

    /// Stops the timer and the lanes (open tracks are flushed into the outbox). Requests the
    /// shutdown if nobody has yet. Delivery stays up: the caller drains it.
    pub fn stop_lanes(&mut self) {
        self.shutdown.request("stopping");
        if let Some(t) = self.yard_timer.take() {
            t.abort();
        }
        self.lanes.stop();
    }
}
