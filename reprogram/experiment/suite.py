"""Named comparisons ("suites") over the sweep machinery: the shared core of ``reprogram demo`` and ``experiments/``.

A suite is a list of :class:`System` s (a method with its options, the *role* of its backbone and its budgets).
:func:`sweep_spec` turns a suite plus the data / task / seed choices of a command line into a sweep mapping
(:mod:`reprogram.experiment.sweep`), :func:`run_suite` runs its missing runs (skipping completed ones, resuming
interrupted
ones) and draws every figure with :func:`figures.cli.make_figures` (what ``reprogram figures DIR`` does). Nothing
here trains: every run goes through :func:`reprogram.experiment.runner.run_experiment`.

Backbone roles (``image``, ``video``, ``speech``) keep a suite independent of the models: ``--backbone
image=timm:resnet50.a1_in1k`` swaps them, ``--tiny`` swaps every role for its seeded random twin and uses a
small synthetic corpus, 1 s clips and one epoch (for tests).
"""

from __future__ import annotations

import argparse
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: default backbone per role
BACKBONES = {
    "image": "offline:efficientnet_lite0",
    "video": "offline:efficientnet_lite0_video",
    "speech": "offline:whisper_tiny_en",
}
#: ``--tiny`` backbone per role (seeded random twins: no download, seconds per run)
TINY_BACKBONES = {"image": "tiny:vit", "video": "tiny:r3d", "speech": "tiny:whisper"}
#: ``--tiny`` synthetic corpus: 3 pairs, 3 recorders, 21 clips of 4 s
TINY_SYNTHETIC = {
    "n_individuals": 3,
    "n_recorders": 3,
    "female_calls_per_individual": 2,
    "duets_per_individual": 1,
    "male_calls_per_individual": 1,
    "noise_clips_per_recorder": 3,
    "clip_s": 4.0,
}
#: ``--tiny`` overrides of every run
TINY_SET = {"data.clip_seconds": 1.0, "training.epochs": 1, "training.batch_size": 4, "training.patience": None}
#: label column used on the synthetic corpus, and on user data, when ``--label-column`` is not given
SYNTHETIC_LABEL, DATA_LABEL = "call_type", "label"
NO_ROLE = "none"


@dataclass(frozen=True)
class System:
    """One compared system: a method on a backbone role, over a list of budgets.

    Args:
        method: a name of ``reprogram.methods.METHODS``.
        role: ``image``, ``video``, ``speech`` or ``none`` (MFCC).
        options: ``method.options`` (``transform``, ``mapper``, ``head`` ...).
        budgets: the budgets swept (``None``: the method's default).
        tiny_budgets: budgets under ``--tiny`` (tiny backbones have small canvases).
        overrides: dotted config overrides of this system's runs (learning rate ...); ``backbone.options`` apply
            to the role's default backbone only and are dropped when ``--backbone`` or ``--tiny`` replaces it.
    """

    method: str
    role: str
    options: dict[str, Any] = field(default_factory=dict)
    budgets: tuple = (None,)
    tiny_budgets: tuple = (None,)
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``method[:transform][+mapper|head]@role`` (what ``--only`` matches)."""
        o = self.options
        name = self.method + (f":{o['transform']}" if "transform" in o else "")
        name += f"+{o['mapper']}" if "mapper" in o else (f"+{o['head']}" if "head" in o else "")
        name += "".join(f"[{k}={v}]" for k, v in sorted(o.items()) if k not in ("transform", "mapper", "head"))
        return f"{name}@{self.role}"


def select(systems: list[System], only: list[str]) -> list[System]:
    """The systems whose label contains one of ``only`` (all when empty); an unmatched word is an error."""
    if not only:
        return list(systems)
    words = [w.strip() for item in only for w in item.split(",") if w.strip()]
    for w in words:
        if not any(w in s.label for s in systems):
            raise ValueError(f"--only {w!r} matches no system; systems: {', '.join(s.label for s in systems)}")
    return [s for s in systems if any(w in s.label for w in words)]


def default_out(name: str) -> Path:
    """``$REPROGRAM_OUT/<name>``, else ``~/gibbon-reprogram/<name>`` (never the working directory)."""
    root = os.environ.get("REPROGRAM_OUT")
    return (Path(root).expanduser() if root else Path.home() / "gibbon-reprogram") / name


def add_arguments(
    parser: argparse.ArgumentParser, name: str, roles: tuple[str, ...], seeds: int = 2, jobs: int = 1
) -> None:
    """The shared command line of a suite (``reprogram demo`` and every ``experiments/*.py``).

    Args:
        parser: the parser to fill.
        name: the suite's name (its default output folder is ``default_out(name)``).
        roles: the backbone roles the suite uses (for ``--backbone`` help and checks).
        seeds: default number of training seeds.
        jobs: default number of parallel run processes.
    """
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="manifest CSV, audio folder or Raven tables (default: the embedded synthetic corpus)")
    parser.add_argument("--label-column", default=None,
                        help=f"label column (default {SYNTHETIC_LABEL} on the synthetic corpus, else {DATA_LABEL})")
    parser.add_argument("--group-column", default="recorder",
                        help="column no two splits share (default recorder); 'none' for stratified ungrouped splits")
    parser.add_argument("--split", choices=("grouped", "group_kfold", "logo", "kfold"), default=None,
                        help="grouped: one train/val/test split by group (default); group_kfold/logo/kfold: "
                             "cross-validation (with --folds)")
    parser.add_argument("--folds", default="0", help="cross-validation folds to run: 'all' or e.g. 0,1,2 (default 0)")
    parser.add_argument("--out", default=None,
                        help=f"results folder (default $REPROGRAM_OUT/{name} or ~/gibbon-reprogram/{name})")
    parser.add_argument("--seeds", type=int, default=seeds, help=f"training seeds 0..N-1 (default {seeds})")
    parser.add_argument("--backbone", action="append", default=[], metavar="[ROLE=]NAME",
                        help=f"replace the backbones of a role ({', '.join(roles)}); repeat to compare several")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every run, e.g. --set training.epochs=30 (repeatable)")
    parser.add_argument("--jobs", type=int, default=jobs,
                        help=f"parallel run processes, each with cores/jobs threads (default {jobs}); 0 runs "
                             "in this process (debugging, tests)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny random backbones, a small synthetic corpus, 1 s clips, 1 epoch (for tests)")
    parser.add_argument("--only", action="append", default=[], metavar="WORD[,WORD]",
                        help="run only the systems whose label (method:transform+mapper@role) contains a word")
    parser.add_argument("--no-figures", action="store_true", help="write results only, no figures")
    from reprogram.experiment.runner import add_cache_arguments

    add_cache_arguments(parser)


def resolve_backbones(values: list[str], roles: tuple[str, ...], tiny: bool) -> dict[str, list[str]]:
    """Backbones per role: defaults (or tiny twins), replaced by ``--backbone [ROLE=]NAME`` values."""
    chosen = {r: [(TINY_BACKBONES if tiny else BACKBONES)[r]] for r in roles if r != NO_ROLE}
    given: dict[str, list[str]] = {}
    for value in values:
        role, _, backbone = value.rpartition("=")
        if not role:
            playable = [r for r in roles if r != NO_ROLE]
            if len(playable) != 1:
                raise ValueError(f"--backbone {value!r}: this suite has roles {playable}; write ROLE=NAME")
            role = playable[0]
        if role not in chosen:
            raise ValueError(f"--backbone {value!r}: unknown role {role!r}; use one of {sorted(chosen)}")
        given.setdefault(role, []).append(backbone)
    return {**chosen, **given}


def data_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides for the data, task and split of a command line."""
    group = None if str(args.group_column).lower() in ("none", "") else args.group_column
    label = args.label_column or (SYNTHETIC_LABEL if args.data is None else DATA_LABEL)
    kind = args.split or ("grouped" if group else "kfold")
    out: dict[str, Any] = {
        "data.path": args.data if args.data is not None else "synthetic",
        "task.label_column": label,
        "task.group_column": group,
        "split.kind": kind,
    }
    if args.data is not None:
        path = Path(args.data).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"--data {args.data}: no such file or folder; give a manifest CSV, folder or "
                                    "Raven table (or omit --data for the synthetic corpus)")
        out["data.path"] = str(path.resolve())
    if args.tiny:
        out.update(TINY_SET)
        if args.data is None:
            out["data.synthetic"] = dict(TINY_SYNTHETIC)
    return out


def sweep_spec(name: str, systems: list[System], args: argparse.Namespace, base: dict | None = None) -> dict:
    """The sweep mapping of ``systems`` under a command line's choices.

    Args:
        name: the experiment name (part of every run id: keep it stable so re-runs resume).
        systems: the compared systems.
        args: parsed :func:`add_arguments` options.
        base: dotted overrides of the suite itself (epochs, batch size ...), applied before ``--set``.
    """
    if args.seeds < 1:
        raise ValueError(f"--seeds {args.seeds}: use at least 1 seed")
    backbones = resolve_backbones(args.backbone, tuple(sorted({s.role for s in systems})), args.tiny)
    systems = select(systems, args.only)
    user = parse_overrides(args.overrides)
    methods = []
    for s in systems:
        entry: dict[str, Any] = {"name": s.method, "options": dict(s.options)}
        entry["budgets"] = list(s.tiny_budgets if args.tiny else s.budgets)
        if s.role != NO_ROLE:
            entry["backbones"] = backbones[s.role]
        overrides = dict(s.overrides)
        if s.role != NO_ROLE and backbones[s.role] != [BACKBONES[s.role]]:
            overrides.pop("backbone.options", None)  # options of the default backbone, not of its replacement
        overrides.update({**(TINY_SET if args.tiny else {}), **user})  # --tiny and --set beat a system's own
        if overrides:
            entry["set"] = overrides
        methods.append(entry)
    settings = {**(base or {}), **data_settings(args), **user}
    folds: Any = "all" if args.folds == "all" else [int(f) for f in str(args.folds).split(",") if f.strip()]
    if settings["split.kind"] == "grouped":
        folds = [0]
    return {"name": name, "set": settings, "methods": methods, "seeds": list(range(args.seeds)), "folds": folds}


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["training.lr=3e-4", ...]`` -> ``{"training.lr": "3e-4"}`` (values are typed by the config later)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r} has no KEY=VALUE form; write e.g. --set training.epochs=30")
        out[key.strip()] = value.strip()
    return out


def out_dir(name: str, args: argparse.Namespace) -> Path:
    """The results folder of a command line: ``--out``, else :func:`default_out` of the suite's name, suffixed
    with the dataset (``demo-danum-gibbon-manifest`` for ``--data danum-gibbon/manifest.csv``) and ``-tiny``."""
    if args.out:
        return Path(args.out).expanduser()
    if args.data is not None:  # one folder per dataset, so summaries and figures of two datasets never mix
        path = Path(args.data).expanduser().resolve()
        name += "-" + "-".join(p for p in (path.parent.name, path.stem) if p) if path.is_file() else "-" + path.name
    return default_out(name + ("-tiny" if args.tiny else ""))


def run_suite(
    spec: dict,
    out: str | Path,
    jobs: int = 1,
    figures: bool = True,
    log=print,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    prefix_cache: bool = True,
) -> dict:
    """Run the missing runs of ``spec`` into ``out`` and draw the figures.

    Args:
        spec: a sweep mapping (:func:`sweep_spec`).
        out: the results folder.
        jobs: local sweep processes; 0 runs every job in this process, one after another.
        figures: draw figures and tables into ``out/figures`` (as ``reprogram figures out``).
        log: where progress lines go.
        cache_dir: the cache of decoded clips and frozen features (``None``: ``$REPROGRAM_CACHE`` or
            ``~/.cache/gibbon-reprogram``).
        use_cache: ``False`` computes everything in memory in every run (``--no-cache``).
        prefix_cache: ``False`` runs the frozen prefix of prompt / top-layer LoRA / probes every step.

    Returns:
        The sweep summary (``runs``, ``skipped``, ``completed``, ``failed``) plus ``figures`` (paths written)
        and ``wall_time_s`` of this call.
    """
    from reprogram.experiment.sweep import run_sweep

    start = time.perf_counter()
    if jobs < 0:
        raise ValueError(f"--jobs {jobs}: use 0 (in this process) or more")
    if jobs:
        summary = run_sweep(spec, out, jobs=jobs, log=log, cache_dir=cache_dir, use_cache=use_cache,
                            prefix_cache=prefix_cache)
    else:
        summary = _run_here(spec, Path(out), log, (cache_dir, use_cache, prefix_cache))
    paths: list[Path] = []
    if figures and len(summary["failed"]) < len(summary["runs"]):
        from figures.cli import make_figures

        paths = make_figures(out)
    return {**summary, "figures": paths, "wall_time_s": time.perf_counter() - start}


def _run_here(spec: dict, out: Path, log, cache: tuple) -> dict:
    """The sweep's grid run in this process (same expansion, skip and resume; no process start-up cost);
    ``cache`` is ``(cache_dir, use_cache, prefix_cache)``."""
    from reprogram.experiment.config import run_id
    from reprogram.experiment.results import atomic_write_text
    from reprogram.experiment.runner import run_experiment
    from reprogram.experiment.sweep import expand, pending

    configs = expand(spec)
    out.mkdir(parents=True, exist_ok=True)
    ids = [run_id(c) for c in configs]
    atomic_write_text(out / "sweep.txt", "\n".join(ids) + "\n")
    todo = pending(configs, out)
    log(f"sweep: {len(configs)} runs, {len(configs) - len(todo)} already complete, {len(todo)} to run (in process)")
    failed: dict[str, str] = {}
    for n, c in enumerate(todo, 1):
        t0 = time.perf_counter()
        try:
            run_experiment(c, out, progress=False, cache_dir=cache[0], use_cache=cache[1], prefix_cache=cache[2])
            log(f"[{n}/{len(todo)}] {run_id(c)} {c.method.name} {c.backbone.name} ({time.perf_counter() - t0:.0f} s)")
        except Exception as e:  # one failed run must not stop the others; it is reported
            failed[run_id(c)] = "".join(traceback.format_exception_only(type(e), e))
            log(f"FAILED {run_id(c)} {c.method.name} {c.backbone.name}: {failed[run_id(c)].strip()}")
    done = {run_id(c) for c in todo}
    return {
        "runs": ids,
        "skipped": [i for i in ids if i not in done],
        "completed": [i for i in done if i not in failed],
        "failed": failed,
    }


def summary_markdown(title: str, results: list[dict], summary: dict, out: Path, data: str) -> str:
    """A suite's summary: setting, wall time and the results table (mean with a bootstrap 95% CI: seeds are
    averaged within each fold, then folds are resampled when there are at least 5, test clips otherwise; trainable
    parameters; paired comparisons against the reference)."""
    from figures.report import protocol_lines
    from figures.tables import table_rows, to_markdown

    first = min(results, key=lambda r: (r["seed"], r["fold"]))
    split = first["split"]
    sizes = ", ".join(f"{k} {v}" for k, v in split["sizes"].items())
    groups = ", ".join(f"{k}: {v}" for k, v in split["groups"].items())
    lines = [
        f"# {title}: summary",
        "",
        f"- data: `{data}`; task: `{first['task']}` ({len(first['classes'])} classes: {', '.join(first['classes'])})",
        f"- split: {split['name']} (fold {first['fold']}: {sizes} clips; {groups})",
        f"- seeds: {sorted({r['seed'] for r in results})}; folds: {sorted({r['fold'] for r in results})}; "
        f"runs: {len(summary['runs'])} ({len(summary['skipped'])} reused, {len(summary['completed'])} run now, "
        f"{len(summary['failed'])} failed)",
        f"- wall time of this invocation: {summary['wall_time_s']:.0f} s; compute summed over runs: "
        f"{sum(r['wall_time_s'] for r in results):.0f} s",
        f"- results: `{out / 'runs'}`; figures: `{out / 'figures'}`",
        "",
        to_markdown(tables := table_rows(results), "balanced_accuracy", "test"),
        *protocol_lines(results, tables),
    ]
    if summary["failed"]:
        lines += ["## Failed runs", ""] + [f"- `{k}`: {v.strip()}" for k, v in summary["failed"].items()]
    return "\n".join(lines) + "\n"


def run_command(name: str, systems: list[System], args: argparse.Namespace, base: dict | None = None,
                title: str | None = None) -> int:
    """Run a suite from parsed :func:`add_arguments` options: sweep, figures, ``DIR/summary.md`` printed.

    Returns:
        The exit status: 0 when every run completed, 1 otherwise.
    """
    import sys

    from reprogram.experiment.results import atomic_write_text, read_results

    out = out_dir(name, args)
    print(f"{title or name}: results folder {out}", flush=True)
    spec = sweep_spec(name, systems, args, base=base)
    summary = run_suite(spec, out, jobs=args.jobs, figures=not args.no_figures, cache_dir=args.cache_dir,
                        use_cache=args.cache, prefix_cache=args.prefix_cache)
    ours = set(summary["runs"])
    results = [r for r in read_results(out) if r["run_id"] in ours]
    if not results:
        print("every run failed:\n" + "\n".join(summary["failed"].values()), file=sys.stderr)
        return 1
    text = summary_markdown(title or name, results, summary, out, args.data or "synthetic corpus (embedded)")
    atomic_write_text(out / "summary.md", text)
    print(text)
    print(f"summary: {out / 'summary.md'}")
    if summary["figures"]:
        print(f"figures ({len(summary['figures'])} files): {out / 'figures'}")
    return 1 if summary["failed"] else 0


def script_main(name: str, systems: list[System], argv, doc: str, base: dict | None = None, seeds: int = 2) -> int:
    """``main(argv)`` of an experiment script: parse the shared command line and run the suite."""
    parser = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, name, tuple(sorted({s.role for s in systems})), seeds=seeds)
    return run_command(name, systems, parser.parse_args(argv), base=base)
