#!/usr/bin/env python3
"""Rewrite a PP-OCR model (PPLCNetV3 backbone) from a rapidocr wheel into the same function with
fewer operations, for ONNX Runtime's CPU provider.

Why: Paddle's ONNX export computes every learnable affine block (x * s + b, after each convolution
and after each activation) and every hardswish (x * clip(x + 3, 0, 6) / 6) as separate element-wise
operations over the whole feature map. In the text detector at 960 x 544 those were about 40 % of
its time (ONNX Runtime's profiler, one thread), and the layout-blocked convolutions ONNX Runtime
uses had to reorder their output to plain layout and back around each of them.

The rewrites, each exact in real arithmetic (float32 results differ from the package's model in
the last bits only; `docs/accuracy.md` has the measured differences):
1. a scale (Mul by a scalar), a shift (Add of a scalar or per-channel constant) or a batch norm that
   is a convolution's only consumer is folded into the convolution's weights and bias;
2. x * clip(x + 3, 0, 6) / 6 becomes one HardSwish (opset 14: the model is first converted from
   its opset with onnx's version converter), which ONNX Runtime fuses into the convolution before it;
3. a scalar affine (x * s + b) whose consumers are all unpadded 1x1 convolutions is folded into
   their weights (W * s) and biases (B + b * sum of W over its inputs);
4. any other scalar affine after an operation of known channel count becomes a 1x1 depthwise
   convolution: one pass in the blocked layout instead of two passes and two reorders. It cannot be
   folded into the padded 3x3 or 5x5 depthwise convolution after it: that one pads with zeros, and
   the affine would move the padding value.

The output is byte-for-byte the same on every run and machine (its sha256 is pinned in
models/manifest.toml): weights are computed in float64 with correctly rounded operations only
(sums with math.fsum), rounded once to float32, and serialised deterministically with fixed
producer fields.

Usage: ppocr-fold.py --package rapidocr_onnxruntime-1.4.4-py3-none-any.whl \\
           --member rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx --out det.onnx
Needs `numpy` and `onnx` (the pinned versions in scripts/convert-requirements.txt).
"""
import argparse
import math
import os
import sys
import zipfile

import numpy as np
import onnx
import onnx.version_converter
from onnx import helper, numpy_helper

OPSET = 14  # the first with HardSwish
PRODUCER = "gatewatch scripts/ppocr-fold.py"
PRODUCER_VERSION = "1"


def fail(msg):
    print(f"ppocr-fold: error: {msg}", file=sys.stderr)
    sys.exit(1)


class Graph:
    """The model's nodes and constants (Constant nodes and initializers alike), edited in place."""

    def __init__(self, model):
        self.model = model
        g = model.graph
        self.consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.nodes = []
        for n in g.node:
            if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
            else:
                self.nodes.append(n)
        self.outputs = {o.name for o in g.output}
        self.counts = {}

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    def consumers(self, name):
        return [n for n in self.nodes if name in n.input]

    def only_consumer(self, node):
        """The one node reading `node`'s only output, when it is not also a graph output."""
        if len(node.output) != 1 or node.output[0] in self.outputs:
            return None
        users = self.consumers(node.output[0])
        return users[0] if len(users) == 1 else None

    def scalar(self, name):
        a = self.consts.get(name)
        return float(a.reshape(-1)[0]) if a is not None and a.size == 1 else None

    def other_input(self, node, name):
        others = [x for x in node.input if x != name]
        return others[0] if len(node.input) == 2 and len(others) == 1 else None

    def remove(self, node, replaced_by):
        """Drop `node`, its readers reading `replaced_by` instead."""
        for n in self.nodes:
            for i, x in enumerate(n.input):
                if x == node.output[0]:
                    n.input[i] = replaced_by
        self.nodes.remove(node)

    def weights(self, conv):
        w = self.consts[conv.input[1]].astype(np.float64)
        groups = attribute(conv, "group", 1)
        out_channels = w.shape[0] if conv.op_type == "Conv" else w.shape[1] * groups
        b = (self.consts[conv.input[2]].astype(np.float64) if len(conv.input) > 2
             else np.zeros(out_channels))
        return w, b

    def set_weights(self, conv, w, b):
        names = (conv.name + ".folded_w", conv.name + ".folded_b")
        self.consts[names[0]] = w.astype(np.float32)
        self.consts[names[1]] = b.astype(np.float32)
        inp = conv.input[0]
        del conv.input[:]
        conv.input.extend([inp, *names])

    def finish(self):
        g = self.model.graph
        del g.node[:]
        g.node.extend(self.nodes)
        used = {x for n in self.nodes for x in n.input}
        del g.initializer[:]
        g.initializer.extend(numpy_helper.from_array(self.consts[k], k)
                             for k in sorted(used & self.consts.keys()))


def attribute(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def is_conv(node):
    return node.op_type in ("Conv", "ConvTranspose") and len(node.input) >= 2


def fold_into_producers(graph):
    """Rule 1: scale, shift and batch norm folded into the convolution they read."""
    changed = True
    while changed:
        changed = False
        for conv in list(graph.nodes):
            if not is_conv(conv) or conv.input[1] not in graph.consts:
                continue
            user = graph.only_consumer(conv)
            if user is None:
                continue
            w, b = graph.weights(conv)
            # Output channels are axis 0 of a Conv's weights, axis 1 of a ConvTranspose's.
            per_out = (-1, 1, 1, 1) if conv.op_type == "Conv" else (1, -1, 1, 1)
            if conv.op_type == "ConvTranspose" and attribute(conv, "group", 1) != 1:
                continue
            if user.op_type == "Mul":
                s = graph.scalar(graph.other_input(user, conv.output[0]))
                if s is None:
                    continue
                w, b = w * s, b * s
            elif user.op_type == "Add":
                other = graph.other_input(user, conv.output[0])
                shift = graph.consts.get(other)
                # A scalar, or one value per channel shaped to broadcast over the channel axis.
                if shift is None or not (shift.size == 1
                                         or shift.shape in ((1, b.size, 1, 1), (b.size, 1, 1))):
                    continue
                b = b + shift.astype(np.float64).reshape(-1)
            elif user.op_type == "BatchNormalization" and len(user.output) == 1:
                scale, bias, mean, var = (graph.consts.get(x) for x in user.input[1:5])
                if any(x is None for x in (scale, bias, mean, var)):
                    continue
                eps = attribute(user, "epsilon", 1e-5)
                k = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
                w = w * k.reshape(per_out)
                b = (b - mean.astype(np.float64)) * k + bias.astype(np.float64)
            else:
                continue
            graph.set_weights(conv, w, b)
            graph.remove(user, conv.output[0])
            graph.count(f"{user.op_type} folded into a convolution")
            changed = True


def fuse_hardswish(graph):
    """Rule 2: x * clip(x + 3, 0, 6) / 6 as one HardSwish."""
    for add in list(graph.nodes):
        if add.op_type != "Add" or add not in graph.nodes or graph.scalar(add.input[1]) != 3.0:
            continue
        x = add.input[0]
        clip = graph.only_consumer(add)
        if (clip is None or clip.op_type != "Clip" or len(clip.input) != 3
                or graph.scalar(clip.input[1]) != 0.0 or graph.scalar(clip.input[2]) != 6.0):
            continue
        mul = graph.only_consumer(clip)
        if mul is None or mul.op_type != "Mul" or graph.other_input(mul, clip.output[0]) != x:
            continue
        div = graph.only_consumer(mul)
        if div is None or div.op_type != "Div" or graph.scalar(div.input[1]) != 6.0:
            continue
        at = graph.nodes.index(add)
        for n in (add, clip, mul, div):
            graph.nodes.remove(n)
        graph.nodes.insert(at, helper.make_node("HardSwish", [x], [div.output[0]],
                                                name=div.name + ".hardswish"))
        graph.count("hardswish fused")


def scalar_affines(graph):
    """(input, Mul node, Add node, s, b) for every x * s + b of scalars, the Mul read only by the Add."""
    found = []
    for mul in graph.nodes:
        if mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        scale_at = [i for i, x in enumerate(mul.input) if graph.scalar(x) is not None]
        if len(scale_at) != 1:
            continue
        x = mul.input[1 - scale_at[0]]
        add = graph.only_consumer(mul)
        if add is None or add.op_type != "Add":
            continue
        b = graph.scalar(graph.other_input(add, mul.output[0]))
        if b is None:
            continue
        found.append((x, mul, add, graph.scalar(mul.input[scale_at[0]]), b))
    return found


def fold_into_consumers(graph):
    """Rule 3: a scalar affine read only by unpadded 1x1 convolutions folded into them."""
    for x, mul, add, s, b in scalar_affines(graph):
        if add.output[0] in graph.outputs:
            continue
        users = graph.consumers(add.output[0])
        if not users or not all(
                n.op_type == "Conv" and n.input[0] == add.output[0] and n.input[1] in graph.consts
                and attribute(n, "kernel_shape") == [1, 1] and attribute(n, "group", 1) == 1
                and not any(attribute(n, "pads", [0, 0, 0, 0])) for n in users):
            continue
        for conv in users:
            w, bias = graph.weights(conv)
            sums = np.array([math.fsum(row) for row in w.reshape(w.shape[0], -1).tolist()])
            graph.set_weights(conv, w * s, bias + b * sums)
            conv.input[0] = x
        graph.nodes.remove(mul)
        graph.nodes.remove(add)
        graph.count("affine folded into the 1x1 convolutions after it")


def affines_as_depthwise(graph):
    """Rule 4: the remaining scalar affines as 1x1 depthwise convolutions."""
    channels = {}
    for n in graph.nodes:
        if n.op_type == "Conv" and n.input[1] in graph.consts:
            channels[n.output[0]] = graph.consts[n.input[1]].shape[0]
        elif n.op_type in ("HardSwish", "Relu") and n.input[0] in channels:
            channels[n.output[0]] = channels[n.input[0]]
    for x, mul, add, s, b in scalar_affines(graph):
        c = channels.get(x)
        if c is None:
            continue
        names = (mul.name + ".depthwise_w", mul.name + ".depthwise_b")
        graph.consts[names[0]] = np.full((c, 1, 1, 1), s, np.float32)
        graph.consts[names[1]] = np.full((c,), b, np.float32)
        at = graph.nodes.index(mul)
        graph.nodes.remove(mul)
        graph.nodes.remove(add)
        graph.nodes.insert(at, helper.make_node("Conv", [x, *names], [add.output[0]],
                                                name=mul.name + ".depthwise", group=c,
                                                kernel_shape=[1, 1]))
        graph.count("affine as a 1x1 depthwise convolution")


def fold(source):
    model = onnx.load_from_string(source)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset > OPSET:
        fail(f"the model's opset is {opset}; this script converts models of opset <= {OPSET}")
    model = onnx.version_converter.convert_version(model, OPSET)
    graph = Graph(model)
    fold_into_producers(graph)
    fuse_hardswish(graph)
    fold_into_consumers(graph)
    affines_as_depthwise(graph)
    graph.finish()
    left = sorted({n.op_type for n in graph.nodes} & {"Clip", "BatchNormalization"})
    if "hardswish fused" not in graph.counts or left:
        fail(f"the model is not the PP-OCR graph this script was written for (rewrites: "
             f"{graph.counts}; left: {left})")
    model.producer_name = PRODUCER
    model.producer_version = PRODUCER_VERSION
    onnx.checker.check_model(model)
    return model, graph.counts


def converter_cli(name, doc, convert):
    """The command line the fetch step runs a PP-OCR converter with (--package, --member, --out):
    `convert` turns the member's bytes into (model, counts of the rewrites)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--package", required=True, help="the wheel holding the model")
    ap.add_argument("--member", required=True, help="the model's path inside the wheel")
    ap.add_argument("--out", required=True, help="the ONNX file to write")
    args = ap.parse_args()
    try:
        with zipfile.ZipFile(args.package) as z:
            source = z.read(args.member)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        print(f"{name}: error: cannot read {args.member} from {args.package}: {e}", file=sys.stderr)
        sys.exit(1)
    model, counts = convert(source)
    for what, n in sorted(counts.items()):
        print(f"{name}: {args.member}: {n} × {what}")
    tmp = args.out + ".part"
    with open(tmp, "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    os.replace(tmp, args.out)


if __name__ == "__main__":
    converter_cli("ppocr-fold", __doc__, fold)
