//! The face gallery: enrolled identities (an id, an optional label, one or more embeddings) and
//! the 1:N search over them. In memory only; [`store`](super::store) keeps it on disk.
//!
//! Search is brute force over one contiguous row-major f32 matrix (an identity's embeddings are
//! adjacent rows): at 100k identities that is 51 MB read once per search, a few milliseconds on
//! one core (`benches/faces.rs`), with no index to keep consistent across crashes.

use serde::Serialize;

use super::embed::{Embedding, EMBEDDING_DIM};

/// Most identities a gallery holds: the search time grows with it (≈ 3-5 ms per 100k on the
/// development box) and the whole file is rewritten on every change.
pub const MAX_IDENTITIES: usize = 200_000;
/// Most embeddings per identity (a few views: with glasses, without, a year apart).
pub const MAX_EMBEDDINGS_PER_IDENTITY: usize = 16;
/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 128;

/// One enrolled person.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// `[A-Za-z0-9._-]{1,64}`: also a folder name for `face import` and safe in any log.
    pub id: String,
    pub label: Option<String>,
    pub embeddings: Vec<Embedding>,
    /// When it was first enrolled, RFC 3339.
    pub added_at: String,
}

/// What [`Gallery::search`] found: the best identity and the runner-up's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// Index into [`Gallery::identities`] and its score (the best of its embeddings).
    pub best: Option<(usize, f32)>,
    /// The best score of any other identity.
    pub second: Option<f32>,
}

/// Identities and the search matrix built from them.
#[derive(Debug, Clone, Default)]
pub struct Gallery {
    /// Raised by one on every change; persisted, so it only grows.
    pub version: u64,
    /// Sorted by id.
    identities: Vec<Identity>,
    /// Every embedding, row after row, identity after identity.
    matrix: Vec<f32>,
    /// The identity index of each row of `matrix`.
    owners: Vec<u32>,
}

/// A line of `face_list` / `face list`: never the embeddings.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IdentitySummary {
    pub identity: String,
    pub label: Option<String>,
    pub embeddings: usize,
    pub added_at: String,
}

/// Checks an identity id: what the rules allow, or why not.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && id != "."
        && id != "..";
    if ok {
        Ok(())
    } else {
        // The id is not echoed: it may be long or hostile; its length is enough to fix it.
        Err(format!(
            "identity must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-' (got {} bytes)",
            id.len()
        ))
    }
}

/// Checks a label.
pub fn check_label(label: &str) -> Result<(), String> {
    let n = label.chars().count();
    if n == 0 || n > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
        return Err(format!(
            "label must be 1 to {MAX_LABEL_CHARS} characters without control characters (got {n})"
        ));
    }
    Ok(())
}

impl Gallery {
    /// A gallery of `identities` (any order) at `version`; ids and embeddings must be valid.
    pub fn from_identities(version: u64, mut identities: Vec<Identity>) -> Result<Gallery, String> {
        identities.sort_by(|a, b| a.id.cmp(&b.id));
        for w in identities.windows(2) {
            if w[0].id == w[1].id {
                return Err(format!("identity {:?} is listed twice", w[0].id));
            }
        }
        for i in &identities {
            check_id(&i.id)?;
            if let Some(l) = &i.label {
                check_label(l).map_err(|e| format!("identity {:?}: {e}", i.id))?;
            }
            if i.embeddings.is_empty() || i.embeddings.len() > MAX_EMBEDDINGS_PER_IDENTITY {
                return Err(format!(
                    "identity {:?} has {} embeddings: 1 to {MAX_EMBEDDINGS_PER_IDENTITY} allowed",
                    i.id,
                    i.embeddings.len()
                ));
            }
        }
        if identities.len() > MAX_IDENTITIES {
            return Err(format!(
                "{} identities: at most {MAX_IDENTITIES} allowed",
                identities.len()
            ));
        }
        let mut g = Gallery {
            version,
            identities,
            ..Gallery::default()
        };
        g.rebuild();
        Ok(g)
    }

    fn rebuild(&mut self) {
        let rows: usize = self.identities.iter().map(|i| i.embeddings.len()).sum();
        self.matrix = Vec::with_capacity(rows * EMBEDDING_DIM);
        self.owners = Vec::with_capacity(rows);
        for (n, identity) in self.identities.iter().enumerate() {
            for e in &identity.embeddings {
                self.matrix.extend_from_slice(&e.0);
                self.owners.push(n as u32);
            }
        }
    }

    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    pub fn len(&self) -> usize {
        self.identities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Embeddings over all identities.
    pub fn embedding_count(&self) -> usize {
        self.owners.len()
    }

    pub fn get(&self, id: &str) -> Option<&Identity> {
        self.find(id).ok().map(|n| &self.identities[n])
    }

    fn find(&self, id: &str) -> Result<usize, usize> {
        self.identities.binary_search_by(|i| i.id.as_str().cmp(id))
    }

    /// Adds `embeddings` to identity `id` (created if new; its label replaced when one is given).
    /// With `replace`, an existing identity's embeddings are replaced instead. Nothing changes on
    /// an error.
    pub fn enrol(
        &mut self,
        id: &str,
        label: Option<&str>,
        embeddings: Vec<Embedding>,
        replace: bool,
        at: &str,
    ) -> Result<(), String> {
        check_id(id)?;
        if let Some(l) = label {
            check_label(l)?;
        }
        if embeddings.is_empty() {
            return Err("no embedding to enrol".into());
        }
        match self.find(id) {
            Ok(n) => {
                let existing = &self.identities[n];
                let total = embeddings.len()
                    + if replace {
                        0
                    } else {
                        existing.embeddings.len()
                    };
                if total > MAX_EMBEDDINGS_PER_IDENTITY {
                    return Err(format!(
                        "identity {id} would have {total} embeddings: at most \
                         {MAX_EMBEDDINGS_PER_IDENTITY}; remove it or enrol with replace"
                    ));
                }
                let identity = &mut self.identities[n];
                if replace {
                    identity.embeddings.clear();
                }
                identity.embeddings.extend(embeddings);
                if let Some(l) = label {
                    identity.label = Some(l.to_owned());
                }
            }
            Err(n) => {
                if self.identities.len() >= MAX_IDENTITIES {
                    return Err(format!(
                        "the gallery is full: {MAX_IDENTITIES} identities; remove some first"
                    ));
                }
                if embeddings.len() > MAX_EMBEDDINGS_PER_IDENTITY {
                    return Err(format!(
                        "{} embeddings for one identity: at most {MAX_EMBEDDINGS_PER_IDENTITY}",
                        embeddings.len()
                    ));
                }
                self.identities.insert(
                    n,
                    Identity {
                        id: id.to_owned(),
                        label: label.map(str::to_owned),
                        embeddings,
                        added_at: at.to_owned(),
                    },
                );
            }
        }
        self.version += 1;
        self.rebuild();
        Ok(())
    }

    /// Removes identity `id`.
    pub fn remove(&mut self, id: &str) -> Result<(), String> {
        check_id(id)?;
        let n = self
            .find(id)
            .map_err(|_| format!("identity {id} is not in the gallery"))?;
        self.identities.remove(n);
        self.version += 1;
        self.rebuild();
        Ok(())
    }

    /// A page of the identities, by id.
    pub fn list(&self, offset: usize, limit: usize) -> Vec<IdentitySummary> {
        self.identities
            .iter()
            .skip(offset)
            .take(limit)
            .map(|i| IdentitySummary {
                identity: i.id.clone(),
                label: i.label.clone(),
                embeddings: i.embeddings.len(),
                added_at: i.added_at.clone(),
            })
            .collect()
    }

    /// The identity most similar to `probe` and the runner-up's score (an identity scores its
    /// best embedding).
    pub fn search(&self, probe: &Embedding) -> Match {
        let mut best: Option<(usize, f32)> = None;
        let mut second: Option<f32> = None;
        let mut offer = |owner: u32, score: f32| match best {
            Some((_, b)) if score <= b => {
                if second.is_none_or(|s| score > s) {
                    second = Some(score);
                }
            }
            _ => {
                second = best.map(|(_, b)| b);
                best = Some((owner as usize, score));
            }
        };
        let mut current: Option<(u32, f32)> = None;
        for (row, &owner) in self.matrix.chunks_exact(EMBEDDING_DIM).zip(&self.owners) {
            let score = dot(row, &probe.0);
            current = match current {
                Some((o, s)) if o == owner => Some((o, s.max(score))),
                Some((o, s)) => {
                    offer(o, s);
                    Some((owner, score))
                }
                None => Some((owner, score)),
            };
        }
        if let Some((o, s)) = current {
            offer(o, s);
        }
        Match { best, second }
    }
}

/// Dot product in eight independent lanes, which the compiler vectorises (a plain iterator sum
/// must add in order and does not).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit embedding pointing mostly along axis `k`, tilted towards axis `k + 1`.
    pub(crate) fn axis(k: usize, tilt: f32) -> Embedding {
        let mut v = vec![0.0; EMBEDDING_DIM];
        v[k % EMBEDDING_DIM] = 1.0;
        v[(k + 1) % EMBEDDING_DIM] = tilt;
        Embedding::from_raw(v).unwrap()
    }

    #[test]
    fn search_finds_the_best_identity_and_the_runner_up() {
        let mut g = Gallery::default();
        assert_eq!(g.search(&axis(0, 0.0)).best, None);
        g.enrol("alice", Some("Alice"), vec![axis(0, 0.0)], false, "t")
            .unwrap();
        let m = g.search(&axis(0, 0.1));
        assert_eq!(m.best.map(|b| b.0), Some(0));
        assert_eq!(m.second, None, "one identity: no runner-up");
        g.enrol("bob", None, vec![axis(5, 0.0), axis(1, 0.0)], false, "t")
            .unwrap();
        g.enrol("carol", None, vec![axis(9, 0.0)], false, "t")
            .unwrap();
        // Tilted from alice's axis towards one of bob's: alice first, bob (his best row) second.
        let m = g.search(&axis(0, 0.5));
        let (n, score) = m.best.unwrap();
        assert_eq!(g.identities()[n].id, "alice");
        assert!((score - 1.0 / 1.25f32.sqrt()).abs() < 1e-5);
        assert!((m.second.unwrap() - 0.5 / 1.25f32.sqrt()).abs() < 1e-5);
        assert_eq!(g.version, 3);
        assert_eq!(g.embedding_count(), 4);
    }

    #[test]
    fn bad_ids_labels_and_limits_change_nothing() {
        let mut g = Gallery::default();
        for bad in ["", "a b", "../x", "..", &"x".repeat(65), "ü"] {
            let err = g
                .enrol(bad, None, vec![axis(0, 0.0)], false, "t")
                .unwrap_err();
            assert!(err.contains("1 to 64 characters"), "{err}");
        }
        assert!(g
            .enrol("a", Some("bad\nlabel"), vec![axis(0, 0.0)], false, "t")
            .unwrap_err()
            .contains("control"));
        assert!(g.enrol("a", None, vec![], false, "t").is_err());
        let many = vec![axis(0, 0.0); MAX_EMBEDDINGS_PER_IDENTITY];
        g.enrol("a", None, many.clone(), false, "t").unwrap();
        let err = g
            .enrol("a", None, vec![axis(1, 0.0)], false, "t")
            .unwrap_err();
        assert!(err.contains("at most 16"), "{err}");
        g.enrol("a", Some("A"), vec![axis(1, 0.0)], true, "t")
            .unwrap();
        assert_eq!(g.get("a").unwrap().embeddings.len(), 1);
        assert_eq!(g.get("a").unwrap().label.as_deref(), Some("A"));
        assert!(g
            .remove("nobody")
            .unwrap_err()
            .contains("not in the gallery"));
        g.remove("a").unwrap();
        assert!(g.is_empty());
        assert_eq!(g.version, 3, "only the changes that happened count");
    }

    #[test]
    fn list_pages_by_id_without_embeddings() {
        let mut g = Gallery::default();
        for id in ["c", "a", "b"] {
            g.enrol(id, None, vec![axis(0, 0.0)], false, "t").unwrap();
        }
        let page: Vec<_> = g.list(1, 5).into_iter().map(|s| s.identity).collect();
        assert_eq!(page, ["b", "c"]);
        let json = serde_json::to_string(&g.list(0, 1)).unwrap();
        assert!(
            !json.contains("0.0") && json.contains("\"embeddings\":1"),
            "{json}"
        );
    }
}
