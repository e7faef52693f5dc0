"""Saving the fitted classifier of a feature method without pickle: arrays in ``classifier.safetensors``, the
estimator's parameters and the method's metadata in ``classifier.json``, both in the run folder.

Supported: scikit-learn ``StandardScaler + LogisticRegression`` pipelines (linear probes, MFCC ``logreg``) and a
bare ``LogisticRegression``. They are rebuilt as the same scikit-learn objects with their fitted attributes set,
so a loaded classifier's ``predict_proba`` is the saved one's. A random forest has no array form here: its run
records why in ``classifier.json`` and detection refuses it with that reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

ARRAYS, META = "classifier.safetensors", "classifier.json"
#: StandardScaler / LogisticRegression fitted attributes kept as arrays
_SCALER = ("mean_", "scale_", "var_")
_LOGREG = ("coef_", "intercept_", "n_iter_")


class UnsavableClassifier(TypeError):
    """The fitted classifier has no pickle-free saved form."""


def _json_params(estimator) -> dict:
    params = estimator.get_params(deep=False)
    bad = [k for k, v in params.items() if not isinstance(v, (str, int, float, bool, type(None), dict))]
    for k in bad:
        params.pop(k)
    return params


def classifier_state(model) -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays, meta)`` of a fitted scaler + logistic regression pipeline (or bare logistic regression).

    Raises:
        UnsavableClassifier: any other estimator (e.g. a random forest).
    """
    steps = model.steps if isinstance(model, Pipeline) else [("logisticregression", model)]
    kinds = [type(est).__name__ for _, est in steps]
    if kinds not in (["StandardScaler", "LogisticRegression"], ["LogisticRegression"]):
        raise UnsavableClassifier(
            f"a {' + '.join(kinds)} classifier cannot be saved without pickle; only StandardScaler + "
            "LogisticRegression (options.classifier=logreg) runs can be used for detection"
        )
    arrays: dict[str, np.ndarray] = {}
    meta: dict = {"format": "sklearn-arrays-1", "steps": kinds, "params": {}, "n_samples_seen": None}
    for _, est in steps:
        kind = type(est).__name__
        meta["params"][kind] = _json_params(est)
        for attr in _SCALER if kind == "StandardScaler" else _LOGREG:
            value = getattr(est, attr, None)
            if value is not None:
                arrays[f"{kind}.{attr}"] = np.ascontiguousarray(value)
        if kind == "StandardScaler":
            meta["n_samples_seen"] = int(np.max(est.n_samples_seen_))
    final = steps[-1][1]
    arrays["classes"] = np.ascontiguousarray(final.classes_)
    meta["n_features_in"] = int(final.n_features_in_)
    return arrays, meta


def classifier_from_state(arrays: dict[str, np.ndarray], meta: dict):
    """The scikit-learn classifier :func:`classifier_state` described, fitted attributes restored."""
    if meta.get("format") != "sklearn-arrays-1":
        raise ValueError(f"classifier state of format {meta.get('format')!r} is unknown; re-run the experiment")
    estimators = []
    for kind in meta["steps"]:
        if kind == "StandardScaler":
            est = StandardScaler(**meta["params"][kind])
            for attr in _SCALER:
                setattr(est, attr, arrays.get(f"{kind}.{attr}"))
            est.n_samples_seen_ = meta["n_samples_seen"]
        else:
            est = LogisticRegression(**meta["params"][kind])
            for attr in _LOGREG:
                setattr(est, attr, arrays[f"{kind}.{attr}"])
            est.classes_ = np.asarray(arrays["classes"])
        est.n_features_in_ = meta["n_features_in"]
        estimators.append(est)
    return make_pipeline(*estimators) if len(estimators) > 1 else estimators[0]


def save_classifier(method, folder: str | Path) -> bool:
    """Write ``method.state()`` to ``folder/classifier.safetensors`` + ``classifier.json``.

    A classifier without a pickle-free form writes only ``classifier.json`` with ``"saved": false`` and the
    reason (the run itself is unaffected). Returns whether the arrays were written.
    """
    folder = Path(folder)
    try:
        arrays, meta = method.state()
    except UnsavableClassifier as err:
        (folder / META).write_text(json.dumps({"saved": False, "reason": str(err), "method": type(method).__name__}))
        return False
    save_file(arrays, str(folder / ARRAYS))
    (folder / META).write_text(json.dumps({"saved": True, "method": type(method).__name__, **meta}, indent=1))
    return True


def load_classifier(method, folder: str | Path):
    """Restore the classifier saved in ``folder`` into ``method`` (built from the run's config); returns it.

    Raises:
        FileNotFoundError: the run has no saved classifier (made before classifiers were saved: re-run it).
        UnsavableClassifier: the run's classifier could not be saved (the reason is given).
    """
    folder = Path(folder)
    if not (folder / META).is_file():
        raise FileNotFoundError(
            f"{folder} has no {META}: the run was made before feature methods saved their fitted classifier. "
            "Fix: delete the run folder and run the experiment again"
        )
    meta = json.loads((folder / META).read_text())
    if not meta.get("saved"):
        raise UnsavableClassifier(f"run {folder} cannot be used for detection: {meta.get('reason')}")
    if meta.get("method") != type(method).__name__:
        raise ValueError(f"{folder / META} holds a {meta.get('method')} classifier but the config builds "
                         f"{type(method).__name__}; the run folder was edited")
    return method.load_state(load_file(str(folder / ARRAYS)), meta)
