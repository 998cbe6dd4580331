#!/usr/bin/env python3
"""Measures the activation ranges scripts/ppocr-det-quantise.py quantises the text detector's two
int8 convolutions with, and writes them to scripts/ppocr-det-ranges.json (committed).

The pictures are fourteen of scikit-image's sample pictures (photos, scans of printed text, a
clock, coins), read from the pinned scikit-image wheel the fetch step downloads: no plate photo of
../shared/ is used, so the product's model depends on registry data only. Each is scaled as
`gatewatch` scales a frame for the detector (shorter side up to 736, longer side at most 960,
sides rounded to multiples of 32) and normalised the same way. MinMax calibration by ONNX
Runtime's quantiser; only the four tensors the two convolutions read and write are kept.

This is run by hand, when the detector or the pictures change, never by the fetch step (inference
results may differ in their last bits between machines; the committed file is what is pinned).

Usage: ppocr-det-calibrate.py --package rapidocr_onnxruntime-1.4.4-py3-none-any.whl \\
           --member rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx \\
           --pictures scikit_image-0.26.0-cp311-...whl
Needs what ppocr-det-quantise.py needs, and Pillow (13.0.0 made the committed file).
"""
import argparse
import os
import zipfile
from io import BytesIO

import numpy as np
from PIL import Image

from ppocr_int8 import load_script, measure_ranges, write_ranges

HERE = os.path.dirname(os.path.abspath(__file__))
PICTURES = ["astronaut.png", "brick.png", "camera.png", "chelsea.png", "clock_motion.png",
            "coffee.png", "coins.png", "color.png", "hubble_deep_field.jpg",
            "motorcycle_left.png", "page.png", "retina.jpg", "rocket.jpg", "text.png"]


def detector_input(picture):
    """A picture scaled and normalised as `gatewatch`'s TextDetector does (BGR, (v/255-0.5)/0.5)."""
    w, h = picture.size
    ratio = 736 / min(w, h) if min(w, h) < 736 else 1.0
    if max(w, h) * ratio > 960:
        ratio = 960 / max(w, h)
    size = (max(32, round(w * ratio / 32) * 32), max(32, round(h * ratio / 32) * 32))
    bgr = np.asarray(picture.convert("RGB").resize(size, Image.BILINEAR), np.float32)[:, :, ::-1]
    return ((bgr / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None].copy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", required=True)
    ap.add_argument("--member", required=True)
    ap.add_argument("--pictures", required=True, help="the scikit-image wheel")
    ap.add_argument("--out", default=os.path.join(HERE, "ppocr-det-ranges.json"))
    args = ap.parse_args()
    q = load_script("ppocr-det-quantise.py")
    with zipfile.ZipFile(args.package) as z:
        model, _ = q.prepare(z.read(args.member))
    with zipfile.ZipFile(args.pictures) as z:
        inputs = [detector_input(Image.open(BytesIO(z.read(f"skimage/data/{p}"))))
                  for p in PICTURES]
    ranges = measure_ranges(model, inputs, q.QUANTISED)
    write_ranges(ranges, args.out)
    print(f"ppocr-det-calibrate: {len(ranges['data'])} ranges from {len(inputs)} pictures -> {args.out}")


if __name__ == "__main__":
    main()
