#!/usr/bin/env python3
"""The PP-OCRv6 (small) text recogniser of a rapidocr wheel with the pointwise convolutions of its
last two stages in int8, for ONNX Runtime's CPU provider.

Why: the recogniser reads every text line the detector finds, about 24 ms a line at 48 x 320 (one
thread). ONNX Runtime's profiler put about half of that in the 18 pointwise (1 x 1) convolutions
that widen and narrow the features of the last two stages (192 <-> 384 channels at 6 x 80, 384 <->
768 at 3 x 80). In int8 (QDQ: per-channel int8 weights, uint8 activations, run as QLinearConv) a
line takes about 15 ms. Everything else stays float: every convolution in int8 cost plates
(`docs/accuracy.md`), and so did more of the text detector than its two layers.

The rewrites:
1. the model converted from opset 11 to 14 by ONNX's version converter (per-channel QDQ needs
   opset 13);
2. ONNX Runtime's static quantiser (the pinned wheel's, scripts/convert-requirements.txt) for the
   18 convolutions, with the activation ranges of scripts/ppocr-rec-ranges.json, measured once by
   scripts/ppocr-rec-calibrate.py and committed: this step runs no inference and writes the same
   bytes on every machine (the sha256 is pinned in models/manifest.toml).

The dictionary (metadata `character`) is kept.

Usage: ppocr-rec-quantise.py --package rapidocr-3.10.0-py3-none-any.whl \\
           --member rapidocr/models/PP-OCRv6_rec_small.onnx --out rec.onnx
Needs `numpy`, `onnx`, `onnxruntime` and `packaging` (pinned in scripts/convert-requirements.txt).
"""
import os
import sys

import onnx
from onnx import version_converter

from ppocr_int8 import load_script, quantise_model

HERE = os.path.dirname(os.path.abspath(__file__))
RANGES = os.path.join(HERE, "ppocr-rec-ranges.json")
PRODUCER = "gatewatch scripts/ppocr-rec-quantise.py"
PRODUCER_VERSION = "1"
# The 18 pointwise convolutions, by their names in the package's model, with the (output, input)
# channels each must have: checked below, so another model fails instead of being quantised
# elsewhere. Each block of a stage widens its features, then narrows them back.
QUANTISED = {
    # The last-but-one stage, at 6 x 80 for a 48 x 320 line: six blocks.
    "Conv.22": (384, 192), "Conv.23": (192, 384),
    "Conv.25": (384, 192), "Conv.26": (192, 384),
    "Conv.30": (384, 192), "Conv.31": (192, 384),
    "Conv.33": (384, 192), "Conv.34": (192, 384),
    "Conv.38": (384, 192), "Conv.39": (192, 384),
    "Conv.41": (384, 192), "Conv.42": (192, 384),
    # The last stage, at 3 x 80: its first block (from 192 channels), then two more.
    "Conv.44": (384, 192), "Conv.45": (384, 384),
    "Conv.49": (768, 384), "Conv.50": (384, 768),
    "Conv.52": (768, 384), "Conv.53": (384, 768),
}
OPSET = 14


def fail(msg):
    print(f"ppocr-rec-quantise: error: {msg}", file=sys.stderr)
    sys.exit(1)


def check_targets(model):
    """Each named node is a 1 x 1 convolution with the channels listed in QUANTISED."""
    consts = {i.name: i for i in model.graph.initializer}
    by_name = {n.name: n for n in model.graph.node}
    for name, (out_ch, in_ch) in QUANTISED.items():
        conv = by_name.get(name)
        dims = list(consts[conv.input[1]].dims) if conv is not None and conv.input[1] in consts \
            else None
        if conv is None or conv.op_type != "Conv" or dims != [out_ch, in_ch, 1, 1]:
            fail(f"{name} is not the 1x1 {in_ch} -> {out_ch} convolution this script was written "
                 f"for (found {conv.op_type if conv else 'nothing'} {dims})")


def prepare(source):
    """The float model the convolutions are quantised in (and calibrated on): the package's
    recogniser at opset 14, its targets checked."""
    model = onnx.load_from_string(source)
    if not any(p.key == "character" for p in model.metadata_props):
        fail("the model has no `character` metadata: not a PP-OCR recogniser")
    model = version_converter.convert_version(model, OPSET)
    check_targets(model)
    return model


def convert(source):
    model = quantise_model(prepare(source), RANGES, list(QUANTISED), fail)
    if not any(p.key == "character" for p in model.metadata_props):
        fail("the quantiser dropped the dictionary (metadata `character`)")
    model.producer_name = PRODUCER
    model.producer_version = PRODUCER_VERSION
    onnx.checker.check_model(model)
    return model, {"int8 convolution": len(QUANTISED), f"opset {OPSET}": 1}


if __name__ == "__main__":
    load_script("ppocr-fold.py").converter_cli("ppocr-rec-quantise", __doc__, convert)
