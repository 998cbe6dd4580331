//! Accuracy smoke test on the real OpenALPR benchmark photos in ../shared (skipped when absent).
//! Prints the exact-match rate per model set; the floors only catch a broken pipeline, the
//! targets live in `gatewatch eval plates` and docs/accuracy.md.

mod common;

use gatewatch::eval::{evaluate, load_dataset, summarise};
use gatewatch::models::{self, ModelSet};
use gatewatch::plate::reader::{PlateReader, ReaderOptions};

fn eval_set(set: ModelSet, floor: f64) {
    let Some(base) = common::shared_dir("data/plates") else {
        return;
    };
    if set == ModelSet::FastAlpr && common::shared_dir("models/fast-alpr").is_none() {
        return;
    }
    let dir = models::model_dir(None);
    let mut reader = PlateReader::load(set, &dir, None, ReaderOptions::default()).unwrap();
    for region in ["us", "eu"] {
        let samples = load_dataset(&base.join(region)).unwrap();
        let outcomes = evaluate(&mut reader, &samples, |_, _| {}).unwrap();
        let s = summarise(&outcomes, set.as_str(), 1);
        println!(
            "accuracy {region} {}: {}",
            set.as_str(),
            serde_json::to_string(&s).unwrap()
        );
        assert!(s.images > 100);
        assert!(
            s.exact_match >= floor,
            "{region} {}: exact match {} below {floor}",
            set.as_str(),
            s.exact_match
        );
    }
}

#[test]
fn default_model_set_on_shared_plates() {
    eval_set(ModelSet::Default, 0.5);
}

#[test]
fn fast_alpr_model_set_on_shared_plates() {
    eval_set(ModelSet::FastAlpr, 0.6);
}
