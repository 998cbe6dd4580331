//! A yard's state on disk: one JSON file per yard, replaced atomically (write, sync, rename, sync
//! the directory), so a crash or power cut leaves either the old or the new state, never a mix.
//!
//! The file also holds the events of the last change until they are in the outbox. The service
//! saves state and events together *before* handing the events to the outbox and clears them
//! after, so a crash in between re-sends them on start with the same `event_id` (a duplicate the
//! consumer drops) instead of losing them.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use uuid::Uuid;

use super::engine::{Emitted, YardState};
use super::YardEvent;
use crate::event::format_ts;
use crate::state_dir;

/// File format version.
const VERSION: u32 = 1;

/// What is on disk for one yard.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub version: u32,
    pub state: YardState,
    /// `seq` of the last yard event stored in the outbox.
    pub last_seq: u64,
    /// Events decided but not yet known to be in the outbox.
    #[serde(default)]
    pub pending: Vec<StoredEvent>,
}

/// An [`Emitted`] event as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub ts: String,
    pub camera: String,
    pub lane: String,
    pub body: YardEvent,
}

impl From<&Emitted> for StoredEvent {
    fn from(e: &Emitted) -> Self {
        StoredEvent {
            event_id: e.event_id,
            ts: format_ts(e.at),
            camera: e.camera.clone(),
            lane: e.lane.clone(),
            body: e.body.clone(),
        }
    }
}

impl StoredEvent {
    pub fn to_emitted(&self) -> Result<Emitted> {
        Ok(Emitted {
            event_id: self.event_id,
            at: DateTime::parse_from_rfc3339(&self.ts)
                .with_context(|| format!("bad ts {:?} in a stored yard event", self.ts))?
                .with_timezone(&Utc),
            camera: self.camera.clone(),
            lane: self.lane.clone(),
            body: self.body.clone(),
        })
    }
}

/// The state file of one yard.
#[derive(Debug, Clone)]
pub struct YardStore {
    path: PathBuf,
}

impl YardStore {
    /// The store of yard `id` under `dir` (created if missing, readable by gatewatch's user only:
    /// it lists the plates inside).
    pub fn open(dir: &Path, id: &str) -> Result<YardStore> {
        state_dir::create_private_dir(dir)
            .and_then(|()| state_dir::make_private(dir))
            .with_context(|| format!("cannot create the yard state directory {}", dir.display()))?;
        Ok(YardStore {
            path: dir.join(format!("{id}.json")),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored state, or an empty one for a new yard.
    pub fn load(&self) -> Result<Stored> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let stored: Stored = serde_json::from_slice(&bytes).with_context(|| {
                    format!(
                        "yard state {} is unreadable; move it away to start the yard empty, then \
                         reconcile with yard_set",
                        self.path.display()
                    )
                })?;
                anyhow::ensure!(
                    stored.version == VERSION,
                    "yard state {} has version {}, this gatewatch reads version {VERSION}",
                    self.path.display(),
                    stored.version
                );
                // A state no sequence of events can produce (a hand edit, a disk error) is
                // refused rather than published: `unidentified: 4294967295` once wrapped the
                // occupancy to 1.
                let invariant = stored.state.check().and_then(|()| {
                    stored
                        .pending
                        .iter()
                        .try_for_each(|e| e.to_emitted().map(drop).map_err(|e| format!("{e:#}")))
                });
                if let Err(broken) = invariant {
                    anyhow::bail!(
                        "yard state {} is inconsistent: {broken}; move it away to start the yard \
                         empty, then reconcile with yard_set",
                        self.path.display()
                    );
                }
                Ok(stored)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stored {
                version: VERSION,
                ..Stored::default()
            }),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read yard state {}", self.path.display()))
            }
        }
    }

    /// Replaces the stored state atomically and durably.
    pub fn save(&self, stored: &Stored) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = state_dir::create_private_file(&tmp)?;
            f.write_all(&serde_json::to_vec(stored).expect("yard state serialises"))?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().with_context(|| format!("cannot write yard state {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_a_missing_file_is_an_empty_yard() {
        let dir = tempfile::tempdir().unwrap();
        let store = YardStore::open(&dir.path().join("yard"), "a").unwrap();
        let empty = store.load().unwrap();
        assert_eq!(
            (empty.version, empty.last_seq, empty.state.occupied()),
            (VERSION, 0, 0)
        );
        let mut s = empty.clone();
        s.last_seq = 42;
        s.state.unidentified = 3;
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap(), s);
        assert!(!store.path().with_extension("json.tmp").exists());
    }

    #[test]
    fn the_yard_list_is_readable_by_gatewatch_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let yard_dir = dir.path().join("yard");
        // A directory an older version created 0755 is made private too.
        std::fs::create_dir(&yard_dir).unwrap();
        std::fs::set_permissions(&yard_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = YardStore::open(&yard_dir, "a").unwrap();
        store.save(&store.load().unwrap()).unwrap();
        assert_eq!(mode(&yard_dir), 0o700);
        assert_eq!(mode(store.path()), 0o600);
    }

    #[test]
    fn ten_thousand_vehicles_fit_in_a_few_megabytes() {
        use crate::yard::engine::Listed;
        let dir = tempfile::tempdir().unwrap();
        let store = YardStore::open(dir.path(), "big").unwrap();
        let mut s = store.load().unwrap();
        for i in 0..10_000 {
            s.state.inside.insert(
                format!("51A{i:05}"),
                Listed {
                    entered_at: "2026-11-24T08:00:00.000Z".into(),
                    entry_lane: "in-1".into(),
                    entry_event_id: Uuid::now_v7(),
                    overstay_reported: false,
                },
            );
        }
        let t = std::time::Instant::now();
        store.save(&s).unwrap();
        let took = t.elapsed();
        let bytes = std::fs::metadata(store.path()).unwrap().len();
        println!("yard state, 10,000 vehicles: {bytes} bytes, saved in {took:?}");
        assert!(bytes < 2 << 20, "{bytes}");
        assert_eq!(store.load().unwrap().state.inside.len(), 10_000);
    }

    #[test]
    fn a_state_that_breaks_an_invariant_is_refused_naming_the_file_and_the_invariant() {
        let dir = tempfile::tempdir().unwrap();
        let store = YardStore::open(dir.path(), "a").unwrap();
        let mut s = store.load().unwrap();
        s.state.inside.insert(
            "51A12345".into(),
            crate::yard::engine::Listed {
                entered_at: "2026-11-24T08:00:00.000Z".into(),
                entry_lane: "in-1".into(),
                entry_event_id: Uuid::now_v7(),
                overstay_reported: false,
            },
        );
        store.save(&s).unwrap();
        store.load().unwrap();
        let refused = |s: &Stored, what: &str| {
            store.save(s).unwrap();
            let err = format!("{:#}", store.load().unwrap_err());
            assert!(
                err.contains(&store.path().display().to_string())
                    && err.contains("inconsistent")
                    && err.contains(what),
                "{err}"
            );
        };
        // The reported file: 1 listed + 4294967295 unidentified wrapped to an occupancy of 0/1.
        let mut bad = s.clone();
        bad.state.unidentified = u32::MAX;
        refused(&bad, "unidentified = 4294967295");
        let mut bad = s.clone();
        bad.state.unidentified = crate::yard::engine::MAX_VEHICLES;
        refused(&bad, "1 listed + 1000000 unidentified");
        let mut bad = s.clone();
        bad.state.unpaired_exits = 2;
        refused(&bad, "unpaired_exits = 2");
        let mut bad = s.clone();
        bad.state.inside.get_mut("51A12345").unwrap().entered_at = "yesterday".into();
        refused(&bad, "entered_at");
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = YardStore::open(dir.path(), "a").unwrap();
        std::fs::write(store.path(), b"{\"version\":1,\"sta").unwrap();
        let err = format!("{:#}", store.load().unwrap_err());
        assert!(
            err.contains("unreadable") && err.contains("yard_set"),
            "{err}"
        );
    }
}
