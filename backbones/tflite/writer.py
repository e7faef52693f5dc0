"""Write small ``.tflite`` flatbuffers without TensorFlow (the schema's object API, ``flatbuffers`` builder), and the
tiny BirdNET-shaped graph used as the ``tiny:birdnet`` twin: the same kinds of operators as BirdNET V2.4 (per-window
min/max normalisation, framing by ``GATHER``, ``RFFT2D``, complex-to-real ``CAST``, mel ``FULLY_CONNECTED``,
``POW`` compression, ``REVERSE_V2``/``TRANSPOSE``, SAME/VALID convolutions, pools, a squeeze-excitation block with
its dynamic ``SHAPE``/``STRIDED_SLICE``/``PACK``/``RESHAPE``, global mean, classifier) at toy sizes with seeded
random weights, so LiteRT and the torch rebuild can be compared in tests without the real model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from backbones.tflite.reader import schema

_OPTIONS = {
    "ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions", "DIV": "DivOptions", "REDUCE_MIN": "ReducerOptions",
    "REDUCE_MAX": "ReducerOptions", "MEAN": "ReducerOptions", "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions", "AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions", "CONCATENATION": "ConcatenationOptions", "PACK": "PackOptions",
    "RESHAPE": "ReshapeOptions", "SQUEEZE": "SqueezeOptions", "GATHER": "GatherOptions",
    "STRIDED_SLICE": "StridedSliceOptions", "SHAPE": "ShapeOptions", "EXPAND_DIMS": "ExpandDimsOptions",
    "TRANSPOSE": "TransposeOptions", "PAD": "PadOptions", "POW": "PowOptions", "REVERSE_V2": "ReverseV2Options",
    "RFFT2D": "Rfft2dOptions", "CAST": "CastOptions",
}
_TYPES = {np.dtype(np.float32): "FLOAT32", np.dtype(np.int32): "INT32", np.dtype(np.complex64): "COMPLEX64"}


class GraphWriter:
    """Append tensors and operators, then :meth:`finish` to ``.tflite`` bytes (one subgraph)."""

    def __init__(self) -> None:
        self.S = schema()
        self.model = self.S.ModelT()
        self.model.version, self.model.description = 3, b"gibbon-reprogram GraphWriter"
        self.model.buffers = [self.S.BufferT()]  # buffer 0: the empty sentinel
        self.model.operatorCodes = []
        self.graph = self.S.SubGraphT()
        self.graph.tensors, self.graph.operators = [], []
        self._codes: dict[str, int] = {}

    def tensor(self, name: str, shape: Sequence[int], dtype: str = "FLOAT32", data: np.ndarray | None = None,
               signature: Sequence[int] | None = None) -> int:
        """Add a tensor (a constant when ``data`` is given); returns its index."""
        t = self.S.TensorT()
        t.name, t.type = name.encode(), getattr(self.S.TensorType, dtype)
        t.shape = np.asarray(shape, dtype=np.int32)
        if signature is not None:
            t.shapeSignature = np.asarray(signature, dtype=np.int32)
        t.buffer = 0
        if data is not None:
            b = self.S.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.model.buffers.append(b)
            t.buffer = len(self.model.buffers) - 1
        self.graph.tensors.append(t)
        return len(self.graph.tensors) - 1

    def const(self, name: str, value) -> int:
        """A float32 or int32 constant from a numpy array (its dtype decides)."""
        arr = np.asarray(value)
        arr = arr.astype(np.float32) if arr.dtype.kind == "f" else arr.astype(np.int32)
        return self.tensor(name, arr.shape, _TYPES[arr.dtype], arr)

    def op(self, name: str, inputs: Sequence[int], out_shape: Sequence[int], out_name: str, out_dtype: str = "FLOAT32",
           signature: Sequence[int] | None = None, **options) -> int:
        """Add operator ``name`` (``CONV_2D``...) with builtin ``options`` (schema field names); returns its output."""
        out = self.tensor(out_name, out_shape, out_dtype, signature=signature)
        if name not in self._codes:
            code = self.S.OperatorCodeT()
            code.builtinCode = getattr(self.S.BuiltinOperator, name)
            code.deprecatedBuiltinCode = min(code.builtinCode, 127)
            code.version = 1
            self.model.operatorCodes.append(code)
            self._codes[name] = len(self.model.operatorCodes) - 1
        o = self.S.OperatorT()
        o.opcodeIndex = self._codes[name]
        o.inputs, o.outputs = np.asarray(inputs, np.int32), np.asarray([out], np.int32)
        if name in _OPTIONS:
            kind = _OPTIONS[name]
            opts = getattr(self.S, kind + "T")()
            for k, v in options.items():
                setattr(opts, k, v)
            o.builtinOptionsType, o.builtinOptions = getattr(self.S.BuiltinOptions, kind), opts
        self.graph.operators.append(o)
        return out

    def finish(self, inputs: Sequence[int], outputs: Sequence[int]) -> bytes:
        """The ``.tflite`` bytes (file identifier ``TFL3``)."""
        import flatbuffers

        self.graph.inputs, self.graph.outputs = np.asarray(inputs, np.int32), np.asarray(outputs, np.int32)
        self.model.subgraphs = [self.graph]
        builder = flatbuffers.Builder(1024)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


#: Tiny twin sizes: window samples, frame length/step, FFT bins, mel bands, conv width, embedding, labels.
TINY = {"window": 1024, "frame": 128, "step": 64, "mels": 16, "width": 8, "embedding": 8, "labels": 5}


def tiny_birdnet_tflite(seed: int = 0, sizes: dict | None = None) -> bytes:
    """A BirdNET-shaped ``.tflite`` with seeded random weights (input ``(-1, window)``, output logits, embedding
    tensor ``model/GLOBAL_AVG_POOL/Mean``)."""
    z = {**TINY, **(sizes or {})}
    rng = np.random.default_rng(seed)
    g = GraphWriter()
    n, fl, st, m, c, d, s = (z[k] for k in ("window", "frame", "step", "mels", "width", "embedding", "labels"))
    frames, bins = (n - fl) // st + 1, fl // 2 + 1
    x = g.tensor("INPUT", (1, n), signature=(-1, n))
    one = g.const("axis1", np.array([1]))
    lo = g.op("REDUCE_MIN", [x, one], (1, 1), "norm/min", keepDims=True)
    x0 = g.op("SUB", [x, lo], (1, n), "norm/sub")
    hi = g.op("REDUCE_MAX", [x0, one], (1, 1), "norm/max", keepDims=True)
    hi = g.op("ADD", [hi, g.const("eps", np.float32(1e-6))], (1, 1), "norm/add")
    x1 = g.op("DIV", [x0, hi], (1, n), "norm/div")
    x1 = g.op("SUB", [x1, g.const("half", np.float32(0.5))], (1, n), "norm/sub1")
    x1 = g.op("MUL", [x1, g.const("two", np.float32(2.0))], (1, n), "norm/mul")
    index = (np.arange(frames)[:, None] * st + np.arange(fl)[None, :]).astype(np.int32)  # (T, L)
    fr = g.op("GATHER", [x1, g.const("frames", index)], (1, frames, fl), "stft/frames", axis=1)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(fl) / fl)
    fr = g.op("MUL", [fr, g.const("stft/hann", hann)], (1, frames, fl), "stft/mul")
    fr = g.op("EXPAND_DIMS", [fr, g.const("minus2", np.array(-2))], (1, frames, 1, fl), "stft/expand")
    spec = g.op("RFFT2D", [fr, g.const("fft_length", np.array([1, fl]))], (1, frames, 1, bins), "stft/rfft",
                out_dtype="COMPLEX64")
    spec = g.op("SQUEEZE", [spec], (1, frames, bins), "stft/squeeze", out_dtype="COMPLEX64",
                squeezeDims=np.array([-2], np.int32))
    spec = g.op("CAST", [spec], (1, frames, bins), "mel/cast")
    mel = g.op("FULLY_CONNECTED", [spec, g.const("mel/filters", np.abs(rng.normal(size=(m, bins))) / bins), -1],
               (frames, m), "mel/matmul", keepNumDims=False)
    mel = g.op("RESHAPE", [mel, g.const("mel/shape", np.array([-1, frames, m]))], (1, frames, m), "mel/reshape")
    mel = g.op("MUL", [mel, mel], (1, frames, m), "mel/square")
    mel = g.op("POW", [mel, g.const("mel/power", np.float32(0.23))], (1, frames, m), "mel/pow")
    mel = g.op("REVERSE_V2", [mel, g.const("axis2", np.array([2]))], (1, frames, m), "mel/reverse")
    mel = g.op("TRANSPOSE", [mel, g.const("perm", np.array([0, 2, 1]))], (1, m, frames), "mel/transpose")
    h = g.op("EXPAND_DIMS", [mel, g.const("axis3", np.array(3))], (1, m, frames, 1), "mel/expand")
    # BirdNET's folded spectrogram batch-norm (a MUL and an ADD), scaled so the toy net is input-sensitive
    h = g.op("MUL", [h, g.const("spec_bn/mul", np.float32(6.0))], (1, m, frames, 1), "spec_bn/mul_out")
    h = g.op("ADD", [h, g.const("spec_bn/add", np.float32(-2.0))], (1, m, frames, 1), "spec_bn/add_out")

    def w(*shape: int, scale: float = 1.0) -> np.ndarray:
        return rng.normal(size=shape) * scale / np.sqrt(np.prod(shape[1:]))

    h = g.op("CONV_2D", [h, g.const("conv0/w", w(c, 3, 3, 1)), g.const("conv0/b", 0.1 * w(c))],
             (1, m // 2, 8, c),
             "conv0", padding=0, strideH=2, strideW=2, dilationHFactor=1, dilationWFactor=1, fusedActivationFunction=1)
    hw = (m // 2, 4)
    hmax = g.op("MAX_POOL_2D", [h], (1, *hw, c), "pool/max", padding=0, strideH=1, strideW=2, filterHeight=1,
                filterWidth=2)
    havg = g.op("AVERAGE_POOL_2D", [h], (1, *hw, c), "pool/avg", padding=0, strideH=1, strideW=2, filterHeight=3,
                filterWidth=3)
    h = g.op("CONCATENATION", [hmax, havg], (1, *hw, 2 * c), "pool/concat", axis=3)
    h = g.op("PAD", [h, g.const("pad", np.array([[0, 0], [1, 1], [1, 1], [0, 0]]))], (1, hw[0] + 2, 6, 2 * c), "pad")
    h = g.op("DEPTHWISE_CONV_2D", [h, g.const("dw/w", w(1, 3, 3, 2 * c)), g.const("dw/b", 0.1 * w(2 * c))],
             (1, hw[0] // 2, 2, 2 * c), "dw", padding=1, strideH=2, strideW=2, depthMultiplier=1,
             dilationHFactor=1, dilationWFactor=1)
    h = g.op("MUL", [h, g.op("LOGISTIC", [h], (1, hw[0] // 2, 2, 2 * c), "dw/sigmoid")], (1, hw[0] // 2, 2, 2 * c),
             "dw/swish")
    se = g.op("MEAN", [h, g.const("axes12", np.array([1, 2]))], (1, 2 * c), "se/mean", keepDims=False)
    shape = g.op("SHAPE", [se], (2,), "se/shape", out_dtype="INT32", outType=g.S.TensorType.INT32)
    batch = g.op("STRIDED_SLICE", [shape, g.const("b0", np.array([0])), g.const("b1", np.array([1])),
                                   g.const("b1s", np.array([1]))], (), "se/batch", out_dtype="INT32",
                 shrinkAxisMask=1)
    one_i = g.const("one", np.array(1))
    target = g.op("PACK", [batch, one_i, one_i, g.const("ch", np.array(2 * c))], (4,), "se/pack", out_dtype="INT32",
                  valuesCount=4, axis=0)
    se = g.op("RESHAPE", [se, target], (1, 1, 1, 2 * c), "se/reshape")
    se = g.op("CONV_2D", [se, g.const("se/w", w(2 * c, 1, 1, 2 * c)), g.const("se/b", 0.1 * w(2 * c))],
              (1, 1, 1, 2 * c),
              "se/conv", padding=1, strideH=1, strideW=1, dilationHFactor=1, dilationWFactor=1)
    se = g.op("LOGISTIC", [se], (1, 1, 1, 2 * c), "se/sigmoid")
    h = g.op("MUL", [h, se], (1, hw[0] // 2, 2, 2 * c), "se/multiply")
    h = g.op("CONV_2D", [h, g.const("post/w", w(d, 1, 1, 2 * c)), g.const("post/b", 0.1 * w(d))],
             (1, hw[0] // 2, 2, d),
             "post", padding=1, strideH=1, strideW=1, dilationHFactor=1, dilationWFactor=1, fusedActivationFunction=1)
    emb = g.op("MEAN", [h, g.const("axes12b", np.array([1, 2]))], (1, d), "model/GLOBAL_AVG_POOL/Mean", keepDims=False)
    logits = g.op("FULLY_CONNECTED", [emb, g.const("dense/w", w(s, d, scale=3.0)), g.const("dense/b", 0.1 * w(s))],
                  (1, s), "Identity", signature=(-1, s), keepNumDims=False)
    return g.finish([x], [logits])
