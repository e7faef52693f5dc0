"""A TFLite graph rebuilt as a torch module: every operator of the flatbuffer becomes the equivalent torch op,
every float constant an ``nn.Parameter`` (so gradients reach the input and the whole network can be fine-tuned).

The graph keeps TFLite's layout (NHWC activations, OHWI conv filters): convolutions and pools run on an NCHW
*view* of the NHWC tensor (``permute(0, 3, 1, 2)``, channels-last strides, no copy) and return to NHWC the same
way, so axis arguments of ``MEAN``, ``CONCATENATION``, ``RESHAPE``... are used exactly as stored. Shape
arithmetic (``SHAPE``, ``STRIDED_SLICE``, ``PACK``, ``RANGE``...) runs on small integer tensors at every
forward, so a graph converted with a dynamic batch dimension runs on any batch size.

Semantics that differ from the torch defaults and are reproduced here: TF ``SAME`` padding (asymmetric, the
extra row/column at the end), ``AVERAGE_POOL_2D`` excluding padded cells from the average, ``CAST`` of a
complex tensor to float keeping the real part (TFLite's cast kernel), fused activations on ``ADD``/``MUL``/
``CONV_2D``... . A float64 copy (``module.double()``) runs every float op in float64 (used to bound the float32
error, see :mod:`backbones.birdnet`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backbones.tflite.reader import TFLiteModel, TFLiteOp

_INT = {"INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool}
_FLOAT = ("FLOAT32", "FLOAT64")
#: TFLite ``ActivationFunctionType``: NONE, RELU, RELU_N1_TO_1, RELU6, TANH.
_ACT: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
    0: lambda x: x,
    1: torch.relu,
    2: lambda x: x.clamp(-1.0, 1.0),
    3: lambda x: x.clamp(0.0, 6.0),
    4: torch.tanh,
}


class UnsupportedOpError(NotImplementedError):
    """An operator of the graph has no torch port; the message names it, its position and its inputs."""


def _ints(t: torch.Tensor) -> list[int]:
    return [int(v) for v in t.reshape(-1).tolist()]


def _act(op: TFLiteOp, x: torch.Tensor) -> torch.Tensor:
    code = int(op.options.get("fusedActivationFunction", 0) or 0)
    if code not in _ACT:
        raise UnsupportedOpError(f"op {op.index} {op.op}: fused activation {code} has no torch port")
    return _ACT[code](x)


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF ``SAME`` padding of one spatial dim: (before, after), the odd cell after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _pad_nchw(x: torch.Tensor, op: TFLiteOp, kh: int, kw: int, dh: int = 1, dw: int = 1,
              value: float = 0.0) -> torch.Tensor:
    """Apply the op's SAME padding (``padding == 0``) to an NCHW tensor; VALID (``1``) pads nothing."""
    if int(op.options.get("padding", 1)) != 0:
        return x
    top, bottom = _same_pads(x.shape[2], kh, int(op.options["strideH"]), dh)
    left, right = _same_pads(x.shape[3], kw, int(op.options["strideW"]), dw)
    return F.pad(x, (left, right, top, bottom), value=value) if top or bottom or left or right else x


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W) view


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C) view


def _conv(op: TFLiteOp, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, depthwise: bool) -> torch.Tensor:
    o = op.options
    dh, dw = int(o.get("dilationHFactor", 1)), int(o.get("dilationWFactor", 1))
    if depthwise:  # filter (1, kh, kw, C * M) -> (C * M, 1, kh, kw)
        weight, groups = w.permute(3, 0, 1, 2), x.shape[3]
    else:  # filter (O, kh, kw, I) -> (O, I, kh, kw); grouped when the input has k * I channels
        weight, groups = w.permute(0, 3, 1, 2), x.shape[3] // w.shape[3]
    xin = _pad_nchw(_nchw(x), op, weight.shape[2], weight.shape[3], dh, dw)
    y = F.conv2d(xin, weight, b, stride=(int(o["strideH"]), int(o["strideW"])), dilation=(dh, dw), groups=groups)
    return _act(op, _nhwc(y))


def _pool(op: TFLiteOp, x: torch.Tensor, kind: str) -> torch.Tensor:
    o = op.options
    kh, kw, stride = int(o["filterHeight"]), int(o["filterWidth"]), (int(o["strideH"]), int(o["strideW"]))
    xin = _nchw(x)
    if kind == "max":
        y = F.max_pool2d(_pad_nchw(xin, op, kh, kw, value=float("-inf")), (kh, kw), stride)
    else:  # TF averages over the cells inside the input only
        summed = F.avg_pool2d(_pad_nchw(xin, op, kh, kw), (kh, kw), stride) * (kh * kw)
        ones = torch.ones((1, 1, *xin.shape[2:]), dtype=x.dtype, device=x.device)
        count = F.avg_pool2d(_pad_nchw(ones, op, kh, kw), (kh, kw), stride) * (kh * kw)
        y = summed / count
    return _act(op, _nhwc(y))


def _strided_slice(op: TFLiteOp, x: torch.Tensor, begin, end, strides) -> torch.Tensor:
    o = op.options
    if int(o.get("ellipsisMask", 0)) or int(o.get("newAxisMask", 0)) or o.get("offset"):
        raise UnsupportedOpError(f"op {op.index} STRIDED_SLICE: ellipsis/new-axis masks and offset are not ported")
    bm, em, sm = int(o.get("beginMask", 0)), int(o.get("endMask", 0)), int(o.get("shrinkAxisMask", 0))
    index: list = []
    for i, (b, e, s) in enumerate(zip(_ints(begin), _ints(end), _ints(strides), strict=True)):
        if sm >> i & 1:
            index.append(b)
        else:
            index.append(slice(None if bm >> i & 1 else b, None if em >> i & 1 else e, s))
    return x[tuple(index)]


def _gather(op: TFLiteOp, params: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    if int(op.options.get("batchDims", 0)):
        raise UnsupportedOpError(f"op {op.index} GATHER: batch_dims != 0 is not ported")
    axis = int(op.options.get("axis", 0)) % params.dim()
    flat = params.index_select(axis, idx.reshape(-1).long())
    return flat.reshape(*params.shape[:axis], *idx.shape, *params.shape[axis + 1 :])


def _reduce(x: torch.Tensor, axes: torch.Tensor, keep: bool, fn: str) -> torch.Tensor:
    dims = sorted({a % x.dim() for a in _ints(axes)}) if x.dim() else []
    if not dims:
        return x
    if fn == "mean":
        return x.mean(dim=dims, keepdim=keep)
    if fn == "min":
        return x.amin(dim=dims, keepdim=keep)
    if fn == "max":
        return x.amax(dim=dims, keepdim=keep)
    for d in reversed(dims):  # prod over several dims, last first so indices stay valid
        x = x.prod(dim=d, keepdim=keep)
    return x


def _cast(x: torch.Tensor, target: str) -> torch.Tensor:
    if target in _FLOAT:  # complex -> real part (TFLite's cast kernel); float64 runs stay float64
        if x.is_complex():
            return x.real
        return x if x.is_floating_point() else x.to(torch.float32)
    return x.to(_INT[target])


def _fully_connected(op: TFLiteOp, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    y = F.linear(x.reshape(-1, w.shape[1]), w, b)  # TFLite flattens the input to (numel / in, in)
    if op.options.get("keepNumDims"):
        y = y.reshape(*x.shape[:-1], w.shape[0])
    return _act(op, y)


def _binary(op: TFLiteOp, a: torch.Tensor, b: torch.Tensor, fn: Callable) -> torch.Tensor:
    return _act(op, fn(a, b))


def _split_v(op: TFLiteOp, x: torch.Tensor, sizes: torch.Tensor, axis: torch.Tensor) -> tuple[torch.Tensor, ...]:
    ax, parts = int(axis.reshape(-1)[0]) % x.dim(), _ints(sizes)
    if -1 in parts:
        parts[parts.index(-1)] = x.shape[ax] - (sum(parts) + 1)
    return torch.split(x, parts, dim=ax)


def _reshape(op: TFLiteOp, x: torch.Tensor, shape: torch.Tensor | None) -> torch.Tensor:
    dims = _ints(shape) if shape is not None else [int(d) for d in op.options.get("newShape", [])]
    return x.reshape(dims)


def _squeeze(op: TFLiteOp, x: torch.Tensor) -> torch.Tensor:
    dims = [int(d) % x.dim() for d in (op.options.get("squeezeDims") if op.options.get("squeezeDims") is not None
                                        else [])]
    if not dims:
        return x.squeeze()
    for d in sorted(dims, reverse=True):
        x = x.squeeze(d)
    return x


def _expand(x: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    a = int(axis.reshape(-1)[0])
    return x.unsqueeze(a if a >= 0 else a + x.dim() + 1)


def _pad(x: torch.Tensor, paddings: torch.Tensor) -> torch.Tensor:
    p = paddings.reshape(-1, 2).tolist()
    return F.pad(x, [int(v) for pair in reversed(p) for v in pair])


def _rfft2d(x: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Real FFT over the last two dims, computed in float64 and returned in the input's precision: the bins of
    bands without signal are FFT round-off, which BirdNET's power compression magnifies (see module docstring)."""
    h, w = _ints(length)
    y = torch.fft.rfft2(x.double(), s=(h, w), dim=(-2, -1))
    return y if x.dtype == torch.float64 else y.to(torch.complex64)


#: op name -> fn(op, *inputs) -> output (or tuple of outputs); inputs are tensors (None where left out).
OPS: dict[str, Callable] = {
    "ADD": lambda op, a, b: _binary(op, a, b, torch.add),
    "SUB": lambda op, a, b: _binary(op, a, b, torch.sub),
    "MUL": lambda op, a, b: _binary(op, a, b, torch.mul),
    "DIV": lambda op, a, b: _binary(op, a, b, torch.div),
    "FLOOR_DIV": lambda op, a, b: torch.div(a, b, rounding_mode="floor"),
    "MAXIMUM": lambda op, a, b: torch.maximum(a, b),
    "MINIMUM": lambda op, a, b: torch.minimum(a, b),
    "POW": lambda op, a, b: torch.pow(a, b),
    "LOGISTIC": lambda op, x: torch.sigmoid(x),
    "RELU": lambda op, x: torch.relu(x),
    "TANH": lambda op, x: torch.tanh(x),
    "CONV_2D": lambda op, x, w, b=None: _conv(op, x, w, b, depthwise=False),
    "DEPTHWISE_CONV_2D": lambda op, x, w, b=None: _conv(op, x, w, b, depthwise=True),
    "AVERAGE_POOL_2D": lambda op, x: _pool(op, x, "avg"),
    "MAX_POOL_2D": lambda op, x: _pool(op, x, "max"),
    "FULLY_CONNECTED": lambda op, x, w, b=None: _fully_connected(op, x, w, b),
    "MEAN": lambda op, x, axes: _reduce(x, axes, bool(op.options.get("keepDims")), "mean"),
    "REDUCE_MIN": lambda op, x, axes: _reduce(x, axes, bool(op.options.get("keepDims")), "min"),
    "REDUCE_MAX": lambda op, x, axes: _reduce(x, axes, bool(op.options.get("keepDims")), "max"),
    "REDUCE_PROD": lambda op, x, axes: _reduce(x, axes, bool(op.options.get("keepDims")), "prod"),
    "RESHAPE": lambda op, x, shape=None: _reshape(op, x, shape),
    "SQUEEZE": lambda op, x: _squeeze(op, x),
    "EXPAND_DIMS": lambda op, x, axis: _expand(x, axis),
    "TRANSPOSE": lambda op, x, perm: x.permute(_ints(perm)),
    "REVERSE_V2": lambda op, x, axes: torch.flip(x, [a % x.dim() for a in _ints(axes)]),
    "CONCATENATION": lambda op, *xs: _act(op, torch.cat(xs, dim=int(op.options["axis"]) % xs[0].dim())),
    "PACK": lambda op, *xs: torch.stack(xs, dim=int(op.options.get("axis", 0))),
    "PAD": lambda op, x, paddings: _pad(x, paddings),
    "SHAPE": lambda op, x: torch.tensor(x.shape, dtype=torch.int64 if op.options.get("outType") == 4 else torch.int32),
    "STRIDED_SLICE": _strided_slice,
    "SPLIT_V": _split_v,
    "GATHER": _gather,
    "RANGE": lambda op, start, limit, delta: torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype),
    "RFFT2D": lambda op, x, length: _rfft2d(x, length),
    "CAST": lambda op, x: _cast(x, op.options["outDtype"]),
}


class TFLiteTorchGraph(nn.Module):
    """Run a :class:`~backbones.tflite.reader.TFLiteModel` with torch ops.

    Args:
        model: the parsed flatbuffer (:func:`backbones.tflite.reader.read_tflite`).

    Float constants are parameters named ``t<index>`` (the TFLite tensor index; :attr:`tensor_names` maps
    back), integer constants non-persistent buffers. ``forward(x, taps)`` returns the graph outputs and the
    tensors listed in ``taps``.

    Raises:
        UnsupportedOpError: the graph holds an op without a port (message: op name, position, input tensors).
    """

    def __init__(self, model: TFLiteModel) -> None:
        super().__init__()
        for op in model.ops:
            if op.op not in OPS:
                ins = [(model.tensors[i].name, model.tensors[i].shape) for i in op.inputs if i >= 0]
                raise UnsupportedOpError(f"{model.path}: op {op.index} {op.op} has no torch port (inputs {ins}); "
                                         f"ported ops: {sorted(OPS)}")
        self.ops, self.graph_inputs, self.graph_outputs = model.ops, model.inputs, model.outputs
        self.num_tensors = len(model.tensors)
        self.tensor_names = {t.index: t.name for t in model.tensors}
        self.params = nn.ParameterDict()
        self._int_constants: list[int] = []
        for t in model.tensors:
            if t.data is None:
                continue
            if t.dtype in _FLOAT:
                self.params[f"t{t.index}"] = nn.Parameter(torch.from_numpy(t.data.astype("float32")))
            else:
                self.register_buffer(f"c{t.index}", torch.from_numpy(t.data), persistent=False)
                self._int_constants.append(t.index)

    def constant(self, index: int) -> torch.Tensor:
        """The value of constant tensor ``index``."""
        key = f"t{index}"
        return self.params[key] if key in self.params else getattr(self, f"c{index}")

    def forward(self, *inputs: torch.Tensor, taps: Sequence[int] = ()) -> tuple[list[torch.Tensor], dict]:
        """Args:
            inputs: one tensor per graph input, in the graph's layout (BirdNET: ``(B, 144000)``).
            taps: indices of intermediate tensors to return as well.

        Returns:
            ``(outputs, tapped)``: the graph outputs in order and ``{index: tensor}`` for ``taps``.
        """
        if len(inputs) != len(self.graph_inputs):
            raise ValueError(f"the graph takes {len(self.graph_inputs)} inputs, got {len(inputs)}")
        values: list[torch.Tensor | None] = [None] * self.num_tensors
        for key, p in self.params.items():
            values[int(key[1:])] = p
        for i in self._int_constants:
            values[i] = getattr(self, f"c{i}")
        for i, x in zip(self.graph_inputs, inputs, strict=True):
            values[i] = x
        for op in self.ops:
            args = [values[i] if i >= 0 else None for i in op.inputs]
            out = OPS[op.op](op, *args)
            outs = out if isinstance(out, (tuple, list)) else (out,)
            for i, v in zip(op.outputs, outs, strict=True):
                values[i] = v
        return [values[i] for i in self.graph_outputs], {i: values[i] for i in taps}


def reduction_lengths(model: TFLiteModel) -> list[int]:
    """The number of products summed per output element of every conv, depthwise conv, fully connected and FFT op
    (``kh * kw * C_in``, ``kh * kw``, ``in``, the FFT length): the sizes that set float32 accumulation error."""
    out = []
    for op in model.ops:
        if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            shape = model.tensors[op.inputs[1]].shape
            out.append(int(shape[1] * shape[2]) if op.op == "DEPTHWISE_CONV_2D" else int(np.prod(shape[1:])))
        elif op.op == "RFFT2D":
            out.append(int(np.prod(model.tensors[op.inputs[1]].data)))
    return out


def float32_tolerance(model: TFLiteModel, scale: float, factor: float = 8.0) -> float:
    """Largest expected |difference| between two float32 evaluations of the graph (e.g. torch vs LiteRT), or
    between one and the exact (float64) result, on outputs of magnitude ``scale``.

    Random-rounding model: every product-sum of length K carries a relative error of about ``u * sqrt(K)``
    (``u = 2**-24``, float32 unit roundoff) and these errors add up in quadrature along the network, so an output
    is off by about ``u * sqrt(sum K) * scale``. ``factor`` 8 covers the largest of thousands of outputs (about
    4.3 standard deviations for 6,522 Gaussian errors) times sqrt(2) for two independent evaluations, rounded up.
    The model assumes no op amplifies relative error by much, which fails near digital silence (see
    :mod:`backbones.offline.birdnet`): compare on signals, not on zero-padded windows.

    Args:
        model: the graph.
        scale: the outputs' magnitude, e.g. ``max |reference|``.
        factor: the multiple of the one-sigma error allowed.
    """
    u = float(np.finfo(np.float32).eps) / 2
    return factor * u * float(np.sqrt(sum(reduction_lengths(model)))) * float(scale)
