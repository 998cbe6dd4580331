#!/usr/bin/env python3
"""Measures the activation ranges scripts/ppocr-rec-quantise.py quantises the PP-OCRv6 recogniser's
18 int8 convolutions with, and writes them to scripts/ppocr-rec-ranges.json (committed).

The text lines are plates `gatewatch` renders itself with Debian's fonts (DejaVu Sans, Droid Sans
Fallback or Noto Sans CJK), no photo of ../shared/: so the product's model depends on registry
data only. The committed file was made, with DejaVu Sans Bold (fonts-dejavu-core) and Droid Sans
Fallback (fonts-droid-fallback) installed, from

    gatewatch demo plates --kind vn --count 60 --seed 7 --out plates/vn
    gatewatch demo plates --kind cn --count 60 --seed 7 --out plates/cn

Each labelled plate is cut out; a two-line plate (at most 2.2 times as wide as tall) is cut into
its two rows, as the text detector finds them. Each line is scaled as `gatewatch`'s recogniser
scales it (height 48, its aspect kept, at most 320 wide), normalised the same way and padded to
320. MinMax calibration by ONNX Runtime's quantiser; only the tensors the 18 convolutions read
and write are kept.

Run by hand when the recogniser or the plates change, never by the fetch step.

Usage: ppocr-rec-calibrate.py --package rapidocr-3.10.0-py3-none-any.whl \\
           --member rapidocr/models/PP-OCRv6_rec_small.onnx --plates plates/vn plates/cn
Needs what ppocr-rec-quantise.py needs, and Pillow (13.0.0 made the committed file).
"""
import argparse
import glob
import os
import zipfile

import numpy as np
from PIL import Image

from ppocr_int8 import load_script, measure_ranges, write_ranges

HERE = os.path.dirname(os.path.abspath(__file__))
HEIGHT, WIDTH = 48, 320
TWO_LINE_ASPECT = 2.2


def recogniser_input(line):
    """A text line scaled, normalised (BGR, (v/255-0.5)/0.5) and padded as `gatewatch`'s
    TextRecogniser does."""
    w, h = line.size
    scaled_w = min(WIDTH, max(1, round(HEIGHT * w / h)))
    bgr = np.asarray(line.resize((scaled_w, HEIGHT), Image.BILINEAR), np.float32)[:, :, ::-1]
    padded = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    padded[:, :scaled_w] = (bgr / 255 - 0.5) / 0.5
    return padded.transpose(2, 0, 1)[None].copy()


def plate_lines(folder):
    """The text lines of every labelled plate in a folder of `gatewatch demo plates`."""
    lines = []
    for label in sorted(glob.glob(os.path.join(folder, "*.txt"))):
        for row in open(label, encoding="utf-8"):
            fields = row.rstrip("\n").split("\t")
            if len(fields) < 6:
                continue
            name, x, y, w, h = fields[0], *map(int, fields[1:5])
            photo = Image.open(os.path.join(folder, name)).convert("RGB")
            if w / h > TWO_LINE_ASPECT:
                boxes = [(x, y, x + w, y + h)]
            else:
                boxes = [(x, y, x + w, y + h // 2), (x, y + h // 2, x + w, y + h)]
            lines.extend(photo.crop(b) for b in boxes)
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", required=True)
    ap.add_argument("--member", required=True)
    ap.add_argument("--plates", required=True, nargs="+",
                    help="folders written by `gatewatch demo plates`")
    ap.add_argument("--out", default=os.path.join(HERE, "ppocr-rec-ranges.json"))
    args = ap.parse_args()
    q = load_script("ppocr-rec-quantise.py")
    with zipfile.ZipFile(args.package) as z:
        model = q.prepare(z.read(args.member))
    inputs = [recogniser_input(line) for folder in args.plates for line in plate_lines(folder)]
    if not inputs:
        raise SystemExit("ppocr-rec-calibrate: no labelled plates in " + " ".join(args.plates))
    ranges = measure_ranges(model, inputs, list(q.QUANTISED))
    write_ranges(ranges, args.out)
    print(f"ppocr-rec-calibrate: {len(ranges['data'])} ranges from {len(inputs)} lines -> {args.out}")


if __name__ == "__main__":
    main()
