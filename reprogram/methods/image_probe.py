"""``image_probe``: the control of every image / video program, a linear probe of the frozen network's pooled
features of the SAME canvas the program sees.

The canvas is the program's own neutral input (``transform.plain``: the log-mel front end, the colour mapping,
the resize to the program's inner size, the placement on the backbone's canvas and the normalisation of the
image / video programs in :mod:`reprogram.transforms`), so a program's gain over this probe is what its learned
perturbation and label mapping add on the same network. Features (``BackboneOutput.features``, pooled before the
classifier) are computed once per clip and cached (:func:`reprogram.runtime.cache.cached_features`, keyed by the
data, the backbone's weights, the canvas options and the code); a logistic probe is fitted on train with ``C``
chosen on validation (:func:`reprogram.methods.probes.fit_linear_probe`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import torch

from reprogram.methods.base import DEFAULT_TRANSFORM, Built, backbone_of, program_rate, with_seed
from reprogram.methods.features import FeatureMethod


def canvas_options(transform) -> dict:
    """Everything ``transform.plain`` depends on besides the backbone and the code: the front end's settings and
    rates, the inner and canvas sizes, the colour mapping, the frames (video) and the weights of the modules
    ``plain`` runs (mel filterbank, colour table, a learned colour map)."""
    from reprogram.runtime.cache.keys import backbone_fingerprint
    from reprogram.transforms.image import ImageProgram
    from reprogram.transforms.video import VideoProgram

    if isinstance(transform, ImageProgram):
        program, extra, used = transform.program, {}, [transform.frontend, transform.to_image, transform.normalise]
    elif isinstance(transform, VideoProgram):
        program = transform.programs[0]
        extra = {"frames": transform.frames_mode, "num_frames": transform.num_frames, "hop": transform.hop,
                 "strip": list(transform.to_strip.size)}
        used = [transform.frontend, transform.to_image, transform.to_strip, transform.normalise]
    else:
        raise ValueError(f"image_probe probes the canvas of an image or video program; {type(transform).__name__} "
                         "is neither. Fix: set method.options.transform to pad, full, ..., video or video_repeat")
    return {"kind": type(transform).__name__, "frontend": asdict(transform.frontend.config),
            "input_rate": transform.frontend.input_rate, "inner_hw": list(program.inner_hw),
            "canvas_hw": list(program.canvas_hw), "colour": transform.to_image.colour, **extra,
            "weights": [backbone_fingerprint(m) for m in used]}


class CanvasProbeFeatures(FeatureMethod):
    """Logistic probe on a frozen image / video backbone's pooled features of a program's neutral canvas.

    Args:
        backbone: the frozen image or video backbone.
        transform: the image / video program whose canvas (``transform.plain``) is probed; nothing of it trains.
        seed: solver seed (provenance).
        cs: candidate inverse regularisation strengths (chosen on validation).
        batch_size: clips per forward pass when computing features.
    """

    def __init__(self, backbone, transform, seed: int, cs: Sequence[float] | None = None, batch_size: int = 8) -> None:
        self.backbone, self.transform, self.seed, self.cs, self.batch_size = backbone, transform, seed, cs, batch_size
        self.key = {"canvas": canvas_options(transform)}
        self.selection = {}

    @torch.no_grad()
    def _in_memory(self, dataset) -> np.ndarray:
        self.backbone.eval()
        out = []
        for s in range(0, len(dataset), self.batch_size):
            wave = torch.stack([dataset[i][0] for i in range(s, min(s + self.batch_size, len(dataset)))])  # (B, N)
            out.append(self.backbone(self.transform.plain(wave)).features.float())  # (B, D)
        return torch.cat(out).numpy()

    def featurize(self, dataset, cache_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
        """``(M, D)`` pooled features of every clip's canvas (``D = spec.feature_dim``)."""
        self.transform.eval()
        if cache_dir is None:
            return self._in_memory(dataset)
        from reprogram.runtime.cache import cached_features

        fs = cached_features(self.backbone, dataset, self.key, layer=None, batch_size=self.batch_size,
                             cache_dir=cache_dir, preprocess=self.transform.plain)
        return np.array(fs.features, dtype=np.float32)  # (M, D), in memory

    def fit(self, x_train, y_train, x_val, y_val) -> CanvasProbeFeatures:
        from reprogram.methods.probes import DEFAULT_CS, fit_linear_probe

        x, y, n = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]), len(x_train)
        result = fit_linear_probe(x, y, range(n), range(n, len(x)), cs=self.cs or DEFAULT_CS, seed=self.seed)
        self.model, self.classes_ = result.model, result.model.classes_
        self.feature_dim = int(x.shape[1])
        self.selection = {"C": result.C, "val_balanced_accuracy_by_C": {str(k): v for k, v in result.val_by_C.items()}}
        return self


def build_image_probe(config, classes: list) -> Built:
    """Linear probe on the canvas of program ``options.transform`` (default: the modality's default program,
    ``pad`` / ``video``) at its neutral init; ``method.budget`` and the other options (``frontend``, ``colour``,
    ``inner_size``, ``overlap`` ...) are the program's and shape the canvas (the pad width sets the inner image's
    size); ``options.cs`` lists the candidate ``C`` (chosen on validation)."""
    from reprogram import transforms

    opts = dict(config.method.options)
    cs = opts.pop("cs", None)
    for key in ("mapper", "mapper_options", "head", "head_options"):
        if key in opts:
            raise ValueError(f"image_probe fits a logistic probe on the canvas features; it takes no {key!r}. "
                             "Fix: drop method.options." + key)
    backbone = backbone_of(config)
    spec = backbone.spec
    if spec.modality not in ("image", "video"):
        raise ValueError(f"image_probe needs an image or video backbone; {config.backbone.name!r} is a "
                         f"{spec.modality} model. Fix: use linear_probe for speech encoders")
    name = opts.pop("transform", DEFAULT_TRANSFORM[spec.modality])
    if config.method.budget is not None:
        opts["budget"] = config.method.budget
    rate = program_rate(config, backbone)
    transform = transforms.create(name, spec=spec, sample_rate=rate, **with_seed(transforms.TRANSFORMS, name, opts,
                                                                                  config.seed))
    transform.requires_grad_(False)
    features = CanvasProbeFeatures(backbone, transform, config.seed, cs)
    return Built(None, rate, spec.modality, {}, features=features, label_names=tuple(spec.label_names))
