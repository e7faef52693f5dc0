"""Tolerances derived from the dtype and the size of a computation, never from what one machine printed.

Rounding-error model (Higham & Mary, "A new approach to probabilistic rounding error analysis", 2019): a float
dot product of length ``k`` has a relative error of about ``sqrt(k) * eps`` (``k * eps`` in the worst case),
whatever order a kernel sums in; a chain of ``L`` such layers adds them up (to first order), so a network's
output is within ``eps * L * sqrt(k_max)`` of the exact result relative to its norm. Which order a CPU's kernels
pick (AVX2, AVX-512, AMX, oneDNN's blocked layouts, thread splits) moves the error *within* that bound.

Gradients through ReLU / ReLU6 are not continuous in the rounding: a pre-activation within the float error of a
kink (0, 6) may fall on the other side in float32, and that unit's whole gradient flips. Their error is bounded by
:func:`kink_bound`, measured on the float64 forward pass (so it is the same on every machine).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn


def eps(dtype: torch.dtype) -> float:
    """Machine epsilon of ``dtype`` (float32: 1.19e-7, float64: 2.2e-16, bfloat16: 7.8e-3)."""
    return float(torch.finfo(dtype).eps)


def fan_in(module: nn.Module) -> int:
    """Reduction length of one output of a Linear / Conv layer (in features, or in channels / groups x kernel)."""
    if isinstance(module, nn.Linear):
        return module.in_features
    return module.in_channels // module.groups * math.prod(module.kernel_size)


def chain_size(*modules: nn.Module) -> tuple[int, int]:
    """``(L, k_max)``: the number of Linear / Conv layers in ``modules`` (an upper bound on the depth of the
    computation through them) and the largest fan-in of any of them."""
    layers = [m for root in modules for m in root.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d,
                                                                               nn.Conv3d))]
    if layers:
        return len(layers), max(fan_in(m) for m in layers)
    # graphs of functional ops (the TFLite rebuild of BirdNET): every weight tensor of 2+ dimensions is one
    # reduction whose length is the product of its non-output dimensions
    weights = [p for root in modules for p in root.parameters() if p.ndim >= 2]
    if not weights:
        raise ValueError("no Linear / Conv layer or weight matrix in the given modules: chain_size cannot bound "
                         "their error")
    return len(weights), max(math.prod(p.shape[1:]) for p in weights)


def chain_tol(dtype: torch.dtype, depth: int, k: int) -> float:
    """Relative (norm-wise) error bound ``eps * depth * sqrt(k)`` of ``depth`` chained reductions of length ``k``."""
    return eps(dtype) * depth * math.sqrt(k)


def _float64(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A detached float64 copy of a tensor or (possibly read-only, memory-mapped) numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().double()
    return torch.from_numpy(np.array(x, dtype=np.float64))


def rel_error(a: torch.Tensor | np.ndarray, exact: torch.Tensor | np.ndarray) -> float:
    """``||a - exact|| / ||exact||`` in float64 (L2 norm over all elements; tensors or numpy arrays)."""
    exact, a = _float64(exact), _float64(a)
    return float((a - exact).norm() / exact.norm().clamp_min(torch.finfo(torch.float64).tiny))


def _kinks(module: nn.Module) -> tuple[float, ...] | None:
    if isinstance(module, nn.ReLU):
        return (0.0,)
    if isinstance(module, nn.Hardtanh):  # ReLU6 is Hardtanh(0, 6)
        return (float(module.min_val), float(module.max_val))
    return None


@contextlib.contextmanager
def kink_bound(model: nn.Module, rel_tol: float) -> Iterator[list[float]]:
    """Record, during the forward passes run inside the block, the share of pre-activations of every ReLU /
    Hardtanh (ReLU6) module that lie within ``rel_tol * rms(pre-activation)`` of a kink.

    A float computation whose forward error is below ``rel_tol`` can flip only those units; each flip changes
    one unit's gradient by its full size, so the relative error of a gradient that flows back through them is at
    most about ``sqrt(sum of the shares)`` (errors of unrelated units add in squares). Run it on the float64
    model: the result is then a property of the model and input, not of this CPU's kernels.

    Yields:
        A one-element list, filled on exit with ``sqrt(sum of the shares)`` (0.0 without such modules).
    """
    shares: list[float] = []

    def hook(module, inputs):  # a pre-hook: in-place ReLUs overwrite their input
        z = inputs[0].detach()
        width = rel_tol * float(z.double().square().mean().sqrt())
        near = torch.zeros_like(z, dtype=torch.bool)
        for k in _kinks(module):
            near |= (z - k).abs() <= width
        shares.append(float(near.double().mean()))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if _kinks(m) is not None]
    result: list[float] = []
    try:
        yield result
    finally:
        for h in handles:
            h.remove()
    result.append(math.sqrt(sum(shares)))


def assert_chain_close(got: torch.Tensor | np.ndarray, want: torch.Tensor | np.ndarray, *modules: nn.Module,
                       paths: int = 2, dtype: torch.dtype | None = None, what: str = "") -> None:
    """``rel_error(got, want) <= paths * chain_tol(dtype, L, k_max)`` with ``(L, k_max) = chain_size(*modules)``.

    Args:
        got, want: two results of the computation through ``modules`` (any equal shapes).
        modules: the layers both went through (their count and widest fan-in set the bound).
        paths: how many of ``got`` / ``want`` carry rounding error of ``dtype``: 2 for two float computations
            (each within the bound of the exact result), 1 against a float64 (or exact) reference.
        dtype: the working precision (default ``got.dtype``, float32 for numpy arrays).
        what: named in the failure message.
    """
    depth, k = chain_size(*modules)
    dtype = dtype or (got.dtype if isinstance(got, torch.Tensor) else torch.float32)
    bound = paths * chain_tol(dtype, depth, k)
    err = rel_error(got, want)
    assert err <= bound, f"{what}: relative error {err:.2e} > {bound:.2e} = {paths} x eps x L={depth} x sqrt(k={k})"
