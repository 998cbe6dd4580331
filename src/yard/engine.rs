//! The yard state machine: decides what an input means, as events, and changes state only by
//! applying events.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

use super::{InsideVehicle, Match, YardEvent, YardEventKind};
use crate::event::{format_ts, Envelope};

/// Camera and lane named in events that the hub's commands caused.
pub const HUB: &str = "hub";
/// Camera named in events the yard's own timer caused (`overstay`).
pub const TIMER: &str = "yard";

/// A yard's fixed rules (from the config).
#[derive(Debug, Clone)]
pub struct YardRules {
    pub id: String,
    pub name: String,
    pub capacity: u32,
    /// Report vehicles inside longer than this.
    pub overstay_after: Option<chrono::Duration>,
    /// Character pairs an exit may differ by (in one position) from the entry's plate; empty
    /// means exact matching only.
    pub confusions: Vec<(char, char)>,
}

/// A listed vehicle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    pub entered_at: String,
    pub entry_lane: String,
    pub entry_event_id: Uuid,
    #[serde(default)]
    pub overstay_reported: bool,
}

/// What a yard knows; changed only by [`YardState::apply`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct YardState {
    /// Vehicles inside with a known plate.
    pub inside: BTreeMap<String, Listed>,
    /// Vehicles counted inside without a known plate.
    pub unidentified: u32,
    /// Listed vehicles that are probably gone (exits that could not be paired); at most
    /// `inside.len()`.
    pub unpaired_exits: u32,
    /// Whether the last transition was to full.
    pub full: bool,
    /// Time of the last applied event.
    pub updated_at: Option<String>,
}

/// An event with the envelope fields the state depends on. `seq` is not among them: the outbox
/// assigns it later, and the state must not depend on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub event_id: Uuid,
    pub at: DateTime<Utc>,
    pub camera: String,
    pub lane: String,
    pub body: YardEvent,
}

impl Emitted {
    /// The event as a consumer receives it (without `seq`, which the outbox assigns) turned back
    /// into what [`YardState::apply`] needs.
    pub fn from_envelope(e: &Envelope<YardEvent>) -> Result<Emitted, String> {
        let at = DateTime::parse_from_rfc3339(&e.ts)
            .map_err(|err| format!("bad ts {:?}: {err}", e.ts))?
            .with_timezone(&Utc);
        Ok(Emitted {
            event_id: e.event_id,
            at,
            camera: e.camera.clone(),
            lane: e.lane.clone(),
            body: e.body.clone(),
        })
    }
}

/// A vehicle passage in a yard lane, as the plate pipeline saw it.
#[derive(Debug, Clone)]
pub struct PassageInput {
    /// `None` when the plate could not be read with confidence.
    pub plate: Option<String>,
    pub direction: Direction,
    pub camera: String,
    pub lane: String,
    pub at: DateTime<Utc>,
}

/// Which way a vehicle crossed the yard's gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Entry,
    Exit,
}

/// A vehicle named in a `yard_set` command.
#[derive(Debug, Clone, PartialEq)]
pub struct SetVehicle {
    pub plate: String,
    pub entered_at: Option<DateTime<Utc>>,
}

/// The most vehicles a yard's counts may hold (the limit of `yard_set`'s `occupied` as well): far
/// beyond any real yard, far below where `u32` arithmetic would wrap.
pub const MAX_VEHICLES: u32 = 1_000_000;

impl YardState {
    /// Checks the invariants every state built by [`YardState::apply`] keeps, for a state read
    /// from disk: counts within [`MAX_VEHICLES`] (so occupancy cannot wrap), at most as many
    /// probably-gone vehicles as listed ones, listed plates non-empty with valid entry times.
    /// The error names the broken invariant.
    pub fn check(&self) -> Result<(), String> {
        let listed = self.inside.len() as u64;
        let unidentified = u64::from(self.unidentified);
        if unidentified > u64::from(MAX_VEHICLES) {
            return Err(format!(
                "unidentified = {unidentified} is beyond the most a yard can hold ({MAX_VEHICLES})"
            ));
        }
        if listed + unidentified > u64::from(MAX_VEHICLES) {
            return Err(format!(
                "{listed} listed + {unidentified} unidentified vehicles is beyond the most a yard \
                 can hold ({MAX_VEHICLES})"
            ));
        }
        if u64::from(self.unpaired_exits) > listed {
            return Err(format!(
                "unpaired_exits = {} is more than the {listed} listed vehicles",
                self.unpaired_exits
            ));
        }
        for (plate, l) in &self.inside {
            if plate.is_empty() {
                return Err("a listed vehicle has an empty plate".into());
            }
            if parse_ts(&l.entered_at).is_none() {
                return Err(format!(
                    "listed vehicle {plate:?} has an invalid entered_at {:?}",
                    l.entered_at
                ));
            }
        }
        if let Some(t) = self.updated_at.as_deref().filter(|t| parse_ts(t).is_none()) {
            return Err(format!("updated_at {t:?} is not a valid time"));
        }
        Ok(())
    }

    /// Vehicles inside.
    pub fn occupied(&self) -> u32 {
        (self.inside.len() as u32 + self.unidentified).saturating_sub(self.unpaired_exits)
    }

    /// Applies one event. This is the only way the state changes, both live and when a consumer
    /// (or a test) replays the published log.
    pub fn apply(&mut self, e: &Emitted) {
        let b = &e.body;
        let ts = format_ts(e.at);
        match b.kind {
            YardEventKind::Entry => {
                if let Some(plate) = &b.plate {
                    self.inside.insert(
                        plate.clone(),
                        Listed {
                            entered_at: ts.clone(),
                            entry_lane: e.lane.clone(),
                            entry_event_id: e.event_id,
                            overstay_reported: false,
                        },
                    );
                }
            }
            YardEventKind::Exit | YardEventKind::Removed => {
                if let Some(p) = &b.inside_plate {
                    self.inside.remove(p);
                }
            }
            YardEventKind::Overstay => {
                if let Some(v) = b.inside_plate.as_ref().and_then(|p| self.inside.get_mut(p)) {
                    v.overstay_reported = true;
                }
            }
            YardEventKind::Set => {
                let old = std::mem::take(&mut self.inside);
                for v in b.inside.iter().flatten() {
                    let reported = old.get(&v.plate).is_some_and(|o| {
                        o.entry_event_id == v.entry_event_id && o.overstay_reported
                    });
                    self.inside.insert(
                        v.plate.clone(),
                        Listed {
                            entered_at: v.entered_at.clone(),
                            entry_lane: v.entry_lane.clone(),
                            entry_event_id: v.entry_event_id,
                            overstay_reported: reported,
                        },
                    );
                }
            }
            YardEventKind::Full => self.full = true,
            YardEventKind::Available => self.full = false,
            YardEventKind::UnmatchedExit | YardEventKind::DuplicateEntry => {}
        }
        self.unidentified = b.unidentified;
        self.unpaired_exits = b.unpaired_exits;
        self.updated_at = Some(ts);
    }

    /// The inside list, oldest entry first.
    pub fn inside_list(&self) -> Vec<InsideVehicle> {
        let mut v: Vec<InsideVehicle> = self
            .inside
            .iter()
            .map(|(plate, l)| InsideVehicle {
                plate: plate.clone(),
                entered_at: l.entered_at.clone(),
                entry_lane: l.entry_lane.clone(),
                entry_event_id: l.entry_event_id,
            })
            .collect();
        v.sort_by(|a, b| a.entered_at.cmp(&b.entered_at).then(a.plate.cmp(&b.plate)));
        v
    }
}

/// Most vehicles a `set` event may list. A listed vehicle is at most about 230 bytes of JSON (a
/// plate of up to [`PLATE_MAX_CHARS`], a lane id of up to 64), so the event stays well below
/// [`crate::event::MAX_EVENT_BYTES`].
pub const SET_LIST_MAX: usize = 2000;

/// Longest plate the hub may list (normalised characters); real plates have at most 10.
pub const PLATE_MAX_CHARS: usize = 16;

/// One yard: its rules and its state.
#[derive(Debug, Clone)]
pub struct Yard {
    pub rules: YardRules,
    pub state: YardState,
}

/// Counters and list change of an event under construction.
struct Change {
    kind: YardEventKind,
    plate: Option<String>,
    match_: Option<Match>,
    inside_plate: Option<String>,
    listed_delta: i64,
    unidentified: u32,
    unpaired_exits: u32,
}

impl Yard {
    pub fn new(rules: YardRules, state: YardState) -> Yard {
        Yard { rules, state }
    }

    /// A vehicle passed the gate.
    pub fn passage(&mut self, p: PassageInput) -> Vec<Emitted> {
        let at = p.at.trunc_subsecs(3);
        let s = &self.state;
        let change = match (p.direction, p.plate) {
            (Direction::Entry, Some(plate)) if s.inside.contains_key(&plate) => Change {
                inside_plate: Some(plate.clone()),
                ..self.unchanged(YardEventKind::DuplicateEntry, Some(plate))
            },
            (Direction::Entry, Some(plate)) => Change {
                listed_delta: 1,
                ..self.unchanged(YardEventKind::Entry, Some(plate))
            },
            (Direction::Entry, None) => Change {
                unidentified: s.unidentified + 1,
                ..self.unchanged(YardEventKind::Entry, None)
            },
            (Direction::Exit, Some(plate)) => match self.find(&plate) {
                Some((listed, m)) => Change {
                    match_: Some(m),
                    inside_plate: Some(listed),
                    listed_delta: -1,
                    // A listed vehicle left: it can no longer be one of the probably-gone ones
                    // beyond what the list holds.
                    unpaired_exits: s.unpaired_exits.min(s.inside.len() as u32 - 1),
                    ..self.unchanged(YardEventKind::Exit, Some(plate))
                },
                None => self.unpaired(Some(plate)),
            },
            (Direction::Exit, None) if s.unidentified > 0 => Change {
                unidentified: s.unidentified - 1,
                ..self.unchanged(YardEventKind::Exit, None)
            },
            (Direction::Exit, None) => self.unpaired(None),
        };
        self.commit(change, at, &p.camera, &p.lane, None)
    }

    /// Reports vehicles that have now been inside longer than the limit (once per stay), at most
    /// `max` of them, longest inside first; the rest are reported by the next calls.
    pub fn tick(&mut self, now: DateTime<Utc>, max: usize) -> Vec<Emitted> {
        let Some(limit) = self.rules.overstay_after else {
            return Vec::new();
        };
        let now = now.trunc_subsecs(3);
        let mut due: Vec<(DateTime<Utc>, String, String)> = self
            .state
            .inside
            .iter()
            .filter(|(_, l)| !l.overstay_reported)
            .filter_map(|(p, l)| Some((parse_ts(&l.entered_at)?, p, l)))
            .filter(|(t, _, _)| now - *t > limit)
            .map(|(t, p, l)| (t, p.clone(), l.entry_lane.clone()))
            .collect();
        due.sort();
        due.truncate(max);
        let mut out = Vec::new();
        for (_, plate, lane) in due {
            let change = Change {
                inside_plate: Some(plate.clone()),
                ..self.unchanged(YardEventKind::Overstay, Some(plate))
            };
            out.extend(self.commit(change, now, TIMER, &lane, None));
        }
        out
    }

    /// `yard_set`: the hub states the count and/or the list after an audit. The `set` event
    /// carries the whole list after the change, so the list is bounded ([`SET_LIST_MAX`]).
    pub fn set(
        &mut self,
        occupied: Option<u32>,
        inside: Option<Vec<SetVehicle>>,
        command_id: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<Vec<Emitted>, String> {
        let now = now.trunc_subsecs(3);
        if occupied.is_none() && inside.is_none() {
            return Err(
                "yard_set needs \"occupied\" (a count) and/or \"inside\" (a list of plates)".into(),
            );
        }
        match &inside {
            Some(v) if v.len() > SET_LIST_MAX => {
                return Err(format!(
                    "inside lists {} vehicles; a yard_set lists at most {SET_LIST_MAX} (its set \
                     event carries the whole list, and events are limited in size)",
                    v.len()
                ))
            }
            None if self.state.inside.len() > SET_LIST_MAX => {
                return Err(format!(
                    "yard {:?} lists {} vehicles and a set event carries the whole list, at most \
                     {SET_LIST_MAX}: send \"inside\" with the complete list (at most \
                     {SET_LIST_MAX} plates), or take vehicles out with yard_remove first",
                    self.rules.id,
                    self.state.inside.len()
                ))
            }
            _ => {}
        }
        let event_id = Uuid::now_v7();
        let list: Vec<InsideVehicle> = match inside {
            Some(vehicles) => {
                let mut seen = std::collections::BTreeSet::new();
                let mut list = Vec::with_capacity(vehicles.len());
                for v in vehicles {
                    if v.plate.is_empty() || !seen.insert(v.plate.clone()) {
                        return Err(format!(
                            "inside: plate {:?} is empty or listed twice",
                            v.plate
                        ));
                    }
                    // A vehicle already listed keeps its entry; a new one enters with this event.
                    list.push(match self.state.inside.get(&v.plate) {
                        Some(l) if v.entered_at.is_none() => InsideVehicle {
                            plate: v.plate,
                            entered_at: l.entered_at.clone(),
                            entry_lane: l.entry_lane.clone(),
                            entry_event_id: l.entry_event_id,
                        },
                        _ => InsideVehicle {
                            plate: v.plate,
                            entered_at: format_ts(v.entered_at.unwrap_or(now).trunc_subsecs(3)),
                            entry_lane: HUB.into(),
                            entry_event_id: event_id,
                        },
                    });
                }
                list
            }
            None => self.state.inside_list(),
        };
        let listed = list.len() as u32;
        let (unidentified, unpaired_exits) = match occupied {
            Some(n) if n >= listed => (n - listed, 0),
            Some(n) => (0, listed - n),
            None => (0, 0),
        };
        let body = self.body(
            YardEventKind::Set,
            None,
            listed,
            unidentified,
            unpaired_exits,
        );
        let main = Emitted {
            event_id,
            at: now,
            camera: HUB.into(),
            lane: HUB.into(),
            body: YardEvent {
                inside: Some(list),
                command_id: Some(command_id),
                ..body
            },
        };
        Ok(self.apply_with_transitions(main))
    }

    /// `yard_remove`: a listed vehicle (or, with `None`, an unidentified one) left unseen.
    pub fn remove(
        &mut self,
        plate: Option<String>,
        command_id: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<Vec<Emitted>, String> {
        let now = now.trunc_subsecs(3);
        let s = &self.state;
        let change = match plate {
            Some(p) if s.inside.contains_key(&p) => Change {
                inside_plate: Some(p.clone()),
                listed_delta: -1,
                unpaired_exits: s.unpaired_exits.min(s.inside.len() as u32 - 1),
                ..self.unchanged(YardEventKind::Removed, Some(p))
            },
            Some(p) => return Err(format!("{p:?} is not inside yard {:?}", self.rules.id)),
            None if s.unidentified > 0 => Change {
                unidentified: s.unidentified - 1,
                ..self.unchanged(YardEventKind::Removed, None)
            },
            None => {
                return Err(format!(
                    "yard {:?} has no unidentified vehicle inside; give \"plate\"",
                    self.rules.id
                ))
            }
        };
        Ok(self.commit(change, now, HUB, HUB, Some(command_id)))
    }

    fn unchanged(&self, kind: YardEventKind, plate: Option<String>) -> Change {
        Change {
            kind,
            plate,
            match_: None,
            inside_plate: None,
            listed_delta: 0,
            unidentified: self.state.unidentified,
            unpaired_exits: self.state.unpaired_exits,
        }
    }

    /// An exit that pairs with no listed vehicle: it takes an unidentified vehicle out if there
    /// is one, else marks a listed vehicle as probably gone, else (empty yard) changes nothing.
    fn unpaired(&self, plate: Option<String>) -> Change {
        let s = &self.state;
        let mut c = self.unchanged(YardEventKind::UnmatchedExit, plate);
        if s.unidentified > 0 {
            c.unidentified -= 1;
        } else if (s.unpaired_exits as usize) < s.inside.len() {
            c.unpaired_exits += 1;
        }
        c
    }

    /// The listed plate an exit read pairs with: exact, else the only listed plate one configured
    /// confusion away.
    fn find(&self, read: &str) -> Option<(String, Match)> {
        if self.state.inside.contains_key(read) {
            return Some((read.to_owned(), Match::Exact));
        }
        let mut candidates = self
            .state
            .inside
            .keys()
            .filter(|listed| one_confusion_apart(read, listed, &self.rules.confusions));
        match (candidates.next(), candidates.next()) {
            (Some(only), None) => Some((only.clone(), Match::Fuzzy)),
            _ => None, // none, or ambiguous: do not guess
        }
    }

    fn body(
        &self,
        kind: YardEventKind,
        plate: Option<String>,
        listed: u32,
        unidentified: u32,
        unpaired_exits: u32,
    ) -> YardEvent {
        let occupied = (listed + unidentified).saturating_sub(unpaired_exits);
        YardEvent {
            yard: self.rules.id.clone(),
            kind,
            plate,
            match_: None,
            inside_plate: None,
            entry_event_id: None,
            dwell_s: None,
            inside: None,
            command_id: None,
            capacity: self.rules.capacity,
            occupied,
            free: self.rules.capacity.saturating_sub(occupied),
            unidentified,
            unpaired_exits,
        }
    }

    fn commit(
        &mut self,
        c: Change,
        at: DateTime<Utc>,
        camera: &str,
        lane: &str,
        command_id: Option<serde_json::Value>,
    ) -> Vec<Emitted> {
        let listed = (self.state.inside.len() as i64 + c.listed_delta) as u32;
        let mut body = self.body(c.kind, c.plate, listed, c.unidentified, c.unpaired_exits);
        body.match_ = c.match_;
        body.command_id = command_id;
        if let Some(l) = c
            .inside_plate
            .as_ref()
            .and_then(|p| self.state.inside.get(p))
        {
            body.entry_event_id = Some(l.entry_event_id);
            if c.kind != YardEventKind::DuplicateEntry {
                body.dwell_s = parse_ts(&l.entered_at).map(|t| (at - t).num_seconds());
            }
        }
        body.inside_plate = c.inside_plate;
        let main = Emitted {
            event_id: Uuid::now_v7(),
            at,
            camera: camera.into(),
            lane: lane.into(),
            body,
        };
        self.apply_with_transitions(main)
    }

    /// Applies `main`, then a `full` or `available` event if it crossed the capacity.
    fn apply_with_transitions(&mut self, main: Emitted) -> Vec<Emitted> {
        self.state.apply(&main);
        let occupied = self.state.occupied();
        let transition = match (self.state.full, occupied >= self.rules.capacity) {
            (false, true) => Some(YardEventKind::Full),
            (true, false) => Some(YardEventKind::Available),
            _ => None,
        };
        let mut out = vec![main];
        if let Some(kind) = transition {
            let last = &out[0];
            let s = &self.state;
            let e = Emitted {
                event_id: Uuid::now_v7(),
                at: last.at,
                camera: last.camera.clone(),
                lane: last.lane.clone(),
                body: self.body(
                    kind,
                    None,
                    s.inside.len() as u32,
                    s.unidentified,
                    s.unpaired_exits,
                ),
            };
            self.state.apply(&e);
            out.push(e);
        }
        out
    }
}

/// Whether `a` and `b` differ in exactly one position by one of the `pairs` (either way round).
pub fn one_confusion_apart(a: &str, b: &str, pairs: &[(char, char)]) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() != b.len() {
        return false;
    }
    let mut diffs = a.iter().zip(&b).filter(|(x, y)| x != y);
    match (diffs.next(), diffs.next()) {
        (Some((x, y)), None) => pairs
            .iter()
            .any(|&(p, q)| (p == *x && q == *y) || (p == *y && q == *x)),
        _ => false,
    }
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
