//! The per-camera QR stage: its own thread, fed by the plate pipeline with at most `scan_fps`
//! frames per second through a newest-wins slot (frames arriving while it is busy are dropped
//! and counted), so QR decoding never slows the plate path. One event per code held in view.

use base64::Engine;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::config::CameraQrConfig;
use super::{QrDecoder, QrRead};
use crate::event::{EventFactory, Origin, QrEvent};
use crate::source::camera::FrameSlot;

/// Decides which reads are new: one event per code held in view.
#[derive(Debug)]
pub struct Dedupe {
    gone_after: f64,
    repeat_after: f64,
    /// Payload → (last seen, last published), in stream time.
    seen: HashMap<Vec<u8>, (f64, f64)>,
}

impl Dedupe {
    pub fn new(gone_after: f64, repeat_after: f64) -> Dedupe {
        Dedupe {
            gone_after,
            repeat_after,
            seen: HashMap::new(),
        }
    }

    /// Whether a code seen at `t` should be published now.
    pub fn admit(&mut self, payload: &[u8], t: f64) -> bool {
        self.expire(t);
        match self.seen.get_mut(payload) {
            Some((seen, published)) => {
                *seen = t;
                if self.repeat_after > 0.0 && t - *published >= self.repeat_after {
                    *published = t;
                    true
                } else {
                    false
                }
            }
            None => {
                self.seen.insert(payload.to_vec(), (t, t));
                true
            }
        }
    }

    /// Forgets codes unseen for longer than `gone_after`.
    pub fn expire(&mut self, t: f64) {
        let gone = self.gone_after;
        self.seen.retain(|_, (seen, _)| t - *seen <= gone);
    }
}

/// Counters of one camera's QR stage.
#[derive(Debug, Default)]
pub struct QrStats {
    pub scanned: AtomicU64,
    /// Frames replaced before the stage took them (it was busy).
    pub skipped: AtomicU64,
    pub events: AtomicU64,
    pub failures: AtomicU64,
}

impl QrStats {
    /// The counters as the `qr` object of a camera in `…/status`.
    pub fn snapshot(&self) -> serde_json::Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "scanned": n(&self.scanned),
            "skipped": n(&self.skipped),
            "events": n(&self.events),
            "failures": n(&self.failures),
        })
    }
}

/// What the QR stage needs.
pub struct QrStageParts {
    pub camera: String,
    pub lane: String,
    pub config: CameraQrConfig,
    pub slot: Arc<FrameSlot>,
    pub events: Arc<EventFactory>,
    pub stats: Arc<QrStats>,
}

/// Starts the stage; it ends when its slot is closed and drained.
pub fn spawn(parts: QrStageParts) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("qr-{}", parts.camera))
        .spawn(move || run(parts))
}

fn run(p: QrStageParts) {
    let decoder = QrDecoder::new();
    let mut dedupe = Dedupe::new(p.config.gone_after_s, p.config.repeat_after_s);
    while let Some(frame) = p.slot.take() {
        p.stats.scanned.fetch_add(1, Ordering::Relaxed);
        let reads = match scan(&decoder, &frame.image, p.config.roi) {
            Ok(r) => r,
            Err(e) => {
                p.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(camera = %p.camera, error = %format!("{e:#}"), "QR scan failed; frame skipped");
                continue;
            }
        };
        for r in reads {
            if !dedupe.admit(&r.bytes, frame.t) {
                continue;
            }
            let body = QrEvent {
                text: r.text,
                bytes_b64: base64::engine::general_purpose::STANDARD.encode(&r.bytes),
                corners: r.corners,
                symbol: r.symbol,
                ecc_level: r.ecc_level,
            };
            // Payloads can carry personal data: the log names the code's size, not its content.
            let origin = Origin {
                camera: &p.camera,
                lane: &p.lane,
            };
            match p.events.emit(origin, frame.captured_at, &body) {
                Ok(seq) => {
                    p.stats.events.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(camera = %p.camera, seq, bytes = r.bytes.len(), "QR code read");
                }
                Err(e) => {
                    tracing::error!(camera = %p.camera, error = %e, "QR event not stored (counted in status)")
                }
            }
        }
    }
}

/// Decodes the region of interest of a frame; corners come back in frame pixels.
fn scan(
    decoder: &QrDecoder,
    image: &opencv::core::Mat,
    roi: Option<[f64; 4]>,
) -> anyhow::Result<Vec<QrRead>> {
    use opencv::prelude::*;
    let Some([x, y, w, h]) = roi else {
        return decoder.decode_mat(image);
    };
    let (fw, fh) = (image.cols() as f64, image.rows() as f64);
    let rect = opencv::core::Rect::new(
        (x * fw) as i32,
        (y * fh) as i32,
        ((w * fw) as i32).max(1),
        ((h * fh) as i32).max(1),
    );
    let crop = opencv::core::Mat::roi(image, rect)?.try_clone()?;
    let mut reads = decoder.decode_mat(&crop)?;
    for r in &mut reads {
        for c in &mut r.corners {
            c[0] += rect.x;
            c[1] += rect.y;
        }
    }
    Ok(reads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_held_in_view_is_one_event_until_it_leaves_or_the_repeat_interval_passes() {
        let mut d = Dedupe::new(3.0, 0.0);
        assert!(d.admit(b"A", 0.0));
        assert!(!d.admit(b"A", 1.0));
        assert!(!d.admit(b"A", 3.9), "seen 2.9 s ago: still in view");
        assert!(d.admit(b"B", 4.0), "another code");
        assert!(d.admit(b"A", 8.0), "gone for 4.1 s, shown again");
        let mut d = Dedupe::new(3.0, 10.0);
        assert!(d.admit(b"A", 0.0));
        assert!((1..10).all(|t| !d.admit(b"A", t as f64)));
        assert!(d.admit(b"A", 10.0), "repeat interval");
    }
}
