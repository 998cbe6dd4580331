//! `gatewatch run` as a systemd service, without systemd: the test binds the notification socket
//! (`$NOTIFY_SOCKET`) itself and asks for a watchdog (`$WATCHDOG_USEC`), as systemd would, and
//! reads what the box says: `READY=1` once, `WATCHDOG=1` while every pipeline makes progress (also
//! with a camera offline), none while a pipeline is stalled (the fault-injection hook
//! `GATEWATCH_TEST_STALL_PIPELINE`), `STOPPING=1` at the end. SIGHUP reloads like the hub's
//! `reload_config`. Every wait has a generous deadline; nothing asserts how fast a machine is.

use crate::common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Watchdog interval given to the box: it checks progress every half of it (2 s, four times the
/// idle wake-up of the loops it watches).
const WATCHDOG_USEC: &str = "4000000";

/// A notification socket standing in for systemd: every datagram received, in order.
struct NotifySocket {
    path: PathBuf,
    received: Arc<Mutex<Vec<String>>>,
    done: Arc<AtomicBool>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (sink, stop) = (received.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock().unwrap().push(text);
                }
            }
        });
        NotifySocket {
            path,
            received,
            done,
        }
    }

    fn messages(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// Messages holding the line `line` (e.g. `WATCHDOG=1`).
    fn count(&self, line: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }

    /// Waits until `pred` holds over the messages so far.
    fn wait_until(&self, timeout: Duration, pred: impl Fn(&[String]) -> bool) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if pred(&self.messages()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// A config with the given cameras (`id`, `url`); the broker need not be up.
fn config(dir: &Path, port: u16, cameras: &[(&str, &str)]) -> PathBuf {
    let mut text = format!(
        "site = \"test\"\ndevice = \"box1\"\nstate_dir = \"{}\"\n[mqtt]\nhost = \"127.0.0.1\"\ntransport = \"tcp\"\nport = {port}\n",
        dir.join("state").display()
    );
    for (id, url) in cameras {
        text += &format!(
            "[[camera]]\nid = \"{id}\"\nlane = \"lane-{id}\"\nurl = \"{url}\"\nfps = 5.0\n"
        );
    }
    let path = dir.join("gatewatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `gatewatch run` under a stand-in service manager, its log in `log`.
fn run_service(cfg: &Path, notify: &NotifySocket, log: &Path, env: &[(&str, &str)]) -> Running {
    let mut cmd = gatewatch();
    cmd.args(["run", "--config"])
        .arg(cfg)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .env_remove("GATEWATCH_TEST_STALL_PIPELINE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Running(cmd.spawn().unwrap())
}

fn wait_log(log: &Path, needle: &str, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains(needle)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn signal(gw: &Running, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &gw.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits (up to `timeout`) for the process to exit; its exit status.
fn wait_exit(gw: &mut Running, timeout: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if let Some(s) = gw.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn wait_ready(notify: &NotifySocket, log: &Path) {
    assert!(
        notify.wait_until(Duration::from_secs(180), |m| m
            .iter()
            .any(|m| m.lines().any(|l| l == "READY=1"))),
        "no READY=1\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
fn ready_once_then_pings_while_frames_flow_and_a_camera_is_offline() {
    let dir = tempfile::tempdir().unwrap();
    let frames = demo_frames(dir.path(), 1);
    // Nothing listens there: the camera cannot be opened and is retried.
    let offline = format!("rtsp://127.0.0.1:{}/nothing", free_port());
    let cfg = config(
        dir.path(),
        free_port(),
        &[("cam1", &frames), ("cam2", &offline)],
    );
    let notify = NotifySocket::bind(dir.path());
    let log = dir.path().join("gatewatch.log");
    let mut gw = run_service(&cfg, &notify, &log, &[]);
    wait_ready(&notify, &log);
    let ready = notify
        .messages()
        .iter()
        .position(|m| m.lines().any(|l| l == "READY=1"))
        .unwrap();
    // The summary names the cameras up and the outbox.
    assert!(
        notify.messages()[ready].contains("STATUS=cameras up ")
            && notify.messages()[ready].contains("outbox depth"),
        "{:?}",
        notify.messages()
    );
    // Pings keep coming while cam1 delivers frames and cam2 stays offline.
    assert!(
        notify.wait_until(Duration::from_secs(120), |m| m[ready..]
            .iter()
            .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
            .count()
            >= 5),
        "fewer than 5 watchdog pings: {:?}\n{}",
        notify.messages(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let statuses: Vec<String> = notify
        .messages()
        .into_iter()
        .filter(|m| m.contains("WATCHDOG=1"))
        .collect();
    assert!(
        statuses.iter().any(|m| m.contains("cameras up 1/2")),
        "cam1 up and cam2 offline while pinging: {statuses:?}"
    );

    signal(&gw, "-TERM");
    let status = wait_exit(&mut gw, Duration::from_secs(60)).expect("stops on SIGTERM");
    assert!(status.success());
    assert!(notify.wait_until(Duration::from_secs(5), |m| m
        .iter()
        .any(|m| m.lines().any(|l| l == "STOPPING=1"))));
    assert_eq!(notify.count("READY=1"), 1, "{:?}", notify.messages());
}

#[test]
fn a_stalled_pipeline_stops_the_watchdog_pings() {
    let dir = tempfile::tempdir().unwrap();
    let frames = demo_frames(dir.path(), 1);
    let cfg = config(dir.path(), free_port(), &[("cam1", &frames)]);
    let notify = NotifySocket::bind(dir.path());
    let log = dir.path().join("gatewatch.log");
    let mut gw = run_service(
        &cfg,
        &notify,
        &log,
        &[("GATEWATCH_TEST_STALL_PIPELINE", "cam1")],
    );
    wait_ready(&notify, &log);
    assert!(
        wait_log(&log, "fault injection", Duration::from_secs(120)),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The watch task notices and says so (it is alive, so silence is a decision, not a crash).
    let no_progress = |m: &String| m.contains("no progress: pipeline cam1");
    assert!(
        notify.wait_until(Duration::from_secs(60), |m| m.iter().any(no_progress)),
        "{:?}",
        notify.messages()
    );
    let first = notify.messages().iter().position(no_progress).unwrap();
    // Several more checks (every 2 s): still stalled, so not one ping.
    assert!(notify.wait_until(Duration::from_secs(60), |m| m[first..]
        .iter()
        .filter(|m| no_progress(m))
        .count()
        >= 4));
    let after: Vec<String> = notify.messages()[first..].to_vec();
    assert!(
        !after.iter().any(|m| m.lines().any(|l| l == "WATCHDOG=1")),
        "pinged while stalled: {after:?}"
    );
    assert!(wait_log(&log, "no progress", Duration::from_secs(5)));

    // The stalled pipeline still lets the box stop cleanly.
    signal(&gw, "-TERM");
    let status = wait_exit(&mut gw, Duration::from_secs(60)).expect("stops on SIGTERM");
    assert!(status.success());
}

#[test]
fn sighup_reloads_like_reload_config() {
    let dir = tempfile::tempdir().unwrap();
    let frames = demo_frames(dir.path(), 1);
    let cfg = config(dir.path(), free_port(), &[("cam1", &frames)]);
    let valid = std::fs::read_to_string(&cfg).unwrap();
    let notify = NotifySocket::bind(dir.path());
    let log = dir.path().join("gatewatch.log");
    let mut gw = run_service(&cfg, &notify, &log, &[]);
    wait_ready(&notify, &log);

    // An invalid file: refused, logged, the box keeps running.
    std::fs::write(
        &cfg,
        valid.replace("site = \"test\"", "site = \"no spaces\""),
    )
    .unwrap();
    signal(&gw, "-HUP");
    assert!(
        wait_log(&log, "SIGHUP: reload refused", Duration::from_secs(60)),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(std::fs::read_to_string(&log).unwrap().contains("site"));
    let pings = notify.count("WATCHDOG=1");
    assert!(
        notify.wait_until(Duration::from_secs(60), |m| m
            .iter()
            .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
            .count()
            > pings + 1),
        "still serving after a refused reload"
    );
    assert!(gw.try_wait().unwrap().is_none(), "kept running");

    // A valid file: a clean stop, for systemd to restart with it.
    std::fs::write(&cfg, valid.replace("fps = 5.0", "fps = 4.0")).unwrap();
    signal(&gw, "-HUP");
    let status = wait_exit(&mut gw, Duration::from_secs(60)).expect("restarts on a valid SIGHUP");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(
        text.contains("SIGHUP: reload: new config is valid"),
        "{text}"
    );
    assert!(notify.wait_until(Duration::from_secs(5), |m| m
        .iter()
        .any(|m| m.lines().any(|l| l == "STOPPING=1"))));
    assert_eq!(notify.count("READY=1"), 1);
}
