"""``linear_probe`` and ``per_layer_probe``: logistic regression on cached hidden states of a frozen speech
encoder, C (and for ``per_layer_probe`` the layer) chosen on validation. Features are computed once per clip
(:func:`reprogram.methods.probes.pooled_features`, cached on disk) and fitted by the feature kind
(:data:`reprogram.methods.features.FITTED`)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from reprogram.methods.base import Built, backbone_of, native_rate
from reprogram.methods.features import FeatureMethod


class ProbeFeatures(FeatureMethod):
    """Linear probe: logistic regression on one cached hidden state of a frozen speech encoder
    (:mod:`reprogram.methods.probes`), its regularisation chosen on the validation split."""

    def __init__(self, backbone, layer: int, seed: int, cs: Sequence[float] | None = None) -> None:
        self.backbone, self.layer, self.seed, self.cs = backbone, layer, seed, cs
        self.selection = {}

    def featurize(self, dataset, cache_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
        from reprogram.methods.probes import pooled_features

        # every hidden state is cached, so a probe of another layer reuses the entry
        return pooled_features(self.backbone, dataset, cache_dir=cache_dir)[:, self.layer].numpy()  # (M, D)

    def featurize_waves(self, waves: np.ndarray, sample_rate: int) -> np.ndarray:
        """Pooled hidden state ``layer`` of windows ``(B, N)`` (as :meth:`featurize`); shape ``(B, D)``."""
        return self._pooled(waves, sample_rate)[:, self.layer]

    def _pooled(self, waves: np.ndarray, sample_rate: int) -> np.ndarray:
        import torch

        from reprogram.methods.probes import pooled_features

        if sample_rate != self.backbone.spec.sample_rate:
            raise ValueError(f"windows at {sample_rate} Hz but the encoder expects {self.backbone.spec.sample_rate}")
        clips = [torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)) for w in waves]
        with torch.no_grad():
            return pooled_features(self.backbone, clips, batch_size=max(1, len(clips))).numpy()  # (B, L, D)

    def fit(self, x_train, y_train, x_val, y_val) -> ProbeFeatures:
        from reprogram.methods.probes import DEFAULT_CS, fit_linear_probe

        x = np.concatenate([x_train, x_val])
        y = np.concatenate([y_train, y_val])
        n = len(x_train)
        result = fit_linear_probe(x, y, range(n), range(n, len(x)), cs=self.cs or DEFAULT_CS, seed=self.seed)
        self.model = result.model
        self.classes_ = self.model.classes_
        self.selection = {"C": result.C, "val_balanced_accuracy_by_C": {str(k): v for k, v in result.val_by_C.items()}}
        return self


class PerLayerProbeFeatures(ProbeFeatures):
    """One linear probe per hidden state (:func:`reprogram.methods.probes.per_layer_probes`, each with its ``C`` chosen
    on
    validation); the layer with the best validation balanced accuracy is kept. ``selection`` records every
    layer's validation score (and ``C``) so a result shows where the information is."""

    def __init__(self, backbone, seed: int, cs: Sequence[float] | None = None) -> None:
        super().__init__(backbone, -1, seed, cs)

    def featurize(self, dataset, cache_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
        from reprogram.methods.probes import pooled_features

        return pooled_features(self.backbone, dataset, cache_dir=cache_dir).numpy()  # (M, L, D)

    def fit(self, x_train, y_train, x_val, y_val) -> PerLayerProbeFeatures:
        from reprogram.methods.probes import DEFAULT_CS, per_layer_probes

        x, y, n = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]), len(x_train)
        report = per_layer_probes(x, y, range(n), range(n, len(x)), cs=self.cs or DEFAULT_CS)
        self.layer = report.best_layer
        self.model = report.results[self.layer].model
        self.classes_ = self.model.classes_
        self.feature_dim = int(x.shape[2])
        self.selection = {
            "layer": self.layer,
            "C": report.results[self.layer].C,
            "val_balanced_accuracy_by_layer": [r.val_balanced_accuracy for r in report.results],
            "C_by_layer": [r.C for r in report.results],
        }
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x[:, self.layer])

    def featurize_waves(self, waves: np.ndarray, sample_rate: int) -> np.ndarray:
        return self._pooled(waves, sample_rate)  # (B, L, D): predict_proba takes the selected layer

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays, meta = super().state()
        return arrays, {**meta, "layer": int(self.layer)}

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict) -> PerLayerProbeFeatures:
        super().load_state(arrays, meta)
        self.layer = int(meta["layer"])
        return self


def build_linear_probe(config, classes: list) -> Built:
    """Linear probe on cached features of hidden state ``options.layer`` (default -1, the last); ``options.cs``
    lists the candidate inverse regularisation strengths (chosen on validation). ``per_layer_probe``: one such
    probe per hidden state, the layer chosen on validation (no ``layer`` option)."""
    opts = dict(config.method.options)
    per_layer = config.method.name == "per_layer_probe"
    layer, cs = int(opts.pop("layer", -1)) if not per_layer else None, opts.pop("cs", None)
    if opts or config.method.budget is not None:
        raise ValueError(
            f"{config.method.name} takes option{'' if per_layer else 's layer and'} cs only and no budget; got "
            f"{sorted(opts)}, budget={config.method.budget}"
        )
    backbone = backbone_of(config)
    if backbone.spec.num_layers == 0:
        raise ValueError(
            f"{config.method.name} needs a speech backbone with hidden states; {config.backbone.name!r} is a "
            f"{backbone.spec.modality} model. Fix: use a speech backbone (e.g. backbone.name=offline:whisper_tiny_en), "
            f"or for this {backbone.spec.modality} model train a label mapper on its logits/features "
            f"(method.name=program with method.options.mapper=linear)"
        )
    features = (PerLayerProbeFeatures(backbone, config.seed, cs) if per_layer
                else ProbeFeatures(backbone, layer, config.seed, cs))
    return Built(None, native_rate(config, backbone), backbone.spec.modality, {}, features=features)
