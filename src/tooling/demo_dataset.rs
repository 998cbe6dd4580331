//! Labelled plate photos rendered with real fonts, in the OpenALPR benchmark format that
//! `eval plates` reads: for measuring plates no registry dataset holds (Chinese plates with their
//! province character, Vietnamese two-line plates).
//!
//! Each plate drives through a short rendered lane clip; the frame where it is a third of the way
//! through is written as `NNNN.png` with `NNNN.txt` (`file x y w h PLATE`).

use anyhow::{Context, Result};
use std::path::Path;

use crate::plate::grammar::CN_PROVINCES;
use crate::tooling::demo::{ClipSpec, DemoPlate, Renderer};

/// Which plates to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlateKind {
    /// Chinese civil plates: blue ordinary (province, office letter, five characters) and green
    /// 8-character new-energy plates, one in five.
    Cn,
    /// Vietnamese plates: one-line `51A-123.45` and two-line `59-X1 / 123.45`, one in four.
    Vn,
}

/// A small deterministic generator (splitmix64): the same seed gives the same dataset.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick(&mut self, chars: &str) -> char {
        let v: Vec<char> = chars.chars().collect();
        v[(self.next() % v.len() as u64) as usize]
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| self.pick("0123456789")).collect()
    }
}

/// Letters used on Chinese plates (no I, no O).
const CN_LETTERS: &str = "ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Series letters used on Vietnamese plates.
const VN_LETTERS: &str = "ABCDEFGHKLMNPSTUVXYZ";

fn leak(s: String) -> &'static str {
    // The renderer's plates hold static text; a dataset is rendered once per process.
    Box::leak(s.into_boxed_str())
}

/// `n` random plates of `kind`.
pub fn random_plates(kind: PlateKind, n: usize, seed: u64) -> Vec<DemoPlate> {
    let mut rng = Rng(seed);
    let white = [245.0, 245.0, 245.0];
    let black = [20.0, 20.0, 20.0];
    (0..n)
        .map(|i| match kind {
            PlateKind::Cn => {
                let province = rng.pick(CN_PROVINCES);
                let office = rng.pick(CN_LETTERS);
                if i % 5 == 4 {
                    let rest = format!("{}{}", rng.pick("DF"), rng.digits(5));
                    DemoPlate {
                        lines: vec![leak(format!("{province}{office}·{rest}"))],
                        expected: leak(format!("{province}{office}{rest}")),
                        region: "CN",
                        board: [150.0, 220.0, 150.0],
                        ink: black,
                    }
                } else {
                    // Mostly digits, sometimes one or two letters among them.
                    let mut rest: Vec<char> = rng.digits(5).chars().collect();
                    for _ in 0..(rng.next() % 3) {
                        let at = (rng.next() % 5) as usize;
                        rest[at] = rng.pick(CN_LETTERS);
                    }
                    let rest: String = rest.into_iter().collect();
                    DemoPlate {
                        lines: vec![leak(format!("{province}{office}·{rest}"))],
                        expected: leak(format!("{province}{office}{rest}")),
                        region: "CN",
                        board: [170.0, 60.0, 20.0],
                        ink: white,
                    }
                }
            }
            PlateKind::Vn => {
                let province = 11 + rng.next() % 89;
                let series = rng.pick(VN_LETTERS);
                let number = rng.digits(5);
                if i % 4 == 3 {
                    let extra = rng.pick("123456789");
                    DemoPlate {
                        lines: vec![
                            leak(format!("{province}-{series}{extra}")),
                            leak(format!("{}.{}", &number[..3], &number[3..])),
                        ],
                        expected: leak(format!("{province}{series}{extra}{number}")),
                        region: "VN",
                        board: white,
                        ink: black,
                    }
                } else {
                    DemoPlate {
                        lines: vec![leak(format!(
                            "{province}{series}-{}.{}",
                            &number[..3],
                            &number[3..]
                        ))],
                        expected: leak(format!("{province}{series}{number}")),
                        region: "VN",
                        board: white,
                        ink: black,
                    }
                }
            }
        })
        .collect()
}

/// Renders `plates` into `dir` as an OpenALPR-benchmark-format dataset at `width` × `height`.
pub fn write_dataset(dir: &Path, plates: Vec<DemoPlate>, width: i32, height: i32) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let spec = ClipSpec {
        width,
        height,
        fps: 5.0,
        frames_per_vehicle: 10,
        gap_frames: 1,
    };
    let n = plates.len();
    let renderer = Renderer::with_plates(spec.clone(), plates)?;
    let cycle = spec.frames_per_vehicle + spec.gap_frames;
    for k in 0..n {
        let i = spec.gap_frames + k * cycle + spec.frames_per_vehicle / 3;
        let b = renderer
            .plate_box(i)
            .expect("the chosen frame shows the plate");
        let name = format!("{k:04}.png");
        let path = dir.join(&name);
        let written = opencv::imgcodecs::imwrite_def(
            path.to_str().context("path is not UTF-8")?,
            &renderer.frame(i)?,
        )?;
        anyhow::ensure!(written, "cannot write {}", path.display());
        std::fs::write(
            dir.join(format!("{k:04}.txt")),
            format!(
                "{name}\t{}\t{}\t{}\t{}\t{}\n",
                b.x.round(),
                b.y.round(),
                b.w.round(),
                b.h.round(),
                renderer.plates()[k].expected
            ),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plate::grammar::{classify, Region};

    #[test]
    fn random_plates_fit_their_grammar_and_repeat_with_the_seed() {
        for (kind, region) in [(PlateKind::Cn, Region::Cn), (PlateKind::Vn, Region::Vn)] {
            let plates = random_plates(kind, 40, 7);
            for p in &plates {
                let m = classify(&p.lines.join(" "), &[region])
                    .unwrap_or_else(|| panic!("{:?} does not fit {region:?}", p.lines));
                assert_eq!(m.plate, p.expected);
            }
            let again: Vec<_> = random_plates(kind, 40, 7)
                .iter()
                .map(|p| p.expected)
                .collect();
            assert_eq!(again, plates.iter().map(|p| p.expected).collect::<Vec<_>>());
        }
    }
}
