//! The yards of a running box: passages and timer ticks in, events to the outbox, state to disk,
//! occupancy to its retained topic, and the hub's `yard_set`, `yard_remove`, `yard_list`.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::config::YardConfig;
use super::engine::{Emitted, PassageInput, SetVehicle, Yard, PLATE_MAX_CHARS};
use super::store::{Stored, StoredEvent, YardStore};
use super::Occupancy;
use crate::delivery::Delivery;
use crate::event::{format_ts, EventFactory, Origin};
use crate::hub::{optional_str, optional_u64, Commands};
use crate::plate::grammar::normalise;

/// Overstay events stored under one hold of a yard's lock (each is one synced outbox append).
const OVERSTAY_BATCH: usize = 100;

/// Largest page of a `yard_list` reply.
const LIST_PAGE_MAX: usize = 1000;

struct Unit {
    yard: Yard,
    store: YardStore,
    stored: Stored,
    started: DateTime<Utc>,
    /// Failed writes of the state file or of events into the outbox, since start, and the last
    /// one: shown in status so a full disk is seen before the hub notices missing events.
    storage_errors: u64,
    last_storage_error: Option<String>,
}

impl Unit {
    fn storage_failed(&mut self, error: &str) {
        self.storage_errors += 1;
        self.last_storage_error = Some(error.to_owned());
    }
}

/// All configured yards.
pub struct YardService {
    units: BTreeMap<String, Mutex<Unit>>,
    /// Yards whose state could not be loaded (unreadable or inconsistent file), with the reason:
    /// out of service (their commands answer the reason) while the others and the cameras go on.
    refused: BTreeMap<String, String>,
    events: Arc<EventFactory>,
    delivery: Arc<Delivery>,
}

impl YardService {
    /// Loads every yard's state from `<state_dir>/yard/`, sends events a crash left unsent and
    /// publishes each yard's occupancy. A yard whose state cannot be loaded is refused (logged as
    /// an error, out of service) without keeping the other yards or the cameras down.
    pub fn open(
        yards: &[YardConfig],
        state_dir: &Path,
        events: Arc<EventFactory>,
        delivery: Arc<Delivery>,
    ) -> Result<Arc<YardService>> {
        let dir = state_dir.join("yard");
        let mut units = BTreeMap::new();
        let mut refused = BTreeMap::new();
        for y in yards {
            let loaded = YardStore::open(&dir, &y.id).and_then(|store| {
                let stored = store.load()?;
                Ok((store, stored))
            });
            let (store, stored) = match loaded {
                Ok(l) => l,
                Err(e) => {
                    let error = format!("{e:#}");
                    tracing::error!(yard = %y.id, error = %error, "yard out of service: its state cannot be loaded; the other yards and the cameras go on");
                    refused.insert(y.id.clone(), error);
                    continue;
                }
            };
            let yard = Yard::new(y.rules(), stored.state.clone());
            tracing::info!(yard = %y.id, occupied = yard.state.occupied(), capacity = y.capacity, pending = stored.pending.len(), "yard state loaded");
            let unit = Unit {
                yard,
                store,
                stored,
                started: Utc::now(),
                storage_errors: 0,
                last_storage_error: None,
            };
            units.insert(y.id.clone(), Mutex::new(unit));
        }
        let svc = Arc::new(YardService {
            units,
            refused,
            events,
            delivery,
        });
        for (id, unit) in &svc.units {
            let mut u = unit.lock().expect("yard lock");
            // Events a crash left in the yard file go to the outbox now; when the outbox cannot
            // take them (full disk) they stay in the file, counted in status, and go with the
            // yard's next change: the box starts all the same.
            if let Err(e) = svc.flush(&mut u) {
                let error = format!("{e:#}");
                tracing::error!(yard = %id, error = %error, pending = u.stored.pending.len(), "yard events kept on disk, to be sent later");
                u.storage_failed(&error);
            }
            svc.publish_occupancy(&u);
        }
        Ok(svc)
    }

    /// The yards' part of the status document: per yard its counts, the events waiting in its
    /// file for the outbox, and its storage failures; or why it is out of service.
    pub fn status(&self) -> Value {
        let mut yards = Map::new();
        for (id, unit) in &self.units {
            let u = unit.lock().expect("yard lock");
            let o = occupancy(&u);
            let mut y = json!({
                "occupied": o.occupied,
                "capacity": o.capacity,
                "unsent": u.stored.pending.len(),
                "storage_errors": u.storage_errors,
            });
            if let Some(e) = &u.last_storage_error {
                y["last_storage_error"] = e.clone().into();
            }
            yards.insert(id.clone(), y);
        }
        for (id, reason) in &self.refused {
            yards.insert(id.clone(), json!({"out_of_service": reason}));
        }
        Value::Object(yards)
    }

    /// Ids of the configured yards, also those out of service.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .units
            .keys()
            .chain(self.refused.keys())
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// Why a yard is out of service, if it is.
    pub fn refused(&self, yard: &str) -> Option<&str> {
        self.refused.get(yard).map(String::as_str)
    }

    fn out_of_service(&self, yard: &str) -> Option<String> {
        self.refused(yard)
            .map(|e| format!("yard {yard:?} is out of service: {e}"))
    }

    /// A vehicle passed a yard gate.
    pub fn passage(&self, yard: &str, p: PassageInput) {
        // A storage failure is logged by `change`; the passage is lost to the yard.
        let _ = self.change(yard, |y| Ok(y.passage(p)));
    }

    /// Overstay checks; call periodically. Many vehicles can fall due at once (a yard restored
    /// after days offline): they are reported in batches, the yard unlocked between batches, so
    /// passages and hub commands are never held up for more than one batch.
    pub fn tick(&self, now: DateTime<Utc>) {
        for id in self.units.keys() {
            loop {
                match self.change(id, |y| Ok(y.tick(now, OVERSTAY_BATCH))) {
                    Ok(events) if events.len() >= OVERSTAY_BATCH => continue,
                    // Done, or a storage error (logged by `change`): the next tick tries again.
                    _ => break,
                }
            }
        }
    }

    /// Current occupancy of a yard.
    pub fn occupancy(&self, yard: &str) -> Option<Occupancy> {
        self.units
            .get(yard)
            .map(|u| occupancy(&u.lock().expect("yard lock")))
    }

    /// Adds the hub commands this service answers: `yard_set`, `yard_remove`, `yard_list`.
    pub fn add_commands(self: &Arc<Self>, commands: &mut Commands) {
        for name in ["yard_set", "yard_remove", "yard_list"] {
            let yards = self.clone();
            commands.add(name, move |req| yards.command(name, req));
        }
    }

    /// Runs `yard_set`, `yard_remove` or `yard_list`.
    pub fn command(&self, name: &str, req: &Map<String, Value>) -> Result<Value, String> {
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let ids = self.ids();
        if ids.is_empty() {
            return Err("no yard is configured on this box".into());
        }
        let yard = match optional_str(req, "yard")? {
            Some(y) if ids.iter().any(|i| i == y) => y.to_owned(),
            Some(y) => return Err(format!("unknown yard {y:?}; yards: {}", ids.join(", "))),
            None if ids.len() == 1 => ids[0].clone(),
            None => return Err(format!("give \"yard\": one of {}", ids.join(", "))),
        };
        if let Some(e) = self.out_of_service(&yard) {
            return Err(e);
        }
        let now = Utc::now();
        match name {
            "yard_set" => {
                let occupied = match req.get("occupied") {
                    None => None,
                    Some(v) => Some(
                        v.as_u64()
                            .filter(|n| *n <= 1_000_000)
                            .ok_or("occupied must be a whole number from 0 to 1000000")?
                            as u32,
                    ),
                };
                let inside = match req.get("inside") {
                    None => None,
                    Some(v) => Some(parse_inside(v)?),
                };
                self.change_checked(&yard, |y| y.set(occupied, inside, id, now))
            }
            "yard_remove" => {
                let plate = match req.get("plate") {
                    Some(Value::String(p)) => Some(hub_plate("plate", p)?),
                    Some(Value::Null) | None => None,
                    Some(_) => {
                        return Err(
                            "plate must be a string (or null for an unidentified vehicle)".into(),
                        )
                    }
                };
                self.change_checked(&yard, |y| y.remove(plate, id, now))
            }
            "yard_list" => {
                let offset = optional_u64(req, "offset")?.unwrap_or(0) as usize;
                let limit = optional_u64(req, "limit")?
                    .map_or(LIST_PAGE_MAX, |l| (l as usize).min(LIST_PAGE_MAX));
                let u = self.units[&yard].lock().expect("yard lock");
                let list = u.yard.state.inside_list();
                let page: Vec<Value> = list
                    .iter()
                    .skip(offset)
                    .take(limit)
                    .map(|v| {
                        let dwell = DateTime::parse_from_rfc3339(&v.entered_at)
                            .map(|t| (now - t.with_timezone(&Utc)).num_seconds())
                            .ok();
                        json!({"plate": v.plate, "entered_at": v.entered_at, "entry_lane": v.entry_lane,
                               "entry_event_id": v.entry_event_id, "dwell_s": dwell})
                    })
                    .collect();
                let s = &u.yard.state;
                Ok(
                    json!({"occupancy": occupancy(&u), "unidentified": s.unidentified,
                          "unpaired_exits": s.unpaired_exits, "listed": list.len(),
                          "offset": offset, "inside": page}),
                )
            }
            _ => Err(format!("{name} is not a yard command")),
        }
    }

    fn change_checked(
        &self,
        yard: &str,
        f: impl FnOnce(&mut Yard) -> Result<Vec<Emitted>, String>,
    ) -> Result<Value, String> {
        let events = self.change(yard, f)?;
        Ok(
            json!({"events": events.iter().map(|e| json!({"event_id": e.event_id, "kind": e.body.kind})).collect::<Vec<_>>(),
                          "occupancy": self.occupancy(yard)}),
        )
    }

    /// Decides, stores state and events on disk, then hands the events to the outbox. An error is
    /// the decision's refusal, or the storage failure that undid the change: nothing changed.
    fn change(
        &self,
        yard: &str,
        f: impl FnOnce(&mut Yard) -> Result<Vec<Emitted>, String>,
    ) -> Result<Vec<Emitted>, String> {
        let Some(unit) = self.units.get(yard) else {
            if let Some(e) = self.out_of_service(yard) {
                tracing::error!(yard, error = %e, "passage ignored");
                return Err(e);
            }
            tracing::error!(yard, "passage for an unknown yard ignored");
            return Ok(Vec::new());
        };
        let mut u = unit.lock().expect("yard lock");
        let before = u.yard.state.clone();
        let events = match f(&mut u.yard)? {
            e if e.is_empty() => return Ok(e),
            e => e,
        };
        u.stored.state = u.yard.state.clone();
        u.stored
            .pending
            .extend(events.iter().map(StoredEvent::from));
        if let Err(e) = u.store.save(&u.stored) {
            // Not durable: undo, so memory never runs ahead of what a restart would find.
            let error = format!("{e:#}");
            tracing::error!(yard, error = %error, "yard state not saved; change undone");
            u.storage_failed(&error);
            u.yard.state = before.clone();
            u.stored.state = before;
            let keep = u.stored.pending.len() - events.len();
            u.stored.pending.truncate(keep);
            return Err(format!(
                "the change was not stored, so it was not applied ({error}); the yard is as it \
                 was: free space or fix the state directory, then send the command again"
            ));
        }
        for e in &events {
            tracing::info!(yard, kind = ?e.body.kind, plate = ?e.body.plate, occupied = e.body.occupied, "yard event");
        }
        if let Err(e) = self.flush(&mut u) {
            let error = format!("{e:#}");
            tracing::error!(yard, error = %error, "yard events kept on disk, to be sent later");
            u.storage_failed(&error);
        }
        self.publish_occupancy(&u);
        Ok(events)
    }

    /// Moves the pending events into the outbox (oldest first) and records that on disk.
    fn flush(&self, u: &mut Unit) -> Result<()> {
        if u.stored.pending.is_empty() {
            return Ok(());
        }
        while let Some(e) = u.stored.pending.first().cloned() {
            let emitted = e.to_emitted()?;
            let seq = self
                .events
                .emit_with_id(
                    e.event_id,
                    Origin {
                        camera: &e.camera,
                        lane: &e.lane,
                    },
                    emitted.at,
                    &e.body,
                )
                .map_err(|err| anyhow::anyhow!("the outbox refused a yard event: {err}"))?;
            u.stored.last_seq = seq;
            u.stored.pending.remove(0);
        }
        u.store.save(&u.stored)
    }

    fn publish_occupancy(&self, u: &Unit) {
        let o = occupancy(u);
        self.delivery.set_retained(
            &format!("yard/{}/occupancy", o.yard),
            serde_json::to_vec(&o).expect("json"),
        );
    }
}

fn occupancy(u: &Unit) -> Occupancy {
    let r = &u.yard.rules;
    let occupied = u.yard.state.occupied();
    Occupancy {
        yard: r.id.clone(),
        name: r.name.clone(),
        capacity: r.capacity,
        occupied,
        free: r.capacity.saturating_sub(occupied),
        updated_at: u
            .yard
            .state
            .updated_at
            .clone()
            .unwrap_or_else(|| format_ts(u.started)),
        seq: u.stored.last_seq,
    }
}

/// A plate given by the hub, normalised; a hostile length is refused without being echoed.
fn hub_plate(key: &str, raw: &str) -> Result<String, String> {
    let plate = normalise(raw);
    if plate.chars().count() > PLATE_MAX_CHARS {
        return Err(format!(
            "{key} is {} characters long; a plate has at most {PLATE_MAX_CHARS}",
            plate.chars().count()
        ));
    }
    Ok(plate)
}

/// `inside` of `yard_set`: plates as strings or `{"plate", "entered_at"?}` objects.
fn parse_inside(v: &Value) -> Result<Vec<SetVehicle>, String> {
    let items = v.as_array().ok_or("inside must be a list of plates")?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(p) => Ok(SetVehicle {
                plate: hub_plate(&format!("inside[{i}]"), p)?,
                entered_at: None,
            }),
            Value::Object(o) => {
                let plate = o
                    .get("plate")
                    .and_then(Value::as_str)
                    .ok_or(format!("inside[{i}].plate must be a string"))?;
                let entered_at = match o.get("entered_at") {
                    None => None,
                    Some(t) => Some(
                        t.as_str()
                            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                            .ok_or(format!("inside[{i}].entered_at must be an RFC 3339 time"))?
                            .with_timezone(&Utc),
                    ),
                };
                Ok(SetVehicle {
                    plate: hub_plate(&format!("inside[{i}].plate"), plate)?,
                    entered_at,
                })
            }
            _ => Err(format!(
                "inside[{i}] must be a plate or {{\"plate\", \"entered_at\"}}"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{FullPolicy, Outbox, OutboxOptions};

    fn one_yard(dir: &Path) -> Arc<YardService> {
        let outbox = Outbox::open(OutboxOptions {
            dir: dir.join("outbox"),
            max_bytes: 1 << 20,
            policy: FullPolicy::DropOldest,
            segment_bytes: 64 << 10,
        })
        .unwrap();
        let delivery = Delivery::new(outbox);
        let events = Arc::new(EventFactory::new("s".into(), "d".into(), delivery.clone()));
        let yard = YardConfig {
            id: "yard-a".into(),
            name: String::new(),
            capacity: 10,
            overstay_after_h: None,
            match_confusions: Vec::new(),
        };
        YardService::open(&[yard], dir, events, delivery).unwrap()
    }

    #[test]
    fn a_yard_with_a_broken_file_is_out_of_service_and_the_others_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let yard_dir = dir.path().join("yard");
        std::fs::create_dir_all(&yard_dir).unwrap();
        // The reported file: an unidentified count that wrapped the occupancy.
        let bad = yard_dir.join("yard-b.json");
        std::fs::write(
            &bad,
            r#"{"version":1,"state":{"inside":{},"unidentified":4294967295,"unpaired_exits":0,"full":false,"updated_at":null},"last_seq":3,"pending":[]}"#,
        )
        .unwrap();
        let outbox = Outbox::open(OutboxOptions {
            dir: dir.path().join("outbox"),
            max_bytes: 1 << 20,
            policy: FullPolicy::DropOldest,
            segment_bytes: 64 << 10,
        })
        .unwrap();
        let delivery = Delivery::new(outbox);
        let events = Arc::new(EventFactory::new("s".into(), "d".into(), delivery.clone()));
        let yard = |id: &str| YardConfig {
            id: id.into(),
            name: String::new(),
            capacity: 10,
            overstay_after_h: None,
            match_confusions: Vec::new(),
        };
        let svc = YardService::open(
            &[yard("yard-a"), yard("yard-b")],
            dir.path(),
            events,
            delivery,
        )
        .unwrap();
        assert_eq!(svc.ids(), ["yard-a", "yard-b"]);
        assert!(svc.occupancy("yard-b").is_none(), "nothing published");
        let req = |v: Value| v.as_object().unwrap().clone();
        for (name, r) in [
            ("yard_list", json!({"id": 1, "yard": "yard-b"})),
            (
                "yard_set",
                json!({"id": 2, "yard": "yard-b", "occupied": 1}),
            ),
        ] {
            let err = svc.command(name, &req(r)).unwrap_err();
            assert!(
                err.contains("out of service")
                    && err.contains(&bad.display().to_string())
                    && err.contains("unidentified = 4294967295"),
                "{err}"
            );
        }
        svc.passage(
            "yard-b",
            PassageInput {
                plate: Some("51A12345".into()),
                direction: super::super::engine::Direction::Entry,
                camera: "c".into(),
                lane: "l".into(),
                at: Utc::now(),
            },
        );
        assert!(
            std::fs::read_to_string(&bad)
                .unwrap()
                .contains("4294967295"),
            "left as it is"
        );
        svc.command(
            "yard_set",
            &req(json!({"id": 3, "yard": "yard-a", "occupied": 2})),
        )
        .unwrap();
        assert_eq!(svc.occupancy("yard-a").unwrap().occupied, 2);
    }

    #[test]
    fn a_change_that_cannot_be_stored_is_an_error_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let svc = one_yard(dir.path());
        let req = |v: Value| v.as_object().unwrap().clone();
        svc.command("yard_set", &req(json!({"id": 1, "inside": ["51A12345"]})))
            .unwrap();
        let file = dir.path().join("yard/yard-a.json");
        let stored = std::fs::read(&file).unwrap();
        // The save's temporary file cannot be created: a directory is in its way (the same
        // failure as a full disk for the service, and deterministic, also as root).
        let tmp = dir.path().join("yard/yard-a.json.tmp");
        std::fs::create_dir(&tmp).unwrap();
        let err = svc
            .command("yard_set", &req(json!({"id": 2, "occupied": 5})))
            .unwrap_err();
        assert!(
            err.contains("not stored") && err.contains("cannot write yard state"),
            "{err}"
        );
        let err = svc
            .command("yard_remove", &req(json!({"id": 3, "plate": "51A12345"})))
            .unwrap_err();
        assert!(err.contains("not stored"), "{err}");
        assert_eq!(svc.occupancy("yard-a").unwrap().occupied, 1, "unchanged");
        let listed = svc.command("yard_list", &req(json!({"id": 4}))).unwrap();
        assert_eq!(listed["inside"][0]["plate"], "51A12345");
        assert_eq!(std::fs::read(&file).unwrap(), stored, "file unchanged");
        // Status shows the failures, and the last one says what failed.
        let status = svc.status();
        assert_eq!(status["yard-a"]["storage_errors"], 2, "{status}");
        assert!(status["yard-a"]["last_storage_error"]
            .as_str()
            .unwrap()
            .contains("cannot write yard state"));
        // Once the storage works again, the same command succeeds.
        std::fs::remove_dir(&tmp).unwrap();
        svc.command("yard_remove", &req(json!({"id": 5, "plate": "51A12345"})))
            .unwrap();
        assert_eq!(svc.occupancy("yard-a").unwrap().occupied, 0);
        assert_eq!(svc.status()["yard-a"]["occupied"], 0);
    }

    #[test]
    fn wrongly_typed_fields_are_refused_not_read_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let svc = one_yard(dir.path());
        let req = |v: Value| v.as_object().unwrap().clone();
        // With one yard an absent "yard" means that yard; a number is not absent.
        let err = svc
            .command("yard_set", &req(json!({"id": 1, "yard": 5, "occupied": 3})))
            .unwrap_err();
        assert!(err.starts_with("yard must be a string"), "{err}");
        assert_eq!(
            svc.occupancy("yard-a").unwrap().occupied,
            0,
            "nothing applied"
        );
        let err = svc
            .command("yard_list", &req(json!({"id": 2, "limit": "10"})))
            .unwrap_err();
        assert!(err.starts_with("limit must be a whole number"), "{err}");
        let err = svc
            .command("yard_list", &req(json!({"id": 3, "offset": -5})))
            .unwrap_err();
        assert!(err.starts_with("offset must be a whole number"), "{err}");
        // Absent and null still mean "not given".
        svc.command(
            "yard_set",
            &req(json!({"id": 4, "yard": null, "occupied": 3})),
        )
        .unwrap();
        assert_eq!(svc.occupancy("yard-a").unwrap().occupied, 3);
    }

    #[test]
    fn hostile_plate_lengths_are_refused_without_being_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let svc = one_yard(dir.path());
        let req = |v: Value| v.as_object().unwrap().clone();
        let long = "A".repeat(100_000);
        for (name, r) in [
            ("yard_set", json!({"id": 1, "inside": ["51A12345", long]})),
            ("yard_set", json!({"id": 2, "inside": [{"plate": long}]})),
            ("yard_remove", json!({"id": 3, "plate": long})),
        ] {
            let err = svc.command(name, &req(r)).unwrap_err();
            assert!(err.contains("at most 16") && err.len() < 200, "{err}");
        }
        assert_eq!(svc.occupancy("yard-a").unwrap().occupied, 0);
    }

    #[test]
    fn a_tick_with_many_vehicles_due_reports_them_all_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(OutboxOptions {
            dir: dir.path().join("outbox"),
            max_bytes: 64 << 20,
            policy: FullPolicy::DropOldest,
            segment_bytes: 1 << 20,
        })
        .unwrap();
        let delivery = Delivery::new(outbox);
        let events = Arc::new(EventFactory::new("s".into(), "d".into(), delivery.clone()));
        let yard = YardConfig {
            id: "yard-a".into(),
            name: String::new(),
            capacity: 1000,
            overstay_after_h: Some(1.0),
            match_confusions: Vec::new(),
        };
        let svc = YardService::open(&[yard], dir.path(), events, delivery.clone()).unwrap();
        let n = OVERSTAY_BATCH * 2 + 7;
        let plates: Vec<String> = (0..n).map(|i| format!("51A{i:05}")).collect();
        let entered = Utc::now() - chrono::Duration::hours(3);
        let inside: Vec<Value> = plates
            .iter()
            .map(|p| json!({"plate": p, "entered_at": format_ts(entered)}))
            .collect();
        let req = json!({"id": 1, "inside": inside});
        svc.command("yard_set", req.as_object().unwrap()).unwrap();
        let before = delivery
            .outbox_stats()
            .last_seq
            .load(std::sync::atomic::Ordering::Relaxed);
        svc.tick(Utc::now());
        let after = delivery
            .outbox_stats()
            .last_seq
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(after - before, n as u64, "one overstay event per vehicle");
        svc.tick(Utc::now());
        let again = delivery
            .outbox_stats()
            .last_seq
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(again, after, "each stay is reported once");
    }
}
