//! The gallery on disk: `<state_dir>/faces/gallery.json`, 0600 in a 0700 folder, replaced
//! atomically (write a temporary file, sync it, rename it over the old one, sync the folder), so
//! a crash or power cut at any point leaves either the old or the new gallery, never a mix.
//!
//! Embeddings are stored as base64 of their little-endian f32 values: exact (no decimal
//! round trip) and a third of the size of JSON numbers, which matters when a change rewrites a
//! gallery of 100k identities.

use anyhow::{Context, Result};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::embed::{Embedding, EMBEDDING_DIM};
use super::gallery::{Gallery, Identity};
use crate::state_dir;

/// File format version.
const FORMAT: u32 = 1;
/// The gallery file's name in its folder.
pub const GALLERY_FILE: &str = "gallery.json";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredGallery {
    format: u32,
    version: u64,
    identities: Vec<StoredIdentity>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredIdentity {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    added_at: String,
    /// Each embedding: 128 little-endian f32, standard base64.
    embeddings: Vec<String>,
}

/// The gallery file of a state directory.
#[derive(Debug, Clone)]
pub struct GalleryStore {
    path: PathBuf,
}

fn encode(e: &Embedding) -> String {
    let bytes: Vec<u8> = e.0.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode(text: &str) -> Result<Embedding, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("an embedding is not base64: {e}"))?;
    if bytes.len() != EMBEDDING_DIM * 4 {
        return Err(format!(
            "an embedding has {} bytes, expected {}",
            bytes.len(),
            EMBEDDING_DIM * 4
        ));
    }
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    // Stored normalised: taken as they are (normalising again would move the last bit), but one
    // that is not of unit length was not written by gatewatch.
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    if !norm.is_finite() || (norm - 1.0).abs() > 1e-3 {
        return Err(format!("an embedding has norm {norm}, expected 1"));
    }
    Ok(Embedding(values))
}

impl GalleryStore {
    /// The store in `dir` (`<state_dir>/faces`), created 0700 if missing: it holds biometric
    /// data.
    pub fn open(dir: &Path) -> Result<GalleryStore> {
        state_dir::create_private_dir(dir)
            .and_then(|()| state_dir::make_private(dir))
            .with_context(|| format!("cannot create the face gallery folder {}", dir.display()))?;
        Ok(GalleryStore {
            path: dir.join(GALLERY_FILE),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored gallery, or an empty one (version 0) when there is none yet. A leftover
    /// temporary file of an interrupted save is ignored: the rename never happened, so the old
    /// gallery is the one in force.
    pub fn load(&self) -> Result<Gallery> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Gallery::default()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read face gallery {}", self.path.display()))
            }
        };
        let unreadable = |why: String| {
            anyhow::anyhow!(
                "face gallery {} is unreadable: {why}; move it away to start with an empty \
                 gallery, then enrol again",
                self.path.display()
            )
        };
        let stored: StoredGallery =
            serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
        if stored.format != FORMAT {
            return Err(unreadable(format!(
                "format {}, this gatewatch reads format {FORMAT}",
                stored.format
            )));
        }
        let identities = stored
            .identities
            .into_iter()
            .map(|i| {
                let embeddings = i
                    .embeddings
                    .iter()
                    .map(|e| decode(e))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("identity {:?}: {e}", i.id))?;
                Ok(Identity {
                    id: i.id,
                    label: i.label,
                    embeddings,
                    added_at: i.added_at,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(unreadable)?;
        Gallery::from_identities(stored.version, identities).map_err(unreadable)
    }

    /// Replaces the stored gallery atomically and durably.
    pub fn save(&self, gallery: &Gallery) -> Result<()> {
        let stored = StoredGallery {
            format: FORMAT,
            version: gallery.version,
            identities: gallery
                .identities()
                .iter()
                .map(|i| StoredIdentity {
                    id: i.id.clone(),
                    label: i.label.clone(),
                    added_at: i.added_at.clone(),
                    embeddings: i.embeddings.iter().map(encode).collect(),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&stored).expect("the gallery serialises");
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = state_dir::create_private_file(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().with_context(|| format!("cannot save face gallery {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn embedding(seed: u32) -> Embedding {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        Embedding::from_raw(
            (0..EMBEDDING_DIM)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    (s % 1000) as f32 / 1000.0 - 0.5
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn a_saved_gallery_loads_back_exactly_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let faces = dir.path().join("state/faces");
        let store = GalleryStore::open(&faces).unwrap();
        assert_eq!(store.load().unwrap().version, 0, "no file: empty gallery");
        let mut g = Gallery::default();
        g.enrol(
            "a",
            Some("Ann"),
            vec![embedding(1), embedding(2)],
            false,
            "t0",
        )
        .unwrap();
        g.enrol("b", None, vec![embedding(3)], false, "t1").unwrap();
        store.save(&g).unwrap();
        let back = store.load().unwrap();
        assert_eq!(back.version, 2);
        assert_eq!(back.identities(), g.identities(), "bit for bit");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(&faces), 0o700);
        assert!(!store.path().with_extension("json.tmp").exists());
    }

    #[test]
    fn an_interrupted_save_leaves_the_old_gallery_and_a_broken_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = GalleryStore::open(dir.path()).unwrap();
        let mut g = Gallery::default();
        g.enrol("a", None, vec![embedding(1)], false, "t").unwrap();
        store.save(&g).unwrap();
        // A crash after writing part of the temporary file, before the rename.
        let tmp = store.path().with_extension("json.tmp");
        std::fs::write(&tmp, b"{\"format\":1,\"version\":2,\"identi").unwrap();
        let back = store.load().unwrap();
        assert_eq!((back.version, back.len()), (1, 1));
        // The next save replaces the leftover.
        g.enrol("b", None, vec![embedding(2)], false, "t").unwrap();
        store.save(&g).unwrap();
        assert_eq!(store.load().unwrap().len(), 2);

        // Damage to the gallery itself (a disk error, a hand edit) is refused with the path.
        for broken in [
            &b"{\"format\":1,\"version\":2,\"identi"[..],
            br#"{"format":1,"version":1,"identities":[{"id":"a","added_at":"t","embeddings":["AAAA"]}]}"#,
            br#"{"format":9,"version":1,"identities":[]}"#,
        ] {
            std::fs::write(store.path(), broken).unwrap();
            let err = format!("{:#}", store.load().unwrap_err());
            assert!(err.contains("gallery.json is unreadable"), "{err}");
            assert!(err.contains("move it away"), "{err}");
        }
    }
}
