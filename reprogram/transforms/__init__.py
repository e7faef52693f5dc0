"""Input transforms ("programs"): ``(B, N)`` waveform -> ``(B, *spec.shape)`` in a frozen backbone's input space.

``TRANSFORMS.create(name, spec=backbone.spec, sample_rate=data_rate, **options)`` builds one. A new
program is one module plus one registration line below.

=================  ==========================================================  =============================
name               what                                                        ``budget``
=================  ==========================================================  =============================
``pad``            frame program around the log-mel image (Elsayed; Bahng)     pad width p (pixels)
``full``           full-canvas additive ``epsilon*tanh(theta)``                 ``epsilon`` (L-inf bound)
``lowrank``        low-rank additive perturbation                              rank r
``band``           perturbation on the rows of a frequency band                ``band_hz`` (Hz)
``smm``            input-conditioned mask x shared perturbation (Cai 2024)     mask-network width
``autovp``         pad program + learned input scale + learned 1x1 colour map  pad width p
``video``          time chunks -> T frames, program shared or per frame         the canvas program's
``video_repeat``   one image repeated T times (baseline)                        the canvas program's
``wave_embed``     clip inside a learned universal waveform (Voice2Series)     learned seconds
``wave_additive``  bounded additive waveform                                   ``epsilon``
=================  ==========================================================  =============================
"""

from __future__ import annotations

from functools import partial

from reprogram.registry import Registry, lazy
from reprogram.transforms.base import InputTransform

TRANSFORMS: Registry[InputTransform] = Registry("transform")


def _image(program: str, **fixed):
    return partial(lazy("reprogram.transforms.image", "ImageProgram"), program=program, **fixed)


TRANSFORMS.register("pad", _image("pad"))
TRANSFORMS.register("full", _image("full"))
TRANSFORMS.register("lowrank", _image("lowrank"))
TRANSFORMS.register("band", _image("band"))
TRANSFORMS.register("smm", _image("smm"))
TRANSFORMS.register("autovp", _image("pad", learn_scale=True, colour="learned"))
TRANSFORMS.register("video", partial(lazy("reprogram.transforms.video", "VideoProgram"), frames="chunks"))
TRANSFORMS.register("video_repeat", partial(lazy("reprogram.transforms.video", "VideoProgram"), frames="repeat"))
TRANSFORMS.register("wave_embed", partial(lazy("reprogram.transforms.speech", "WaveformProgram"), mode="embed"))
TRANSFORMS.register("wave_additive", partial(lazy("reprogram.transforms.speech", "WaveformProgram"), mode="additive"))


def create(name: str, spec, **options) -> InputTransform:
    """Build the transform ``name`` for a backbone ``spec`` (pass ``sample_rate=`` the data's rate)."""
    return TRANSFORMS.create(name, spec=spec, **options)


__all__ = ["TRANSFORMS", "InputTransform", "create"]
