#!/usr/bin/env python3
"""The PP-OCRv4 text detector of a rapidocr wheel, folded (scripts/ppocr-fold.py), with its two
costliest convolutions in int8, for ONNX Runtime's CPU provider.

Why: after folding, two 3x3 convolutions at a quarter of the input's resolution (96 channels in,
24 out: the feature pyramid's finest level and the DB head's first layer) were about a third of
the detector's time at 960 x 544 (ONNX Runtime's profiler, one thread; its blocked layout pads
their 24 output channels to 32). In int8 (QDQ: per-channel int8 weights, uint8 activations, which
ONNX Runtime runs as QLinearConv) the detector takes about 0.7 times the time. Everything else
stays float: quantising the whole detector cost plates (`docs/accuracy.md`).

The rewrites:
1. the folds of scripts/ppocr-fold.py;
2. each squeeze-and-excitation shortcut of the feature pyramid, x + x * s (s per channel), becomes
   x * (s + 1): one pass over the feature map instead of two (exact in real arithmetic);
3. ONNX Runtime's static quantiser (the pinned wheel's, scripts/convert-requirements.txt; called
   as scripts/ppocr_int8.py does for both PP-OCR converters) for the two convolutions, with the
   activation ranges of scripts/ppocr-det-ranges.json. Those ranges were
   measured once (scripts/ppocr-det-calibrate.py) and are committed, so this step runs no
   inference and writes the same bytes on every machine (the sha256 is pinned in
   models/manifest.toml).

Usage: ppocr-det-quantise.py --package rapidocr_onnxruntime-1.4.4-py3-none-any.whl \\
           --member rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx --out det.onnx
Needs `numpy`, `onnx`, `onnxruntime` and `packaging` (pinned in scripts/convert-requirements.txt).
"""
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ppocr_int8 import load_script, quantise_model, readers_of

HERE = os.path.dirname(os.path.abspath(__file__))
RANGES = os.path.join(HERE, "ppocr-det-ranges.json")
PRODUCER = "gatewatch scripts/ppocr-det-quantise.py"
PRODUCER_VERSION = "1"
# The two convolutions, by their names in the package's model; checked below for their shape and
# place, so another model fails instead of being quantised elsewhere.
QUANTISED = ("p2o.Conv.58", "p2o.Conv.61")


def fail(msg):
    print(f"ppocr-det-quantise: error: {msg}", file=sys.stderr)
    sys.exit(1)


PPOCR_FOLD = load_script("ppocr-fold.py")


def se_shortcuts_as_one_scale(model):
    """x + x * s -> x * (s + 1), where the Mul's only reader is the Add; returns how many."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    readers = readers_of(g)
    g.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), "se_shortcut_one"))
    replaced, dropped = {}, set()
    for add in g.node:
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        for x, product in (add.input, reversed(add.input)):
            mul = producer.get(product)
            if (mul is None or mul.op_type != "Mul" or len(readers[product]) != 1
                    or list(mul.input).count(x) != 1):
                continue
            scale = mul.input[1] if mul.input[0] == x else mul.input[0]
            plus_one = helper.make_node("Add", [scale, "se_shortcut_one"], [scale + ".plus_one"],
                                        name=mul.name + ".plus_one")
            times = helper.make_node("Mul", [x, scale + ".plus_one"], list(add.output),
                                     name=add.name + ".as_scale")
            replaced[id(add)] = [plus_one, times]
            dropped.add(id(mul))
            break
    nodes = []
    for n in g.node:
        if id(n) in replaced:
            nodes.extend(replaced[id(n)])
        elif id(n) not in dropped:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    return len(replaced)


def check_targets(model):
    """The named convolutions are 3x3, 96 -> 24 channels, and feed the head at full pyramid
    resolution: one reaches the Concat without a Resize, the other the first ConvTranspose."""
    g = model.graph
    consts = {i.name: i for i in g.initializer}
    by_name = {n.name: n for n in g.node}
    readers = readers_of(g)

    def reaches(node, op, through):
        seen, todo = set(), [node]
        while todo:
            n = todo.pop()
            for r in readers.get(n.output[0], []):
                if r.op_type == op:
                    return True
                if r.op_type in through and r.name not in seen:
                    seen.add(r.name)
                    todo.append(r)
        return False

    for name, op, through in ((QUANTISED[0], "Concat", {"Add", "Mul", "Relu"}),
                              (QUANTISED[1], "ConvTranspose", {"Relu"})):
        conv = by_name.get(name)
        dims = list(consts[conv.input[1]].dims) if conv is not None and conv.input[1] in consts \
            else None
        if conv is None or conv.op_type != "Conv" or dims != [24, 96, 3, 3] \
                or not reaches(conv, op, through):
            fail(f"{name} is not the 3x3 96 -> 24 convolution before the {op} this script was "
                 "written for")


def prepare(source):
    """The float model the two convolutions are quantised in (and calibrated on): folded, its
    squeeze-and-excitation shortcuts as one scale, the two convolutions checked."""
    model, counts = PPOCR_FOLD.fold(source)
    counts["squeeze-and-excitation shortcut as one scale"] = se_shortcuts_as_one_scale(model)
    check_targets(model)
    return model, counts


def convert(source):
    model, counts = prepare(source)
    model = quantise_model(model, RANGES, QUANTISED, fail)
    counts["int8 convolution"] = len(QUANTISED)
    model.producer_name = PRODUCER
    model.producer_version = PRODUCER_VERSION
    onnx.checker.check_model(model)
    return model, counts


if __name__ == "__main__":
    PPOCR_FOLD.converter_cli("ppocr-det-quantise", __doc__, convert)
