"""Read a TFLite flatbuffer (``.tflite``) into plain Python: tensors (name, dtype, shape, constant data) and
operators (op name, input/output tensor indices, builtin options), with no TensorFlow.

The schema readers are the flatc-generated ``schema_py_generated`` module that ships inside ``ai-edge-litert``
(the LiteRT runtime); the object API (``ModelT``) unpacks a model into Python objects. Only the first
subgraph is read (single-signature models such as BirdNET), and only float32 / int32 / int64 / bool tensors
are accepted as constants: quantized or float16 weights raise :class:`TFLiteFormatError` naming the tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: TFLite ``TensorType`` -> numpy dtype of the tensor types this reader supports.
NUMPY_TYPES = {"FLOAT32": np.float32, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_,
               "COMPLEX64": np.complex64, "FLOAT64": np.float64}


class TFLiteFormatError(ValueError):
    """The file is not a TFLite model this reader understands; the message names the file, tensor or op."""


def schema():
    """The flatc-generated TFLite schema module shipped with ``ai-edge-litert``."""
    try:
        from ai_edge_litert import schema_py_generated
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("reading .tflite files needs the LiteRT package: pip install ai-edge-litert") from err
    return schema_py_generated


@dataclass(frozen=True)
class TFLiteTensor:
    """One tensor of the graph.

    Attributes:
        index: position in the subgraph's tensor list (what operators refer to).
        name: the converter's name (e.g. ``model/GLOBAL_AVG_POOL/Mean``).
        dtype: TFLite type name (``FLOAT32``, ``INT32``, ...).
        shape: the stored shape (dynamic dimensions stored as 1).
        signature: the shape signature (``-1`` for dynamic dimensions); equals ``shape`` when not stored.
        data: the constant value for weights and shape constants, else ``None``.
    """

    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    data: np.ndarray | None = None


@dataclass(frozen=True)
class TFLiteOp:
    """One operator: its builtin name (``CONV_2D``...), tensor indices (``-1`` = optional input left out) and
    builtin options as a dict of the schema's camelCase fields (``strideH``, ``padding``, ...)."""

    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict


@dataclass(frozen=True)
class TFLiteModel:
    """The first subgraph of a ``.tflite`` file."""

    path: str
    tensors: tuple[TFLiteTensor, ...]
    ops: tuple[TFLiteOp, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def index(self, name: str) -> int:
        """The index of the tensor called ``name``; ``KeyError`` lists similar names."""
        for t in self.tensors:
            if t.name == name:
                return t.index
        close = [t.name for t in self.tensors if name.split("/")[-1] in t.name][:5]
        raise KeyError(f"{self.path}: no tensor named {name!r}; similar: {close}")

    def op_counts(self) -> dict[str, int]:
        """How often each op occurs, most frequent first."""
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.op] = counts.get(op.op, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _names(enum) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def read_tflite(source: str | Path | bytes) -> TFLiteModel:
    """Parse a ``.tflite`` file (path or bytes) into a :class:`TFLiteModel`.

    Raises:
        TFLiteFormatError: not a TFLite flatbuffer, a custom op, or a constant of an unsupported type (the
            message names it).
    """
    S = schema()
    path = "<bytes>" if isinstance(source, bytes) else str(source)
    buf = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise TFLiteFormatError(f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier); pass a .tflite file")
    model = S.ModelT.InitFromObj(S.Model.GetRootAsModel(buf, 0))
    graph = model.subgraphs[0]
    type_names, op_names = _names(S.TensorType), _names(S.BuiltinOperator)
    tensors = []
    for i, t in enumerate(graph.tensors):
        dtype = type_names.get(t.type, str(t.type))
        b = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        data = None
        raw = None
        if b is not None and b.data is not None and len(b.data):
            raw = np.asarray(b.data, dtype=np.uint8).tobytes()
        elif b is not None and getattr(b, "offset", 0) > 1:  # large models keep buffers after the flatbuffer
            raw = buf[b.offset : b.offset + b.size]
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        shape = tuple(int(s) for s in (t.shape if t.shape is not None else ()))
        if raw is not None:
            if dtype not in NUMPY_TYPES or t.quantization is not None and t.quantization.scale is not None:
                raise TFLiteFormatError(f"{path}: constant tensor {name!r} is {dtype} (quantized or half precision); "
                                        "use the FP32 model")
            data = np.frombuffer(raw, dtype=NUMPY_TYPES[dtype]).reshape(shape).copy()
        sig = tuple(int(s) for s in t.shapeSignature) if t.shapeSignature is not None else shape
        tensors.append(TFLiteTensor(i, name, dtype, shape, sig, data))
    ops = []
    for i, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = op_names.get(builtin, str(builtin))
        if name == "CUSTOM":
            raise TFLiteFormatError(f"{path}: op {i} is the custom op {code.customCode!r}, which has no torch port")
        options = dict(vars(op.builtinOptions)) if op.builtinOptions is not None else {}
        if name == "CAST":  # the target type, which the options often leave out, is the output tensor's
            options["outDtype"] = tensors[int(op.outputs[0])].dtype
        ops.append(TFLiteOp(i, name, tuple(int(x) for x in op.inputs), tuple(int(x) for x in op.outputs), options))
    return TFLiteModel(path, tuple(tensors), tuple(ops), tuple(int(x) for x in graph.inputs),
                       tuple(int(x) for x in graph.outputs))
