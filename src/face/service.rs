//! The box's face gallery as a service: the gallery in force (shared with the camera stages,
//! which search a snapshot without holding a lock), its store, enrolment from images or
//! embeddings, and the hub commands `face_enrol`, `face_remove`, `face_list`.
//!
//! Every change is made on a copy, saved, and only then put in force: a refused or failed change
//! leaves the gallery as it was, on disk and in memory. Images are read by a face reader loaded on
//! the first image enrolment (a box that never enrols from images never holds a second copy of
//! the models).

use anyhow::{Context, Result};
use base64::Engine;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::embed::{Embedding, EMBEDDING_DIM};
use super::gallery::Gallery;
use super::store::GalleryStore;
use super::{FaceOptions, FaceReader};
use crate::event::format_ts;
use crate::hub::{optional, optional_str, optional_u64, Commands};

/// Faces narrower than this (px, in the enrolment image) are refused: too few pixels for a
/// descriptor a camera's view can be matched against. The default `min_face_px` of a camera.
pub const ENROL_MIN_FACE_PX: f32 = 40.0;
/// Default and largest page of `face_list`.
const LIST_DEFAULT: u64 = 100;
const LIST_MAX: u64 = 1000;

/// Where the face models are and how they run.
#[derive(Debug, Clone)]
pub struct FaceModels {
    pub model_dir: PathBuf,
    /// ONNX Runtime library to load instead of the default one.
    pub onnxruntime: Option<PathBuf>,
    /// Intra-op threads per session.
    pub threads: usize,
}

impl FaceModels {
    /// Loads a face reader detecting at `long_side`.
    pub fn load(&self, long_side: u32) -> Result<FaceReader> {
        let mut opts = FaceOptions {
            threads: self.threads,
            ..FaceOptions::default()
        };
        opts.detector.long_side = long_side;
        FaceReader::load(&self.model_dir, self.onnxruntime.as_deref(), opts)
            .context("cannot load the face models")
    }
}

/// The face found in an enrolment image.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrolFace {
    pub embedding: Embedding,
    /// Box in the image's pixels: x, y, width, height.
    pub bbox: [i32; 4],
}

/// The gallery in force and its store.
pub struct FaceService {
    store: GalleryStore,
    current: RwLock<Arc<Gallery>>,
    /// Serialises changes (copy, change, save, swap), so two enrolments never lose one another.
    writer: Mutex<()>,
    models: FaceModels,
    reader: Mutex<Option<FaceReader>>,
}

impl FaceService {
    /// Opens the gallery in `<state_dir>/faces`.
    pub fn open(state_dir: &Path, models: FaceModels) -> Result<Arc<FaceService>> {
        let store = GalleryStore::open(&state_dir.join("faces"))?;
        let gallery = store.load()?;
        Ok(Arc::new(FaceService {
            store,
            current: RwLock::new(Arc::new(gallery)),
            writer: Mutex::new(()),
            models,
            reader: Mutex::new(None),
        }))
    }

    /// The gallery in force (a snapshot: later changes do not touch it).
    pub fn gallery(&self) -> Arc<Gallery> {
        self.current.read().expect("gallery lock").clone()
    }

    /// The `faces` object of `…/status`.
    pub fn status(&self) -> Value {
        let g = self.gallery();
        json!({"gallery": {
            "identities": g.len(),
            "embeddings": g.embedding_count(),
            "version": g.version,
        }})
    }

    /// The one face of an enrolment image (JPEG, PNG, WebP, … bytes), or what is wrong with it.
    pub fn face_of_image(&self, bytes: &[u8]) -> Result<EnrolFace, String> {
        let image = crate::vision::decode_image(bytes).map_err(|e| format!("bad image: {e:#}"))?;
        let mut slot = self.reader.lock().map_err(|_| "face reader poisoned")?;
        if slot.is_none() {
            let reader = self
                .models
                .load(super::detect::DetectorOptions::default().long_side)
                .map_err(|e| format!("{e:#}"))?;
            *slot = Some(reader);
        }
        let reader = slot.as_mut().expect("loaded above");
        let faces = reader
            .detect(&image)
            .map_err(|e| format!("bad image: {e:#}"))?;
        match faces.len() {
            0 => return Err("no face found in the image".into()),
            1 => {}
            n => {
                return Err(format!(
                    "{n} faces found in the image: enrol from an image showing one face"
                ))
            }
        }
        let width = faces[0].bbox.w;
        if width < ENROL_MIN_FACE_PX {
            return Err(format!(
                "the face is too small: {width:.0} px wide, at least {ENROL_MIN_FACE_PX} px"
            ));
        }
        let read = reader
            .embed(&image, &faces)
            .map_err(|e| format!("cannot embed the face: {e:#}"))?;
        let face = read.into_iter().next().expect("one face embedded");
        Ok(EnrolFace {
            embedding: face.embedding,
            bbox: face.bbox.to_px(),
        })
    }

    /// Applies `change` to a copy of the gallery, saves it, and puts it in force; returns the new
    /// gallery. On any error nothing changes.
    fn change(
        &self,
        change: impl FnOnce(&mut Gallery) -> Result<(), String>,
    ) -> Result<Arc<Gallery>, String> {
        let _writing = self.writer.lock().map_err(|_| "gallery writer poisoned")?;
        let mut next = (*self.gallery()).clone();
        change(&mut next)?;
        self.store
            .save(&next)
            .map_err(|e| format!("{e:#}; the gallery is unchanged"))?;
        let next = Arc::new(next);
        *self.current.write().expect("gallery lock") = next.clone();
        Ok(next)
    }

    /// Enrols `embeddings` as identity `id` (added to its embeddings, or replacing them).
    pub fn enrol(
        &self,
        id: &str,
        label: Option<&str>,
        embeddings: Vec<Embedding>,
        replace: bool,
    ) -> Result<Arc<Gallery>, String> {
        let at = format_ts(chrono::Utc::now());
        self.change(|g| g.enrol(id, label, embeddings, replace, &at))
    }

    /// Removes identity `id`.
    pub fn remove(&self, id: &str) -> Result<Arc<Gallery>, String> {
        self.change(|g| g.remove(id))
    }

    /// Adds `face_enrol`, `face_remove` and `face_list` to the hub commands.
    pub fn add_commands(self: &Arc<Self>, commands: &mut Commands) {
        let this = self.clone();
        commands.add("face_enrol", move |req| this.cmd_enrol(req));
        let this = self.clone();
        commands.add("face_remove", move |req| {
            let id = required_identity(req)?;
            let g = this.remove(id)?;
            tracing::info!(version = g.version, identities = g.len(), "face gallery: identity removed");
            Ok(json!({"identity": id, "removed": true, "version": g.version, "identities": g.len()}))
        });
        let this = self.clone();
        commands.add("face_list", move |req| {
            let offset = optional_u64(req, "offset")?.unwrap_or(0);
            let limit = optional_u64(req, "limit")?.unwrap_or(LIST_DEFAULT);
            if !(1..=LIST_MAX).contains(&limit) {
                return Err(format!("limit must be 1 to {LIST_MAX}, got {limit}"));
            }
            let g = this.gallery();
            Ok(json!({
                "version": g.version,
                "total": g.len(),
                "offset": offset,
                "identities": g.list(offset.min(usize::MAX as u64) as usize, limit as usize),
            }))
        });
    }

    fn cmd_enrol(&self, req: &Map<String, Value>) -> Result<Value, String> {
        let id = required_identity(req)?;
        let label = optional_str(req, "label")?;
        let replace = optional(req, "replace", "true or false", Value::as_bool)?.unwrap_or(false);
        let image = optional_str(req, "image_b64")?;
        let embedding = optional(req, "embedding", "an array of numbers", Value::as_array)?;
        // Checked before any model runs: a bad request costs nothing.
        super::gallery::check_id(id)?;
        if let Some(l) = label {
            super::gallery::check_label(l)?;
        }
        let (embedding, face) = match (image, embedding) {
            (Some(_), Some(_)) => return Err("give either image_b64 or embedding, not both".into()),
            (None, None) => {
                return Err(
                    "face_enrol needs image_b64 (a JPEG or PNG, base64) or embedding (128 numbers)"
                        .into(),
                )
            }
            (None, Some(values)) => (embedding_of(values)?, None),
            (Some(b64), None) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| format!("image_b64 is not base64: {e}"))?;
                let face = self.face_of_image(&bytes)?;
                (face.embedding.clone(), Some(face))
            }
        };
        let g = self.enrol(id, label, vec![embedding], replace)?;
        let count = g.get(id).map_or(0, |i| i.embeddings.len());
        tracing::info!(
            version = g.version,
            identities = g.len(),
            "face gallery: identity enrolled"
        );
        let mut result = json!({
            "identity": id,
            "embeddings": count,
            "version": g.version,
            "identities": g.len(),
        });
        if let Some(f) = face {
            result["bbox"] = json!(f.bbox);
        }
        Ok(result)
    }
}

fn required_identity(req: &Map<String, Value>) -> Result<&str, String> {
    optional_str(req, "identity")?
        .ok_or_else(|| "missing identity: the gallery id to act on".into())
}

/// A 128-number JSON array as an embedding (normalised), or what is wrong with it.
pub fn embedding_of(values: &[Value]) -> Result<Embedding, String> {
    if values.len() != EMBEDDING_DIM {
        return Err(format!(
            "embedding has {} values, expected {EMBEDDING_DIM}",
            values.len()
        ));
    }
    let v = values
        .iter()
        .map(|x| x.as_f64().filter(|f| f.is_finite()).map(|f| f as f32))
        .collect::<Option<Vec<f32>>>()
        .ok_or("embedding must hold 128 finite numbers")?;
    Embedding::from_raw(v).map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn service(dir: &Path) -> Arc<FaceService> {
        // No models are needed for embeddings; an image enrolment with this directory fails to
        // load them, which is an error reply like any other.
        FaceService::open(
            dir,
            FaceModels {
                model_dir: dir.join("no-models"),
                onnxruntime: None,
                threads: 1,
            },
        )
        .unwrap()
    }

    fn commands(s: &Arc<FaceService>) -> Commands {
        let mut c = Commands::default();
        s.add_commands(&mut c);
        c
    }

    fn unit(k: usize) -> Vec<f32> {
        let mut v = vec![0.0; EMBEDDING_DIM];
        v[k] = 2.0;
        v
    }

    #[test]
    fn enrol_list_remove_through_the_hub_commands() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let c = commands(&s);
        let req = json!({"id": 1, "identity": "p-1", "label": "Pat", "embedding": unit(3)});
        let r = c.dispatch("face_enrol", req.to_string().as_bytes()).body;
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["result"]["version"], 1);
        let r = c.dispatch("face_list", br#"{"id":2}"#).body;
        assert_eq!(r["result"]["total"], 1);
        assert_eq!(r["result"]["identities"][0]["label"], "Pat");
        // No embedding in a list: no array of numbers anywhere in the reply. (A text search for
        // "0.0" also matched the enrolment time, so it failed by the clock.)
        fn has_number_array(v: &serde_json::Value) -> bool {
            match v {
                serde_json::Value::Array(a) => {
                    a.iter().any(|x| x.is_number()) || a.iter().any(has_number_array)
                }
                serde_json::Value::Object(o) => o.values().any(has_number_array),
                _ => false,
            }
        }
        assert!(!has_number_array(&r), "no embedding in a list: {r}");
        let r = c
            .dispatch("face_remove", br#"{"id":3,"identity":"p-1"}"#)
            .body;
        assert_eq!(r["result"]["version"], 2, "{r}");
        // The file holds what is in force.
        let again = service(dir.path());
        assert_eq!((again.gallery().version, again.gallery().len()), (2, 0));
    }

    #[test]
    fn bad_requests_are_named_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let c = commands(&s);
        let cases = [
            (json!({"id": 1, "embedding": unit(0)}), "missing identity"),
            (
                json!({"id": 1, "identity": "a b", "embedding": unit(0)}),
                "1 to 64 characters",
            ),
            (json!({"id": 1, "identity": "a"}), "needs image_b64"),
            (
                json!({"id": 1, "identity": "a", "embedding": [1.0, 2.0]}),
                "has 2 values, expected 128",
            ),
            (
                json!({"id": 1, "identity": "a", "embedding": vec![0.0; 128]}),
                "norm",
            ),
            (
                json!({"id": 1, "identity": "a", "embedding": "x"}),
                "embedding must be an array",
            ),
            (
                json!({"id": 1, "identity": "a", "embedding": unit(0), "image_b64": "AA=="}),
                "not both",
            ),
            (
                json!({"id": 1, "identity": "a", "image_b64": "%%%"}),
                "not base64",
            ),
            (
                json!({"id": 1, "identity": "a", "image_b64": "aGVsbG8="}),
                "bad image",
            ),
            (
                json!({"id": 1, "identity": "a", "embedding": unit(0), "replace": "yes"}),
                "replace must be true or false",
            ),
            (json!({"id": 1, "identity": "nobody"}), "needs image_b64"),
        ];
        for (req, want) in cases {
            let r = c.dispatch("face_enrol", req.to_string().as_bytes()).body;
            let err = r["error"].as_str().unwrap_or_default();
            assert!(r["ok"] == false && err.contains(want), "{req}: {r}");
        }
        let r = c
            .dispatch("face_remove", br#"{"id":1,"identity":"nobody"}"#)
            .body;
        assert!(
            r["error"].as_str().unwrap().contains("not in the gallery"),
            "{r}"
        );
        let r = c.dispatch("face_list", br#"{"id":1,"limit":0}"#).body;
        assert!(
            r["error"]
                .as_str()
                .unwrap()
                .contains("limit must be 1 to 1000"),
            "{r}"
        );
        let big = format!(
            r#"{{"id":1,"identity":"a","image_b64":"{}"}}"#,
            "A".repeat(20_000)
        );
        let r = c.dispatch("face_enrol", big.as_bytes()).body;
        assert!(
            r["error"].as_str().unwrap().contains("exceeds the limit"),
            "{r}"
        );
        assert_eq!(s.gallery().version, 0, "nothing changed");
        assert!(!dir.path().join("faces/gallery.json").exists());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn any_face_command_payload_gets_a_reply_and_never_panics(
            name in prop_oneof!["face_enrol", "face_remove", "face_list"],
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            identity in prop_oneof!["[a-z0-9._-]{1,10}", "\\PC{0,70}"],
            values in proptest::collection::vec(prop_oneof![any::<f32>().prop_map(|f| json!(f)), Just(json!(null)), Just(json!("x"))], 0..140),
            image in "[A-Za-z0-9+/=]{0,64}",
            offset in any::<i64>(),
            which in 0..4u8,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let s = service(dir.path());
            let c = commands(&s);
            let payloads = [
                bytes.clone(),
                json!({"id": 1, "identity": identity, "embedding": values}).to_string().into_bytes(),
                json!({"id": 1, "identity": identity, "image_b64": image}).to_string().into_bytes(),
                json!({"id": 1, "identity": identity, "offset": offset, "limit": offset}).to_string().into_bytes(),
            ];
            let r = c.dispatch(&name, &payloads[which as usize]);
            prop_assert!(r.body["ok"].is_boolean());
            if r.body["ok"] == false {
                prop_assert!(r.body["error"].as_str().is_some_and(|e| !e.is_empty()));
            }
            // Whatever happened, the gallery on disk loads.
            prop_assert!(GalleryStore::open(&dir.path().join("faces")).unwrap().load().is_ok());
        }
    }
}
