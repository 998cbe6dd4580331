//! The systemd unit, `systemd/gatewatch.service`: `systemd-analyze verify` finds nothing to say,
//! and `systemd-analyze security --offline=true` rates its exposure at 2.0 or less. Skipped with a
//! message only when systemd-analyze is missing (`make setup` installs it, Debian package
//! `systemd`).

use std::path::Path;
use std::process::Command;

fn unit_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/gatewatch.service")
}

fn analyze_available() -> bool {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: systemd-analyze is missing (Debian package systemd; `make setup` installs it)");
    }
    ok
}

/// A copy of the unit whose commands are the binary under test (verify checks that every command
/// exists and is executable, and this box has no /usr/bin/gatewatch).
fn unit_copy(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(unit_path()).unwrap();
    let copy = dir.join("gatewatch.service");
    std::fs::write(
        &copy,
        text.replace("/usr/bin/gatewatch", env!("CARGO_BIN_EXE_gatewatch")),
    )
    .unwrap();
    copy
}

#[test]
fn the_unit_verifies_cleanly() {
    if !analyze_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit_copy(dir.path()))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // verify exits 0 on settings it ignores: anything it says about the unit is a finding.
    assert!(
        out.status.success() && !said.contains("gatewatch.service"),
        "systemd-analyze verify: {said}"
    );
}

#[test]
fn the_unit_exposure_is_at_most_2() {
    if !analyze_available() {
        return;
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for gatewatch.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("systemd-analyze security: exposure {level}");
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{text}");
    for setting in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=gatewatch",
    ] {
        assert!(
            std::fs::read_to_string(unit_path())
                .unwrap()
                .contains(setting),
            "{setting}"
        );
    }
}
