#!/usr/bin/env python3
"""Convert dlib's 128-D ResNet face descriptor, as shipped in TensorFlow.js form by the npm package
@vladmandic/face-api, into an ONNX model that ONNX Runtime loads.

No registry ships this model as ONNX, so `scripts/fetch-models.py` runs this on the package's
tarball. The output must be byte-for-byte the same on every run and machine (its sha256 is pinned
in models/manifest.toml): tensors are built in a fixed order from fixed arithmetic, node and
tensor names are derived from the weight names, and the producer fields are constants (no
timestamp, no version of the tools).

The graph follows face-api's `faceRecognitionNet` (src/faceRecognitionNet/*.ts):
- every convolution is followed by a per-channel scale layer (x * w + b), folded here into the
  convolution's weights and bias;
- conv 7x7/2 'valid' + ReLU, max-pool 3x3/2 'valid';
- residual blocks: conv 3x3 'same' + ReLU, conv 3x3 'same', add the input, ReLU;
- down-sampling blocks: conv 3x3/2 'valid' + ReLU, conv 3x3 'same'; the shortcut is a 2x2/2
  average pool with as many zero channels appended as the block adds; where the conv path comes
  out one pixel smaller than the pooled path (the last two such blocks at 150x150 input) it is
  zero-padded at the end of H and W, as face-api does;
- global average pool, then a 256x128 matrix.

Input `image`: f32 [N,3,150,150], RGB, (v - [122.782, 117.001, 104.298]) / 256, the face aligned
to dlib's 5-point template. Output `descriptor`: f32 [N,128], not normalised.

Usage: face-embedder-convert.py --package face-api-1.7.15.tgz \
           [--member package/model/face_recognition_model.bin] --out face_embedder.onnx
Needs `numpy` and `onnx` (the pinned versions in scripts/convert-requirements.txt).
"""
import argparse
import json
import os
import sys
import tarfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MANIFEST = "package/model/face_recognition_model-weights_manifest.json"
SHARD_DIR = "package/model/"
INPUT_SIZE = 150

# (block name, kind) in face-api's forward order.
BLOCKS = [
    ("conv32_1", "residual"),
    ("conv32_2", "residual"),
    ("conv32_3", "residual"),
    ("conv64_down", "down"),
    ("conv64_1", "residual"),
    ("conv64_2", "residual"),
    ("conv64_3", "residual"),
    ("conv128_down", "down"),
    ("conv128_1", "residual"),
    ("conv128_2", "residual"),
    ("conv256_down", "down"),
    ("conv256_1", "residual"),
    ("conv256_2", "residual"),
    ("conv256_down_out", "down"),
]

# Fixed so that the bytes never depend on the tools' versions.
IR_VERSION = 8
OPSET = 13
PRODUCER = "gatewatch scripts/face-embedder-convert.py"
PRODUCER_VERSION = "1"


def fail(msg):
    print(f"face-embedder-convert: error: {msg}", file=sys.stderr)
    sys.exit(1)


def read_weights(package):
    """The named float32 tensors of the model, dequantised as tfjs does (q * scale + min in double
    precision, stored as float32)."""
    with tarfile.open(package, "r:gz") as tar:
        def member(name):
            try:
                return tar.extractfile(name).read()
            except (KeyError, AttributeError):
                fail(f"{os.path.basename(package)} has no {name}")

        groups = json.loads(member(MANIFEST))
        weights = {}
        for group in groups:
            data = b"".join(member(SHARD_DIR + p) for p in group["paths"])
            offset = 0
            for spec in group["weights"]:
                shape = spec["shape"]
                count = int(np.prod(shape)) if shape else 1
                quant = spec.get("quantization")
                if spec["dtype"] != "float32":
                    fail(f"{spec['name']}: unsupported dtype {spec['dtype']}")
                if quant is None:
                    size = count * 4
                    values = np.frombuffer(data, "<f4", count, offset).astype(np.float32)
                elif quant["dtype"] == "uint8":
                    size = count
                    q = np.frombuffer(data, np.uint8, count, offset).astype(np.float64)
                    values = (q * quant["scale"] + quant["min"]).astype(np.float32)
                else:
                    fail(f"{spec['name']}: unsupported quantisation {quant['dtype']}")
                if offset + size > len(data):
                    fail(f"weight shards end inside {spec['name']}")
                weights[spec["name"]] = values.reshape(shape)
                offset += size
            if offset != len(data):
                fail(f"{len(data) - offset} bytes of the weight shards are not described by the manifest")
    return weights


class Graph:
    def __init__(self, weights):
        self.weights = weights
        self.nodes = []
        self.initializers = []

    def const(self, name, array):
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, name, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv(self, x, prefix, stride, same, relu):
        """face-api's convLayer: conv + bias, then the scale layer, folded into one Conv."""
        w = self.weights
        filters = w[f"{prefix}/conv/filters"]  # tfjs layout [kh, kw, in, out]
        bias = w[f"{prefix}/conv/bias"]
        scale = w[f"{prefix}/scale/weights"]
        shift = w[f"{prefix}/scale/biases"]
        # (conv(x) + b) * s + t == conv_{W*s}(x) + (b * s + t), per output channel.
        kernel = (filters.transpose(3, 2, 0, 1) * scale[:, None, None, None]).astype(np.float32)
        folded_bias = (bias * scale + shift).astype(np.float32)
        k = filters.shape[0]
        pad = k // 2 if same else 0
        name = prefix.replace("/", "_")
        out = self.node(
            "Conv",
            [x, self.const(f"{name}_w", kernel), self.const(f"{name}_b", folded_bias)],
            f"{name}_conv",
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
        )
        return self.node("Relu", [out], f"{name}_relu") if relu else out

    def residual(self, x, block):
        out = self.conv(x, f"{block}/conv1", 1, True, True)
        out = self.conv(out, f"{block}/conv2", 1, True, False)
        out = self.node("Add", [out, x], f"{block}_add")
        return self.node("Relu", [out], f"{block}_out")

    def down(self, x, block, size, channels_in):
        """A down-sampling block at input size `size`; returns the output and its size."""
        out = self.conv(x, f"{block}/conv1", 2, False, True)
        out = self.conv(out, f"{block}/conv2", 1, True, False)
        conv_size = (size - 3) // 2 + 1
        pooled_size = size // 2
        channels_out = self.weights[f"{block}/conv2/conv/filters"].shape[3]
        if conv_size != pooled_size:
            if pooled_size - conv_size != 1:
                fail(f"{block}: conv path {conv_size} px, pooled path {pooled_size} px")
            # face-api appends a row and a column of zeros at the end of H and W.
            pads = self.const(f"{block}_pads", np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64))
            out = self.node("Pad", [out, pads], f"{block}_pad")
        pooled = self.node(
            "AveragePool", [x], f"{block}_pool", kernel_shape=[2, 2], strides=[2, 2]
        )
        if channels_out != channels_in:
            # The added channels of the shortcut are zeros: a 1x1 conv with an identity block
            # would do the same with more arithmetic; a Pad on the channel axis is exact.
            if channels_out != 2 * channels_in:
                fail(f"{block}: {channels_in} -> {channels_out} channels")
            pads = self.const(
                f"{block}_channel_pads", np.array([0, 0, 0, 0, 0, channels_in, 0, 0], np.int64)
            )
            pooled = self.node("Pad", [pooled, pads], f"{block}_shortcut")
        out = self.node("Add", [out, pooled], f"{block}_add")
        return self.node("Relu", [out], f"{block}_out"), pooled_size, channels_out


def build(weights):
    g = Graph(weights)
    x = g.conv("image", "conv32_down", 2, False, True)
    size = (INPUT_SIZE - 7) // 2 + 1
    x = g.node("MaxPool", [x], "pool1", kernel_shape=[3, 3], strides=[2, 2])
    size = (size - 3) // 2 + 1
    channels = 32
    for block, kind in BLOCKS:
        if kind == "residual":
            x = g.residual(x, block)
        else:
            x, size, channels = g.down(x, block, size, channels)
    x = g.node("GlobalAveragePool", [x], "global_pool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    fc = weights["fc"]  # [256, 128]: descriptor = pooled @ fc
    g.node("MatMul", [x, g.const("fc", fc.astype(np.float32))], "descriptor")

    graph = helper.make_graph(
        g.nodes,
        "dlib_face_descriptor",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["N", 128])],
        g.initializers,
    )
    model = helper.make_model(
        graph,
        ir_version=IR_VERSION,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version=PRODUCER_VERSION,
        doc_string=(
            "dlib dlib_face_recognition_resnet_model_v1 (CC0) via @vladmandic/face-api 1.7.15 (MIT). "
            "Input RGB 150x150 aligned to the dlib 5-point template, (v - [122.782, 117.001, 104.298]) / 256; "
            "output 128-D descriptor, compare L2-normalised by cosine."
        ),
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", required=True, help="the @vladmandic/face-api npm tarball")
    # The fetch step names the manifest's `path`; the weights are read from its shards.
    ap.add_argument("--member", default=SHARD_DIR + "face_recognition_model.bin",
                    help=f"the model's first weight shard (in {SHARD_DIR})")
    ap.add_argument("--out", required=True, help="the ONNX file to write")
    args = ap.parse_args()
    if os.path.dirname(args.member) + "/" != SHARD_DIR:
        fail(f"--member {args.member}: the weights this script reads are in {SHARD_DIR}")
    model = build(read_weights(args.package))
    data = model.SerializeToString(deterministic=True)
    tmp = args.out + ".part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
