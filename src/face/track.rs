//! Face tracking and the per-person decision, without threads, clocks or I/O: frames' faces in
//! (with stream time), at most one decision per track out. The stage drives it; the unit tests
//! script it.
//!
//! - A face joins the track it overlaps (IoU) or whose descriptor it matches; a person who stays in
//!   view is one track, however long. A track unseen for `gone_after` has ended: the same person
//!   coming back is a new track, so a new event.
//! - A track keeps its `best_frames` best frames by quality; its descriptor is their mean.
//! - A track is decided once, `decide_after` after it was first seen or when it ends, whichever
//!   comes first: [`decide`] names an identity only when the score reaches the threshold AND the
//!   runner-up is far enough behind (precision before recall); otherwise the face is unknown.

use super::embed::{Embedding, EMBEDDING_DIM};
use super::gallery::Match;
use crate::vision::BBox;

/// Tracking settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceTrackerOptions {
    /// Seconds unseen after which a track has ended.
    pub gone_after: f64,
    /// Seconds after the first sighting at which a track still in view is decided.
    pub decide_after: f64,
    /// Box overlap that joins a face to a track (with a descriptor that does not contradict it).
    pub min_iou: f32,
    /// Descriptor similarity that joins a face to a track wherever it is in the frame (a person
    /// who moved far between two scanned frames). Far above impostor scores (0.83 ± 0.03).
    pub same_person: f32,
    /// Descriptor similarity below which an overlapping face is someone else (two people passing
    /// each other).
    pub different_person: f32,
    /// Frames kept per track for its descriptor.
    pub best_frames: usize,
}

impl Default for FaceTrackerOptions {
    fn default() -> Self {
        Self {
            gone_after: 2.0,
            decide_after: 1.5,
            min_iou: 0.3,
            same_person: 0.93,
            different_person: 0.85,
            best_frames: 3,
        }
    }
}

/// A face seen in one frame. `P` is what the stage keeps with it (the aligned crop, when images
/// may be published); the tests use `()`.
#[derive(Debug, Clone)]
pub struct Sighting<P> {
    pub bbox: BBox,
    pub embedding: Embedding,
    /// 0-1, see [`quality`](super::quality).
    pub quality: f32,
    pub payload: P,
}

#[derive(Debug)]
struct Track<P> {
    first_seen: f64,
    last_seen: f64,
    frames: u32,
    last_bbox: BBox,
    /// The latest descriptor, for joining the next frame's faces.
    last_embedding: Embedding,
    /// Best first.
    best: Vec<Sighting<P>>,
    decided: bool,
}

/// A track ready to be decided: its best frames and how long it was seen.
#[derive(Debug)]
pub struct ReadyTrack<P> {
    pub first_seen: f64,
    pub last_seen: f64,
    /// Frames the face was seen in so far.
    pub frames: u32,
    /// Best first; never empty.
    pub best: Vec<Sighting<P>>,
}

impl<P> ReadyTrack<P> {
    /// The track's descriptor: the normalised mean of its best frames' descriptors.
    pub fn embedding(&self) -> Embedding {
        let mut sum = vec![0.0f32; EMBEDDING_DIM];
        for s in &self.best {
            for (a, v) in sum.iter_mut().zip(&s.embedding.0) {
                *a += v;
            }
        }
        // Unit vectors of one person point the same way: their mean is never near zero. Should
        // it be, the best single frame stands in.
        Embedding::from_raw(sum).unwrap_or_else(|_| self.best[0].embedding.clone())
    }
}

/// The faces of one camera, tracked.
#[derive(Debug)]
pub struct FaceTracker<P> {
    opts: FaceTrackerOptions,
    tracks: Vec<Track<P>>,
}

impl<P> FaceTracker<P> {
    pub fn new(opts: FaceTrackerOptions) -> Self {
        Self {
            opts,
            tracks: Vec::new(),
        }
    }

    /// Open tracks.
    pub fn open(&self) -> usize {
        self.tracks.len()
    }

    /// The faces of the frame at stream time `t`; returns the tracks to decide now.
    pub fn update(&mut self, t: f64, faces: Vec<Sighting<P>>) -> Vec<ReadyTrack<P>> {
        // A recording that starts over goes back in time: its tracks belong to the last pass.
        let restarted = self.tracks.iter().any(|tr| t + 1.0 < tr.last_seen);
        let mut ready = if restarted {
            self.finish()
        } else {
            self.expire(t)
        };
        // Every plausible (track, face) pair, best first; each track and face is used once.
        let mut pairs = Vec::new();
        for (ti, tr) in self.tracks.iter().enumerate() {
            for (fi, f) in faces.iter().enumerate() {
                let sim = tr.last_embedding.cosine(&f.embedding);
                let iou = tr.last_bbox.iou(&f.bbox);
                let joins = sim >= self.opts.same_person
                    || (iou >= self.opts.min_iou && sim >= self.opts.different_person);
                if joins {
                    pairs.push((sim + iou, ti, fi));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_used = vec![false; self.tracks.len()];
        let mut face_of = vec![None; faces.len()];
        for (_, ti, fi) in pairs {
            if !track_used[ti] && face_of[fi].is_none() {
                track_used[ti] = true;
                face_of[fi] = Some(ti);
            }
        }
        for (face, ti) in faces.into_iter().zip(face_of) {
            match ti {
                Some(ti) => {
                    let tr = &mut self.tracks[ti];
                    tr.last_seen = t;
                    tr.frames += 1;
                    tr.last_bbox = face.bbox;
                    tr.last_embedding = face.embedding.clone();
                    keep_best(&mut tr.best, face, self.opts.best_frames);
                }
                None => self.tracks.push(Track {
                    first_seen: t,
                    last_seen: t,
                    frames: 1,
                    last_bbox: face.bbox,
                    last_embedding: face.embedding.clone(),
                    best: vec![face],
                    decided: false,
                }),
            }
        }
        let decide_after = self.opts.decide_after;
        for tr in &mut self.tracks {
            if !tr.decided && tr.last_seen == t && t - tr.first_seen >= decide_after {
                tr.decided = true;
                ready.push(ready_of(tr));
            }
        }
        ready
    }

    /// Time passes without a frame (a live camera gave none): tracks unseen too long end.
    pub fn on_idle(&mut self, t: f64) -> Vec<ReadyTrack<P>> {
        self.expire(t)
    }

    /// The stream ended: every undecided track is decided now.
    pub fn finish(&mut self) -> Vec<ReadyTrack<P>> {
        self.tracks
            .drain(..)
            .filter(|tr| !tr.decided)
            .map(|mut tr| ready_of(&mut tr))
            .collect()
    }

    fn expire(&mut self, t: f64) -> Vec<ReadyTrack<P>> {
        let gone = self.opts.gone_after;
        let mut ready = Vec::new();
        self.tracks.retain_mut(|tr| {
            if t - tr.last_seen <= gone {
                return true;
            }
            if !tr.decided {
                ready.push(ready_of(tr));
            }
            false
        });
        ready
    }
}

/// The track's decision input; its frames move out (a decided track needs them no more).
fn ready_of<P>(tr: &mut Track<P>) -> ReadyTrack<P> {
    ReadyTrack {
        first_seen: tr.first_seen,
        last_seen: tr.last_seen,
        frames: tr.frames,
        best: std::mem::take(&mut tr.best),
    }
}

/// Inserts `s` among the `n` best, best first (ties keep the earlier frame).
fn keep_best<P>(best: &mut Vec<Sighting<P>>, s: Sighting<P>, n: usize) {
    let at = best.partition_point(|b| b.quality >= s.quality);
    if at < n.max(1) {
        best.insert(at, s);
        best.truncate(n.max(1));
    }
}

/// What is published about a track.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Index of the identity named, when it is named.
    pub identity: Option<usize>,
    /// The best identity's score, whether named or not; `None` with an empty gallery.
    pub score: Option<f32>,
    /// The best score minus the runner-up's; `None` with fewer than two identities.
    pub margin: Option<f32>,
}

/// Names the best identity only when its score reaches `threshold` and it leads the runner-up by
/// at least `min_margin` (with a single identity in the gallery there is no runner-up to confuse
/// it with). Anything else is an unknown face.
pub fn decide(m: &Match, threshold: f32, min_margin: f32) -> Decision {
    let Some((best, score)) = m.best else {
        return Decision {
            identity: None,
            score: None,
            margin: None,
        };
    };
    let margin = m.second.map(|s| score - s);
    let named = score >= threshold && margin.is_none_or(|g| g >= min_margin);
    Decision {
        identity: named.then_some(best),
        score: Some(score),
        margin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(k: usize, jitter: f32) -> Embedding {
        let mut v = vec![0.0; EMBEDDING_DIM];
        v[k] = 1.0;
        v[k + 1] = jitter;
        Embedding::from_raw(v).unwrap()
    }

    fn face(x: f32, who: usize, quality: f32) -> Sighting<u32> {
        Sighting {
            bbox: BBox {
                x,
                y: 100.0,
                w: 80.0,
                h: 100.0,
            },
            embedding: person(who, quality * 0.1),
            quality,
            payload: (quality * 100.0) as u32,
        }
    }

    fn opts() -> FaceTrackerOptions {
        FaceTrackerOptions {
            gone_after: 1.0,
            decide_after: 2.0,
            ..FaceTrackerOptions::default()
        }
    }

    #[test]
    fn a_person_in_view_is_one_decision_and_coming_back_is_another() {
        let mut tr = FaceTracker::new(opts());
        let mut decided = Vec::new();
        // 5 frames a second for 4 s, walking right 10 px a frame.
        for i in 0..20 {
            let t = i as f64 * 0.2;
            decided.extend(tr.update(t, vec![face(100.0 + 10.0 * i as f32, 0, 0.5)]));
        }
        assert_eq!(decided.len(), 1, "decided at 2 s, not again while in view");
        assert_eq!(decided[0].first_seen, 0.0);
        assert_eq!(decided[0].frames, 11);
        // Gone for 1.2 s, then back: a new track, decided when it ends.
        assert!(tr.update(5.0, vec![]).is_empty());
        assert_eq!(tr.open(), 0);
        decided.extend(tr.update(5.2, vec![face(100.0, 0, 0.5)]));
        assert_eq!(decided.len(), 1);
        let last = tr.finish();
        assert_eq!(last.len(), 1);
        assert_eq!((last[0].first_seen, last[0].frames), (5.2, 1));
    }

    #[test]
    fn a_short_visit_is_decided_when_it_ends() {
        let mut tr = FaceTracker::new(opts());
        assert!(tr.update(0.0, vec![face(100.0, 0, 0.5)]).is_empty());
        assert!(tr.update(0.2, vec![face(110.0, 0, 0.6)]).is_empty());
        assert!(tr.on_idle(1.0).is_empty(), "0.8 s unseen: still in view");
        let ended = tr.on_idle(1.3);
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].frames, ended[0].last_seen), (2, 0.2));
        assert_eq!(tr.open(), 0);
        assert!(tr.finish().is_empty(), "decided once");
    }

    #[test]
    fn two_people_are_two_tracks_even_when_they_cross() {
        let mut tr = FaceTracker::new(opts());
        let mut decided = Vec::new();
        for i in 0..6 {
            let t = i as f64 * 0.2;
            // Person 0 walks right, person 10 walks left; they overlap at i = 2 and 3.
            let a = face(100.0 + 40.0 * i as f32, 0, 0.5);
            let b = face(300.0 - 40.0 * i as f32, 10, 0.5);
            decided.extend(tr.update(t, vec![a, b]));
        }
        assert_eq!(tr.open(), 2);
        decided.extend(tr.finish());
        assert_eq!(decided.len(), 2);
        for d in &decided {
            assert_eq!(d.frames, 6);
            let who = d.best[0].embedding.0.iter().position(|v| *v > 0.5).unwrap();
            assert!(d.best.iter().all(|s| s.embedding.0[who] > 0.5), "no swap");
        }
    }

    #[test]
    fn a_person_who_jumps_across_the_frame_stays_one_track() {
        let mut tr = FaceTracker::new(opts());
        tr.update(0.0, vec![face(100.0, 3, 0.5)]);
        tr.update(0.2, vec![face(900.0, 3, 0.5)]);
        assert_eq!(tr.open(), 1, "no overlap, same descriptor");
    }

    #[test]
    fn the_best_frames_by_quality_make_the_descriptor() {
        let mut tr = FaceTracker::new(FaceTrackerOptions {
            best_frames: 2,
            ..opts()
        });
        for (i, q) in [0.2, 0.9, 0.4, 0.7, 0.1].into_iter().enumerate() {
            tr.update(i as f64 * 0.1, vec![face(100.0, 0, q)]);
        }
        let d = tr.finish().pop().unwrap();
        let payloads: Vec<u32> = d.best.iter().map(|s| s.payload).collect();
        assert_eq!(payloads, [90, 70], "best first");
        assert_eq!(d.frames, 5);
        let e = d.embedding();
        assert!((e.cosine(&e) - 1.0).abs() < 1e-5);
        assert!(e.cosine(&person(0, 0.08)) > 0.999);
    }

    #[test]
    fn a_restarted_recording_ends_the_last_pass_tracks() {
        let mut tr = FaceTracker::new(opts());
        tr.update(10.0, vec![face(100.0, 0, 0.5)]);
        let ready = tr.update(0.0, vec![face(100.0, 0, 0.5)]);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].first_seen, 10.0);
        assert_eq!(tr.open(), 1);
    }

    fn m(best: Option<f32>, second: Option<f32>) -> Match {
        Match {
            best: best.map(|s| (4, s)),
            second,
        }
    }

    #[test]
    fn an_identity_is_named_only_above_the_threshold_with_a_clear_lead() {
        let t = 0.926;
        // Clear: named.
        let d = decide(&m(Some(0.96), Some(0.85)), t, 0.02);
        assert_eq!(d.identity, Some(4));
        assert!((d.margin.unwrap() - 0.11).abs() < 1e-5);
        // Below the threshold: unknown, but the score is reported.
        let d = decide(&m(Some(0.92), Some(0.80)), t, 0.02);
        assert_eq!((d.identity, d.score), (None, Some(0.92)));
        // At the threshold counts.
        assert_eq!(decide(&m(Some(t), None), t, 0.02).identity, Some(4));
        // Two identities alike: unknown rather than a guess.
        let d = decide(&m(Some(0.97), Some(0.96)), t, 0.02);
        assert_eq!(d.identity, None);
        // One identity: no runner-up, no margin.
        let d = decide(&m(Some(0.95), None), t, 0.02);
        assert_eq!((d.identity, d.margin), (Some(4), None));
        // Empty gallery.
        assert_eq!(
            decide(&m(None, None), t, 0.02),
            Decision {
                identity: None,
                score: None,
                margin: None
            }
        );
    }
}
