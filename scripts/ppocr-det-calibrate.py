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
import importlib.util
import json
import os
import tempfile
import zipfile
from io import BytesIO

import numpy as np
import onnx
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
PICTURES = ["astronaut.png", "brick.png", "camera.png", "chelsea.png", "clock_motion.png",
            "coffee.png", "coins.png", "color.png", "hubble_deep_field.jpg",
            "motorcycle_left.png", "page.png", "retina.jpg", "rocket.jpg", "text.png"]


def load_quantiser():
    spec = importlib.util.spec_from_file_location("ppocr_det_quantise",
                                                  os.path.join(HERE, "ppocr-det-quantise.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    q = load_quantiser()
    with zipfile.ZipFile(args.package) as z:
        model, _ = q.prepare(z.read(args.member))
    with zipfile.ZipFile(args.pictures) as z:
        inputs = [detector_input(Image.open(BytesIO(z.read(f"skimage/data/{p}"))))
                  for p in PICTURES]
    name = model.graph.input[0].name

    class Reader:
        def __init__(self):
            self.left = iter(inputs)

        def get_next(self):
            x = next(self.left, None)
            return None if x is None else {name: x}

    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    with tempfile.TemporaryDirectory() as tmp:
        folded, cache = os.path.join(tmp, "folded.onnx"), os.path.join(tmp, "ranges.json")
        onnx.save(model, folded)
        quantize_static(folded, os.path.join(tmp, "q.onnx"), Reader(),
                        calibration_cache_path=cache, quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_quantize=list(q.QUANTISED),
                        calibrate_method=CalibrationMethod.MinMax)
        with open(cache) as f:
            ranges = json.load(f)
    convs = {n.name: n for n in model.graph.node if n.name in q.QUANTISED}
    keep = {t for c in convs.values() for t in (c.input[0], c.output[0])}
    ranges["data"] = {k: v for k, v in sorted(ranges["data"].items()) if k in keep}
    if set(ranges["data"]) != keep:
        raise SystemExit(f"ppocr-det-calibrate: ranges missing for {sorted(keep - set(ranges['data']))}")
    with open(args.out, "w") as f:
        json.dump(ranges, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"ppocr-det-calibrate: {len(keep)} ranges from {len(inputs)} pictures -> {args.out}")


if __name__ == "__main__":
    main()
