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
    /// Mainland China: `桂A12345`, new-energy `粤BD12345` / `粤B12345D`, the `港/澳/领/学/警/挂`
    /// endings, agricultural `皖1946673`, and the special series of [`CN_SPECIAL`]. Never a read
    /// without its province character.
    #[serde(rename = "CN")]
    Cn,
    /// United States: 5-8 of A-Z0-9, vanity plates of letters only included. The letter O is read
    /// as the digit 0: most states print them alike and registries treat them as one.
    #[serde(rename = "US")]
    Us,
    /// Europe: 5-9 of A-Z0-9 (letters-only custom plates included); reads that nearly fit a
    /// national format with fixed letter and digit positions (SK/HR `BA302OZ`, HR `ZG1234AB`,
    /// UK `AB12CDE`) are repaired to fit it.
    #[serde(rename = "EU")]
    Eu,
    /// Anything plate-like: 5-10 of A-Z0-9 with at least one letter and one digit, not a date
    /// or a container code. Where VN or CN are configured too, it refuses what is a fragment of
    /// their plates (a row of a two-line plate has no letter; a Chinese plate without its
    /// province is refused).
    #[serde(rename = "generic")]
    Generic,
}

impl Region {
    /// Parses a config name (`VN`, `CN`, `generic`, case-insensitive).
    pub fn parse(s: &str) -> Option<Region> {
        match s.to_ascii_lowercase().as_str() {
            "vn" => Some(Region::Vn),
            "cn" => Some(Region::Cn),
            "us" => Some(Region::Us),
            "eu" => Some(Region::Eu),
            "generic" => Some(Region::Generic),
            _ => None,
        }
    }

    /// The name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Region::Vn => "VN",
            Region::Cn => "CN",
            Region::Us => "US",
            Region::Eu => "EU",
            Region::Generic => "generic",
        }
    }

    /// Whether the grammar fixes the plate's layout (the province, series and number positions),
    /// so a read it accepts is very likely a plate and not other text.
    pub fn is_strict(self) -> bool {
        matches!(self, Region::Vn | Region::Cn)
    }
}

/// The names accepted in `plates.regions`.
pub const REGION_NAMES: &str = "VN, CN, US, EU, generic";

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
    // Two-digit province code (11-99: no province has a code below 11, and `00D0000` was read
    // off a Chinese plate), a series of one letter plus an optional letter or digit, then a 4- or
    // 5-digit number.
    Regex::new(r"^(?:1[1-9]|[2-9][0-9])[A-Z][A-Z0-9]?[0-9]{4,5}$").unwrap()
});
static CN: LazyLock<Regex> = LazyLock::new(|| {
    let p = CN_PROVINCES;
    // Letters I and O are never used on Chinese plates. Ordinary: province, issuing-office letter,
    // five alphanumerics, optionally ending in 学/警/挂/港/澳/领 instead of the last one.
    // New energy (8 characters): D/F then a letter-or-digit and 4 digits, or 5 digits then D/F.
    // Double-line agricultural plates: province then 7 digits (`皖19 46673`).
    Regex::new(&format!(
        r"^[{p}](?:[A-HJ-NP-Z](?:[A-HJ-NP-Z0-9]{{5}}|[A-HJ-NP-Z0-9]{{4}}[学警挂港澳领]|[DF][A-HJ-NP-Z0-9][0-9]{{4}}|[0-9]{{5}}[DF])|[0-9]{{7}})$"
    ))
    .unwrap()
});
static CN_ORDINARY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"^[{}][A-HJ-NP-Z][A-HJ-NP-Z0-9]{{5}}$",
        CN_PROVINCES
    ))
    .unwrap()
});
static CN_NEW_ENERGY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"^[{}][A-HJ-NP-Z](?:[DF][A-HJ-NP-Z0-9][0-9]{{4}}|[0-9]{{5}}[DF])$",
        CN_PROVINCES
    ))
    .unwrap()
});
/// Chinese plates of special series that do not open with a province character: embassy
/// (`使224424`), civil aviation (`民航B9016`), armed police (`WJ07X0230`, `WJ粤12345`), and the
/// Hong Kong / Macau plate a cross-border vehicle carries beside its
/// `粤Z…港/澳` plate (two letters and 4 digits: `SN6497`, `MP6178`; shorter Hong Kong plates are
/// not accepted: two letters and three digits was read off a sticker).
// Military plates (two letters, five digits: `VA30093`) are not accepted: a Hong Kong plate read
// with one character too many has that shape (`SN64976`, `LX81702` on the shared photos).
static CN_SPECIAL: LazyLock<Regex> = LazyLock::new(|| {
    let p = CN_PROVINCES;
    Regex::new(&format!(
        r"^(?:使[0-9]{{6}}|民航[A-HJ-NP-Z0-9]{{5}}|WJ(?:[0-9]{{2}}[A-Z0-9][0-9]{{4}}|[{p}][A-HJ-NP-Z0-9]{{5}})|[A-HJ-NPR-Z]{{2}}[1-9][0-9]{{3}})$"
    ))
    .unwrap()
});
/// A Chinese plate read without its province character (`AP6V68` for `桂AP6V68`): at a site that
/// reads Chinese plates this is half a plate, never a plate of its own.
static CN_WITHOUT_PROVINCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-HJ-NP-Z](?:[A-HJ-NP-Z0-9]{5}|[DF][A-HJ-NP-Z0-9][0-9]{4}|[0-9]{5}[DF])$")
        .unwrap()
});
/// An ISO 6346 container code (owner, category U/J/Z, serial, check digit), painted on every
/// container truck at a border gate: not a plate.
static CONTAINER_CODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Z]{3}[UJZ][0-9]{6,7}$").unwrap());
static GENERIC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Z0-9]{5,10}$").unwrap());
static US: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Z0-9]{5,8}$").unwrap());
static EU: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Z0-9]{5,9}$").unwrap());
/// A camera's date overlay read as text (`20140430`, `2014050S`): year 1990-2039 and a month.
static DATE_STAMP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:19[9][0-9]|20[0-3][0-9])(?:0[1-9]|1[0-2])").unwrap());

/// US state names a reader picks up from the plate's own header; never a plate on their own.
const US_STATE_WORDS: &[&str] = &[
    "ALABAMA", "ALASKA", "ARIZONA", "ARKANSAS", "COLORADO", "DELAWARE", "FLORIDA", "GEORGIA",
    "HAWAII", "IDAHO", "ILLINOIS", "INDIANA", "KANSAS", "KENTUCKY", "MAINE", "MARYLAND",
    "MICHIGAN", "MISSOURI", "MONTANA", "NEBRASKA", "NEVADA", "NEWYORK", "OKLAHOMA", "OREGON",
    "TEXAS", "VERMONT", "VIRGINIA", "WYOMING",
];

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

/// The ordinary mainland layout (province, office letter, five letters or digits: 7 characters),
/// which blue plates carry; a green plate never does (see [`super::colour`]).
pub fn is_cn_ordinary(plate: &str) -> bool {
    CN_ORDINARY.is_match(&normalise(plate))
}

/// The new-energy layout (province, office letter, D/F and five more, or five digits then D/F:
/// 8 characters), which green plates carry and blue ones never do.
pub fn is_cn_new_energy(plate: &str) -> bool {
    CN_NEW_ENERGY.is_match(&normalise(plate))
}

/// Accepts `text` (raw or normalised) if one of `regions` matches, in their order of preference.
/// An exact match under any region beats a repaired one.
pub fn classify(text: &str, regions: &[Region]) -> Option<PlateMatch> {
    let norm = normalise(text);
    if regions.contains(&Region::Cn)
        && CN_WITHOUT_PROVINCE.is_match(&norm)
        && !CN_SPECIAL.is_match(&norm)
    {
        // Half a Chinese plate: no grammar may take it. (A Hong Kong plate of two letters and
        // four digits has the same shape as a province-less body and is kept: see CN_SPECIAL.)
        return None;
    }
    for &region in regions {
        if let Some(plate) = fit(region, &norm) {
            return Some(PlateMatch {
                repaired: plate != norm,
                plate,
                region,
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

/// The plate `norm` is under `region` as read, or after the region's own folding (US O→0) and
/// national-format repair (EU), which are part of reading such plates rather than guesses.
fn fit(region: Region, norm: &str) -> Option<String> {
    match region {
        Region::Us => {
            let folded = norm.replace('O', "0");
            matches(region, &folded).then_some(folded)
        }
        Region::Eu => {
            if !matches(region, norm) {
                return None;
            }
            // A read without digits or without letters is a custom plate, not a near miss of a
            // national format.
            let mixed = norm.chars().any(|c| c.is_ascii_digit())
                && norm.chars().any(|c| c.is_ascii_uppercase());
            let repaired = mixed
                .then(|| repair_to_format(norm, EU_FORMATS, 1))
                .flatten();
            Some(repaired.unwrap_or_else(|| norm.to_owned()))
        }
        _ => matches(region, norm).then(|| norm.to_owned()),
    }
}

fn matches(region: Region, norm: &str) -> bool {
    let has_digit = || norm.chars().any(|c| c.is_ascii_digit());
    let not_a_date = || !DATE_STAMP.is_match(norm);
    match region {
        Region::Vn => VN.is_match(norm),
        Region::Cn => CN.is_match(norm) || CN_SPECIAL.is_match(norm),
        Region::Us => US.is_match(norm) && not_a_date() && !US_STATE_WORDS.contains(&norm),
        Region::Eu => EU.is_match(norm) && not_a_date(),
        Region::Generic => {
            GENERIC.is_match(norm)
                && has_digit()
                && norm.chars().any(|c| c.is_ascii_uppercase())
                && not_a_date()
                && !CONTAINER_CODE.is_match(norm)
        }
    }
}

/// European national formats with fixed letter (`L`) and digit (`D`) positions.
/// Only one character may be changed: formats of other countries share these lengths (Poland's
/// `WA56660` is two look-alikes from the Slovak `WA566GO`, Czechia's `1B80338` one from nothing
/// listed here), and a measured second change bent more correct reads than it fixed.
const EU_FORMATS: &[&str] = &[
    "LLDDDLL",  // Slovakia, Croatia (3-digit)
    "LLDDDDLL", // Croatia (4-digit)
    "LLDDLLL",  // United Kingdom
];

/// Rewrites look-alike characters so `norm` fits one of `formats`, changing at most
/// `max_changes` characters and preferring the format that needs the fewest; `None` when no format
/// fits or `norm` already fits one as read.
fn repair_to_format(norm: &str, formats: &[&str], max_changes: usize) -> Option<String> {
    let chars: Vec<char> = norm.chars().collect();
    let mut best: Option<(usize, String)> = None;
    for format in formats {
        if format.len() != chars.len() {
            continue;
        }
        let mut changes = 0;
        let fixed: Option<String> = chars
            .iter()
            .zip(format.chars())
            .map(|(&c, slot)| {
                let out = match slot {
                    'D' if c.is_ascii_digit() => Some(c),
                    'D' => look_alike_digit(c),
                    _ if c.is_ascii_uppercase() => Some(c),
                    _ => look_alike_letter(c),
                }?;
                changes += usize::from(out != c);
                Some(out)
            })
            .collect();
        match fixed {
            Some(_) if changes == 0 => return None,
            Some(f) if changes <= max_changes && best.as_ref().is_none_or(|b| changes < b.0) => {
                best = Some((changes, f))
            }
            _ => {}
        }
    }
    best.map(|(_, f)| f)
}

/// The digit a letter is confused with when glyphs are alike in plate fonts (narrower than the VN
/// repair map: European formats put letters and digits next to each other).
fn look_alike_digit(c: char) -> Option<char> {
    Some(match c {
        'O' | 'Q' | 'D' => '0',
        'I' => '1',
        'Z' => '2',
        'S' => '5',
        'G' => '6',
        'B' => '8',
        _ => return None,
    })
}

fn look_alike_letter(c: char) -> Option<char> {
    Some(match c {
        '0' => 'O',
        '1' => 'I',
        '2' => 'Z',
        '5' => 'S',
        '6' => 'G',
        '8' => 'B',
        _ => return None,
    })
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
        Region::Cn | Region::Us | Region::Eu | Region::Generic => return None,
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
    fn us_plates_read_o_as_zero_and_accept_vanity_letters() {
        let m = classify("HL0-KTY1", &[Region::Us]).unwrap();
        assert_eq!((m.plate.as_str(), m.repaired), ("HL0KTY1", false));
        let m = classify("CHOP8Y", &[Region::Us]).unwrap();
        assert_eq!((m.plate.as_str(), m.repaired), ("CH0P8Y", true));
        assert_eq!(classify("FZRULZ", &[Region::Us]).unwrap().plate, "FZRULZ");
        // The state name printed on the plate is not a plate; neither is a 3-letter fragment.
        assert!(classify("TEXAS", &[Region::Us]).is_none());
        assert!(classify("ABC", &[Region::Us]).is_none());
    }

    #[test]
    fn eu_reads_are_repaired_to_a_national_format_with_few_changes() {
        for (raw, want) in [
            ("BA 3020Z", "BA302OZ"), // SK: letters after the digits
            ("RK-708-A1", "RK708AI"),
            ("ZG 12B4-AB", "ZG1284AB"), // HR 4-digit
            ("AB12 CDE", "AB12CDE"),    // UK, as read
            ("4B04979", "4B04979"),     // CZ: position 3 may be either, nothing to repair
            ("GWAGEN", "GWAGEN"),       // custom plate
            ("KMBORAK", "KMBORAK"),     // custom plate: not bent into UK's KM80RAK
            ("WA56660", "WA56660"),     // PL as read: not bent into SK's WA566GO
            ("1B80338", "1B80338"),     // CZ as read
        ] {
            let m = classify(raw, &[Region::Eu]).unwrap_or_else(|| panic!("{raw}"));
            assert_eq!(m.plate, want, "{raw}");
        }
        // Two look-alikes away from any format: kept as read, not bent into one.
        assert_eq!(classify("B8Z050Z", &[Region::Eu]).unwrap().plate, "B8Z050Z");
    }

    #[test]
    fn camera_date_overlays_are_not_plates() {
        for region in [Region::Generic, Region::Us, Region::Eu] {
            for text in ["20140430", "2014050", "2014050S", "199912"] {
                assert!(classify(text, &[region]).is_none(), "{text} {region:?}");
            }
        }
        // No Vietnamese province has a code below 11.
        assert!(classify("00D0000", &[Region::Vn]).is_none());
        assert!(classify("10A12345", &[Region::Vn]).is_none());
        // A Vietnamese plate of province 20 is not a date.
        assert!(classify("20A12345", &[Region::Vn, Region::Generic]).is_some());
        assert!(classify("2099A23", &[Region::Generic]).is_some());
    }

    #[test]
    fn half_plates_and_other_text_are_not_plates_at_a_border_site() {
        for text in [
            "23456",       // bottom row of a two-line VN plate
            "234.56",      // the same, as printed
            "29-C1",       // its top row
            "138096",      // digits only: a phone or order number
            "AP6V68",      // a Chinese plate without its province character
            "AT022C",      // the same
            "BD12345",     // a new-energy plate without its province
            "MSCU1234567", // a container code
            "TGHU123456",  // a container code without its check digit
        ] {
            assert_eq!(classify(text, ALL), None, "{text}");
        }
        // The same Latin reads are plates where no Chinese plates are expected.
        assert!(classify("AP6V68", &[Region::Generic]).is_some());
        assert!(classify("138096", &[Region::Generic]).is_none());
    }

    #[test]
    fn special_chinese_series_are_accepted_as_printed() {
        for plate in [
            "使224424",  // embassy
            "沪A1707领", // consulate
            "民航B9016", // civil aviation
            "皖1946673", // agricultural, double-line
            "WJ07X0230", // armed police
            "WJ粤12345", // armed police, newer form
            "SN6497",    // the Hong Kong plate of a cross-border vehicle
            "MP6178",    // a Macau plate
            "粤ZR066港", // cross-border mainland plate
        ] {
            let m = classify(plate, ALL).unwrap_or_else(|| panic!("{plate} rejected"));
            assert_eq!((m.plate.as_str(), m.region), (plate, Region::Cn));
        }
        // Two letters and two or three digits is too short to be told from a fragment or a
        // sticker (`AD110`); two letters and five digits is a Hong Kong plate read with a
        // character too many as often as a military plate. (At a site that opts into `generic`
        // the last two are generic plates.)
        let border = [Region::Vn, Region::Cn];
        assert_eq!(classify("SN64", &border), None);
        assert_eq!(classify("AD110", &border), None);
        assert_eq!(classify("SN64976", &border), None);
    }

    #[test]
    fn normalise_folds_full_width_and_drops_separators() {
        assert_eq!(normalise("ｂ５１Ａ－１２"), "B51A12");
        assert_eq!(normalise(" 桂a·12 345 "), "桂A12345");
    }

    proptest! {
        #[test]
        fn any_vn_plate_with_any_separators_is_accepted(
            province in 11u32..100,
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
        fn classify_is_idempotent_on_its_output(s in "\\PC{0,14}|[A-Z0-9 -]{4,10}") {
            for regions in [ALL, &[Region::Us][..], &[Region::Eu][..]] {
                if let Some(m) = classify(&s, regions) {
                    let again = classify(&m.plate, regions).unwrap();
                    prop_assert_eq!(again.plate, m.plate);
                    prop_assert!(!again.repaired);
                }
            }
        }
    }
}
