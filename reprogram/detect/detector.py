"""A finished run as a detector: its config rebuilt, its trained weights or fitted classifier loaded, scoring
fixed-length windows ``(B, N)`` into class probabilities ``(B, K)``.

Torch methods (programs, PEFT, torch probes) are rebuilt with :func:`reprogram.methods.build` and get their
``trainable.safetensors`` (:func:`reprogram.experiment.checkpoint.load_trainable`); feature methods (MFCC,
linear probes) get their saved classifier (:mod:`reprogram.methods.classifier_io`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class Detector:
    """Scores windows of one run's clip length.

    Attributes:
        run_dir: the run folder.
        run_id: its id.
        method: the method name.
        backbone: the backbone name (``None`` for MFCC).
        classes: class names (index = column of :meth:`score`).
        sample_rate: the rate windows are read at.
        window_s: the run's clip length in seconds (the window length).
        config: the run's resolved config.
    """

    run_dir: Path
    run_id: str
    method: str
    backbone: str | None
    classes: list[str]
    sample_rate: int
    window_s: float
    config: object
    built: object

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @torch.no_grad()
    def score(self, waves: np.ndarray) -> np.ndarray:
        """Class probabilities of windows.

        Args:
            waves: ``(B, N)`` float32 windows at :attr:`sample_rate`, ``N`` = :attr:`window_samples`.

        Returns:
            ``(B, K)`` float64 probabilities (rows sum to 1).
        """
        waves = np.ascontiguousarray(waves, dtype=np.float32)
        if waves.ndim != 2 or waves.shape[1] != self.window_samples:
            raise ValueError(f"windows of shape {waves.shape}; expected (B, {self.window_samples})")
        features = self.built.features
        if features is not None:
            proba = np.zeros((len(waves), len(self.classes)))
            proba[:, features.classes_] = features.predict_proba(features.featurize_waves(waves, self.sample_rate))
            return proba
        logits = self.built.model(torch.from_numpy(waves)).float()
        return torch.softmax(logits, dim=-1).double().numpy()


def load_detector(run_dir: str | Path) -> Detector:
    """Rebuild the run in ``run_dir`` (``DIR/runs/<run id>``) as a :class:`Detector`.

    Raises:
        FileNotFoundError: the folder is not a finished run, or lacks its weights / classifier (the message
            names the file and the fix).
    """
    from reprogram.experiment.config import load_config
    from reprogram.experiment.results import read_result
    from reprogram.methods import build

    folder = Path(run_dir)
    result_file, config_file = folder / "result.json", folder / "config.yaml"
    for f in (result_file, config_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found: {folder} is not a finished run. Fix: pass DIR/runs/<run id> "
                                    "of a run that completed (it holds result.json and config.yaml)")
    result = read_result(result_file)
    config = load_config(config_file)
    if config.data.clip_seconds is None:
        raise ValueError(f"run {folder} has data.clip_seconds=null (variable-length clips): detection needs the "
                         "fixed window length a run was trained on")
    classes = list(result["classes"])
    built = build(config, classes)
    if built.features is not None:
        from reprogram.methods.classifier_io import load_classifier

        load_classifier(built.features, folder)
    else:
        weights = folder / "trainable.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} not found: the run saved no trained weights. Fix: re-run it")
        from reprogram.experiment.checkpoint import load_trainable

        load_trainable(built.model, weights)
        built.model.eval()
    return Detector(folder, result["run_id"], result["method"], result.get("backbone"), classes,
                    int(built.sample_rate), float(config.data.clip_seconds), config, built)


def describe(detector: Detector) -> dict:
    """JSON-able identity of a detector (for result rows)."""
    return json.loads(json.dumps({"run_dir": str(detector.run_dir), "run_id": detector.run_id,
                                  "method": detector.method, "backbone": detector.backbone,
                                  "classes": detector.classes, "sample_rate": detector.sample_rate,
                                  "window_s": detector.window_s}))
