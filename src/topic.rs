//! MQTT topic naming: which names may stand as one topic level. Site, device, camera and yard ids
//! all become topic levels (and yard ids file names), so they share this one rule.

/// The rule of [`is_topic_segment`], as validation messages state it.
pub const TOPIC_SEGMENT_RULE: &str = "use 1-64 characters from a-z, A-Z, 0-9, '-', '_', '.'";

/// Whether `s` can stand as one MQTT topic level and one file name.
pub fn is_topic_segment(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
