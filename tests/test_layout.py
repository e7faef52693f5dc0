"""The house keeps its shape: no import cycles, no module over 400 lines, a new method is one module plus one
registration line, and the restructuring changed no run id and no result schema."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from reprogram.experiment.config import load_config, run_id

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reprogram", "backbones", "figures")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(modules: dict[str, Path], lazy: bool) -> dict[str, set[str]]:
    """Module -> own modules it imports: at import time only, or (``lazy``) inside functions too.
    ``if TYPE_CHECKING:`` blocks never run, so they do not count."""
    graph = {m: set() for m in modules}

    def visit(module: str, body: list) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                names = []
            graph[module].update(n for n in names if n in modules and n != module)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not lazy:
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                sub = getattr(node, field, None)
                if isinstance(sub, list):
                    visit(module, sub)

    for module, path in modules.items():
        visit(module, ast.parse(path.read_text()).body)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def connect(v: str) -> None:
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    component.append(w)
                    if w == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("lazy", [False, True], ids=["import-time", "with-function-imports"])
def test_no_import_cycles(lazy):
    cycles = _cycles(_imports(_modules(), lazy))
    assert not cycles, f"import cycles (break them by moving the shared piece down a level): {cycles}"


def test_no_module_over_400_lines():
    files = [p for d in (*PACKAGES, "experiments", "benchmarks", "tests") for p in (ROOT / d).rglob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (at most {MAX_LINES} lines): {long}"


def test_fixed_configs_keep_their_run_ids():
    """Run ids are hashes of the full config; these were computed before the restructuring (at 2c960e7)."""
    assert run_id(load_config(None, [])) == "4ffbf9afacbc"
    assert run_id(load_config(None, ["method.name=lora", "backbone.name=tiny:hubert", "seed=2"])) == "41a7cc4a5bfb"
    assert run_id(load_config(None, ["method.name=mfcc"])) == "4f14f0d3426f"


COMMON = {"backbone", "budget", "classes", "config", "created", "data_fingerprint", "detection", "environment",
          "fold", "label_mapping", "method", "metrics", "modality", "name", "params", "peak_memory_mb", "predictions",
          "run_id", "sample_rate", "schema", "seed", "split", "task", "training", "wall_time_s"}
METRIC_KEYS = {"accuracy", "balanced_accuracy", "confusion_matrix", "macro_f1", "n", "per_class_recall"}


@pytest.mark.parametrize(
    "overrides, extra, training",
    [
        (["method.name=mfcc"], set(), {"selection"}),
        (["method.name=program", "backbone.name=tiny:vit", "training.epochs=1", "data.clip_seconds=0.5"],
         {"prefix_cache"}, {"best_epoch", "epochs_run", "history", "resumed_from", "stopped_early"}),
    ],
    ids=["fitted", "trained"],
)
def test_result_schema_is_unchanged(tmp_path, overrides, extra, training):
    """The result keys of a fitted and a trained method, as written before the restructuring."""
    from reprogram.experiment.runner import run_experiment

    result = run_experiment(load_config(None, overrides), tmp_path, use_cache=False)
    assert set(result) == COMMON | extra | {"data_report"}  # data_report: added after, by issue 17
    assert set(result["params"]) == {"components", "total", "trainable"}
    assert set(result["training"]) == training
    assert set(result["metrics"]) == {"train", "val", "test"}
    assert set(result["metrics"]["test"]) == METRIC_KEYS


def test_a_new_method_is_one_module_and_one_registration_line(tmp_path):
    """A nearest-class-mean classifier on log-RMS statistics, written here as a user would in its own module:
    a FeatureMethod and a builder; one METHODS.register line makes `reprogram run` train and score it."""
    from reprogram.experiment.runner import run_experiment
    from reprogram.methods import METHODS, Built, FeatureMethod

    class NearestMean(FeatureMethod):
        def __init__(self) -> None:
            self.selection = {}

        def featurize(self, dataset, cache_dir=None) -> np.ndarray:
            frames = np.stack([dataset[i][0].numpy() for i in range(len(dataset))]).reshape(len(dataset), 16, -1)
            return np.log(np.sqrt((frames**2).mean(axis=2)) + 1e-6)  # (M, 16) log-RMS envelope

        def fit(self, x_train, y_train, x_val, y_val) -> NearestMean:
            self.classes_ = np.unique(y_train)
            self.means = np.stack([x_train[y_train == c].mean(axis=0) for c in self.classes_])  # (K, D)
            return self

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            d = ((x[:, None, :] - self.means[None]) ** 2).sum(axis=2)  # (M, K)
            p = np.exp(-(d - d.min(axis=1, keepdims=True)))
            return p / p.sum(axis=1, keepdims=True)

        def num_parameters(self) -> int:
            return int(self.means.size)

    def build_nearest_mean(config, classes):
        return Built(None, 16_000, "features", {}, features=NearestMean())

    METHODS.register("nearest_mean", build_nearest_mean)  # the one registration line
    try:
        result = run_experiment(load_config(None, ["method.name=nearest_mean", "data.clip_seconds=1.0"]), tmp_path,
                                use_cache=False)
    finally:
        METHODS.unregister("nearest_mean")
    assert result["method"] == "nearest_mean"
    assert result["params"]["trainable"] == len(result["classes"]) * 16
    assert set(result["metrics"]) == {"train", "val", "test"}
    assert 0.0 <= result["metrics"]["test"]["balanced_accuracy"] <= 1.0
    assert "nearest_mean" not in METHODS
