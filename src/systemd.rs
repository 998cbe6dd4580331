//! systemd's service protocol, `sd_notify(3)`, without libsystemd: a service started with
//! `Type=notify` finds a Unix datagram socket in `$NOTIFY_SOCKET` (a path, or `@name` in the
//! abstract namespace) and sends it newline-separated `KEY=value` assignments: `READY=1` once it
//! serves, `STATUS=…` for `systemctl status`, `WATCHDOG=1` keep-alives when the unit sets
//! `WatchdogSec=` (systemd passes the interval in `$WATCHDOG_USEC`, and in `$WATCHDOG_PID` the
//! process meant), `STOPPING=1` when it begins a stop of its own. Outside systemd (no
//! `$NOTIFY_SOCKET`) every call does nothing. A failed send is logged once and otherwise ignored:
//! the service protocol must never take the box down.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A connection to the service manager's notification socket.
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    failed: AtomicBool,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` names, if any.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        match Self::connect(&path.to_string_lossy()) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(socket = ?path, error = %e, "NOTIFY_SOCKET is set but unusable; not reporting to systemd");
                None
            }
        }
    }

    /// A notifier sending to `socket`: a file system path, or `@name` for the abstract namespace.
    pub fn connect(socket: &str) -> io::Result<Notifier> {
        let addr = if let Some(name) = socket.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else if socket.starts_with('/') {
            SocketAddr::from_pathname(socket)?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an absolute path or an abstract socket name",
            ));
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
            failed: AtomicBool::new(false),
        })
    }

    /// Sends `state` (`KEY=value` lines).
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.addr) {
            if !self.failed.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "cannot notify systemd (said once)");
            }
        }
    }
}

/// The watchdog interval systemd asks for, read from the environment (see [`watchdog_from`]).
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// The watchdog interval from `$WATCHDOG_USEC` and `$WATCHDOG_PID`: none when the interval is
/// missing, zero or not a number, or when the PID names another process (the variables were
/// inherited from a parent that was being watched).
pub fn watchdog_from(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(my_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// Escapes a `STATUS=` value: one line.
pub fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_needs_a_positive_interval_and_our_pid() {
        let d = Some(Duration::from_secs(30));
        assert_eq!(watchdog_from(Some("30000000"), None, 42), d);
        assert_eq!(watchdog_from(Some("30000000"), Some("42"), 42), d);
        assert_eq!(watchdog_from(Some("30000000"), Some("41"), 42), None);
        assert_eq!(watchdog_from(Some("0"), Some("42"), 42), None);
        assert_eq!(watchdog_from(Some("soon"), None, 42), None);
        assert_eq!(watchdog_from(None, Some("42"), 42), None);
    }

    #[test]
    fn notifications_reach_a_path_socket_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::connect(path.to_str().unwrap()).unwrap();
        n.notify("READY=1\nSTATUS=up");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");
        assert!(Notifier::connect("relative/path").is_err());
    }

    #[test]
    fn notifications_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("gatewatch-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        Notifier::connect(&format!("@{name}"))
            .unwrap()
            .notify("WATCHDOG=1");
        let mut buf = [0u8; 16];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }
}
