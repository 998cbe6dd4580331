//! `gatewatch bench pipeline`: the cameras and plate pipelines of `run` on a paced video for a
//! fixed time, without a broker (events stay in a scratch outbox and are counted there), and one
//! JSON line of what they sustained.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::config::Config;
use crate::delivery::Outbox;
use crate::event::{EventKind, PlateEvent};
use crate::models::ModelSet;
use crate::pipeline::StageTimes;
use crate::tooling::demo::{demo_plates, ClipSpec, Renderer};
use crate::tooling::eval::percentile;

/// Arguments of `gatewatch bench pipeline`.
#[derive(Debug, clap::Args)]
pub struct PipelineBenchArgs {
    /// Camera settings (the first camera's ROI, motion gate, handoff), plates and models from this
    /// config; built-in defaults otherwise.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// A video file, paced at its own frame rate like a camera; without it the demo clip is
    /// rendered at --width x --height, --fps (its plates are then known and checked).
    #[arg(long)]
    pub source: Option<PathBuf>,
    #[arg(long, default_value_t = 1920)]
    pub width: i32,
    #[arg(long, default_value_t = 1080)]
    pub height: i32,
    #[arg(long, default_value_t = 25.0)]
    pub fps: f64,
    /// Cameras watching the source at once.
    #[arg(long, default_value_t = 1)]
    pub cameras: usize,
    /// How long to run.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Model set (overrides the config).
    #[arg(long)]
    pub models: Option<ModelSet>,
    /// Plate grammars (overrides the config).
    #[arg(long, value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Read every frame (motion gating off).
    #[arg(long)]
    pub no_motion_gate: bool,
}

/// Vehicles of the rendered clip whose pass was over within `frames` frames of a looping clip.
fn vehicles_shown(spec: &ClipSpec, plates: usize, frames: usize) -> usize {
    let cycle = spec.frames_per_vehicle + spec.gap_frames;
    let clip = plates * cycle + spec.gap_frames;
    let per_loop = |f: usize| {
        (0..plates)
            .filter(|k| spec.gap_frames + k * cycle + spec.frames_per_vehicle <= f)
            .count()
    };
    (frames / clip) * plates + per_loop(frames % clip)
}

/// CPU seconds used by this process so far (user + system).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory of this process (MB).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0)
}

fn stage_summary(times: &std::sync::Mutex<Vec<f32>>) -> serde_json::Value {
    let mut v: Vec<f64> = times
        .lock()
        .expect("stage times lock")
        .iter()
        .map(|&x| x as f64)
        .collect();
    v.sort_by(f64::total_cmp);
    let r = |x: f64| (x * 100.0).round() / 100.0;
    serde_json::json!({
        "n": v.len(),
        "p50_ms": r(percentile(&v, 0.5)),
        "p95_ms": r(percentile(&v, 0.95)),
        "p99_ms": r(percentile(&v, 0.99)),
    })
}

const DEFAULT_CONFIG: &str = r#"site = "bench"
device = "bench"
state_dir = "STATE"
[mqtt]
host = "127.0.0.1"
transport = "tcp"
[[camera]]
id = "cam"
lane = "bench"
url = "folder:/nonexistent"
"#;

pub fn run(args: &PipelineBenchArgs) -> Result<ExitCode> {
    let scratch = std::env::temp_dir().join(format!("gatewatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = bench(args, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn bench(args: &PipelineBenchArgs, scratch: &Path) -> Result<ExitCode> {
    anyhow::ensure!(
        (1..=64).contains(&args.cameras),
        "--cameras must be 1 to 64"
    );
    let mut cfg = match &args.config {
        Some(path) => Config::load(path)?,
        None => {
            let path = scratch.join("bench.toml");
            let state = scratch.join("state");
            std::fs::write(
                &path,
                DEFAULT_CONFIG.replace("STATE", &state.display().to_string()),
            )?;
            Config::load(&path)?
        }
    };
    // Scratch state: the bench never touches a real outbox or yard.
    cfg.state_dir = scratch.join("state");
    cfg.outbox.dir = None;
    cfg.yards.clear();
    if let Some(set) = args.models {
        cfg.models.set = set;
    }
    if !args.regions.is_empty() {
        cfg.plates.regions = args.regions.clone();
    }
    let spec = ClipSpec {
        width: args.width,
        height: args.height,
        fps: args.fps,
        frames_per_vehicle: (args.fps * 2.0).round() as usize,
        gap_frames: (args.fps * 1.0).round() as usize,
    };
    let plates = demo_plates();
    let (source, rendered) = match &args.source {
        Some(p) => (p.clone(), false),
        None => {
            let clip = scratch.join("clip.avi");
            eprintln!(
                "bench: rendering the demo clip at {}x{} {} fps…",
                args.width, args.height, args.fps
            );
            Renderer::with_plates(spec.clone(), plates.clone())?.write_video(&clip)?;
            (clip, true)
        }
    };
    let template = cfg
        .cameras
        .first()
        .cloned()
        .context("the config has no camera")?;
    let cameras: Vec<_> = (0..args.cameras)
        .map(|i| {
            let mut c = template.clone();
            c.id = format!("cam{}", i + 1);
            c.url = source.display().to_string();
            c.fps = None;
            c.handoff = crate::source::Handoff::Newest;
            c.at_end = crate::source::AtEnd::Restart;
            c.qr = None;
            c.face = None;
            c.yard = None;
            c.motion.enabled = c.motion.enabled && !args.no_motion_gate;
            c
        })
        .collect();

    let timings = Arc::new(StageTimes::default());
    let mut options = cfg.app_options(&cameras);
    options.timings = Some(timings.clone());
    let outbox_opts = options.outbox.clone();
    // The clock starts with the lanes, after the models have loaded.
    let mut clock = None;
    let mut app = App::start_with(options, || {
        eprintln!("bench: {} camera(s), {} s…", cameras.len(), args.seconds);
        clock = Some((cpu_seconds(), Instant::now()));
    })?;
    let (cpu0, t0) = clock.expect("set as the lanes start");
    std::thread::sleep(Duration::from_secs(args.seconds));
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    app.shutdown.request("bench over");
    app.stop_lanes();
    let n_readers = app.model_copies;

    let mut per_camera = serde_json::Map::new();
    let mut total = (0u64, 0u64, 0u64, 0u64, 0u64);
    for (id, lane) in app.lanes.iter() {
        let (h, s) = (&lane.health, &lane.stats);
        let offered = h.frames.load(Ordering::Relaxed);
        let processed = s.frames.load(Ordering::Relaxed);
        let inferred = s.inferred.load(Ordering::Relaxed);
        let still = s.still.load(Ordering::Relaxed);
        let passages = s.passages.load(Ordering::Relaxed);
        total.0 += offered;
        total.1 += processed;
        total.2 += inferred;
        total.3 += still;
        total.4 += passages;
        per_camera.insert(
            id.clone(),
            serde_json::json!({"source_frames": offered, "processed": processed,
                "inferred": inferred, "still": still, "passages": passages}),
        );
    }
    drop(app);
    // The plates of every passage, read back from the scratch outbox.
    let mut outbox = Outbox::open(outbox_opts)?;
    let mut read_plates = Vec::new();
    while let Some(r) = outbox.next_unsent() {
        outbox.acknowledge(r.seq);
        if r.topic_suffix == PlateEvent::TOPIC {
            let v: serde_json::Value = serde_json::from_slice(&r.payload)?;
            read_plates.push(v["plate"].as_str().unwrap_or_default().to_owned());
        }
    }
    let cams = args.cameras as f64;
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    let mut summary = serde_json::json!({
        "source": if rendered { "rendered demo clip".to_owned() } else { source.display().to_string() },
        "width": args.width, "height": args.height, "source_fps": args.fps,
        "cameras": args.cameras, "model_copies": n_readers,
        "models": cfg.models.set.as_str(),
        "motion_gate": cameras[0].motion.enabled,
        "seconds": r1(wall),
        "processed_fps_per_camera": r1(total.1 as f64 / wall / cams),
        "inferred_fps_per_camera": r1(total.2 as f64 / wall / cams),
        "frames_processed_share": if total.0 > 0 { ((total.1 as f64 / total.0 as f64) * 1000.0).round() / 1000.0 } else { 0.0 },
        "still_share": if total.1 > 0 { ((total.3 as f64 / total.1 as f64) * 1000.0).round() / 1000.0 } else { 0.0 },
        "passages": total.4,
        "cpu_percent": (cpu / wall * 100.0).round(),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "peak_rss_mb": peak_rss_mb(),
        "stages": {
            "gate": stage_summary(&timings.gate),
            "read": stage_summary(&timings.read),
            "track": stage_summary(&timings.track),
        },
        "per_camera": per_camera,
    });
    if rendered {
        // Vehicles that left the view at least a second before the end: a pass still in view
        // when the bench stops is not yet a fair demand.
        let frames = ((args.seconds as f64 - 1.0).max(0.0) * args.fps) as usize;
        let shown = vehicles_shown(&spec, plates.len(), frames) * args.cameras;
        let correct = read_plates
            .iter()
            .filter(|p| plates.iter().any(|d| d.expected == p.as_str()))
            .count();
        summary["vehicles_shown"] = shown.into();
        summary["passages_correct"] = correct.into();
        summary["passages_wrong"] = (read_plates.len() - correct).into();
    }
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vehicles_shown_counts_finished_passes_across_loops() {
        let spec = ClipSpec {
            width: 10,
            height: 10,
            fps: 10.0,
            frames_per_vehicle: 20,
            gap_frames: 10,
        };
        // Clip: 10 gap, then per vehicle 20 in view + 10 gap; 2 vehicles = 70 frames.
        assert_eq!(vehicles_shown(&spec, 2, 29), 0);
        assert_eq!(vehicles_shown(&spec, 2, 30), 1);
        assert_eq!(vehicles_shown(&spec, 2, 60), 2);
        assert_eq!(vehicles_shown(&spec, 2, 70 + 30), 3);
        assert_eq!(vehicles_shown(&spec, 2, 140), 4);
    }
}
