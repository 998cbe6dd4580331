//! `gatewatch bench`: measurements that need the whole product running.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::delivery::{Delivery, MqttLink, Outbox, StatusFn};
use crate::event::{format_ts, EventFactory, EventKind, Origin, PlateEvent};

/// `gatewatch bench …`
#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// Push synthetic plate events through the outbox and the broker link (the path `run` uses),
    /// wait until they are delivered, and print one JSON line of figures.
    Delivery {
        #[arg(long, short)]
        config: PathBuf,
        /// Number of events.
        #[arg(long, default_value_t = 1000)]
        events: u64,
        /// Events per second; 0 = as fast as possible.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Give up waiting for delivery after this many seconds.
        #[arg(long, default_value_t = 120)]
        wait_s: u64,
        /// Baseline without the outbox: publish the same events straight to the MQTT client
        /// (QoS 1) and count PUBACKs. Nothing survives a crash or an outage this way.
        #[arg(long)]
        direct: bool,
    },
    /// Run the cameras and plate pipelines of `run` on a paced video for a while, without a
    /// broker, and print one JSON line: frames sustained, CPU, peak memory, per-stage latency
    /// percentiles and, on the rendered demo clip, passages read right.
    Pipeline(super::bench_pipeline::PipelineBenchArgs),
}

pub fn run(cmd: &BenchCmd) -> Result<ExitCode> {
    let (config, n, rate, wait_s, direct) = match cmd {
        BenchCmd::Pipeline(args) => return super::bench_pipeline::run(args),
        BenchCmd::Delivery {
            config,
            events,
            rate,
            wait_s,
            direct,
        } => (config, events, rate, wait_s, direct),
    };
    let cfg = Config::load(config)?;
    if *direct {
        return direct_baseline(&cfg, *n, *rate, *wait_s);
    }
    // The same outbox as `run`: the same lock, held until the bench ends.
    crate::state_dir::create_private_dir(&cfg.state_dir)
        .with_context(|| format!("cannot create state_dir {}", cfg.state_dir.display()))?;
    let _lock = crate::state_dir::lock(&cfg.state_dir)?;
    let outbox = Outbox::open(cfg.outbox_options()).context("cannot open the outbox")?;
    let recovered = outbox.recovered();
    let delivery = Delivery::new(outbox);
    let factory = EventFactory::new(cfg.site.clone(), cfg.device.clone(), delivery.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    let status: StatusFn = {
        let d = delivery.clone();
        Arc::new(move || {
            serde_json::json!({"state": "online", "version": env!("CARGO_PKG_VERSION"), "started_at": format_ts(chrono::Utc::now()),
                "uptime_s": 0, "cameras": {}, "outbox": d.status_fields()})
        })
    };
    let link = MqttLink::start(
        &cfg.mqtt_options()?,
        delivery.clone(),
        status,
        Duration::from_secs(1),
        None,
    );
    let start = Instant::now();
    let mut append_us = Vec::with_capacity(*n as usize);
    let mut rejected = 0u64;
    for i in 0..*n {
        if *rate > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let body = synthetic_plate(i);
        let t0 = Instant::now();
        if factory
            .emit(
                Origin {
                    camera: "synthetic",
                    lane: "bench",
                },
                chrono::Utc::now(),
                &body,
            )
            .is_err()
        {
            rejected += 1;
        }
        append_us.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    let produced_s = start.elapsed().as_secs_f64();
    // Said on stderr (stdout carries only the figures) so a caller can act once every event is
    // in the outbox, however long producing took on its machine.
    tracing::info!(events = n, rejected, "all events produced");
    let stats = delivery.outbox_stats();
    let deadline = Instant::now() + Duration::from_secs(*wait_s);
    while stats.depth.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let delivered_s = start.elapsed().as_secs_f64();
    let left = rt.block_on(link.shutdown(Duration::from_secs(5)));
    append_us.sort_by(f64::total_cmp);
    let pct = |p: f64| crate::tooling::eval::percentile(&append_us, p);
    let summary = serde_json::json!({
        "mode": "outbox",
        "events": n,
        "recovered_at_start": recovered,
        "rejected": rejected,
        "dropped_total": stats.dropped.load(Ordering::Relaxed),
        "undelivered": left,
        "produce_s": (produced_s * 1000.0).round() / 1000.0,
        "deliver_s": (delivered_s * 1000.0).round() / 1000.0,
        "events_per_s": (*n as f64 / delivered_s).round(),
        "append_p50_us": pct(0.5).round(),
        "append_p99_us": pct(0.99).round(),
    });
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

fn synthetic_plate(i: u64) -> PlateEvent {
    PlateEvent {
        plate: format!("BENCH{i:05}"),
        plate_raw: format!("BENCH-{i:05}"),
        region: "generic".into(),
        confidence: 0.9,
        bbox: [100, 200, 120, 30],
        frames: 3,
        first_seen: format_ts(chrono::Utc::now()),
    }
}

/// The comparison figure for the outbox: the same events and client options, published directly.
fn direct_baseline(cfg: &Config, n: u64, rate: f64, wait_s: u64) -> Result<ExitCode> {
    use rumqttc::{AsyncClient, Event, Packet, QoS};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let topic = format!("{}/{}", cfg.topic_prefix(), PlateEvent::TOPIC);
    rt.block_on(async move {
        let (client, mut eventloop) = AsyncClient::new(crate::delivery::client::v4_options(&cfg.mqtt_options()?), 1024);
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = acked.clone();
        let poll = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "broker link");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        let start = Instant::now();
        for i in 0..n {
            if rate > 0.0 {
                tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into()).await;
            }
            // Same JSON as the outbox path writes, so the payload sizes match.
            let mut body = serde_json::to_value(synthetic_plate(i))?;
            let envelope = serde_json::json!({"schema": PlateEvent::SCHEMA, "event_id": uuid::Uuid::now_v7().to_string(), "seq": i + 1,
                "ts": format_ts(chrono::Utc::now()), "site": cfg.site, "device": cfg.device, "camera": "synthetic", "lane": "bench"});
            body.as_object_mut().unwrap().extend(envelope.as_object().unwrap().clone());
            client.publish(topic.as_str(), QoS::AtLeastOnce, false, serde_json::to_vec(&body)?).await?;
        }
        let produced_s = start.elapsed().as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(wait_s);
        while acked.load(Ordering::Relaxed) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let delivered_s = start.elapsed().as_secs_f64();
        poll.abort();
        let summary = serde_json::json!({
            "mode": "direct",
            "events": n,
            "acknowledged": acked.load(Ordering::Relaxed),
            "produce_s": (produced_s * 1000.0).round() / 1000.0,
            "deliver_s": (delivered_s * 1000.0).round() / 1000.0,
            "events_per_s": (n as f64 / delivered_s).round(),
        });
        println!("{summary}");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
