"""Static int8 quantisation of chosen convolutions of a PP-OCR model with committed activation
ranges: shared by the converters (ppocr-det-quantise.py, ppocr-rec-quantise.py), which run in the
fetch step, and their calibration scripts (ppocr-det-calibrate.py, ppocr-rec-calibrate.py), which
are run by hand. Also how those scripts load each other (`load_script`).

Quantised as QDQ (per-channel int8 weights, uint8 activations), which ONNX Runtime's CPU provider
runs as QLinearConv. The converters read the ranges from a committed JSON file instead of
calibrating, so they run no inference and write the same bytes on every machine (inference may
differ in its last bits between machines; the committed ranges are what is pinned).
"""
import importlib.util
import json
import logging
import os
import tempfile

import onnx


def load_script(file_name):
    """A script of this folder as a module (the scripts' file names are not identifiers)."""
    name = file_name.removesuffix(".py").replace("-", "_")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), file_name)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readers_of(graph):
    """Each tensor name -> the nodes that read it."""
    readers = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    return readers


def _quantise_static(float_path, out_path, reader, ranges_path, nodes):
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process is about shapes
    quantize_static(float_path, out_path, calibration_data_reader=reader,
                    calibration_cache_path=ranges_path, quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, nodes_to_quantize=list(nodes),
                    calibrate_method=CalibrationMethod.MinMax)


def quantise(float_path, out_path, ranges_path, nodes):
    """`nodes` of the model at `float_path` in int8 with the ranges of `ranges_path`."""
    _quantise_static(float_path, out_path, None, ranges_path, nodes)


def quantise_model(model, ranges_path, nodes, fail):
    """`model` (an onnx.ModelProto) with `nodes` in int8: the quantised ModelProto. Fails unless
    the quantiser wrote an input and an output QuantizeLinear for each node."""
    with tempfile.TemporaryDirectory() as tmp:
        float_path, out_path = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, float_path)
        quantise(float_path, out_path, ranges_path, nodes)
        quantised = onnx.load(out_path)
    written = [n.op_type for n in quantised.graph.node].count("QuantizeLinear")
    if written != 2 * len(nodes):
        fail(f"the quantiser wrote {written} QuantizeLinear nodes, want {2 * len(nodes)} (an input "
             "and an output per convolution)")
    return quantised


def measure_ranges(model, inputs, nodes):
    """MinMax activation ranges of the tensors `nodes` read and write, over `inputs` (arrays for
    the model's first input), in the quantiser's calibration-cache format."""
    name = model.graph.input[0].name

    class Reader:
        def __init__(self):
            self.left = iter(inputs)

        def get_next(self):
            x = next(self.left, None)
            return None if x is None else {name: x}

    with tempfile.TemporaryDirectory() as tmp:
        float_path, cache = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "ranges.json")
        onnx.save(model, float_path)
        _quantise_static(float_path, os.path.join(tmp, "q.onnx"), Reader(), cache, nodes)
        with open(cache) as f:
            ranges = json.load(f)
    chosen = [n for n in model.graph.node if n.name in set(nodes)]
    keep = {t for c in chosen for t in (c.input[0], c.output[0])}
    ranges["data"] = {k: v for k, v in sorted(ranges["data"].items()) if k in keep}
    missing = keep - set(ranges["data"])
    if missing:
        raise SystemExit(f"ranges missing for {sorted(missing)}")
    return ranges


def write_ranges(ranges, path):
    with open(path, "w") as f:
        json.dump(ranges, f, indent=1, sort_keys=True)
        f.write("\n")
