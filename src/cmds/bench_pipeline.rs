//! `gatewatch bench pipeline`: the cameras and plate pipelines of `run` on a paced video for a
//! fixed time, without a broker (events stay in a scratch outbox and are counted there), and one
//! JSON line of what they sustained. With `--faces` each camera's face stage runs too, on the
//! demo's drivers, against a scratch gallery holding the enrolled one.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::config::Config;
use crate::delivery::Outbox;
use crate::event::{EventKind, FaceEvent, PlateEvent};
use crate::face::service::FaceService;
use crate::models::ModelSet;
use crate::pipeline::StageTimes;
use crate::tooling::demo::{demo_plates, ClipSpec, DemoPlate, Renderer};
use crate::tooling::demo_faces::{self, demo_faces, DemoFace};
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
    /// Read the whole lane whenever anything moved (`[camera.motion] part_reads = false`).
    #[arg(long)]
    pub no_part_reads: bool,
    /// Faces too: every camera's face stage on (`[camera.face]` of the config, else its
    /// defaults), the demo's two drivers shown in the rendered clip and the first enrolled into a
    /// scratch gallery; face events are checked against who was shown.
    #[arg(long)]
    pub faces: bool,
}

/// Per vehicle of the rendered clip (in order of appearance), how many of its passes were over
/// within `frames` frames of a looping clip.
fn passes_shown(spec: &ClipSpec, plates: usize, frames: usize) -> Vec<usize> {
    let cycle = spec.frames_per_vehicle + spec.gap_frames;
    let clip = plates * cycle + spec.gap_frames;
    (0..plates)
        .map(|k| {
            let over = spec.gap_frames + k * cycle + spec.frames_per_vehicle;
            frames / clip + usize::from(frames % clip >= over)
        })
        .collect()
}

/// An event read back from the scratch outbox: its camera, its plate or identity, and when its
/// subject was first seen.
#[derive(Debug, Clone)]
struct Seen {
    camera: String,
    value: Option<String>,
    first_seen: Option<DateTime<Utc>>,
}

impl Seen {
    fn of(event: &serde_json::Value, field: &str) -> Seen {
        Seen {
            camera: event["camera"].as_str().unwrap_or_default().to_owned(),
            value: event[field].as_str().map(str::to_owned),
            first_seen: event["first_seen"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

/// How the face events compare with the drivers shown.
#[derive(Debug, Default, PartialEq, serde::Serialize)]
struct FaceTally {
    /// The enrolled driver, named.
    right: usize,
    /// An identity named for a driver who is someone else or not enrolled, or where no driver
    /// could be put to the event (a name is right only when shown to be).
    wrong: usize,
    /// A driver not enrolled, published as unknown.
    unknown_as_expected: usize,
    /// The enrolled driver, published as unknown (a miss, not an error).
    enrolled_as_unknown: usize,
    /// Unknown, and no driver could be put to it.
    unattributed: usize,
}

/// When the vehicles of the rendered clip are in view, in seconds into one loop of the clip.
#[derive(Debug, Clone)]
struct ClipTimes {
    loop_s: f64,
    gap_s: f64,
    cycle_s: f64,
    view_s: f64,
}

impl ClipTimes {
    fn new(spec: &ClipSpec, vehicles: usize) -> Self {
        let s = |frames: usize| frames as f64 / spec.fps;
        let cycle = spec.frames_per_vehicle + spec.gap_frames;
        ClipTimes {
            loop_s: s(vehicles * cycle + spec.gap_frames),
            gap_s: s(spec.gap_frames),
            cycle_s: s(cycle),
            view_s: s(spec.frames_per_vehicle),
        }
    }

    /// When vehicle `k` enters and leaves the view.
    fn in_view(&self, k: usize) -> (f64, f64) {
        let enters = self.gap_s + k as f64 * self.cycle_s;
        (enters, enters + self.view_s)
    }

    /// How far (seconds, round the loop) `at` is from vehicle `k`'s time in view.
    fn distance(&self, at: f64, k: usize) -> f64 {
        let (enters, leaves) = self.in_view(k);
        [-self.loop_s, 0.0, self.loop_s]
            .iter()
            .map(|shift| (enters - (at + shift)).max(at + shift - leaves).max(0.0))
            .fold(f64::INFINITY, f64::min)
    }
}

/// Puts each face event to a driver by where in the clip it was first seen, and tallies the
/// identities against the drivers. Where is told by the rightly read passage on the same camera
/// first seen nearest to it in time: that vehicle's time in view is known, and its plate was first
/// read within it (taken at its middle, so at most half a view off). A face within half a view
/// plus one gap (playback drift) of a driver's time in view is that driver's; others are put to
/// nobody. Passages and faces carry the same stream clock, so this holds whatever frames a busy
/// box skipped, and a driver is found even when their own vehicle's plate was missed.
fn tally_faces(
    faces: &[Seen],
    passages: &[Seen],
    plates: &[DemoPlate],
    drivers: &[DemoFace],
    clip: &ClipTimes,
) -> FaceTally {
    let secs = |d: chrono::TimeDelta| d.num_milliseconds() as f64 / 1000.0;
    let when_in_clip = |face: &Seen| -> Option<f64> {
        let at = face.first_seen?;
        let (vehicle, read_at) = passages
            .iter()
            .filter(|p| p.camera == face.camera)
            .filter_map(|p| {
                let vehicle = plates
                    .iter()
                    .position(|d| Some(d.expected) == p.value.as_deref())?;
                Some((vehicle, p.first_seen?))
            })
            .min_by(|a, b| secs(a.1 - at).abs().total_cmp(&secs(b.1 - at).abs()))?;
        let (enters, leaves) = clip.in_view(vehicle);
        Some(((enters + leaves) / 2.0 + secs(at - read_at)).rem_euclid(clip.loop_s))
    };
    let tolerance = clip.view_s / 2.0 + clip.gap_s;
    let driver_of = |face: &Seen| -> Option<&DemoFace> {
        let at = when_in_clip(face)?;
        drivers
            .iter()
            .map(|d| (d, clip.distance(at, d.vehicle)))
            .filter(|(_, far)| *far <= tolerance)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(d, _)| d)
    };
    let mut t = FaceTally::default();
    for face in faces {
        let driver = driver_of(face);
        match (face.value.as_deref(), driver) {
            (Some(named), Some(d)) if d.identity == Some(named) => t.right += 1,
            (Some(_), _) => t.wrong += 1,
            (None, Some(d)) if d.identity.is_none() => t.unknown_as_expected += 1,
            (None, Some(_)) => t.enrolled_as_unknown += 1,
            (None, None) => t.unattributed += 1,
        }
    }
    t
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
    let drivers = if args.faces { demo_faces() } else { Vec::new() };
    let model_dir = cfg.face_models().model_dir;
    let (source, rendered) = match &args.source {
        Some(p) => (p.clone(), false),
        None => {
            let clip = scratch.join("clip.avi");
            eprintln!(
                "bench: rendering the demo clip at {}x{} {} fps{}…",
                args.width,
                args.height,
                args.fps,
                if args.faces { " with its drivers" } else { "" }
            );
            Renderer::with_plates(spec.clone(), plates.clone())?
                .with_faces(drivers.clone(), &model_dir)?
                .write_video(&clip)?;
            (clip, true)
        }
    };
    if args.faces {
        // Enrolled before the box starts, as `face enrol` would: the gallery is read at start,
        // and this service's face reader is gone before the clock starts.
        let gallery = FaceService::open(&cfg.state_dir, cfg.face_models())?;
        let ids = demo_faces::enrol(&gallery, &model_dir, &demo_faces())?;
        eprintln!("bench: {} enrolled in a scratch gallery", ids.join(", "));
    }
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
            // `[camera.face]` as `run` would take it: the config's table, or an empty one.
            c.face = args
                .faces
                .then(|| template.face.clone().unwrap_or_default());
            c.yard = None;
            c.motion.enabled = c.motion.enabled && !args.no_motion_gate;
            c.motion.part_reads = c.motion.part_reads && !args.no_part_reads;
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
    let mut inferred_part = 0u64;
    let mut face_scanned = 0u64;
    for (id, lane) in app.lanes.iter() {
        let (h, s) = (&lane.health, &lane.stats);
        let offered = h.frames.load(Ordering::Relaxed);
        let processed = s.frames.load(Ordering::Relaxed);
        let inferred = s.inferred.load(Ordering::Relaxed);
        let still = s.still.load(Ordering::Relaxed);
        let part = s.inferred_part.load(Ordering::Relaxed);
        inferred_part += part;
        let passages = s.passages.load(Ordering::Relaxed);
        total.0 += offered;
        total.1 += processed;
        total.2 += inferred;
        total.3 += still;
        total.4 += passages;
        let mut camera = serde_json::json!({"source_frames": offered, "processed": processed,
            "inferred": inferred, "inferred_part": part, "still": still, "passages": passages});
        if let Some(f) = &lane.face_stats {
            face_scanned += f.scanned.load(Ordering::Relaxed);
            camera["face"] = f.snapshot();
        }
        per_camera.insert(id.clone(), camera);
    }
    drop(app);
    // Every passage and face event, read back from the scratch outbox.
    let mut outbox = Outbox::open(outbox_opts)?;
    let (mut passages, mut faces) = (Vec::new(), Vec::new());
    while let Some(r) = outbox.next_unsent() {
        outbox.acknowledge(r.seq);
        if r.topic_suffix == PlateEvent::TOPIC {
            let v: serde_json::Value = serde_json::from_slice(&r.payload)?;
            passages.push(Seen::of(&v, "plate"));
        } else if r.topic_suffix == FaceEvent::TOPIC {
            let v: serde_json::Value = serde_json::from_slice(&r.payload)?;
            faces.push(Seen::of(&v, "identity"));
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
        "part_reads": cameras[0].motion.enabled && cameras[0].motion.part_reads,
        "seconds": r1(wall),
        "processed_fps_per_camera": r1(total.1 as f64 / wall / cams),
        "inferred_fps_per_camera": r1(total.2 as f64 / wall / cams),
        "frames_processed_share": if total.0 > 0 { ((total.1 as f64 / total.0 as f64) * 1000.0).round() / 1000.0 } else { 0.0 },
        "part_share": if total.2 > 0 { ((inferred_part as f64 / total.2 as f64) * 1000.0).round() / 1000.0 } else { 0.0 },
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
    if args.faces {
        summary["stages"]["face"] = stage_summary(&timings.face);
        summary["faces"] = serde_json::json!({
            "events": faces.len(),
            "identified": faces.iter().filter(|f| f.value.is_some()).count(),
            "scanned_fps_per_camera": r1(face_scanned as f64 / wall / cams),
        });
    }
    if rendered {
        // Vehicles that left the view at least a second before the end: a pass still in view
        // when the bench stops is not yet a fair demand.
        let frames = ((args.seconds as f64 - 1.0).max(0.0) * args.fps) as usize;
        let shown = passes_shown(&spec, plates.len(), frames);
        let correct = passages
            .iter()
            .filter(|p| {
                plates
                    .iter()
                    .any(|d| Some(d.expected) == p.value.as_deref())
            })
            .count();
        summary["vehicles_shown"] = (shown.iter().sum::<usize>() * args.cameras).into();
        summary["passages_correct"] = correct.into();
        summary["passages_wrong"] = (passages.len() - correct).into();
        if args.faces {
            let drivers_shown = |enrolled: bool| -> usize {
                drivers
                    .iter()
                    .filter(|d| d.identity.is_some() == enrolled)
                    .filter_map(|d| shown.get(d.vehicle))
                    .sum::<usize>()
                    * args.cameras
            };
            summary["faces"]["shown_enrolled"] = drivers_shown(true).into();
            summary["faces"]["shown_not_enrolled"] = drivers_shown(false).into();
            let clip = ClipTimes::new(&spec, plates.len());
            let tally = tally_faces(&faces, &passages, &plates, &drivers, &clip);
            if let serde_json::Value::Object(t) = serde_json::to_value(tally)? {
                for (k, v) in t {
                    summary["faces"][k] = v;
                }
            }
        }
    }
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_shown_counts_finished_passes_across_loops() {
        let spec = ClipSpec {
            width: 10,
            height: 10,
            fps: 10.0,
            frames_per_vehicle: 20,
            gap_frames: 10,
        };
        // Clip: 10 gap, then per vehicle 20 in view + 10 gap; 2 vehicles = 70 frames.
        assert_eq!(passes_shown(&spec, 2, 29), [0, 0]);
        assert_eq!(passes_shown(&spec, 2, 30), [1, 0]);
        assert_eq!(passes_shown(&spec, 2, 60), [1, 1]);
        assert_eq!(passes_shown(&spec, 2, 70 + 30), [2, 1]);
        assert_eq!(passes_shown(&spec, 2, 140), [2, 2]);
    }

    fn seen(camera: &str, value: Option<&str>, at_s: f64) -> Seen {
        Seen {
            camera: camera.into(),
            value: value.map(str::to_owned),
            first_seen: DateTime::from_timestamp_millis(1_800_000_000_000 + (at_s * 1000.0) as i64),
        }
    }

    #[test]
    fn face_events_are_put_to_the_driver_in_view_by_the_nearest_rightly_read_passage() {
        let plates = demo_plates();
        let drivers = demo_faces();
        let (enrolled, other) = (&drivers[0], &drivers[1]);
        assert_eq!((enrolled.vehicle, other.vehicle), (0, 3));
        let id = enrolled.identity.unwrap();
        // The bench's clip: 1 s of road, then per vehicle 2 s in view and 1 s of road; 16 s.
        let spec = ClipSpec {
            width: 1920,
            height: 1080,
            fps: 25.0,
            frames_per_vehicle: 50,
            gap_frames: 25,
        };
        let clip = ClipTimes::new(&spec, plates.len());
        assert_eq!(clip.loop_s, 16.0);
        assert_eq!(clip.in_view(3), (10.0, 12.0));
        assert_eq!(clip.distance(15.5, 0), 1.5, "round the loop");
        assert_eq!(clip.distance(2.0, 0), 0.0);
        let plate = |k: usize| Some(plates[k].expected);
        // Seconds since the clip started on each camera.
        let passages = [
            seen("cam1", plate(0), 1.2),
            seen("cam1", plate(1), 4.5),
            seen("cam1", plate(3), 10.4),
            seen("cam1", plate(4), 13.5),
            // A wrong read tells nothing of where the clip was.
            seen("cam1", Some("99Z99999"), 7.1),
            seen("cam2", plate(3), 10.2),
        ];
        let faces = [
            seen("cam1", Some(id), 1.3),  // right
            seen("cam1", None, 10.3),     // the other driver, unknown: as expected
            seen("cam1", None, 17.4),     // the enrolled driver again, their plate not read
            seen("cam2", Some(id), 10.5), // named, but the other driver was in view
            seen("cam1", None, 7.0),      // no driver in view
            seen("cam1", Some(id), 7.0),  // named where no driver was in view
            seen("cam3", None, 1.0),      // no passage to tell where the clip was
        ];
        let t = tally_faces(&faces, &passages, &plates, &drivers, &clip);
        assert_eq!(
            t,
            FaceTally {
                right: 1,
                wrong: 2,
                unknown_as_expected: 1,
                enrolled_as_unknown: 1,
                unattributed: 2,
            }
        );
    }
}
