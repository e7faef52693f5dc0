"""Image programs: waveform -> log-mel -> inner image -> learned canvas program -> normalised pixels.

``ImageProgram(spec, program="pad", sample_rate=16000, budget=16)`` builds the pipeline
``(B, N) -> LogMel -> SpecToImage (inner size) -> CanvasProgram -> Normalise -> (B, C, H, W)``.
Every size comes from ``spec``; the data's rate is an argument and the front end resamples only when
its own configured rate differs from it.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from reprogram.spec import InputSpec
from reprogram.transforms.base import InputTransform
from reprogram.transforms.canvas import CANVAS_PROGRAMS, CanvasProgram
from reprogram.transforms.frontend import LogMel, LogMelConfig
from reprogram.transforms.to_image import Normalise, SpecToImage


def as_frontend_config(frontend: LogMelConfig | dict | None) -> LogMelConfig:
    """Accept a :class:`LogMelConfig`, a dict of its fields (from YAML), or ``None`` (defaults)."""
    if frontend is None:
        return LogMelConfig()
    if isinstance(frontend, LogMelConfig):
        return frontend
    if isinstance(frontend, dict):
        unknown = set(frontend) - set(asdict(LogMelConfig()))
        if unknown:
            raise ValueError(f"unknown front-end option(s) {sorted(unknown)}; known: {sorted(asdict(LogMelConfig()))}")
        return LogMelConfig(**frontend)
    raise ValueError(f"frontend must be a LogMelConfig or a dict, got {type(frontend).__name__}")


def band_rows(frontend: LogMel, inner_h: int, band_hz: tuple[float, float]) -> tuple[int, int]:
    """Rows ``(first, stop)`` of an ``inner_h``-row image (row 0 = top = highest band) inside ``band_hz``.

    A row belongs to the band when its centre's position on the mel axis lies between the band edges'.
    """
    lo, hi = sorted(band_hz)
    f_lo, f_hi = frontend.mel_fraction(max(lo, frontend.config.f_min)), frontend.mel_fraction(min(hi, frontend.f_max))
    inside = [r for r in range(inner_h) if f_lo <= 1.0 - (r + 0.5) / inner_h <= f_hi]
    return (inside[0], inside[-1] + 1) if inside else (0, 0)


def build_canvas_program(program: str, spec: InputSpec, frontend: LogMel, **options) -> CanvasProgram:
    """Build the canvas program ``program`` on the image size of ``spec`` (image or video)."""
    if program not in CANVAS_PROGRAMS:
        raise KeyError(f"unknown image program {program!r}; known: {sorted(CANVAS_PROGRAMS)}")
    cls = CANVAS_PROGRAMS[program]
    if program == "band":
        band_hz = tuple(options.pop("band_hz", (400.0, 3000.0)))
        inner = tuple(options.get("inner_size") or spec.height_width)
        options.update(rows=band_rows(frontend, inner[0], band_hz), band_hz=band_hz)
    return cls(spec.channels, spec.height_width, **options)


class ImageProgram(InputTransform):
    """Audio into an image backbone's input space through a learned canvas program.

    Args:
        spec: the image backbone's spec (modality ``image``).
        program: ``pad``, ``full``, ``lowrank``, ``band`` or ``smm`` (see :mod:`reprogram.transforms.canvas`).
        sample_rate: the data's waveform rate in Hz.
        frontend: log-mel settings (:class:`LogMelConfig` or dict).
        colour: channel mapping: ``replicate``, ``learned`` or a matplotlib colormap name.
        **options: the program's own options (``budget``, ``epsilon``, ``inner_size``, ``learn_scale``,
            ``band_hz``...).
    """

    def __init__(
        self,
        spec: InputSpec,
        program: str = "pad",
        *,
        sample_rate: int,
        frontend: LogMelConfig | dict | None = None,
        colour: str = "replicate",
        **options,
    ) -> None:
        super().__init__(spec)
        if spec.modality != "image":
            raise ValueError(
                f"ImageProgram needs an image backbone, got modality {spec.modality!r}; "
                "use VideoProgram for video and WaveformProgram for speech/audio"
            )
        self.frontend = LogMel(as_frontend_config(frontend), sample_rate)
        self.program = build_canvas_program(program, spec, self.frontend, **options)
        self.to_image = SpecToImage(self.program.inner_hw, spec.channels, colour)
        self.normalise = Normalise(spec.mean, spec.std)
        self.budget_doc = self.program.budget_doc
        self.budget = self.program.budget
        self.exact_neutral = self.program.exact_neutral

    def inner(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` -> the inner image ``(B, C, h, w)`` in ``[0, 1]``."""
        return self.to_image(self.frontend.scaled(wave))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Args: wave: ``(B, N)``. Returns: ``(B, C, H, W)`` normalised for the backbone."""
        return self.normalise(self.program(self.inner(wave)))

    def plain(self, wave: torch.Tensor) -> torch.Tensor:
        """The same front end without the learned program (inner image centred on a black canvas)."""
        return self.normalise(self.program.plain(self.inner(wave)))

    def perturbation_norms(self) -> dict[str, float]:
        delta = self.program.shared_delta()
        if delta is None:
            return {}
        with torch.no_grad():
            return {"l2": float(delta.norm()), "linf": float(delta.abs().max())}


def pad_parameter_count(channels: int, height: int, width: int, pad: int) -> int:
    """Closed form of the frame program's size: ``C * (H*W - (H-2p)*(W-2p))``."""
    return channels * (height * width - (height - 2 * pad) * (width - 2 * pad))


__all__ = ["ImageProgram", "band_rows", "as_frontend_config", "pad_parameter_count"]
