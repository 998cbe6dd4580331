//! Plate text normalisation and the plate grammars of the regions gatewatch serves.
//!
//! A recogniser's raw text goes through [`normalise`] (upper case, separators dropped, full-width
//! forms folded) and then [`classify`], which accepts it only if a configured grammar matches,
//! trying a grammar-guided repair of look-alike characters (O/0, I/1, B/8, …) first where a
//! position can hold only digits or only letters. Text that fits no grammar is not a plate: this is
//! what keeps shop signs and stickers out of the event stream.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// The 31 province abbreviations of mainland China that open a civil plate.
pub const CN_PROVINCES: &str = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼";

/// A plate grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Region {
    /// Vietnam: `51A12345`, `30E1234`, two-line `59-X1 123.45` → `59X112345`.
    #[serde(rename = "VN")]
    Vn,
    /// Mainland China: `桂A12345`, new-energy `粤BD12345` / `粤B12345D`.
    #[serde(rename = "CN")]
    Cn,
    /// Anything plate-like: 5-10 of A-Z0-9 with at least one digit.
    #[serde(rename = "generic")]
    Generic,
}

impl Region {
    /// Parses a config name (`VN`, `CN`, `generic`, case-insensitive).
    pub fn parse(s: &str) -> Option<Region> {
        match s.to_ascii_lowercase().as_str() {
            "vn" => Some(Region::Vn),
            "cn" => Some(Region::Cn),
            "generic" => Some(Region::Generic),
            _ => None,
        }
    }

    /// The name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Region::Vn => "VN",
            Region::Cn => "CN",
            Region::Generic => "generic",
        }
    }
}

/// A text accepted as a plate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlateMatch {
    /// The normalised plate, e.g. `51A12345`.
    pub plate: String,
    /// The grammar that accepted it.
    pub region: Region,
    /// Whether look-alike characters were repaired to make it fit.
    pub repaired: bool,
}

static VN: LazyLock<Regex> = LazyLock::new(|| {
    // Two-digit province code, a series of one letter plus an optional letter or digit, then a
    // 4- or 5-digit number.
    Regex::new(r"^[0-9]{2}[A-Z][A-Z0-9]?[0-9]{4,5}$").unwrap()
});
static CN: LazyLock<Regex> = LazyLock::new(|| {
    let p = CN_PROVINCES;
    // Letters I and O are never used on Chinese plates. Ordinary: province, issuing-office letter,
    // five alphanumerics, optionally ending in 学/警/挂/港/澳 instead of the last one.
    // New energy (8 characters): D/F then a letter-or-digit and 4 digits, or 5 digits then D/F.
    Regex::new(&format!(
        r"^[{p}][A-HJ-NP-Z](?:[A-HJ-NP-Z0-9]{{5}}|[A-HJ-NP-Z0-9]{{4}}[学警挂港澳]|[DF][A-HJ-NP-Z0-9][0-9]{{4}}|[0-9]{{5}}[DF])$"
    ))
    .unwrap()
});
static GENERIC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Z0-9]{5,10}$").unwrap());

/// Upper-cases, folds full-width forms and drops everything but A-Z, 0-9 and CJK characters.
pub fn normalise(raw: &str) -> String {
    raw.chars()
        .filter_map(|c| {
            // Full-width ASCII forms (U+FF01..U+FF5E) map onto ASCII.
            let c = if ('\u{FF01}'..='\u{FF5E}').contains(&c) {
                char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)
            } else {
                c
            };
            let c = c.to_ascii_uppercase();
            if c.is_ascii_uppercase() || c.is_ascii_digit() || is_cjk(c) {
                Some(c)
            } else {
                None
            }
        })
        .collect()
}

/// Whether `c` is a CJK unified ideograph (the province characters and 学/警/挂/港/澳).
pub fn is_cjk(c: char) -> bool {
    ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

/// Whether the text holds a Chinese province character (routes a read to the CJK recogniser).
pub fn has_cn_province(text: &str) -> bool {
    text.chars().any(|c| CN_PROVINCES.contains(c))
}

/// Accepts `text` (raw or normalised) if one of `regions` matches, in their order of preference.
/// An exact match under any region beats a repaired one.
pub fn classify(text: &str, regions: &[Region]) -> Option<PlateMatch> {
    let norm = normalise(text);
    for &region in regions {
        if matches(region, &norm) {
            return Some(PlateMatch {
                plate: norm,
                region,
                repaired: false,
            });
        }
    }
    for &region in regions {
        if let Some(fixed) = repair(region, &norm) {
            return Some(PlateMatch {
                plate: fixed,
                region,
                repaired: true,
            });
        }
    }
    None
}

fn matches(region: Region, norm: &str) -> bool {
    match region {
        Region::Vn => VN.is_match(norm),
        Region::Cn => CN.is_match(norm),
        Region::Generic => GENERIC.is_match(norm) && norm.chars().any(|c| c.is_ascii_digit()),
    }
}

/// Slot classes of a template: digit only, letter only, or either.
#[derive(Clone, Copy)]
enum Slot {
    Digit,
    Letter,
    Any,
}

/// Repairs look-alike characters where the grammar allows only one class at a position.
fn repair(region: Region, norm: &str) -> Option<String> {
    use Slot::*;
    let templates: &[&[Slot]] = match region {
        // Only VN has fixed digit/letter positions that are unambiguous enough to repair.
        Region::Vn => &[
            &[Digit, Digit, Letter, Digit, Digit, Digit, Digit],
            &[Digit, Digit, Letter, Digit, Digit, Digit, Digit, Digit],
            &[Digit, Digit, Letter, Any, Digit, Digit, Digit, Digit],
            &[Digit, Digit, Letter, Any, Digit, Digit, Digit, Digit, Digit],
        ],
        Region::Cn | Region::Generic => return None,
    };
    let chars: Vec<char> = norm.chars().collect();
    for template in templates {
        if template.len() != chars.len() {
            continue;
        }
        let fixed: Option<String> = chars
            .iter()
            .zip(template.iter())
            .map(|(&c, slot)| match slot {
                Digit => as_digit(c),
                Letter => as_letter(c),
                Any => Some(c),
            })
            .collect();
        if let Some(fixed) = fixed {
            if fixed != norm && matches(region, &fixed) {
                return Some(fixed);
            }
        }
    }
    None
}

fn as_digit(c: char) -> Option<char> {
    Some(match c {
        '0'..='9' => c,
        'O' | 'Q' | 'D' | 'U' => '0',
        'I' | 'L' | 'T' | 'J' => '1',
        'Z' => '2',
        'A' => '4',
        'S' => '5',
        'G' => '6',
        'B' => '8',
        _ => return None,
    })
}

fn as_letter(c: char) -> Option<char> {
    Some(match c {
        'A'..='Z' => c,
        '0' => 'D',
        '1' => 'T',
        '2' => 'Z',
        '4' => 'A',
        '5' => 'S',
        '6' => 'G',
        '8' => 'B',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: &[Region] = &[Region::Vn, Region::Cn, Region::Generic];

    #[test]
    fn vietnamese_one_and_two_line_plates() {
        for (raw, want) in [
            ("51A-123.45", "51A12345"),
            ("30E 1234", "30E1234"),
            ("59-X1 123.45", "59X112345"),
            ("29LD-123.45", "29LD12345"),
        ] {
            let m = classify(raw, ALL).unwrap();
            assert_eq!((m.plate.as_str(), m.region), (want, Region::Vn), "{raw}");
            assert!(!m.repaired);
        }
    }

    #[test]
    fn chinese_plates_including_new_energy() {
        for raw in [
            "桂A12345",
            "京A·F0236",
            "粤BD12345",
            "沪A12345F",
            "浙A1234学",
        ] {
            let m = classify(raw, ALL).unwrap_or_else(|| panic!("{raw} rejected"));
            assert_eq!(m.region, Region::Cn, "{raw}");
        }
        assert_eq!(classify("京A·F0236", ALL).unwrap().plate, "京AF0236");
        // I and O never appear; a non-province CJK character is not a province.
        assert!(classify("桂AI2345", &[Region::Cn]).is_none());
        assert!(classify("中A12345", &[Region::Cn]).is_none());
        // New-energy plates need D/F in the right place.
        assert!(classify("粤BX123456", &[Region::Cn]).is_none());
    }

    #[test]
    fn generic_rule_needs_a_digit_and_plate_length() {
        assert_eq!(
            classify("ABC-1234", &[Region::Generic]).unwrap().plate,
            "ABC1234"
        );
        assert!(classify("STOP", ALL).is_none());
        assert!(classify("A1", ALL).is_none());
        // A fragment such as the top row of a two-line plate alone is not a plate.
        assert!(classify("29-C1", ALL).is_none());
        assert!(classify("ABCDEFG12345", ALL).is_none());
    }

    #[test]
    fn look_alikes_are_repaired_only_where_the_grammar_is_sure() {
        let m = classify("5IA-I23.4S", &[Region::Vn]).unwrap();
        assert_eq!(m.plate, "51A12345");
        assert!(m.repaired);
        // Exact matches in a later region beat a repair in an earlier one.
        let m = classify("ABC1234", &[Region::Vn, Region::Generic]).unwrap();
        assert_eq!((m.region, m.repaired), (Region::Generic, false));
    }

    #[test]
    fn normalise_folds_full_width_and_drops_separators() {
        assert_eq!(normalise("ｂ５１Ａ－１２"), "B51A12");
        assert_eq!(normalise(" 桂a·12 345 "), "桂A12345");
    }

    proptest! {
        #[test]
        fn any_vn_plate_with_any_separators_is_accepted(
            province in 10u32..100,
            series in "[A-Z]",
            extra in proptest::option::of("[A-Z0-9]"),
            number in "[0-9]{4,5}",
            sep in "[-. ]{0,2}",
        ) {
            let extra = extra.unwrap_or_default();
            let raw = format!("{province}{series}{extra}{sep}{number}");
            let m = classify(&raw, ALL).unwrap();
            prop_assert_eq!(m.region, Region::Vn);
            prop_assert_eq!(m.plate, format!("{province}{series}{extra}{number}"));
        }

        #[test]
        fn any_cn_plate_is_accepted(
            prov in 0usize..31,
            office in "[A-HJ-NP-Z]",
            rest in "[A-HJ-NP-Z0-9]{5}",
        ) {
            let p = CN_PROVINCES.chars().nth(prov).unwrap();
            let plate = format!("{p}{office}{rest}");
            let m = classify(&plate, ALL).unwrap();
            prop_assert_eq!(m.region, Region::Cn);
            prop_assert_eq!(m.plate, plate);
        }

        #[test]
        fn classify_is_idempotent_on_its_output(s in "\\PC{0,14}") {
            if let Some(m) = classify(&s, ALL) {
                let again = classify(&m.plate, ALL).unwrap();
                prop_assert_eq!(again.plate, m.plate);
                prop_assert!(!again.repaired);
            }
        }
    }
}
