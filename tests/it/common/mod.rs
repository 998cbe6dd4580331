//! Helpers shared by the integration tests: a real Mosquitto broker on a free loopback port, an
//! MQTT subscriber that records everything, gatewatch runs and config files.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A Mosquitto broker on 127.0.0.1, killed on drop.
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    persistent: bool,
    /// Extra configuration lines (more listeners, TLS, password and ACL files).
    pub extra_conf: String,
    /// Whether clients without a user may connect (true unless a test sets up users).
    pub allow_anonymous: bool,
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on the port.
pub fn wait_listening(port: u16, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Broker {
    pub fn start() -> Broker {
        Self::start_with(false)
    }

    /// A broker that keeps sessions and queued messages across its own restarts.
    pub fn start_persistent() -> Broker {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Broker {
            port: free_port(),
            dir,
            child: None,
            persistent,
            extra_conf: String::new(),
            allow_anonymous: true,
        };
        b.restart();
        b
    }

    /// (Re)starts the broker on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let conf = self.dir.path().join("mosquitto.conf");
        let persistence = if self.persistent {
            format!(
                "persistence true\npersistence_location {}/\n",
                self.dir.path().display()
            )
        } else {
            "persistence false\n".to_owned()
        };
        // `user root` keeps the broker able to read the test's files (it drops to its own user
        // otherwise); per_listener_settings false lets extra listeners share the settings.
        let text = format!(
            "per_listener_settings false\nallow_anonymous {}\nuser root\n{persistence}log_dest file {}\nconnection_messages true\nlistener {} 127.0.0.1\n{}\n",
            self.allow_anonymous,
            self.log_path().display(),
            self.port,
            self.extra_conf
        );
        std::fs::write(&conf, text).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .or_else(|_| {
                Command::new("/usr/sbin/mosquitto")
                    .arg("-c")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .expect("mosquitto is not installed: run `make setup` (Debian package mosquitto)");
        self.child = Some(child);
        assert!(
            wait_listening(self.port, Duration::from_secs(10)),
            "mosquitto did not start on port {}",
            self.port
        );
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// The broker's log (complete once it has stopped). Connections name the client's protocol:
    /// `(p2, …)` is MQTT 3.1.1, `(p5, …)` MQTT 5.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the broker the way an operator would (SIGTERM: it saves its state first).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(5);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A received MQTT message.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: serde_json::Value,
    pub retain: bool,
}

/// Records every message on a topic filter (QoS 1).
pub struct Subscriber {
    pub messages: Arc<Mutex<Vec<Message>>>,
    client: rumqttc::Client,
    dropped: Arc<AtomicBool>,
}

impl Subscriber {
    pub fn start(port: u16, filter: &str) -> Subscriber {
        Self::start_as(port, filter, None)
    }

    /// A subscriber that logs in as `user` with `password`.
    pub fn start_as(port: u16, filter: &str, login: Option<(&str, &str)>) -> Subscriber {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("test-sub-{}-{n}", std::process::id());
        Self::start_with(port, filter, &id, true, login)
    }

    /// A subscriber with a persistent session: the broker queues its QoS 1 messages while it is away.
    pub fn start_persistent(port: u16, filter: &str, id: &str) -> Subscriber {
        Self::start_with(port, filter, id, false, None)
    }

    fn start_with(
        port: u16,
        filter: &str,
        id: &str,
        clean: bool,
        login: Option<(&str, &str)>,
    ) -> Subscriber {
        let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        if let Some((user, password)) = login {
            opts.set_credentials(user, password);
        }
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_clean_session(clean);
        // Snapshot replies carry a JPEG; allow them.
        opts.set_max_packet_size(2 << 20, 2 << 20);
        let (client, mut conn) = rumqttc::Client::new(opts, 100);
        client.subscribe(filter, rumqttc::QoS::AtLeastOnce).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let dropped = Arc::new(AtomicBool::new(false));
        let gone = dropped.clone();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        let payload = serde_json::from_slice(&p.payload).unwrap_or_else(|_| {
                            serde_json::Value::String(
                                String::from_utf8_lossy(&p.payload).into_owned(),
                            )
                        });
                        sink.lock().unwrap().push(Message {
                            topic: p.topic.clone(),
                            payload,
                            retain: p.retain,
                        });
                    }
                    Ok(_) => {}
                    // See `Publisher::new`: once dropped, no reconnecting to a stopped broker.
                    Err(_) if gone.load(Ordering::Relaxed) => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("subscription acknowledged");
        Subscriber {
            messages,
            client,
            dropped,
        }
    }

    /// Messages whose topic ends with `suffix`.
    pub fn on(&self, suffix: &str) -> Vec<Message> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.topic.ends_with(suffix))
            .cloned()
            .collect()
    }

    /// Waits until `pred` holds over all messages so far.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&[Message]) -> bool) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if pred(&self.messages.lock().unwrap()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::Relaxed);
        let _ = self.client.disconnect();
    }
}

/// The gatewatch binary under test.
pub fn gatewatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatewatch"))
}

/// Seqs of the plate events received, sorted, with the number of duplicates.
pub fn seqs(msgs: &[Message]) -> (Vec<u64>, usize) {
    let mut v: Vec<u64> = msgs
        .iter()
        .filter(|m| m.topic.ends_with("/events/plate"))
        .filter_map(|m| m.payload["seq"].as_u64())
        .collect();
    v.sort();
    let n = v.len();
    v.dedup();
    let dups = n - v.len();
    (v, dups)
}

/// Writes a config for one camera; `extra_camera` lines go into the camera table.
pub fn write_config(dir: &Path, port: u16, url: &str, extra_camera: &str) -> PathBuf {
    let path = dir.join("gatewatch.toml");
    let mut f = std::fs::File::create(&path).unwrap();
    write!(
        f,
        r#"site = "test"
device = "box1"
state_dir = "{state}"
[mqtt]
host = "127.0.0.1"
transport = "tcp"
port = {port}
[plates]
confirm_frames = 3
lost_after_s = 1.0
[[camera]]
id = "cam1"
lane = "in-1"
url = "{url}"
{extra_camera}
"#,
        state = dir.join("state").display()
    )
    .unwrap();
    path
}

/// Validates `value` against a schema file in docs/schema.
pub fn assert_valid(schema_file: &str, value: &serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/schema")
        .join(schema_file);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{value} does not match {schema_file}: {errors:?}"
    );
}

/// The plates of published plate events, in arrival order.
pub fn plates(msgs: &[Message]) -> Vec<String> {
    msgs.iter()
        .map(|m| m.payload["plate"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The shared data folder, or None (with a message) when absent.
pub fn shared_dir(sub: &str) -> Option<PathBuf> {
    let base = std::env::var_os("GATEWATCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let p = base.join(sub);
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (set GATEWATCH_SHARED to the shared folder to run this test)",
            p.display()
        );
        None
    }
}

/// A child process that is killed when the test ends, also when it panics, so a failed test
/// never leaves a `gatewatch run` behind holding the test's output pipe open.
pub struct Running(pub std::process::Child);

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Publishes hub commands to `gatewatch/test/box1/cmd/<name>`.
pub struct Publisher {
    client: rumqttc::Client,
    dropped: Arc<AtomicBool>,
}

impl Publisher {
    pub fn new(port: u16) -> Publisher {
        Self::new_as(port, None)
    }

    /// A hub that logs in as `user` with `password`.
    pub fn new_as(port: u16, login: Option<(&str, &str)>) -> Publisher {
        let mut opts = rumqttc::MqttOptions::new("test-hub", "127.0.0.1", port);
        if let Some((user, password)) = login {
            opts.set_credentials(user, password);
        }
        // Large enough to send the oversized command the box must refuse.
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = rumqttc::Client::new(opts, 100);
        // The connection thread must end with its owner: all tests share one process, and a
        // thread left reconnecting to its test's stopped broker spins a core for the rest of the
        // suite (and may reach a later test's broker on a reused port as a second `test-hub`).
        // With the broker up, dropping the client ends the iteration; with it down, every poll is
        // a refused connect, so the thread also stops at an error once its owner is gone.
        let dropped = Arc::new(AtomicBool::new(false));
        let gone = dropped.clone();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                if ev.is_err() && gone.load(Ordering::Relaxed) {
                    break;
                }
            }
        });
        Publisher { client, dropped }
    }
    pub fn send(&self, name: &str, payload: impl Into<Vec<u8>>) {
        self.publish(name, payload, false);
    }
    /// Sends a command with the retain flag: the broker keeps it for every later subscriber.
    pub fn send_retained(&self, name: &str, payload: impl Into<Vec<u8>>) {
        self.publish(name, payload, true);
    }
    fn publish(&self, name: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        let topic = format!("gatewatch/test/box1/cmd/{name}");
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
            .unwrap();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::Relaxed);
    }
}

/// Renders the first `n` demo plates as a frame folder `frames` under `dir`; returns its
/// `folder:` URL.
pub fn demo_frames(dir: &Path, n: usize) -> String {
    use gatewatch::tooling::demo::{demo_plates, ClipSpec, Renderer};
    let frames = dir.join("frames");
    Renderer::with_plates(
        ClipSpec::default(),
        demo_plates().into_iter().take(n).collect(),
    )
    .unwrap()
    .write_frames(&frames)
    .unwrap();
    format!("folder:{}", frames.display())
}

/// `gatewatch run --config cfg` in the background, its log discarded; killed when dropped.
pub fn run_in_background(cfg: &Path) -> Running {
    Running(
        gatewatch()
            .args(["run", "--config"])
            .arg(cfg)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Waits (up to 30 s) for a status message saying `online`.
pub fn wait_online(sub: &Subscriber) {
    assert!(
        sub.wait_until(Duration::from_secs(30), |m| {
            m.iter()
                .any(|m| m.topic.ends_with("/status") && m.payload["state"] == "online")
        }),
        "gatewatch did not come online"
    );
}

/// Waits (up to 15 s) for the reply to command `name` with `id` and returns it.
pub fn reply(sub: &Subscriber, name: &str, id: impl Into<serde_json::Value>) -> serde_json::Value {
    let id = id.into();
    let topic = format!("/cmd/{name}/reply");
    assert!(
        sub.wait_until(Duration::from_secs(15), |m| m
            .iter()
            .any(|m| m.topic.ends_with(&topic) && m.payload["id"] == id)),
        "no reply to {name} {id}"
    );
    sub.on(&topic)
        .into_iter()
        .find(|m| m.payload["id"] == id)
        .unwrap()
        .payload
}

/// `gatewatch check --config cfg`, waited for.
pub fn check_config(cfg: &Path) -> std::process::Output {
    gatewatch()
        .args(["check", "--config"])
        .arg(cfg)
        .output()
        .unwrap()
}

/// `gatewatch run --config cfg` until it ends by itself (sources with `at_end = "stop"`); asserts
/// it succeeded and returns its log.
pub fn run_to_end(cfg: &Path) -> String {
    let out = gatewatch()
        .args(["run", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "gatewatch run failed: {log}");
    log
}

/// Writes a plain grey `width` x `height` PNG.
pub fn write_plain_png(path: &Path, width: u32, height: u32) {
    image::RgbImage::from_pixel(width, height, image::Rgb([90, 90, 90]))
        .save(path)
        .unwrap();
}

/// `gatewatch run --config cfg` in the background with its log in `log`; killed when dropped.
pub fn run_logged(cfg: &Path, log: &Path) -> Running {
    Running(
        gatewatch()
            .args(["run", "--config"])
            .arg(cfg)
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// The `status` command's camera counters of `camera`, asked with command id `id`.
pub fn camera_status(
    sub: &Subscriber,
    hub: &Publisher,
    camera: &str,
    id: &str,
) -> serde_json::Value {
    hub.send("status", format!(r#"{{"id":"{id}"}}"#));
    let r = reply(sub, "status", id);
    r["result"]["cameras"][camera].clone()
}
