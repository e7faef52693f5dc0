"""Canvas programs: a learned perturbation of the image a front end produced, in pixel space ``[0, 1]``.

Every program maps the inner image ``(B, C, h, w)`` to a canvas ``(B, C, H, W)``:
``canvas = place(inner) + delta``, where ``place`` puts the inner image at the centre of a zero canvas
(or, with ``learn_scale``, at a learned AutoVP-style size) and ``delta`` is the learned perturbation,
bounded as ``epsilon * tanh(theta)`` (``epsilon=None``: unbounded ``theta``, as in Bahng et al. 2022).
Every ``theta`` starts at zero, so at initialisation ``canvas == place(inner)`` bit for bit: the
program's neutral point is the plain front-end image on a black canvas.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reprogram.transforms.to_image import LearnedPlacement, centre_pad


class CanvasProgram(nn.Module):
    """Base class: placement plus a bounded additive perturbation.

    Args:
        channels: C.
        canvas_hw: ``(H, W)``, the backbone's input size.
        inner_hw: ``(h, w)``, the size the front end renders the spectrogram at.
        epsilon: L-infinity bound of the perturbation (``None``: unbounded).
        learn_scale: learn the inner image's size on the canvas (AutoVP input scaling).
    """

    budget_doc: ClassVar[str] = "no budget knob"
    #: False when the neutral initialisation reproduces the plain input only up to float rounding.
    exact_neutral: bool = True

    def __init__(
        self,
        channels: int,
        canvas_hw: tuple[int, int],
        inner_hw: tuple[int, int],
        epsilon: float | None = 1.0,
        learn_scale: bool = False,
    ) -> None:
        super().__init__()
        if epsilon is not None and epsilon <= 0:
            raise ValueError(f"{type(self).__name__}: epsilon={epsilon} must be > 0 (or None for unbounded)")
        if inner_hw[0] > canvas_hw[0] or inner_hw[1] > canvas_hw[1] or min(inner_hw) < 1:
            raise ValueError(f"{type(self).__name__}: inner size {inner_hw} must fit the canvas {canvas_hw}")
        self.channels, self.canvas_hw, self.inner_hw = channels, tuple(canvas_hw), tuple(inner_hw)
        self.epsilon = epsilon
        self.placement = LearnedPlacement(inner_hw, canvas_hw) if learn_scale else None
        if learn_scale:
            self.exact_neutral = False

    def bound(self, theta: torch.Tensor) -> torch.Tensor:
        return theta if self.epsilon is None else self.epsilon * torch.tanh(theta)

    def place(self, inner: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` -> ``(B, C, H, W)``, no perturbation."""
        return self.placement(inner) if self.placement is not None else centre_pad(inner, self.canvas_hw)

    def plain(self, inner: torch.Tensor) -> torch.Tensor:
        """The reference input without any learned part: the inner image centred on a zero canvas."""
        return centre_pad(inner, self.canvas_hw)

    def delta(self, canvas: torch.Tensor) -> torch.Tensor:
        """The perturbation for this batch, broadcastable to ``(B, C, H, W)``."""
        raise NotImplementedError

    def shared_delta(self) -> torch.Tensor | None:
        """The input-independent perturbation ``(C, H, W)`` (for its L2 / L-inf norms), if there is one."""
        return None

    def forward(self, inner: torch.Tensor) -> torch.Tensor:
        """Args: inner: ``(B, C, h, w)`` in ``[0, 1]``. Returns: ``(B, C, H, W)`` pixel-space canvas."""
        canvas = self.place(inner)
        return canvas + self.delta(canvas)


class PadProgram(CanvasProgram):
    """Frame program (Elsayed et al. 2018; Bahng et al. 2022): learned pixels only in a border of width p.

    Parameters: exactly ``C * (H*W - (H-2p)*(W-2p))``, stored as four strips (no masked-out waste).
    """

    budget_doc = (
        "pad width p in pixels: the inner image is (H-2p, W-2p), the frame of width p is learned "
        "(default: 1/14 of the shorter side, 16 px at 224)"
    )

    def __init__(self, channels: int, canvas_hw: tuple[int, int], budget: int | None = None, **kw) -> None:
        H, W = canvas_hw
        p = max(1, round(min(H, W) / 14)) if budget is None else int(budget)
        if p < 1 or 2 * p >= min(H, W):
            raise ValueError(f"pad width {budget} must be in [1, {(min(H, W) - 1) // 2}] for a {H}x{W} canvas")
        super().__init__(channels, canvas_hw, (H - 2 * p, W - 2 * p), **kw)
        self.budget = p
        self.top = nn.Parameter(torch.zeros(channels, p, W))  # (C, p, W)
        self.bottom = nn.Parameter(torch.zeros(channels, p, W))
        self.left = nn.Parameter(torch.zeros(channels, H - 2 * p, p))  # (C, H-2p, p)
        self.right = nn.Parameter(torch.zeros(channels, H - 2 * p, p))

    def shared_delta(self) -> torch.Tensor:
        C, (h, w) = self.channels, self.inner_hw
        hole = self.top.new_zeros(C, h, w)
        middle = torch.cat([self.left, hole, self.right], dim=2)  # (C, h, W)
        return self.bound(torch.cat([self.top, middle, self.bottom], dim=1))  # (C, H, W)

    def delta(self, canvas: torch.Tensor) -> torch.Tensor:
        return self.shared_delta()


class FullProgram(CanvasProgram):
    """Full-canvas additive perturbation ``epsilon * tanh(theta)``, ``C*H*W`` parameters."""

    budget_doc = "epsilon, the L-infinity bound of the perturbation in [0, 1] pixel units (None: unbounded)"

    def __init__(
        self,
        channels: int,
        canvas_hw: tuple[int, int],
        budget: float | None = None,
        inner_size: tuple[int, int] | None = None,
        **kw,
    ) -> None:
        if budget is not None:  # the generic budget knob is epsilon here
            kw["epsilon"] = budget
        super().__init__(channels, canvas_hw, tuple(inner_size or canvas_hw), **kw)
        self.budget = self.epsilon
        self.theta = nn.Parameter(torch.zeros(channels, *canvas_hw))  # (C, H, W)

    def shared_delta(self) -> torch.Tensor:
        return self.bound(self.theta)

    def delta(self, canvas: torch.Tensor) -> torch.Tensor:
        return self.shared_delta()


class LowRankProgram(CanvasProgram):
    """Low-rank additive perturbation ``epsilon * tanh(U @ V)`` per channel, ``C*r*(H+W)`` parameters.

    ``U`` starts at zero (neutral) and ``V`` random, as LoRA does, so the first step already moves ``U``.
    """

    budget_doc = "rank r of the per-channel perturbation U (C, H, r) @ V (C, r, W)"

    def __init__(
        self,
        channels: int,
        canvas_hw: tuple[int, int],
        budget: int = 4,
        inner_size: tuple[int, int] | None = None,
        seed: int = 0,
        **kw,
    ) -> None:
        super().__init__(channels, canvas_hw, tuple(inner_size or canvas_hw), **kw)
        r = int(budget)
        if r < 1 or r > min(canvas_hw):
            raise ValueError(f"low-rank program: rank {budget} must be in [1, {min(canvas_hw)}]")
        self.budget = r
        H, W = canvas_hw
        gen = torch.Generator().manual_seed(seed)
        self.u = nn.Parameter(torch.zeros(channels, H, r))  # (C, H, r)
        self.v = nn.Parameter(torch.randn(channels, r, W, generator=gen) / r**0.5)  # (C, r, W)

    def shared_delta(self) -> torch.Tensor:
        return self.bound(self.u @ self.v)  # (C, H, W)

    def delta(self, canvas: torch.Tensor) -> torch.Tensor:
        return self.shared_delta()


class BandProgram(CanvasProgram):
    """Perturbation restricted to the rows of a frequency band (``C * rows * w`` parameters).

    The rows are the inner image's rows whose mel-axis position falls in ``[f_lo, f_hi]`` Hz; the
    columns span the inner image (time). The transform computes the rows from its front end.

    Args:
        rows: ``(first, stop)`` rows of the inner image (row 0 = top = highest frequency).
    """

    budget_doc = "the frequency band (f_lo, f_hi) in Hz whose spectrogram rows are learned"

    def __init__(
        self,
        channels: int,
        canvas_hw: tuple[int, int],
        rows: tuple[int, int],
        band_hz: tuple[float, float],
        inner_size: tuple[int, int] | None = None,
        **kw,
    ) -> None:
        super().__init__(channels, canvas_hw, tuple(inner_size or canvas_hw), **kw)
        first, stop = rows
        if not 0 <= first < stop <= self.inner_hw[0]:
            raise ValueError(f"band {band_hz} Hz covers no row of the inner image; widen it or raise f_max")
        self.budget = tuple(band_hz)
        self.rows = (first, stop)
        self.theta = nn.Parameter(torch.zeros(channels, stop - first, self.inner_hw[1]))  # (C, rows, w)

    def shared_delta(self) -> torch.Tensor:
        (H, W), (h, w) = self.canvas_hw, self.inner_hw
        top, left = (H - h) // 2 + self.rows[0], (W - w) // 2
        rows = self.rows[1] - self.rows[0]
        return F.pad(self.bound(self.theta), (left, W - w - left, top, H - rows - top))  # (C, H, W)

    def delta(self, canvas: torch.Tensor) -> torch.Tensor:
        return self.shared_delta()


class MaskedProgram(CanvasProgram):
    """Input-conditioned program (sample-specific masks, Cai et al. 2024).

    A small CNN predicts from each placed image a per-example mask in ``(0, 1)`` at quarter resolution,
    upsampled patch-wise (nearest), which gates a shared perturbation:
    ``canvas = place(x) + mask(place(x)) * epsilon * tanh(theta)``. ``theta`` starts at zero, so the mask
    network receives gradient once ``theta`` has moved.
    """

    budget_doc = "width (hidden channels) of the mask network; the shared perturbation adds C*H*W"

    def __init__(
        self,
        channels: int,
        canvas_hw: tuple[int, int],
        budget: int = 8,
        inner_size: tuple[int, int] | None = None,
        **kw,
    ) -> None:
        super().__init__(channels, canvas_hw, tuple(inner_size or canvas_hw), **kw)
        hidden = int(budget)
        if hidden < 1:
            raise ValueError(f"mask network width {budget} must be >= 1")
        self.budget = hidden
        self.mask_net = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(hidden, 2 * hidden, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * hidden, channels, 3, padding=1),
        )
        self.theta = nn.Parameter(torch.zeros(channels, *canvas_hw))  # (C, H, W)

    def shared_delta(self) -> torch.Tensor:
        return self.bound(self.theta)

    def mask(self, canvas: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> per-example mask ``(B, C, H, W)`` in ``(0, 1)``."""
        low = torch.sigmoid(self.mask_net(canvas))  # (B, C, H/4, W/4)
        return F.interpolate(low, size=self.canvas_hw, mode="nearest")

    def delta(self, canvas: torch.Tensor) -> torch.Tensor:
        return self.mask(canvas) * self.shared_delta()


CANVAS_PROGRAMS: dict[str, type[CanvasProgram]] = {
    "pad": PadProgram,
    "full": FullProgram,
    "lowrank": LowRankProgram,
    "band": BandProgram,
    "smm": MaskedProgram,
}
