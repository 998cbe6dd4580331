//! A plate's background colour, from the pixels of its crop.
//!
//! Chinese plates say their kind by colour as well as by layout: blue is an ordinary plate of
//! seven characters, green (white-to-green for small cars, yellow-green for large ones) a
//! new-energy plate of eight, yellow a large vehicle's plate of seven. A read whose layout
//! contradicts the colour has lost or gained a character (`皖AD1989` read off the green
//! `皖AD19789`), so the colour lets the reader refuse it instead of publishing a wrong plate.
//!
//! The characters are black (green, yellow, white plates) or white (blue plates), so they are
//! unsaturated: the hue of the *saturated* pixels is the background's, whatever the text.

use anyhow::Result;
use opencv::core::Mat;
use opencv::imgproc;
use opencv::prelude::*;

use super::grammar::{self, Region};

/// A plate's background colour as far as the crop tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlateColour {
    Blue,
    Green,
    Yellow,
    /// Bright and unsaturated (police, military, embassy plates; also glare).
    White,
    /// Dark and unsaturated (Hong Kong / Macau, foreign plates; also a crop in shadow).
    Black,
    /// No colour dominates: a mixed or washed-out crop. Nothing is decided on it.
    Unknown,
}

/// Pixel statistics of a crop, in OpenCV's HSV (hue 0-180).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ColourStats {
    /// Share of the crop's pixels that are saturated and not dark.
    pub saturated: f32,
    /// Shares of the saturated pixels by hue band.
    pub blue: f32,
    pub green: f32,
    pub yellow: f32,
    /// Shares of the crop's pixels that are bright (V ≥ 150) and dark (V < 70).
    pub bright: f32,
    pub dark: f32,
}

/// Saturation and brightness a pixel needs to count as coloured: below them hue is noise (white
/// characters, glare, shadow).
const MIN_S: u8 = 80;
const MIN_V: u8 = 50;
/// Share of saturated pixels a crop needs before its hue is trusted.
const MIN_SATURATED: f32 = 0.12;
/// Share of the saturated pixels the leading hue band needs, and the most the runner-up may have:
/// a crop that is partly blue and partly green (car paint, a loose box, cyan-tinted light) decides
/// nothing.
const MIN_LEAD: f32 = 0.6;
const MAX_RUNNER_UP: f32 = 0.25;

/// Hue bands (OpenCV, 0-180), measured on the labelled shared cn photos (hue histograms of the
/// saturated pixels): yellow plates peak at 15-30, green ones at 45-85 (the white-to-green
/// gradient of small cars included), blue ones at 95-120. Hue 85-95 belongs to neither: a blue
/// plate in cyan-tinted light peaks at 90 (`闽EVL838`) and green plates reach into it, so that
/// band is left out of both rather than guessed.
const YELLOW: std::ops::Range<u8> = 10..38;
const GREEN: std::ops::Range<u8> = 38..85;
const BLUE: std::ops::Range<u8> = 95..135;

/// Pixel statistics of a BGR crop.
pub fn colour_stats(crop: &Mat) -> Result<ColourStats> {
    let mut hsv = Mat::default();
    imgproc::cvt_color_def(crop, &mut hsv, imgproc::COLOR_BGR2HSV)?;
    let hsv = if hsv.is_continuous() {
        hsv
    } else {
        hsv.try_clone()?
    };
    let bytes = hsv.data_bytes()?;
    let (mut n, mut sat, mut blue, mut green, mut yellow) = (0u64, 0u64, 0, 0, 0);
    let (mut bright, mut dark) = (0u64, 0u64);
    for px in bytes.chunks_exact(3) {
        let (h, s, v) = (px[0], px[1], px[2]);
        n += 1;
        bright += u64::from(v >= 150);
        dark += u64::from(v < 70);
        if s < MIN_S || v < MIN_V {
            continue;
        }
        sat += 1;
        if BLUE.contains(&h) {
            blue += 1;
        } else if GREEN.contains(&h) {
            green += 1;
        } else if YELLOW.contains(&h) {
            yellow += 1;
        }
    }
    let share = |k: u64, of: u64| if of == 0 { 0.0 } else { k as f32 / of as f32 };
    Ok(ColourStats {
        saturated: share(sat, n),
        blue: share(blue, sat),
        green: share(green, sat),
        yellow: share(yellow, sat),
        bright: share(bright, n),
        dark: share(dark, n),
    })
}

impl ColourStats {
    /// The background colour these statistics show.
    pub fn colour(&self) -> PlateColour {
        if self.saturated >= MIN_SATURATED {
            let mut bands = [
                (self.blue, PlateColour::Blue),
                (self.green, PlateColour::Green),
                (self.yellow, PlateColour::Yellow),
            ];
            bands.sort_by(|a, b| b.0.total_cmp(&a.0));
            let [(lead, colour), (runner_up, _), _] = bands;
            return if lead >= MIN_LEAD && runner_up <= MAX_RUNNER_UP {
                colour
            } else {
                PlateColour::Unknown
            };
        }
        // Unsaturated: white or black only when most of the crop clearly is; grey is nothing.
        if self.bright >= 0.5 {
            PlateColour::White
        } else if self.dark >= 0.5 {
            PlateColour::Black
        } else {
            PlateColour::Unknown
        }
    }
}

/// The background colour of a BGR plate crop.
pub fn plate_colour(crop: &Mat) -> Result<PlateColour> {
    Ok(colour_stats(crop)?.colour())
}

/// Whether a Chinese plate's layout contradicts its background colour: seven characters of the
/// ordinary (blue) layout on a green plate, or the eight-character new-energy layout on a blue
/// one. Only these two are refused: yellow-green large new-energy plates can read as yellow,
/// and white/black plates (police, Hong Kong) carry layouts the grammar checks already.
pub fn contradicts(plate: &str, region: Region, colour: PlateColour) -> bool {
    if region != Region::Cn {
        return false;
    }
    match colour {
        PlateColour::Green => grammar::is_cn_ordinary(plate),
        PlateColour::Blue => grammar::is_cn_new_energy(plate),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Point, Rect, Scalar, CV_8UC3};

    /// A `w`×`h` plate of background `bg` (BGR) with seven character bars of `ink`, like text.
    fn plate(bg: [f64; 3], ink: [f64; 3]) -> Mat {
        let (w, h) = (220, 70);
        let mut m =
            Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::new(bg[0], bg[1], bg[2], 0.0))
                .unwrap();
        for i in 0..7 {
            imgproc::rectangle(
                &mut m,
                Rect::new(12 + i * 29, 12, 14, 46),
                Scalar::new(ink[0], ink[1], ink[2], 0.0),
                -1,
                imgproc::LINE_8,
                0,
            )
            .unwrap();
        }
        m
    }

    const WHITE: [f64; 3] = [245.0, 245.0, 245.0];
    const BLACK: [f64; 3] = [20.0, 20.0, 20.0];

    #[test]
    fn the_background_not_the_characters_gives_the_colour() {
        // BGR: a Chinese blue plate, a new-energy green, a truck's yellow.
        assert_eq!(
            plate_colour(&plate([160.0, 60.0, 10.0], WHITE)).unwrap(),
            PlateColour::Blue
        );
        assert_eq!(
            plate_colour(&plate([90.0, 200.0, 60.0], BLACK)).unwrap(),
            PlateColour::Green
        );
        assert_eq!(
            plate_colour(&plate([20.0, 190.0, 230.0], BLACK)).unwrap(),
            PlateColour::Yellow
        );
        assert_eq!(
            plate_colour(&plate(WHITE, BLACK)).unwrap(),
            PlateColour::White
        );
        assert_eq!(
            plate_colour(&plate(BLACK, WHITE)).unwrap(),
            PlateColour::Black
        );
    }

    #[test]
    fn a_small_car_new_energy_gradient_is_green() {
        // White at the top fading to green at the bottom, black characters on it.
        let mut m = plate(WHITE, BLACK);
        let h = m.rows();
        for y in 0..h {
            let t = y as f64 / (h - 1) as f64;
            let row = Scalar::new(245.0 - 150.0 * t, 245.0 - 40.0 * t, 245.0 - 180.0 * t, 0.0);
            let (a, b) = (Point::new(0, y), Point::new(m.cols() - 1, y));
            imgproc::line(&mut m, a, b, row, 1, imgproc::LINE_8, 0).unwrap();
        }
        for i in 0..8 {
            let r = Rect::new(10 + i * 26, 12, 12, 46);
            imgproc::rectangle(&mut m, r, Scalar::all(20.0), -1, imgproc::LINE_8, 0).unwrap();
        }
        assert_eq!(plate_colour(&m).unwrap(), PlateColour::Green);
    }

    #[test]
    fn a_mixed_or_grey_crop_is_unknown() {
        // Half blue, half green: no band leads.
        let mut m = plate([160.0, 60.0, 10.0], WHITE);
        let r = Rect::new(110, 0, 110, 70);
        imgproc::rectangle(
            &mut m,
            r,
            Scalar::new(90.0, 200.0, 60.0, 0.0),
            -1,
            imgproc::LINE_8,
            0,
        )
        .unwrap();
        assert_eq!(plate_colour(&m).unwrap(), PlateColour::Unknown);
        let grey = plate([110.0, 110.0, 110.0], [60.0, 60.0, 60.0]);
        assert_eq!(plate_colour(&grey).unwrap(), PlateColour::Unknown);
    }

    #[test]
    fn only_a_chinese_layout_that_contradicts_the_colour_is_refused() {
        use PlateColour::*;
        // The wrong read of the shared photos: a new-energy plate with a digit dropped.
        assert!(contradicts("皖AD1989", Region::Cn, Green));
        assert!(!contradicts("皖AD19789", Region::Cn, Green));
        assert!(contradicts("皖AD19789", Region::Cn, Blue));
        assert!(contradicts("沪A12345F", Region::Cn, Blue));
        assert!(!contradicts("皖AD1989", Region::Cn, Blue));
        // Yellow-green large new-energy plates, and colours that decide nothing.
        for c in [Yellow, White, Black, Unknown] {
            assert!(!contradicts("皖AD19789", Region::Cn, c), "{c:?}");
            assert!(!contradicts("皖AD1989", Region::Cn, c), "{c:?}");
        }
        // Special series and endings are not the ordinary layout: a cross-border `粤Z…港` plate
        // is black, a police `…警` plate white, and neither is judged by these two colours.
        assert!(!contradicts("粤ZR066港", Region::Cn, Green));
        assert!(!contradicts("使224424", Region::Cn, Green));
        assert!(!contradicts("皖1946673", Region::Cn, Green));
        // Other grammars are never judged by colour.
        assert!(!contradicts("51A12345", Region::Vn, Blue));
        assert!(!contradicts("ABC1234", Region::Generic, Green));
    }
}
