//! TLS to the broker: mutual TLS with certificates made in the test, on a real Mosquitto TLS
//! listener. The right certificates connect; a wrong CA or a missing client certificate fails
//! with a clear log line, and the events wait in the outbox until the config is fixed.

use crate::common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (make setup)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate signed by it for `cn` with the given subjectAltName.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

fn make_cert(dir: &Path, ca: &str, name: &str, san: &str) {
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

fn tls_config(
    dir: &Path,
    port: u16,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> std::path::PathBuf {
    let cfg = write_config(dir, port, "folder:/nonexistent", "");
    let mut mqtt = format!("transport = \"tls\"\nca_file = \"{}\"\n", ca.display());
    if let Some((c, k)) = client {
        mqtt += &format!(
            "client_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
            c.display(),
            k.display()
        );
    }
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("transport = \"tcp\"\n", &mqtt);
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn deliver(cfg: &Path, events: u64, wait_s: u64) -> (serde_json::Value, String) {
    let out = gatewatch()
        .args([
            "bench",
            "delivery",
            "--events",
            &events.to_string(),
            "--wait-s",
            &wait_s.to_string(),
            "--config",
        ])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        serde_json::from_str(stdout.lines().last().unwrap()).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mutual_tls_connects_with_the_right_certificates_and_fails_clearly_otherwise() {
    let mut broker = Broker::start();
    let certs = tempfile::tempdir().unwrap();
    let c = certs.path();
    make_ca(c, "ca");
    make_cert(c, "ca", "server", "IP:127.0.0.1,DNS:localhost");
    make_cert(c, "ca", "client", "DNS:gatewatch-box");
    make_ca(c, "rogue-ca");
    make_cert(c, "rogue-ca", "rogue-client", "DNS:gatewatch-box");
    let tls_port = free_port();
    broker.extra_conf = format!(
        "listener {tls_port} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\nrequire_certificate true\n",
        c.display()
    );
    broker.restart();
    assert!(wait_listening(tls_port, Duration::from_secs(10)));
    let sub = Subscriber::start(broker.port, "gatewatch/test/box1/events/#");
    let dir = tempfile::tempdir().unwrap();

    // Wrong CA: the broker's certificate is not trusted.
    let cfg = tls_config(
        dir.path(),
        tls_port,
        &c.join("rogue-ca.pem"),
        Some((&c.join("client.pem"), &c.join("client.key"))),
    );
    let (s, log) = deliver(&cfg, 10, 3);
    assert_eq!(s["undelivered"], 10, "{s}");
    assert!(
        log.to_lowercase().contains("certificate") || log.contains("UnknownIssuer"),
        "{log}"
    );

    // Client certificate from another CA: the broker refuses it.
    let cfg = tls_config(
        dir.path(),
        tls_port,
        &c.join("ca.pem"),
        Some((&c.join("rogue-client.pem"), &c.join("rogue-client.key"))),
    );
    let (s, log) = deliver(&cfg, 5, 3);
    assert_eq!(s["undelivered"], 15, "{s}");
    assert!(log.contains("MQTT broker unreachable"), "{log}");

    // The right certificates: the 15 waiting events and 5 new ones are delivered, nothing lost.
    let cfg = tls_config(
        dir.path(),
        tls_port,
        &c.join("ca.pem"),
        Some((&c.join("client.pem"), &c.join("client.key"))),
    );
    let (s, _) = deliver(&cfg, 5, 30);
    assert_eq!(s["undelivered"], 0, "{s}");
    assert_eq!(s["recovered_at_start"], 15, "{s}");
    assert!(sub.wait_until(Duration::from_secs(10), |m| seqs(m).0.len() == 20));
    assert_eq!(
        seqs(&sub.messages.lock().unwrap()).0,
        (1..=20).collect::<Vec<u64>>()
    );
}
