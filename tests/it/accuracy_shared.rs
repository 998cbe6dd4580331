//! Accuracy smoke test on the real OpenALPR benchmark photos in ../shared (skipped when absent).
//! Prints the exact-match rate per model set, each folder read with its region's grammar (as
//! `eval plates --regions US|EU`). The floors sit a point or two under the figures measured in
//! docs/accuracy.md, so a change that costs accuracy fails here; the targets themselves are
//! reported by `gatewatch eval plates`.

use crate::common;

use gatewatch::models::{self, ModelSet};
use gatewatch::plate::grammar::Region;
use gatewatch::plate::reader::{PlateReader, ReaderOptions};
use gatewatch::tooling::eval::{evaluate, load_dataset, summarise, Summary};

/// The shared plate photos' folder, or `None` (the test then skips, saying why) when they or the
/// model set's files are absent.
fn plates_dir(set: ModelSet) -> Option<std::path::PathBuf> {
    let base = common::shared_dir("data/plates")?;
    if set == ModelSet::FastAlpr && common::shared_dir("models/fast-alpr").is_none() {
        return None;
    }
    Some(base)
}

/// Reads every photo of `folder` with `set` and `opts`, prints the summary line and checks its
/// exact match against `floor`.
fn read_folder(
    set: ModelSet,
    folder: &std::path::Path,
    opts: ReaderOptions,
    floor: f64,
) -> Summary {
    let mut reader = PlateReader::load(set, &models::model_dir(None), None, opts).unwrap();
    let samples = load_dataset(folder).unwrap();
    let outcomes = evaluate(&mut reader, &samples, |_, _| {}).unwrap();
    let s = summarise(&outcomes, set.as_str(), 1);
    let name = folder.file_name().unwrap().to_string_lossy();
    println!(
        "accuracy {name} {}: {}",
        set.as_str(),
        serde_json::to_string(&s).unwrap()
    );
    assert!(
        s.exact_match >= floor,
        "{name} {}: exact match {} below {floor}",
        set.as_str(),
        s.exact_match
    );
    s
}

fn eval_set(set: ModelSet, retry_max_side: u32, floors: [f64; 2]) {
    let Some(base) = plates_dir(set) else {
        return;
    };
    for ((region, grammar), floor) in [("us", Region::Us), ("eu", Region::Eu)]
        .into_iter()
        .zip(floors)
    {
        let opts = ReaderOptions {
            regions: vec![grammar],
            retry_max_side,
            // As when `plates.retry_max_side` is set in a config: every photo may be looked at
            // again.
            retry_camera_sized: true,
            ..ReaderOptions::default()
        };
        let s = read_folder(set, &base.join(region), opts, floor);
        assert!(s.images > 100);
    }
}

#[test]
fn default_model_set_on_shared_plates() {
    // With the larger second detection that takes it past the 0.85 target (docs/accuracy.md).
    eval_set(ModelSet::Default, 1600, [0.84, 0.88]);
}

#[test]
fn fast_alpr_model_set_on_shared_plates() {
    eval_set(ModelSet::FastAlpr, 0, [0.90, 0.92]);
}

/// The real Chinese and Vietnamese photos with the config defaults (`VN, CN`, the default
/// retry): no read that would be a wrong plate event next to a labelled plate, and exact match
/// a point or two under docs/accuracy.md.
fn eval_cn_vn(set: ModelSet, floors: [f64; 2]) {
    let Some(base) = plates_dir(set) else {
        return;
    };
    for (folder, floor) in ["cn", "vn"].into_iter().zip(floors) {
        let s = read_folder(set, &base.join(folder), ReaderOptions::default(), floor);
        assert!(s.plates > 70);
        let near_label = s.wrong - s.wrong_elsewhere;
        assert_eq!(
            near_label,
            0,
            "{folder} {}: wrong reads next to a labelled plate",
            set.as_str()
        );
    }
}

#[test]
fn default_model_set_on_chinese_and_vietnamese_photos() {
    eval_cn_vn(ModelSet::Default, [0.90, 0.97]);
}

#[test]
fn fast_alpr_model_set_on_chinese_and_vietnamese_photos() {
    eval_cn_vn(ModelSet::FastAlpr, [0.91, 0.94]);
}
