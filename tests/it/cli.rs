//! The installer-facing commands: `check`, `models verify`, and clear start-up errors.

use crate::common;

use common::*;

fn example_config() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gatewatch.example.toml")
}

#[test]
fn check_accepts_the_example_config_and_prints_it_resolved() {
    let out = check_config(&example_config());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("topic prefix: gatewatch/mongcai/lane1-box"),
        "{stdout}"
    );
    assert!(stdout.contains("[[camera]]"), "{stdout}");
    assert!(
        stdout.contains("broker:       tls://127.0.0.1:8883"),
        "TLS unless configured otherwise: {stdout}"
    );
}

#[test]
fn check_names_every_bad_key_and_what_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        r#"site = "gate 1"
device = "box"
[mqtt]
host = ""
port = 1883
client_cert_file = "/etc/hostname"
username = "u"
password = "p"
password_file = "/nonexistent/password"
[models]
set = "default"
[plates]
confirm_frames = 0
[[camera]]
id = "a"
lane = "in"
url = "ftp://camera"
fps = 500.0
"#,
    )
    .unwrap();
    let out = check_config(&cfg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "site:",
        "mqtt.host:",
        "plates.confirm_frames:",
        "camera[0].url:",
        "camera[0].fps:",
    ] {
        assert!(err.contains(key), "missing {key} in: {err}");
    }
    assert!(err.contains("allowed 1 to 100"), "{err}");

    std::fs::write(
        &cfg,
        "site = \"x\"\ndevice = \"y\"\n[mqtt]\nhost = \"h\"\n[models]\nset = \"best\"\n",
    )
    .unwrap();
    let out = check_config(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("best") && err.contains("fast-alpr"),
        "unknown model set lists the allowed ones: {err}"
    );
}

#[test]
fn models_verify_reports_missing_and_corrupt_files() {
    let out = gatewatch().args(["models", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "the fetched models verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ppocr_v4_det_int8.onnx"), b"corrupt").unwrap();
    let out = gatewatch()
        .args(["models", "verify", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAILED   ppocr_v4_det_int8.onnx") && stdout.contains("corrupt"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAILED   ppocr_v4_rec.onnx") && stdout.contains("missing"),
        "{stdout}"
    );
}

#[test]
fn run_with_missing_models_fails_at_start_naming_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), free_port(), "folder:/nonexistent", "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[plates]",
        &format!(
            "[models]\ndir = \"{}\"\n[plates]",
            dir.path().join("nomodels").display()
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let out = gatewatch()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(".onnx") && err.contains("fetch-models"),
        "{err}"
    );
}

#[test]
fn check_names_the_key_path_and_line_of_toml_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), free_port(), "folder:/srv/replay", "");
    // A second camera without its url: the message says which camera and where.
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    let header_line = text.lines().count() + 1;
    text.push_str("[[camera]]\nid = \"cam2\"\nlane = \"out-1\"\n");
    std::fs::write(&cfg, &text).unwrap();
    let out = check_config(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("camera[1].url: is missing (line {header_line})")),
        "{err}"
    );
    assert!(!err.contains("byte"), "{err}");

    text.push_str("url = \"folder:/srv/replay\"\nfps = \"fast\"\n");
    std::fs::write(&cfg, &text).unwrap();
    let out = check_config(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "camera[1].fps: invalid type: string \"fast\", expected f64 (line {})",
            header_line + 4
        )),
        "{err}"
    );
}

#[test]
fn check_never_prints_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        free_port(),
        "rtsp://admin:Cam-Secret-7@192.0.2.10:554/stream1",
        "",
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "transport = \"tcp\"",
        "transport = \"tcp\"\nusername = \"gw\"\npassword = \"Mqtt-Secret-9\"",
    );
    std::fs::write(&cfg, &text).unwrap();
    let out = check_config(&cfg);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("[[camera]]"), "resolved config printed: {all}");
    for secret in ["Cam-Secret-7", "Mqtt-Secret-9"] {
        assert!(!all.contains(secret), "{secret} printed: {all}");
    }
    assert!(all.contains("password = \"***\""), "{all}");
    assert!(
        all.contains("rtsp://admin:***@192.0.2.10:554/stream1"),
        "{all}"
    );

    // A password of the wrong type is not echoed in the error either.
    std::fs::write(&cfg, text.replace("\"Mqtt-Secret-9\"", "918273645")).unwrap();
    let out = check_config(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("mqtt.password: invalid type"), "{err}");
    assert!(!err.contains("918273645"), "{err}");
}

#[test]
fn check_refuses_what_run_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), free_port(), "folder:/srv/replay", "");
    let state_file = dir.path().join("state-is-a-file");
    std::fs::write(&state_file, b"").unwrap();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            "host = \"127.0.0.1\"",
            &format!(
                "host = \"127.0.0.1:1883\"\nusername = \"gw\"\npassword_file = \"{}\"\ntopic_prefix = \"{}\"",
                dir.path().display(),
                "x".repeat(70_000)
            ),
        )
        .replace(
            &format!("state_dir = \"{}\"", dir.path().join("state").display()),
            &format!("state_dir = \"{}\"", state_file.display()),
        )
        .replace("[plates]", "[runtime]\nreaders = 1000000\n[plates]");
    std::fs::write(&cfg, text).unwrap();
    let out = check_config(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for expected in [
        "mqtt.host: \"127.0.0.1:1883\" has a port",
        "mqtt.password_file: cannot read password file",
        "is a directory",
        "state_dir: ",
        "is a file, not a directory",
        "mqtt.topic_prefix: 70000 bytes is too long: allowed 1 to 256 bytes",
        "runtime.readers: 1000000 is out of range: allowed 0",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in: {err}");
    }
    // run refuses the same config at start, naming the same keys.
    let out = gatewatch()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("mqtt.host:")
            && err.contains("state_dir:")
            && err.contains("runtime.readers:"),
        "{err}"
    );
}
