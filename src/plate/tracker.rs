//! Turns per-frame plate reads into vehicle passages: one passage per vehicle, not per frame.
//!
//! A read joins the track whose last box it overlaps (IoU) or whose leading text it nearly equals
//! (at most one differing character), else it opens a track. Each track votes over its reads,
//! weighted by confidence. A track closes when it has not been seen for `lost_after` seconds, so a
//! parked truck stays one passage however long it stands there, and the same plate coming back
//! later is a new one.
//!
//! A passage is a claim the hub acts on, so it is published only when the vote is decisive (the
//! leading text holds more than [`DECISIVE_SHARE`] of the track's weight), and at most once:
//! - early, as soon as the leader has been read in `confirm_frames` frames, unless a *fuller*
//!   candidate is in the track (a longer read the leader is a fragment or one-character shortening
//!   of, or a strict-grammar read where the leader is not): then the track waits up to `settle`
//!   seconds for the fuller read to win the vote;
//! - otherwise when the track closes.
//!
//! A track that closes without a decisive leader is withheld, not guessed: it is counted
//! ([`Tracker::take_withheld`]) and still closes (a yard counts the vehicle with `plate: null`).

use std::collections::HashMap;

use super::grammar::Region;
use super::reader::PlateRead;
use crate::vision::BBox;

/// A vehicle passage: the voted plate of one track.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    pub plate: String,
    /// The raw text of the best single read of the winning plate.
    pub plate_raw: String,
    pub region: Region,
    /// Mean confidence of the winning plate's reads, scaled by its share of the track's votes.
    pub confidence: f32,
    /// Box of the best read of the winning plate.
    pub bbox: BBox,
    /// Frames in which the track was read.
    pub frames: u32,
    /// Stream time (seconds) of the first and last read.
    pub first_seen: f64,
    pub last_seen: f64,
    /// Boxes of the first and the latest read of the track: which way the plate moved.
    pub first_bbox: BBox,
    pub last_bbox: BBox,
}

/// A track that has ended: the vehicle left the view (or the stream ended). Every track closes
/// exactly once, read or not, with its whole motion: what a yard gate counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedTrack {
    /// The voted plate, or `None` when the vehicle was seen but never read confidently.
    pub plate: Option<String>,
    /// Frames the vehicle was seen in (read or not).
    pub frames: u32,
    pub first_seen: f64,
    pub last_seen: f64,
    pub first_bbox: BBox,
    pub last_bbox: BBox,
}

/// Tracking settings.
#[derive(Debug, Clone)]
pub struct TrackerOptions {
    pub confirm_frames: u32,
    pub lost_after: f64,
    pub min_iou: f32,
    /// How long (stream seconds from the track's first sighting) a confirmed leader waits for a
    /// fuller candidate of the same track to win before it is published anyway.
    pub settle: f64,
}

/// The share of a track's vote weight its leading text must hold to be published. Below it the
/// reads disagree too much: publishing the leader would be a guess.
pub const DECISIVE_SHARE: f32 = 0.6;

/// A track that closed with reads but without a decisive one: nothing was published for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Withheld {
    /// The candidate plates with their share of the track's vote, most supported first.
    pub candidates: Vec<(String, f32)>,
    pub frames: u32,
}

#[derive(Debug, Default, Clone)]
struct Vote {
    weight: f32,
    count: u32,
    conf_sum: f32,
    best_conf: f32,
    best_raw: String,
    best_bbox: BBox,
    region: Option<Region>,
}

#[derive(Debug)]
struct Track {
    first_bbox: BBox,
    last_bbox: BBox,
    first_seen: f64,
    last_seen: f64,
    frames: u32,
    votes: HashMap<String, Vote>,
    /// The plate published for this track, once it has been.
    emitted: Option<String>,
}

impl Track {
    fn leader(&self) -> (&String, &Vote) {
        self.votes
            .iter()
            .max_by(|a, b| a.1.weight.total_cmp(&b.1.weight).then_with(|| b.0.cmp(a.0)))
            .expect("a track has at least one vote")
    }

    /// The leader's share of the track's vote weight.
    fn leader_share(&self) -> f32 {
        let total: f32 = self.votes.values().map(|v| v.weight).sum();
        let (_, lead) = self.leader();
        if total > 0.0 {
            lead.weight / total
        } else {
            0.0
        }
    }

    /// Whether another candidate is a fuller reading of the leader: longer with the leader a
    /// fragment or one-character shortening of it (a plate whose edge or one row was missed), or
    /// of a strict grammar (VN, CN) where the leader is not.
    fn fuller_candidate(&self) -> bool {
        let (lead, lv) = self.leader();
        let lead_strict = lv.region.is_some_and(Region::is_strict);
        self.votes.iter().any(|(p, v)| {
            p != lead
                && ((p.chars().count() > lead.chars().count()
                    && (is_fragment(lead, p) || near_equal(lead, p)))
                    || (!lead_strict && v.region.is_some_and(Region::is_strict)))
        })
    }

    /// Whether the track's passage may be published at `t` while the track is still open.
    fn ready_early(&self, t: f64, opts: &TrackerOptions) -> bool {
        let (_, lead) = self.leader();
        lead.count >= opts.confirm_frames
            && self.leader_share() > DECISIVE_SHARE
            && (!self.fuller_candidate() || t - self.first_seen >= opts.settle)
    }

    fn withheld(&self) -> Withheld {
        let total: f32 = self.votes.values().map(|v| v.weight).sum();
        let mut candidates: Vec<(String, f32)> = self
            .votes
            .iter()
            .map(|(p, v)| (p.clone(), v.weight / total.max(f32::EPSILON)))
            .collect();
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Withheld {
            candidates,
            frames: self.frames,
        }
    }

    /// Notes a sighting in the frame at `t`.
    fn seen(&mut self, bbox: BBox, t: f64) {
        self.last_bbox = bbox;
        self.last_seen = t;
        self.frames += 1;
    }

    fn closed(&self) -> ClosedTrack {
        ClosedTrack {
            // The plate already published stays the track's plate, so the yard's event names
            // the same plate as the plate event (later reads of one row of a two-line plate
            // may outvote the whole plate by the end). A track that was not published closes
            // without a plate: the yard counts the vehicle, not a guess.
            plate: self.emitted.clone(),
            frames: self.frames,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            first_bbox: self.first_bbox,
            last_bbox: self.last_bbox,
        }
    }

    fn passage(&self) -> Passage {
        let total: f32 = self.votes.values().map(|v| v.weight).sum();
        let (plate, v) = self.leader();
        Passage {
            plate: plate.clone(),
            plate_raw: v.best_raw.clone(),
            region: v.region.unwrap_or(Region::Generic),
            confidence: (v.conf_sum / v.count as f32) * (v.weight / total),
            bbox: v.best_bbox,
            frames: self.frames,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            first_bbox: self.first_bbox,
            last_bbox: self.last_bbox,
        }
    }
}

/// The tracks of one camera.
pub struct Tracker {
    opts: TrackerOptions,
    tracks: Vec<Track>,
    closed: Vec<ClosedTrack>,
    withheld: Vec<Withheld>,
}

impl Tracker {
    pub fn new(opts: TrackerOptions) -> Self {
        Self {
            opts,
            tracks: Vec::new(),
            closed: Vec::new(),
            withheld: Vec::new(),
        }
    }

    /// The tracks that closed since the last call without a decisive read (nothing published).
    pub fn take_withheld(&mut self) -> Vec<Withheld> {
        std::mem::take(&mut self.withheld)
    }

    /// The tracks that ended since the last call. A track never read is only reported when it
    /// was seen in at least `confirm_frames` frames (a vehicle, not a flicker).
    pub fn take_closed(&mut self) -> Vec<ClosedTrack> {
        std::mem::take(&mut self.closed)
    }

    /// Opens a track at `bbox` (seen nowhere yet) and returns its index.
    fn open(&mut self, bbox: BBox, t: f64, touched: &mut Vec<bool>) -> usize {
        self.tracks.push(Track {
            first_bbox: bbox,
            last_bbox: bbox,
            first_seen: t,
            last_seen: t,
            frames: 0,
            votes: HashMap::new(),
            emitted: None,
        });
        touched.push(false);
        self.tracks.len() - 1
    }

    fn close(&mut self, track: &Track) {
        if !track.votes.is_empty() || track.frames >= self.opts.confirm_frames {
            self.closed.push(track.closed());
        }
    }

    /// Number of open tracks.
    pub fn open_tracks(&self) -> usize {
        self.tracks.len()
    }

    /// Where each open track's plate was last seen (frame pixels).
    pub fn open_boxes(&self) -> impl Iterator<Item = BBox> + '_ {
        self.tracks.iter().map(|t| t.last_bbox)
    }

    /// Feeds the reads of the frame at stream time `t`; returns passages ready to publish.
    pub fn update(&mut self, t: f64, reads: &[PlateRead]) -> Vec<Passage> {
        self.update_with_unread(t, reads, &[])
    }

    /// As [`update`](Self::update), with the boxes of plates detected but not read (a plate
    /// detector's boxes whose text was unsure): they keep a vehicle's track alive, and a vehicle
    /// seen only this way still closes as a track without a plate.
    pub fn update_with_unread(
        &mut self,
        t: f64,
        reads: &[PlateRead],
        unread: &[BBox],
    ) -> Vec<Passage> {
        let mut out = Vec::new();
        let mut touched = vec![false; self.tracks.len()];
        for read in reads {
            let idx = self.associate(read, &touched);
            let idx = idx.unwrap_or_else(|| self.open(read.bbox, t, &mut touched));
            touched[idx] = true;
            let track = &mut self.tracks[idx];
            track.seen(read.bbox, t);
            let v = track.votes.entry(read.plate.clone()).or_default();
            v.weight += read.confidence;
            v.count += 1;
            v.conf_sum += read.confidence;
            v.region = Some(read.region);
            if read.confidence >= v.best_conf {
                v.best_conf = read.confidence;
                v.best_raw = read.raw.clone();
                v.best_bbox = read.bbox;
            }
        }
        // Every open track is judged, read in this frame or not: a settle time may run out
        // while the vehicle is only seen unread or stands still.
        for track in &mut self.tracks {
            if track.emitted.is_none()
                && !track.votes.is_empty()
                && track.ready_early(t, &self.opts)
            {
                let passage = track.passage();
                track.emitted = Some(passage.plate.clone());
                out.push(passage);
            }
        }
        for b in unread {
            let idx = self
                .tracks
                .iter()
                .enumerate()
                .filter(|(i, tr)| !touched[*i] && tr.last_bbox.iou(b) >= self.opts.min_iou)
                .max_by(|x, y| x.1.last_bbox.iou(b).total_cmp(&y.1.last_bbox.iou(b)))
                .map(|(i, _)| i);
            let idx = idx.unwrap_or_else(|| self.open(*b, t, &mut touched));
            touched[idx] = true;
            self.tracks[idx].seen(*b, t);
        }
        let lost_after = self.opts.lost_after;
        let (open, ended): (Vec<Track>, Vec<Track>) = std::mem::take(&mut self.tracks)
            .into_iter()
            .partition(|tr| t - tr.last_seen <= lost_after);
        self.tracks = open;
        for mut tr in ended {
            out.extend(self.end(&mut tr));
        }
        out
    }

    /// Closes every track (end of stream); returns the passages not yet emitted.
    pub fn flush(&mut self) -> Vec<Passage> {
        let ended = std::mem::take(&mut self.tracks);
        ended
            .into_iter()
            .filter_map(|mut tr| self.end(&mut tr))
            .collect()
    }

    /// Ends a track: its passage if it was not published yet and its vote is decisive (else it
    /// is withheld), and its closing record.
    fn end(&mut self, tr: &mut Track) -> Option<Passage> {
        let mut passage = None;
        if tr.emitted.is_none() && !tr.votes.is_empty() {
            if tr.leader_share() > DECISIVE_SHARE {
                let p = tr.passage();
                tr.emitted = Some(p.plate.clone());
                passage = Some(p);
            } else {
                self.withheld.push(tr.withheld());
            }
        }
        self.close(tr);
        passage
    }

    fn associate(&self, read: &PlateRead, touched: &[bool]) -> Option<usize> {
        let mut best: Option<(usize, f32)> = None;
        for (i, tr) in self.tracks.iter().enumerate() {
            if touched[i] {
                continue;
            }
            let iou = tr.last_bbox.iou(&read.bbox);
            let text_match = tr.votes.keys().any(|p| {
                near_equal(p, &read.plate)
                    || (is_fragment(p, &read.plate) && close(&tr.last_bbox, &read.bbox))
            });
            let score = if iou >= self.opts.min_iou {
                iou + if text_match { 1.0 } else { 0.0 }
            } else if text_match {
                0.5
            } else {
                continue;
            };
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// Whether one plate is a prefix or suffix of the other (a partly detected plate, e.g. one row
/// of a two-line plate), at least 2 characters long.
fn is_fragment(a: &str, b: &str) -> bool {
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    short.len() >= 2
        && long.len() > short.len()
        && (long.starts_with(short) || long.ends_with(short))
}

/// Whether two boxes are near each other: centres within twice the taller box's height.
fn close(a: &BBox, b: &BBox) -> bool {
    let (ax, ay) = (a.x + a.w / 2.0, a.y + a.h / 2.0);
    let (bx, by) = (b.x + b.w / 2.0, b.y + b.h / 2.0);
    ((ax - bx).powi(2) + (ay - by).powi(2)).sqrt() < 2.0 * a.h.max(b.h)
}

/// Whether two plates differ in at most one character (same length) or by one missing character.
pub fn near_equal(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    match a.len() as isize - b.len() as isize {
        0 => a.iter().zip(&b).filter(|(x, y)| x != y).count() <= 1,
        1 | -1 => {
            let (long, short) = if a.len() > b.len() {
                (&a, &b)
            } else {
                (&b, &a)
            };
            (0..long.len()).any(|skip| {
                long.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .map(|(_, c)| c)
                    .eq(short.iter())
            })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(plate: &str, x: f32, conf: f32) -> PlateRead {
        PlateRead {
            plate: plate.into(),
            raw: plate.into(),
            region: Region::Vn,
            confidence: conf,
            bbox: BBox {
                x,
                y: 100.0,
                w: 100.0,
                h: 30.0,
            },
        }
    }

    fn tracker() -> Tracker {
        Tracker::new(TrackerOptions {
            confirm_frames: 3,
            lost_after: 1.0,
            min_iou: 0.2,
            settle: 2.0,
        })
    }

    #[test]
    fn one_passage_per_vehicle_with_voting() {
        let mut t = tracker();
        let mut out = Vec::new();
        // A plate moving right, misread once.
        for (i, p) in ["51A12345", "51A12346", "51A12345", "51A12345", "51A12345"]
            .iter()
            .enumerate()
        {
            out.extend(t.update(i as f64 * 0.2, &[read(p, 10.0 * i as f32, 0.9)]));
        }
        out.extend(t.update(5.0, &[]));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].plate, "51A12345");
        // Emitted early, at the third agreeing read, which is the track's fourth frame.
        assert_eq!(out[0].frames, 4);
        assert_eq!(t.open_tracks(), 0);
    }

    #[test]
    fn a_parked_plate_is_one_passage_and_a_return_is_another() {
        let mut t = tracker();
        let mut out = Vec::new();
        for i in 0..100 {
            out.extend(t.update(i as f64 * 0.5, &[read("29C12345", 0.0, 0.9)]));
        }
        assert_eq!(out.len(), 1);
        // Gone for longer than lost_after, then back: a new passage.
        out.extend(t.update(60.0, &[]));
        for i in 0..3 {
            out.extend(t.update(70.0 + i as f64 * 0.2, &[read("29C12345", 0.0, 0.9)]));
        }
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn short_tracks_are_emitted_when_they_close_or_at_flush() {
        let mut t = tracker();
        assert!(t.update(0.0, &[read("30E1234", 0.0, 0.8)]).is_empty());
        let out = t.update(2.0, &[read("ABC1234", 500.0, 0.8)]);
        assert_eq!(
            out.iter().map(|p| p.plate.as_str()).collect::<Vec<_>>(),
            ["30E1234"]
        );
        let out = t.flush();
        assert_eq!(
            out.iter().map(|p| p.plate.as_str()).collect::<Vec<_>>(),
            ["ABC1234"]
        );
    }

    #[test]
    fn two_plates_in_one_frame_are_two_tracks() {
        let mut t = tracker();
        let mut out = Vec::new();
        for i in 0..3 {
            let f = i as f64 * 0.1;
            out.extend(t.update(
                f,
                &[read("51A12345", 0.0, 0.9), read("51A12346", 400.0, 0.9)],
            ));
        }
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn a_fragment_of_a_nearby_plate_joins_its_track() {
        let mut t = tracker();
        let mut out = Vec::new();
        for i in 0..4 {
            out.extend(t.update(i as f64 * 0.2, &[read("29C123456", 0.0, 0.8)]));
        }
        // Next frames see only the top row, moved well past IoU range but still close.
        let mut top = read("29C1", 0.0, 0.95);
        top.bbox = BBox {
            x: 10.0,
            y: 60.0,
            w: 60.0,
            h: 30.0,
        };
        for i in 4..8 {
            out.extend(t.update(i as f64 * 0.2, &[top.clone()]));
        }
        out.extend(t.flush());
        assert_eq!(
            out.iter().map(|p| p.plate.as_str()).collect::<Vec<_>>(),
            ["29C123456"]
        );
    }

    #[test]
    fn every_track_closes_once_with_its_whole_motion_read_or_not() {
        let mut t = tracker();
        // A read plate moving right over 10 frames: emitted early, closed with the last box.
        for i in 0..10 {
            t.update(i as f64 * 0.2, &[read("51A12345", 20.0 * i as f32, 0.9)]);
        }
        assert!(t.take_closed().is_empty(), "still open");
        // A vehicle whose plate is detected but never read, moving left far away.
        let unread = |x: f32| BBox {
            x,
            y: 400.0,
            w: 100.0,
            h: 30.0,
        };
        for i in 0..4 {
            let f = 2.0 + i as f64 * 0.2;
            assert!(t
                .update_with_unread(f, &[], &[unread(800.0 - 20.0 * i as f32)])
                .is_empty());
        }
        // A one-frame flicker of an unread box is not a vehicle.
        t.update_with_unread(3.0, &[], &[unread(100.0)]);
        let closed = t.take_closed();
        assert_eq!(closed.len(), 1, "{closed:?}");
        assert_eq!(closed[0].plate.as_deref(), Some("51A12345"));
        assert_eq!(
            (closed[0].first_bbox.x, closed[0].last_bbox.x),
            (0.0, 180.0)
        );
        assert!(
            t.update(10.0, &[]).is_empty(),
            "no plate event for the unread vehicle"
        );
        let closed = t.take_closed();
        assert_eq!(closed.len(), 1, "{closed:?}");
        assert_eq!(closed[0].plate, None);
        assert_eq!(closed[0].frames, 4);
        assert_eq!(
            (closed[0].first_bbox.x, closed[0].last_bbox.x),
            (800.0, 740.0)
        );
        // Unread boxes keep a read track alive and extend its motion.
        for i in 0..3 {
            t.update(
                20.0 + i as f64 * 0.2,
                &[read("29C12345", 20.0 * i as f32, 0.9)],
            );
        }
        t.update_with_unread(20.6, &[], &[unread(60.0)].map(|b| BBox { y: 100.0, ..b }));
        t.flush();
        let closed = t.take_closed();
        assert_eq!(closed.len(), 1);
        assert_eq!(
            (
                closed[0].plate.as_deref(),
                closed[0].frames,
                closed[0].last_bbox.x
            ),
            (Some("29C12345"), 4, 60.0)
        );
    }

    #[test]
    fn a_confirmed_read_waits_for_a_fuller_read_of_the_same_plate() {
        let mut t = tracker();
        let mut out = Vec::new();
        // The two-line plate's last digit is missed in most early frames.
        let early = ["29C123456", "29C12345", "29C12345", "29C12345"];
        for (i, p) in early.iter().enumerate() {
            out.extend(t.update(i as f64 * 0.2, &[read(p, 5.0 * i as f32, 0.9)]));
        }
        assert!(out.is_empty(), "a fuller read is in the running: {out:?}");
        for i in 4..9 {
            out.extend(t.update(i as f64 * 0.2, &[read("29C123456", 5.0 * i as f32, 0.9)]));
        }
        out.extend(t.flush());
        assert_eq!(
            out.iter().map(|p| p.plate.as_str()).collect::<Vec<_>>(),
            ["29C123456"]
        );
    }

    #[test]
    fn the_settle_time_bounds_the_wait_for_a_fuller_read() {
        let mut t = tracker();
        let mut out = Vec::new();
        out.extend(t.update(0.0, &[read("51A123456", 0.0, 0.7)]));
        for i in 1..20 {
            out.extend(t.update(i as f64 * 0.2, &[read("51A12345", 0.0, 0.9)]));
            if !out.is_empty() {
                // Published at the settle time (2 s), not at the third read (0.6 s).
                assert!((i as f64 * 0.2 - 2.0).abs() < 1e-9, "published at {i}");
                break;
            }
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].plate, "51A12345");
    }

    #[test]
    fn a_track_whose_reads_disagree_is_withheld_and_closes_without_a_plate() {
        let mut t = tracker();
        let mut out = Vec::new();
        for (i, p) in ["30E12345", "30E72345", "30E12345", "30E72345"]
            .iter()
            .enumerate()
        {
            out.extend(t.update(i as f64 * 0.2, &[read(p, 0.0, 0.9)]));
        }
        out.extend(t.update(10.0, &[]));
        assert!(out.is_empty(), "a guess was published: {out:?}");
        let withheld = t.take_withheld();
        assert_eq!(withheld.len(), 1);
        assert_eq!(withheld[0].frames, 4);
        let plates: Vec<&str> = withheld[0]
            .candidates
            .iter()
            .map(|(p, _)| p.as_str())
            .collect();
        assert_eq!(plates, ["30E12345", "30E72345"]);
        let closed = t.take_closed();
        assert_eq!(closed.len(), 1);
        assert_eq!(
            closed[0].plate, None,
            "the vehicle counts, the guess does not"
        );
    }

    #[test]
    fn a_strict_grammar_read_is_preferred_over_a_generic_one() {
        let mut t = tracker();
        let mut out = Vec::new();
        let mut generic = read("AB1234C", 0.0, 0.9);
        generic.region = Region::Generic;
        out.extend(t.update(0.0, &[read("51A12345", 0.0, 0.6)]));
        for i in 1..4 {
            out.extend(t.update(i as f64 * 0.2, &[generic.clone()]));
        }
        assert!(out.is_empty(), "waits for the VN read to settle: {out:?}");
    }

    #[test]
    fn near_equal_allows_one_edit() {
        assert!(near_equal("51A12345", "51A12346"));
        assert!(near_equal("51A12345", "51A1234"));
        assert!(near_equal("51A1234", "51AB1234"));
        assert!(!near_equal("51A12345", "51B12346"));
        assert!(!near_equal("51A12345", "51A123"));
    }
}
