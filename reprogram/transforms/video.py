"""Video programs: the spectrogram becomes T frames, each reprogrammed like an image.

Two ways to make frames, both reading T and the frame size from ``spec`` (``(C, T, H, W)``):

* ``frames="chunks"``: the log-mel is resized in time to ``w + (T-1)*hop`` columns and cut into T
  overlapping windows of width ``w`` (the inner width) with ``hop = round(w * (1 - overlap))``, so
  frame t shows the t-th stretch of the clip; the video model sees the call unfold in time.
* ``frames="repeat"``: the baseline, one image of the whole clip repeated T times.

The canvas program is either shared by all frames (``share=True``: the budget of one image program)
or one per frame (``share=False``: T times the parameters).
"""

from __future__ import annotations

import torch
from torch import nn

from reprogram.spec import InputSpec
from reprogram.transforms.base import InputTransform
from reprogram.transforms.frontend import LogMel, LogMelConfig
from reprogram.transforms.image import as_frontend_config, build_canvas_program
from reprogram.transforms.to_image import Normalise, SpecToImage

FRAME_MODES = ("chunks", "repeat")


class VideoProgram(InputTransform):
    """Audio into a video backbone's input space.

    Args:
        spec: the video backbone's spec (modality ``video``, shape ``(C, T, H, W)``).
        program: canvas program name (``pad``, ``full``, ``lowrank``, ``band``, ``smm``).
        sample_rate: the data's waveform rate in Hz.
        frames: ``chunks`` (time chunks become frames) or ``repeat`` (one image repeated T times).
        share: one program for every frame (True) or one per frame (False).
        overlap: fraction of overlap between consecutive chunks, in ``[0, 1)``.
        frontend: log-mel settings.
        colour: channel mapping (``replicate``, ``learned`` or a colormap name).
        **options: the canvas program's options (``budget``, ``epsilon``...).
    """

    def __init__(
        self,
        spec: InputSpec,
        program: str = "pad",
        *,
        sample_rate: int,
        frames: str = "chunks",
        share: bool = True,
        overlap: float = 0.5,
        frontend: LogMelConfig | dict | None = None,
        colour: str = "replicate",
        **options,
    ) -> None:
        super().__init__(spec)
        if spec.modality != "video":
            raise ValueError(f"VideoProgram needs a video backbone, got modality {spec.modality!r}")
        if frames not in FRAME_MODES:
            raise ValueError(f"frames={frames!r}; use one of {FRAME_MODES}")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap={overlap} must be in [0, 1)")
        self.frames_mode, self.share, self.overlap = frames, share, overlap
        self.num_frames = spec.frames
        self.frontend = LogMel(as_frontend_config(frontend), sample_rate)
        count = 1 if share else self.num_frames
        self.programs = nn.ModuleList(
            build_canvas_program(program, spec, self.frontend, **options) for _ in range(count)
        )
        first = self.programs[0]
        h, w = first.inner_hw
        self.hop = max(1, round(w * (1.0 - overlap)))
        self.to_image = SpecToImage((h, w), spec.channels, colour)
        self.to_strip = SpecToImage((h, w + (self.num_frames - 1) * self.hop), 1, "replicate")  # all chunks, grey
        self.normalise = Normalise(spec.mean, spec.std, channel_dim=-3)  # applied on (B, T, C, H, W)
        self.budget_doc = first.budget_doc + (" (one program shared by all frames)" if share else " (one per frame)")
        self.budget = first.budget
        self.exact_neutral = first.exact_neutral

    def inner_frames(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` -> inner frames ``(B, T, C, h, w)`` in ``[0, 1]``."""
        spec = self.frontend.scaled(wave)  # (B, F, frames)
        B, T = spec.shape[0], self.num_frames
        h, w = self.to_image.size
        if self.frames_mode == "repeat":
            image = self.to_image(spec)  # (B, C, h, w)
            return image.unsqueeze(1).expand(B, T, *image.shape[1:])
        strip = self.to_strip(spec)  # (B, 1, h, w + (T-1)*hop)
        chunks = strip.unfold(-1, w, self.hop)  # (B, 1, h, T, w)
        grey = chunks.permute(0, 3, 1, 2, 4).reshape(B * T, 1, h, w)  # (B*T, 1, h, w)
        return self.to_image.map_channels(grey).reshape(B, T, -1, h, w)

    def _program_frames(self, frames: torch.Tensor, plain: bool) -> torch.Tensor:
        B, T = frames.shape[:2]
        if plain:
            out = self.programs[0].plain(frames.flatten(0, 1)).unflatten(0, (B, T))
        elif self.share:
            out = self.programs[0](frames.flatten(0, 1)).unflatten(0, (B, T))  # (B, T, C, H, W)
        else:
            out = torch.stack([prog(frames[:, t]) for t, prog in enumerate(self.programs)], dim=1)
        return self.normalise(out).permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Args: wave: ``(B, N)``. Returns: ``(B, C, T, H, W)`` normalised for the backbone."""
        return self._program_frames(self.inner_frames(wave), plain=False)

    def plain(self, wave: torch.Tensor) -> torch.Tensor:
        """The same frames without the learned program (centred on black canvases)."""
        return self._program_frames(self.inner_frames(wave), plain=True)

    def perturbation_norms(self) -> dict[str, float]:
        deltas = [p.shared_delta() for p in self.programs]
        if any(d is None for d in deltas):
            return {}
        with torch.no_grad():
            delta = torch.stack(deltas)  # (programs, C, H, W)
            return {"l2": float(delta.norm()), "linf": float(delta.abs().max())}
