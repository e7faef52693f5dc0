"""The paper's figures, drawn from result files only.

Every function takes the results of a folder (``reprogram.experiment.results.read_results``) and an output folder, and
returns the paths it wrote (PDF and PNG of each figure; one figure per task where results mix tasks).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from figures.style import COLUMN, TEXT, method_label, paper_style, save, slug, system_label
from reprogram.experiment.results import run_dir, setting, split_predictions, tidy_rows, variant
from reprogram.experiment.stats import SYSTEM_KEYS, summarize

MARKERS = {"image": "o", "video": "s", "speech": "^", "audio": "D", "features": "X"}
METRIC_LABEL = {
    "balanced_accuracy": "balanced accuracy",
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "roc_auc": "ROC-AUC",
    "average_precision": "average precision",
}
#: a system: method, variant, budget, backbone, modality and setting (hash of every other config value)
SYSTEM = SYSTEM_KEYS


def _plt():
    import matplotlib.pyplot as plt

    return plt


def by_task(results: list[dict]) -> dict[str, list[dict]]:
    """Results grouped by task (label column), in sorted task order."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        groups[r["task"]].append(r)
    return dict(sorted(groups.items()))


def several_settings(summary: list[dict]) -> bool:
    """Whether some system (method, variant, budget, backbone, modality) was run under two or more settings:
    then tables and legends name the setting, else it is left out so ordinary tables stay readable."""
    seen: dict[tuple, set] = defaultdict(set)
    for s in summary:
        seen[tuple(s[k] for k in SYSTEM if k != "setting")].add(s.get("setting"))
    return any(len(v) > 1 for v in seen.values())


def labelled(s: dict, with_setting: bool) -> str:
    """``method [variant]``, plus `` @setting`` when ``with_setting``."""
    name = method_label(s["method"], s["variant"])
    return f"{name} @{s['setting']}" if with_setting and s.get("setting") else name


def replicates(rows: list[dict]) -> list[dict]:
    """Tidy rows with every ``external`` row's seed made ``(fold, seed)``: each fold's models score the same
    external clips, so the external set is one unit and every (fold, seed) a replicate on it."""
    return [{**r, "seed": (r["fold"], r["seed"])} if r["split"] == "external" else r for r in rows]


def has_external(results: list[dict]) -> bool:
    """Whether any run was also scored on an external test set."""
    return any("external" in r.get("metrics", {}) for r in results)


def summary_of(group: list[dict], metric: str, split: str, seed: int = 0) -> list[dict]:
    """:func:`reprogram.experiment.stats.summarize` of a task's results per system, with their stored per-clip
    predictions."""
    return summarize(replicates(tidy_rows(group)), metric, split, by=SYSTEM, seed=seed,
                     predictions=split_predictions(group, split))


def _colours(names: list) -> dict:
    cmap = _plt().get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {n: cmap(i % cmap.N) for i, n in enumerate(sorted(names, key=str))}


def _chance(results: list[dict], metric: str) -> float | None:
    if metric in ("balanced_accuracy", "roc_auc"):
        k = {len(r["classes"]) for r in results}
        return 0.5 if metric == "roc_auc" else (1.0 / k.pop() if len(k) == 1 else None)
    return None


def plot_accuracy_vs_params(
    results: list[dict], out: str | Path, metric: str = "balanced_accuracy", split: str = "test"
) -> list[Path]:
    """Mean ``metric`` (bootstrap 95% interval, :mod:`reprogram.experiment.stats`) against measured trainable
    parameters (log x).

    Colour = method (and setting, where a system ran under several), marker = source modality; one figure per task.
    """
    plt, paths = _plt(), []
    for task, group in by_task(results).items():
        summary = summary_of(group, metric, split)
        named = several_settings(summary)
        colours = _colours(list({labelled(s, named) for s in summary}))
        with paper_style():
            fig, ax = plt.subplots(figsize=(COLUMN, 2.6))
            for s in summary:
                x = max(s["trainable_params"], 1.0)
                yerr = None if s["lo"] is None else [[s["mean"] - s["lo"]], [s["hi"] - s["mean"]]]
                ax.errorbar(
                    [x],
                    [s["mean"]],
                    yerr=yerr,
                    fmt=MARKERS.get(s["modality"], "o"),
                    capsize=2,
                    color=colours[labelled(s, named)],
                    markeredgecolor="black",
                    markeredgewidth=0.3,
                )
            chance = _chance(group, metric)
            if chance is not None:
                ax.axhline(chance, color="grey", linestyle=":", linewidth=0.8)
            ax.set_xscale("log")
            ax.set_xlabel("trainable parameters (measured)")
            ax.set_ylabel(f"{split} {METRIC_LABEL.get(metric, metric)}")
            ax.set_title(f"task: {task}")
            handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=m) for m, c in colours.items()]
            handles += [
                plt.Line2D([], [], color="grey", marker=MARKERS.get(m, "o"), linestyle="", label=m)
                for m in sorted({s["modality"] for s in summary})
            ]
            ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
            paths += save(fig, out, slug("accuracy_vs_params", task, None if split == "test" else split))
    return paths


def plot_budget_ablation(
    results: list[dict], out: str | Path, metric: str = "balanced_accuracy", split: str = "test"
) -> list[Path]:
    """``metric`` (mean and 95% interval) as each method's budget grows; a panel per method, a line per backbone.

    Only methods run at two or more budgets are drawn; returns ``[]`` when there are none.
    """
    plt, paths = _plt(), []
    for task, group in by_task(results).items():
        summary = [s for s in summary_of(group, metric, split) if s["budget"] is not None]
        named = several_settings(summary)
        lines: dict[tuple, list[dict]] = defaultdict(list)
        for s in summary:
            lines[(labelled(s, named), s["backbone"])].append(s)
        lines = {k: sorted(v, key=lambda s: s["budget"]) for k, v in lines.items() if len(v) >= 2}
        if not lines:
            continue
        methods = sorted({m for m, _ in lines})
        colours = _colours(list({b for _, b in lines}))
        with paper_style():
            fig, axes = plt.subplots(
                1, len(methods), figsize=(min(TEXT, 2.3 * len(methods)), 2.2), sharey=True, squeeze=False
            )
            for ax, method in zip(axes[0], methods, strict=True):
                for (m, backbone), pts in sorted(lines.items(), key=lambda kv: str(kv[0])):
                    if m != method:
                        continue
                    x = np.array([p["budget"] for p in pts], dtype=float)
                    y = np.array([p["mean"] for p in pts])
                    ax.plot(x, y, marker="o", color=colours[backbone], label=str(backbone).split(":")[-1])
                    if all(p["lo"] is not None for p in pts):
                        ax.fill_between(
                            x,
                            [p["lo"] for p in pts],
                            [p["hi"] for p in pts],
                            color=colours[backbone],
                            alpha=0.2,
                            linewidth=0,
                        )
                    if x.min() > 0 and x.max() / x.min() >= 8:
                        ax.set_xscale("log", base=2)
                ax.set_title(method)
                ax.set_xlabel("budget")
                ax.legend(frameon=False)
            axes[0][0].set_ylabel(f"{split} {METRIC_LABEL.get(metric, metric)}")
            paths += save(fig, out, slug("budget_ablation", task))
    return paths


def plot_confusion_matrices(results: list[dict], out: str | Path, split: str = "test") -> list[Path]:
    """Row-normalised confusion matrices summed over seeds and folds, a panel per system; one figure per task."""
    plt, paths = _plt(), []
    for task, group in by_task(results).items():
        systems: dict[tuple, np.ndarray] = {}
        classes = group[0]["classes"]
        per_system: dict[tuple, set] = defaultdict(set)
        for r in group:
            per_system[(r["method"], r.get("budget"), r["backbone"], _variant(r))].add(setting(r["config"]))
        named = any(len(v) > 1 for v in per_system.values())
        for r in group:
            if split not in r["metrics"] or r["classes"] != classes:
                continue
            key = (r["method"], r.get("budget"), r["backbone"], _variant(r, named))
            cm = np.asarray(r["metrics"][split]["confusion_matrix"], dtype=float)
            systems[key] = systems.get(key, 0) + cm
        if not systems:
            continue
        n = len(systems)
        cols = min(4, n)
        rows = int(np.ceil(n / cols))
        with paper_style():
            fig, axes = plt.subplots(rows, cols, figsize=(min(TEXT, 1.9 * cols), 1.9 * rows + 0.3), squeeze=False)
            for ax in axes.flat[n:]:
                ax.axis("off")
            for ax, (key, cm) in zip(axes.flat[:n], sorted(systems.items(), key=lambda kv: str(kv[0])), strict=True):
                norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
                ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
                ax.grid(False)
                ax.set_title(system_label(*key), fontsize=6)
                ticks = range(len(classes))
                ax.set_xticks(ticks, [c[:10] for c in classes], rotation=90, fontsize=5)
                ax.set_yticks(ticks, [c[:10] for c in classes], fontsize=5)
                if len(classes) <= 8:
                    for i in ticks:
                        for j in ticks:
                            ax.text(
                                j,
                                i,
                                int(cm[i, j]),
                                ha="center",
                                va="center",
                                fontsize=5,
                                color="white" if norm[i, j] > 0.5 else "black",
                            )
            fig.supxlabel("predicted", fontsize=7)
            fig.supylabel("true", fontsize=7)
            paths += save(fig, out, slug("confusion", task, split))
    return paths


def _variant(r: dict, with_setting: bool = False) -> str:
    text = variant(r["config"]["method"].get("options", {}))
    return f"{text} @{setting(r['config'])}".strip() if with_setting else text


def _first_runs(results: list[dict], has) -> list[dict]:
    """The lowest (seed, fold) run of every system that satisfies ``has``."""
    chosen: dict[tuple, dict] = {}
    for r in sorted(results, key=lambda r: (r["seed"], r["fold"])):
        options = json.dumps(r["config"]["method"].get("options", {}), sort_keys=True)
        key = (r["task"], r["method"], r.get("budget"), r["backbone"], options, setting(r["config"]))
        if has(r) and key not in chosen:
            chosen[key] = r
    return list(chosen.values())


def plot_label_mappings(results: list[dict], out: str | Path) -> list[Path]:
    """Target class x source label weight matrices of the mappers reading source logits (first seed/fold)."""
    plt, paths = _plt(), []
    for r in _first_runs(results, lambda r: bool(r.get("label_mapping"))):
        lm = r["label_mapping"]
        m = np.asarray(lm["matrix"], dtype=float)  # (K, S')
        with paper_style():
            fig, ax = plt.subplots(figsize=(min(TEXT, 1.2 + 0.18 * m.shape[1]), 0.9 + 0.22 * m.shape[0]))
            lim = np.abs(m).max() or 1.0
            im = ax.imshow(
                m, cmap="RdBu_r" if m.min() < 0 else "Greens", vmin=-lim if m.min() < 0 else 0, vmax=lim, aspect="auto"
            )
            ax.grid(False)
            ax.set_xticks(range(m.shape[1]), [s.split(",")[0][:22] for s in lm["sources"]], rotation=90, fontsize=5)
            ax.set_yticks(range(m.shape[0]), lm["targets"], fontsize=6)
            ax.set_title(
                f"{lm['kind']}: {system_label(r['method'], r.get('budget'), r['backbone'], _variant(r))}", fontsize=7
            )
            fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
            paths += save(
                fig, out, slug("label_mapping", r["task"], r["method"], r.get("budget"), r["backbone"], r["run_id"])
            )
    return paths


def _as_image(t: np.ndarray) -> np.ndarray:
    """(C, H, W) or (C, T, H, W) -> an (H, W, 3) or (H, W) array in [0, 1] for display (middle frame of a video)."""
    if t.ndim == 4:
        t = t[:, t.shape[1] // 2]
    img = np.moveaxis(t, 0, -1) if t.shape[0] in (1, 3) else t.mean(axis=0)[..., None]
    img = img[..., 0] if img.shape[-1] == 1 else img
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def plot_programs(results: list[dict], results_dir: str | Path, out: str | Path) -> list[Path]:
    """The learned programs (first seed/fold of every program run): the spectrogram canvas at initialisation,
    the programmed input after training, and the learned perturbation (their difference), read from
    ``runs/<id>/program.safetensors``.
    """
    from safetensors.numpy import load_file

    plt, paths = _plt(), []
    results_dir = Path(results_dir)

    def has(r):
        return (run_dir(results_dir, r["run_id"]) / "program.safetensors").is_file()

    for r in _first_runs(results, has):
        t = load_file(str(run_dir(results_dir, r["run_id"]) / "program.safetensors"))
        before, after = t["input_init"], t["input"]
        delta = after - before
        with paper_style():
            fig, axes = plt.subplots(1, 3, figsize=(TEXT * 0.75, 1.9))
            if after.ndim == 1:  # a waveform program
                sr = r.get("sample_rate") or r["config"]["data"].get("sample_rate") or 16000
                for ax, y, title in zip(
                    axes,
                    (before, after, delta),
                    ("input at initialisation", "programmed input", "learned perturbation"),
                    strict=True,
                ):
                    ax.plot(np.arange(len(y)) / sr, y, linewidth=0.3)
                    ax.set_title(title)
                    ax.set_xlabel("time (s)")
            else:
                canvas = t.get("inner_init", before)
                axes[0].imshow(_as_image(canvas), cmap="magma", aspect="auto")
                axes[0].set_title("spectrogram canvas")
                axes[1].imshow(_as_image(after), cmap="magma", aspect="auto")
                axes[1].set_title("programmed input")
                d = delta[:, delta.shape[1] // 2] if delta.ndim == 4 else delta  # (C, H, W)
                d = d.mean(axis=0)
                lim = float(np.abs(d).max()) or 1.0
                im = axes[2].imshow(d, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
                axes[2].set_title("learned perturbation")
                fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.02)
                for ax in axes:
                    ax.set_xticks([])
                    ax.set_yticks([])
                    ax.grid(False)
            fig.suptitle(system_label(r["method"], r.get("budget"), r["backbone"], _variant(r)), fontsize=8, y=1.06)
            paths += save(
                fig, out, slug("program", r["task"], r["method"], r.get("budget"), r["backbone"], r["run_id"])
            )
    return paths
