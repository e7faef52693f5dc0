"""``reprogram sweep SWEEP.yaml --out DIR [--executor local|slurm] [--jobs N]``: a resumable grid of runs.

A sweep file names a base config and a grid over methods x backbones x budgets x seeds x folds::

    name: compare
    base: speech.yaml              # a config file, relative to the sweep file (optional)
    config: {training: {epochs: 3}} # inline config merged over the base (optional)
    set: {data.clip_seconds: 4}    # dotted overrides for every run (optional)
    methods:                       # each: method keys, plus its own backbones / budgets / set (optional)
      - {name: program, options: {transform: pad}, backbones: ["offline:efficientnet_lite0"], budgets: [8, 16]}
      - {name: lora, budgets: [4, 8]}
      - {name: mfcc}
    backbones: ["offline:whisper_tiny_en"]   # default for methods without their own
    budgets: [null]                          # default for methods without their own
    seeds: [0, 1]
    folds: all                     # or a list; "all" = every fold of the config's split
    slurm: {timeout_min: 120, gpus_per_node: 1}   # submitit parameters for --executor slurm

Every grid point is a full config whose run id is the hash of that config. Runs whose ``result.json``
exists are skipped, interrupted runs resume from their checkpoint, so a sweep killed part-way and started
again finishes with exactly the runs it would have had. The local executor runs each job in a fresh spawned
process (so its peak memory is its own); the SLURM executor submits through submitit.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from reprogram.experiment.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    read_yaml,
    run_id,
)
from reprogram.experiment.results import atomic_write_text, existing_result
from reprogram.methods import NO_BACKBONE

SWEEP_KEYS = ("name", "base", "config", "set", "methods", "backbones", "budgets", "seeds", "folds", "slurm")
METHOD_GRID_KEYS = ("backbones", "budgets", "set")
EXECUTORS = ("local", "slurm", "submitit-local", "submitit-debug")


def _check_keys(mapping: dict, allowed: Sequence[str], where: str) -> None:
    import difflib

    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown key {key!r} in {where}.{hint} Valid keys: {', '.join(allowed)}")


def _as_list(value: Any, key: str) -> list:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"sweep key {key!r} must be a non-empty list, got {value!r}")
    return value


def load_sweep(path: str | Path) -> dict:
    """Read a sweep file; ``base`` is resolved relative to it."""
    spec = read_yaml(path)
    if "base" in spec and spec["base"] is not None:
        spec["base"] = str((Path(path).parent / spec["base"]).resolve())
    return spec


def expand(spec: dict) -> list[ExperimentConfig]:
    """Every config of the sweep ``spec`` (duplicates removed, in grid order).

    Args:
        spec: a sweep mapping as in the module docstring (``base`` already an absolute path, if given).
    """
    _check_keys(spec, SWEEP_KEYS, "the sweep file")
    base = read_yaml(spec["base"]) if spec.get("base") else {}
    base = _merge(base, spec.get("config") or {})
    if spec.get("name"):
        base["name"] = spec["name"]
    base = apply_overrides(base, spec.get("set") or {})
    methods = _as_list(spec.get("methods") or [base.get("method", {"name": "linear_probe"})], "methods")
    seeds = _as_list(spec.get("seeds", [base.get("seed", 0)]), "seeds")
    configs: dict[str, ExperimentConfig] = {}
    for i, entry in enumerate(methods):
        entry = {"name": entry} if isinstance(entry, str) else dict(entry)
        grid = {k: entry.pop(k) for k in METHOD_GRID_KEYS if k in entry}
        backbones = _as_list(grid.get("backbones", spec.get("backbones", [None])), f"methods[{i}].backbones")
        if entry.get("name") in NO_BACKBONE:  # one point, whatever the backbone grid: the run id ignores it
            backbones = [NO_BACKBONE[entry["name"]]]
        budgets = _as_list(grid.get("budgets", spec.get("budgets", [entry.get("budget")])), f"methods[{i}].budgets")
        for backbone in backbones:
            for budget in budgets:
                point = _merge(base, {"method": entry})
                point["method"]["budget"] = budget
                if backbone is not None:
                    point = _merge(point, {"backbone": {"name": backbone}})
                point = apply_overrides(point, grid.get("set") or {})
                for seed in seeds:
                    for fold in _folds(spec.get("folds"), point):
                        cfg = config_from_dict(
                            apply_overrides(point, {"seed": seed, "split.fold": fold}), f"sweep point methods[{i}]"
                        )
                        configs.setdefault(run_id(cfg), cfg)
    return list(configs.values())


def _merge(a: dict, b: dict) -> dict:
    """Deep merge of plain mappings (``b`` wins); new objects, inputs untouched."""
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _folds(folds: Any, point: dict) -> list[int]:
    if folds is None:
        return [point.get("split", {}).get("fold", 0)]
    if folds != "all":
        return [int(f) for f in _as_list(folds, "folds")]
    cfg = config_from_dict(point, "sweep")
    if cfg.split.kind == "grouped":
        return [0]
    if cfg.split.kind in ("kfold", "group_kfold"):
        return list(range(cfg.split.n_folds))
    from reprogram.experiment.inputs import load_data  # leave-one-group-out: one fold per group of the data

    return list(range(len(set(load_data(cfg.data.path, cfg).group_values(cfg.task.group_column)))))


# --------------------------------------------------------------------------------------------------
# executing


def run_one(
    config: dict,
    out_dir: str,
    threads: int | None = None,
    cache_dir: str | None = None,
    use_cache: bool = True,
    prefix_cache: bool = True,
) -> str:
    """Run one config (a dict) in this process; the job function of every executor. Returns its run id.

    ``cache_dir`` / ``use_cache`` / ``prefix_cache`` go to :func:`reprogram.experiment.runner.run_experiment`
    (``None``: the
    default cache).
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    from reprogram.experiment.runner import run_experiment

    cfg = config_from_dict(config, "sweep job")
    run_experiment(cfg, out_dir, progress=False, cache_dir=cache_dir, use_cache=use_cache, prefix_cache=prefix_cache)
    return run_id(cfg)


def pending(configs: Sequence[ExperimentConfig], out_dir: str | Path) -> list[ExperimentConfig]:
    """The configs without a result in ``out_dir`` (a corrupt result file raises, naming its path)."""
    return [c for c in configs if existing_result(out_dir, run_id(c)) is None]


def run_sweep(
    spec: dict | str | Path,
    out_dir: str | Path,
    executor: str = "local",
    jobs: int = 1,
    log=print,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    prefix_cache: bool = True,
) -> dict:
    """Expand a sweep and run its missing runs.

    Args:
        spec: a sweep mapping or the path of a sweep YAML file.
        out_dir: the results folder (``DIR``).
        executor: ``local`` (spawned processes), ``slurm`` (submitit on SLURM), ``submitit-local`` or
            ``submitit-debug`` (submitit's local and in-process executors, for testing the SLURM path).
        jobs: parallel jobs of the local executor (each gets ``cpu_count // jobs`` torch threads).
        log: where progress lines go.
        cache_dir: the cache of decoded clips and frozen features every run shares (``None``:
            ``$REPROGRAM_CACHE`` or ``~/.cache/gibbon-reprogram``); on SLURM it must be on a shared file system.
        use_cache: ``False``: every run computes everything in memory.
        prefix_cache: ``False``: methods above a frozen prefix run it every step (``--no-prefix-cache``).

    Returns:
        ``{"runs": all run ids, "skipped": already complete, "completed": run now, "failed": {id: error}}``.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r} unknown; use one of {EXECUTORS}")
    if jobs < 1:
        raise ValueError(f"--jobs {jobs}: use at least 1")
    if jobs > 1:
        from reprogram.runtime.distributed import DistEnv

        if DistEnv.from_environ().enabled:
            raise ValueError(
                f"--jobs {jobs} under torchrun would start {jobs} parallel runs inside every rank of one data-parallel "
                "job; use --jobs 1 under torchrun (each run is then trained data-parallel), or run the sweep "
                "without torchrun to run several one-process runs side by side"
            )
    spec = load_sweep(spec) if not isinstance(spec, dict) else spec
    configs = expand(spec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = [run_id(c) for c in configs]
    atomic_write_text(out / "sweep.txt", "\n".join(ids) + "\n")
    todo = pending(configs, out)
    cache = (None if cache_dir is None else str(cache_dir), use_cache, prefix_cache)
    log(f"sweep: {len(configs)} runs, {len(configs) - len(todo)} already complete, {len(todo)} to run ({executor})")
    if executor == "local":
        failed = _run_local(todo, out, jobs, log, cache)
    else:
        failed = _run_submitit(todo, out, executor, spec.get("slurm") or {}, log, cache)
    done = [run_id(c) for c in todo if run_id(c) not in failed]
    for rid, error in failed.items():
        log(f"FAILED {rid}: {error.strip().splitlines()[-1]}")
    return {
        "runs": ids,
        "skipped": [i for i in ids if i not in {run_id(c) for c in todo}],
        "completed": done,
        "failed": failed,
    }


def _describe(c: ExperimentConfig) -> str:
    budget = "" if c.method.budget is None else f" budget={c.method.budget}"
    on = "" if c.method.name in NO_BACKBONE else f" on {c.backbone.name}"
    return f"{c.method.name}{budget}{on} seed={c.seed} fold={c.split.fold}"


def _run_local(
    todo: list[ExperimentConfig], out: Path, jobs: int, log, cache: tuple = (None, True, True)
) -> dict[str, str]:
    failed: dict[str, str] = {}
    if not todo:
        return failed
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_one, _plain(c), str(out), threads, *cache): c for c in todo}
        for n, future in enumerate(as_completed(futures), 1):
            c = futures[future]
            try:
                future.result()
                log(f"[{n}/{len(todo)}] {run_id(c)} {_describe(c)} ({time.perf_counter() - start:.0f} s)")
            except Exception as e:  # one failed run must not stop the others; it is reported
                failed[run_id(c)] = "".join(traceback.format_exception_only(type(e), e))
    return failed


def _plain(c: ExperimentConfig) -> dict:
    from reprogram.experiment.config import to_dict

    return to_dict(c)


def _run_submitit(
    todo: list[ExperimentConfig], out: Path, executor: str, slurm: dict, log, cache: tuple = (None, True, True)
) -> dict[str, str]:
    import submitit

    failed: dict[str, str] = {}
    if not todo:
        return failed
    folder = out / "submitit" / "%j"
    if executor == "slurm":
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        ex.update_parameters(**{"name": "reprogram", **slurm})
    else:
        ex = submitit.AutoExecutor(folder=folder, cluster="local" if executor == "submitit-local" else "debug")
        ex.update_parameters(timeout_min=int(slurm.get("timeout_min", 60)))
    n = len(todo)
    jobs = ex.map_array(run_one, [_plain(c) for c in todo], [str(out)] * n, [None] * n, *([c] * n for c in cache))
    log(f"submitted {len(jobs)} jobs ({', '.join(j.job_id for j in jobs[:3])}{'...' if len(jobs) > 3 else ''})")
    for n, (job, c) in enumerate(zip(jobs, todo, strict=True), 1):
        try:
            job.result()
            log(f"[{n}/{len(todo)}] {run_id(c)} {_describe(c)}")
        except Exception as e:  # reported, not raised: the other jobs' results stand
            failed[run_id(c)] = "".join(traceback.format_exception_only(type(e), e))
    return failed


# --------------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``reprogram sweep``."""
    parser.add_argument("sweep", help="sweep YAML (see experiments/configs/sweep_example.yaml)")
    parser.add_argument("--out", required=True, help="results folder; each run writes DIR/runs/<run id>/")
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local processes, SLURM through submitit, or submitit's local/debug executors",
    )
    parser.add_argument("--jobs", type=int, default=1, help="parallel local jobs (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and which are complete, run nothing")
    from reprogram.experiment.runner import add_cache_arguments

    add_cache_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """``reprogram sweep``: run the missing runs of a sweep; exit status 1 if any failed."""
    if args.dry_run:
        configs = expand(load_sweep(args.sweep))
        todo = {run_id(c) for c in pending(configs, args.out)} if Path(args.out).is_dir() else None
        for c in configs:
            state = "todo" if todo is None or run_id(c) in todo else "done"
            print(f"{run_id(c)} {state:4} {_describe(c)}")
        return 0
    summary = run_sweep(args.sweep, args.out, executor=args.executor, jobs=args.jobs, cache_dir=args.cache_dir,
                        use_cache=args.cache, prefix_cache=args.prefix_cache)
    print(
        f"sweep: {len(summary['completed'])} run now, {len(summary['skipped'])} skipped, "
        f"{len(summary['failed'])} failed; results in {Path(args.out) / 'runs'}"
    )
    return 1 if summary["failed"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``reprogram sweep`` with ``argv``."""
    parser = argparse.ArgumentParser(prog="reprogram sweep")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
