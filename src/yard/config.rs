//! Yard configuration: `[[yard]]` tables and each camera's `[camera.yard]` role, with validation
//! that names the key and says what is allowed.

use serde::{Deserialize, Serialize};

use super::engine::{Direction, YardRules};
use crate::topic::{is_topic_segment, TOPIC_SEGMENT_RULE};

/// `[[yard]]`: a yard whose occupancy gatewatch keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YardConfig {
    /// Yard id, used in topics (`…/yard/<id>/occupancy`).
    pub id: String,
    /// Human name, published with the occupancy.
    #[serde(default)]
    pub name: String,
    /// Vehicles the yard holds.
    pub capacity: i64,
    /// Report a vehicle inside longer than this many hours (`overstay` event); unset = never.
    pub overstay_after_h: Option<f64>,
    /// Character pairs an exit's plate may differ by, in one position, from the entry's plate
    /// (OCR confusions). Empty = exact matching only.
    #[serde(default = "default_confusions")]
    pub match_confusions: Vec<String>,
}

fn default_confusions() -> Vec<String> {
    [
        "O0", "D0", "Q0", "I1", "L1", "B8", "S5", "Z2", "G6", "A4", "T7",
    ]
    .map(String::from)
    .to_vec()
}

/// A camera's part in a yard: `[camera.yard]` under its `[[camera]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraYardConfig {
    /// The yard's id.
    pub id: String,
    /// `entry`, `exit`, or `both` (direction from the plate's motion across `line`).
    pub role: LaneRole,
    /// Gate line `[x1, y1, x2, y2]` in fractions of the frame (0-1, origin top left); `both` only.
    pub line: Option<[f64; 4]>,
    /// A point `[x, y]` (fractions of the frame) on the yard's side of `line`: a plate moving
    /// towards that side is entering.
    pub inside: Option<[f64; 2]>,
}

/// Which way vehicles pass a camera's lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaneRole {
    Entry,
    Exit,
    Both,
}

impl YardConfig {
    /// The engine's rules.
    pub fn rules(&self) -> YardRules {
        YardRules {
            id: self.id.clone(),
            name: if self.name.is_empty() {
                self.id.clone()
            } else {
                self.name.clone()
            },
            capacity: self.capacity.clamp(0, u32::MAX as i64) as u32,
            overstay_after: self
                .overstay_after_h
                .map(|h| chrono::Duration::milliseconds((h * 3_600_000.0) as i64)),
            confusions: self
                .match_confusions
                .iter()
                .filter_map(|p| {
                    let mut c = p.chars();
                    Some((c.next()?, c.next()?))
                })
                .collect(),
        }
    }
}

/// Checks the yards and the cameras' yard roles. `cameras` pairs each camera's index with its
/// `[camera.yard]` table, if any.
pub fn validate(
    yards: &[YardConfig],
    cameras: &[(usize, Option<&CameraYardConfig>)],
    issue: &mut dyn FnMut(&str, String),
) {
    for (i, y) in yards.iter().enumerate() {
        let key = |k: &str| format!("yard[{i}].{k}");
        if !is_topic_segment(&y.id) {
            issue(
                &key("id"),
                format!("{:?} is not allowed: {TOPIC_SEGMENT_RULE}", y.id),
            );
        }
        if yards[..i].iter().any(|o| o.id == y.id) {
            issue(
                &key("id"),
                format!("{:?} is used by an earlier yard: ids must be unique", y.id),
            );
        }
        if y.capacity <= 0 || y.capacity > 1_000_000 {
            issue(
                &key("capacity"),
                format!(
                    "{} is not allowed: a yard holds 1 to 1000000 vehicles",
                    y.capacity
                ),
            );
        }
        if let Some(h) = y.overstay_after_h {
            if !(h > 0.0 && h <= 24.0 * 365.0) {
                issue(
                    &key("overstay_after_h"),
                    format!("{h} is out of range: allowed more than 0 up to 8760 hours"),
                );
            }
        }
        for (j, pair) in y.match_confusions.iter().enumerate() {
            let chars: Vec<char> = pair.chars().collect();
            if chars.len() != 2 || chars[0] == chars[1] {
                issue(
                    &format!("yard[{i}].match_confusions[{j}]"),
                    format!("{pair:?} is not a pair: write two different characters, e.g. \"O0\""),
                );
            }
        }
        let lanes = |role: LaneRole| {
            cameras.iter().any(|(_, c)| {
                c.is_some_and(|c| c.id == y.id && (c.role == role || c.role == LaneRole::Both))
            })
        };
        if !lanes(LaneRole::Entry) {
            issue(&key("id"), format!("yard {:?} has no entry lane: give a camera [camera.yard] with id = {:?} and role = \"entry\" or \"both\"", y.id, y.id));
        }
        if !lanes(LaneRole::Exit) {
            issue(&key("id"), format!("yard {:?} has no exit lane: give a camera [camera.yard] with id = {:?} and role = \"exit\" or \"both\"", y.id, y.id));
        }
    }
    for (i, c) in cameras {
        let Some(c) = c else { continue };
        let key = |k: &str| format!("camera[{i}].yard.{k}");
        if !yards.iter().any(|y| y.id == c.id) {
            let known: Vec<&str> = yards.iter().map(|y| y.id.as_str()).collect();
            issue(
                &key("id"),
                format!(
                    "{:?} is not a configured yard: known yards: [{}]",
                    c.id,
                    known.join(", ")
                ),
            );
        }
        match (c.role, c.line, c.inside) {
            (LaneRole::Both, None, _) => issue(&key("line"), "is missing: role \"both\" needs the gate line [x1, y1, x2, y2] to tell entries from exits".into()),
            (LaneRole::Both, Some(_), None) => issue(&key("inside"), "is missing: role \"both\" needs a point [x, y] on the yard's side of the line".into()),
            (LaneRole::Both, Some(line), Some(inside)) => {
                if line.iter().any(|v| !(0.0..=1.0).contains(v)) {
                    issue(&key("line"), format!("{line:?} lies outside the frame: coordinates are fractions of the frame, 0 to 1"));
                } else if (line[2] - line[0]).hypot(line[3] - line[1]) < 0.05 {
                    issue(&key("line"), format!("{line:?} is too short: its ends must be at least 0.05 of the frame apart"));
                } else if inside.iter().any(|v| !(0.0..=1.0).contains(v)) {
                    issue(&key("inside"), format!("{inside:?} lies outside the frame: coordinates are fractions of the frame, 0 to 1"));
                } else if side(&line, inside[0], inside[1]).abs() < 0.01 {
                    issue(&key("inside"), format!("{inside:?} lies on the line: pick a point clearly on the yard's side"));
                }
            }
            (_, Some(_), _) | (_, _, Some(_)) => issue(&key("line"), "line and inside are only used with role = \"both\"; remove them or change the role".into()),
            _ => {}
        }
    }
}

impl CameraYardConfig {
    /// The direction of a passage whose plate moved from `from` to `to` (centres, in frame
    /// fractions): the lane's role, or for `both` the side of the gate line it moved towards.
    /// `None` when a `both` lane cannot tell (it moved too little across the line).
    pub fn direction(&self, from: (f64, f64), to: (f64, f64)) -> Option<Direction> {
        match self.role {
            LaneRole::Entry => Some(Direction::Entry),
            LaneRole::Exit => Some(Direction::Exit),
            LaneRole::Both => {
                let (line, inside) = (
                    self.line.unwrap_or_default(),
                    self.inside.unwrap_or_default(),
                );
                entering(&line, &inside, from, to).map(|e| {
                    if e {
                        Direction::Entry
                    } else {
                        Direction::Exit
                    }
                })
            }
        }
    }
}

/// Signed distance-like value of point (x, y) from the line (positive on one side, negative on
/// the other), in frame fractions.
pub fn side(line: &[f64; 4], x: f64, y: f64) -> f64 {
    let (dx, dy) = (line[2] - line[0], line[3] - line[1]);
    (dx * (y - line[1]) - dy * (x - line[0])) / dx.hypot(dy)
}

/// For a `both` lane: whether a plate that moved from `from` to `to` (frame fractions) went
/// towards the yard. `None` when it moved too little along the line's normal to tell.
pub fn entering(
    line: &[f64; 4],
    inside: &[f64; 2],
    from: (f64, f64),
    to: (f64, f64),
) -> Option<bool> {
    let towards = side(line, to.0, to.1) - side(line, from.0, from.1);
    if towards.abs() < 0.02 {
        return None;
    }
    Some((towards > 0.0) == (side(line, inside[0], inside[1]) > 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(role: LaneRole) -> CameraYardConfig {
        CameraYardConfig {
            id: "y".into(),
            role,
            // A horizontal gate line across the middle; the yard lies below it.
            line: (role == LaneRole::Both).then_some([0.0, 0.5, 1.0, 0.5]),
            inside: (role == LaneRole::Both).then_some([0.5, 0.9]),
        }
    }

    #[test]
    fn a_one_way_lane_gives_its_role_whatever_the_motion() {
        for (from, to) in [
            ((0.5, 0.2), (0.5, 0.8)),
            ((0.5, 0.8), (0.5, 0.2)),
            ((0.5, 0.5), (0.5, 0.5)),
        ] {
            assert_eq!(
                lane(LaneRole::Entry).direction(from, to),
                Some(Direction::Entry)
            );
            assert_eq!(
                lane(LaneRole::Exit).direction(from, to),
                Some(Direction::Exit)
            );
        }
    }

    #[test]
    fn a_both_lane_reads_the_direction_from_the_motion_across_the_line() {
        let both = lane(LaneRole::Both);
        assert_eq!(
            both.direction((0.5, 0.2), (0.5, 0.8)),
            Some(Direction::Entry),
            "towards the yard"
        );
        assert_eq!(
            both.direction((0.5, 0.8), (0.5, 0.2)),
            Some(Direction::Exit),
            "away from it"
        );
        // Moving along the line, or hardly at all: cannot tell, not counted.
        assert_eq!(both.direction((0.1, 0.5), (0.9, 0.51)), None);
        assert_eq!(both.direction((0.5, 0.40), (0.5, 0.41)), None);
        // Which side is "inside" decides, not the screen direction.
        let mut above = both.clone();
        above.inside = Some([0.5, 0.1]);
        assert_eq!(
            above.direction((0.5, 0.2), (0.5, 0.8)),
            Some(Direction::Exit)
        );
    }
}
