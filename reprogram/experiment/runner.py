"""``reprogram run CONFIG [--set k=v ...] --out DIR [--test-data PATH] [--cache-dir D | --no-cache]``: one experiment,
one result file.

A run (:func:`run_experiment`) only orchestrates; each step is another room's work:

1. resolve the config (:mod:`reprogram.experiment.config`; its run id is a hash of the full config);
2. read the table and split it (:mod:`reprogram.experiment.inputs` over :mod:`reprogram.data`), fingerprint the
   data; a completed run is skipped (after checking that its data are unchanged: else it raises with the fix);
3. build the method (:mod:`reprogram.methods`), then map the decoded clips and build the datasets at its rate
   (the disk cache of :mod:`reprogram.runtime.cache`);
4. ``built.fit(context)``: the method's kind trains it with the one training loop (on a cached frozen prefix
   where it can, :mod:`reprogram.runtime.prefix`) or fits its classifier on features computed once, selects on
   validation and scores train / val / test (and ``external`` with ``--test-data``);
5. write ``DIR/runs/<run id>/result.json`` atomically (:mod:`reprogram.experiment.results`), next to
   ``config.yaml``, ``trainable.safetensors`` (selected trainable state), ``checkpoint/`` (per-epoch state to
   resume from) and, for programs, ``program.safetensors`` (an example input before and after training).

An interrupted run resumes from its last checkpoint. Under ``torchrun`` the ranks train data-parallel
(:mod:`reprogram.runtime.distributed`) and rank 0 writes and evaluates.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from reprogram.experiment import inputs
from reprogram.experiment.config import ExperimentConfig, load_config, run_id, save_config, to_dict
from reprogram.experiment.fingerprint import check_unchanged, data_fingerprint
from reprogram.experiment.results import (
    SCHEMA_VERSION,
    environment,
    existing_result,
    measure,
    run_dir,
    utc_now,
    write_result,
)
from reprogram.experiment.train import seed_everything
from reprogram.runtime.cache.store import cache_root

# --------------------------------------------------------------------------------------------------
# running


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | Path,
    progress: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    prefix_cache: bool = True,
) -> dict | None:
    """Run ``config`` unless ``DIR/runs/<run id>/result.json`` exists; return its result.

    Frozen work is cached on disk (content-addressed, :mod:`reprogram.runtime.cache`) and shared by every run, seed
    and fold: the table's clips decoded and resampled once per rate (memory-mapped), and the features of
    feature methods (probes, MFCC) computed once per table, backbone weights and options. The cache is a
    runtime choice, not part of the config, so it never changes a run id or a result.

    Args:
        config: the fully resolved experiment config.
        out_dir: the results folder (``DIR``).
        progress: show tqdm progress (``None``: only on a terminal).
        cache_dir: the cache folder (``None``: ``$REPROGRAM_CACHE`` or ``~/.cache/gibbon-reprogram``).
        use_cache: ``False`` keeps everything in memory for this run only (nothing written to the cache).
        prefix_cache: methods that train above a frozen prefix (prompts, LoRA on the top layers, probes) train
            on its activations computed once (:mod:`reprogram.runtime.prefix`); ``False`` runs the frozen part every
            step
            (same metrics; for timing the saving).

    Under ``torchrun`` every rank trains its shard of each global batch (:mod:`reprogram.runtime.distributed`); rank 0
    alone writes ``config.yaml``, the safetensors and ``result.json`` and evaluates, and the other ranks return
    ``None``.

    Raises:
        reprogram.experiment.results.CorruptResultError: a result file exists for this run but cannot be read (it is
            never overwritten).
    """
    rid = run_id(config)
    provenance = environment()  # the code as this run starts: a checkout changing mid-run must not relabel it
    from reprogram.methods import NO_BACKBONE, RunContext, build
    from reprogram.runtime import distributed

    # under torchrun every rank trains its shard; rank 0 alone writes files and evaluates (the others wait at the
    # session's closing barrier); a plain process is rank 0 of a world of 1
    with distributed.session(config.training.device) as env, measure(config.training.device) as usage:
        seed_everything(config.seed)
        # the data are read and checked before anything is written, so a bad path leaves no empty run folder
        table = inputs.load_data(config.data.path, config)
        external = inputs.external_table(config, table.classes) if config.data.test_path else None
        fingerprint = data_fingerprint(table, external)
        done = existing_result(out_dir, rid)
        if done is not None:
            check_unchanged(done, fingerprint, config, out_dir)
            return done
        split = inputs.make_split(table, config)
        classes = table.classes
        built = build(config, classes)
        if not built.kind.parallel and not env.is_main:
            return None  # e.g. feature methods: nothing to train in parallel, rank 0 fits alone
        folder = run_dir(out_dir, rid)
        if env.is_main:
            folder.mkdir(parents=True, exist_ok=True)
            save_config(config, folder / "config.yaml")
        disk = cache_root(cache_dir) if use_cache else None
        ready = inputs.prepare(table, external, split, built.sample_rate, config, classes, disk)
        context = RunContext(
            config, classes, _positive(config, classes), table, ready.rows, ready.parts, ready.caches,
            ready.eval_sets, ready.full, folder, cache_dir=disk, progress=progress, is_main=env.is_main,
            distributed=env.enabled, prefix_cache=prefix_cache,
        )
        fitted = built.fit(context)  # the method's kind trains or fits it and scores every part
    if not env.is_main:
        return None
    result = {
        "schema": SCHEMA_VERSION,
        "run_id": rid,
        "name": config.name,
        "method": config.method.name,
        "budget": config.method.budget,
        "backbone": None if config.method.name in NO_BACKBONE else config.backbone.name,
        "modality": built.modality,
        "task": config.task.label_column,
        "detection": config.task.detection,
        "seed": config.seed,
        "fold": config.split.fold,
        "classes": classes,
        "sample_rate": built.sample_rate,
        "split": {"name": split.name, "sizes": {n: len(t) for n, t in ready.parts.items()},
                  "groups": dict(split.meta)},
        "data_fingerprint": fingerprint,
        "data_report": ready.report,
        "config": to_dict(config),
        **fitted,
        "wall_time_s": usage["wall_time_s"],
        "peak_memory_mb": usage["peak_memory_mb"],
        "environment": provenance,
        "created": utc_now(),
    }
    write_result(out_dir, result)
    return result


def _positive(config: ExperimentConfig, classes: list[str]) -> int | None:
    if not config.task.detection:
        return None
    if config.task.positive_label not in classes:
        raise ValueError(
            f"task.positive_label={config.task.positive_label!r} is not a class of the data "
            f"({classes}); set it to one of them"
        )
    return classes.index(config.task.positive_label)


# --------------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``reprogram run``."""
    parser.add_argument("config", help="experiment YAML (see experiments/configs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.lr=3e-4 (repeatable)",
    )
    parser.add_argument("--out", required=True, help="results folder; the run writes DIR/runs/<run id>/")
    parser.add_argument(
        "--test-data",
        default=None,
        metavar="PATH",
        help="external test set (train and select on the config's data, also report on this)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress bars (default: only on a terminal)",
    )
    add_cache_arguments(parser)


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir DIR``, ``--no-cache`` and ``--no-prefix-cache`` (``reprogram run``, ``sweep`` and the suites)."""
    parser.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="cache of decoded clips and frozen features, shared by every run, seed and fold "
        "(default: $REPROGRAM_CACHE or ~/.cache/gibbon-reprogram; see `reprogram cache info`)",
    )
    parser.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--no-cache: decode and compute everything in memory, write nothing to the cache",
    )
    parser.add_argument(
        "--prefix-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--no-prefix-cache: run the frozen layers below a prompt / top-layer LoRA / probe every step "
        "instead of caching their activations (same metrics; to time the saving)",
    )


def resolve(config_path: str | None, overrides: Sequence[str], test_data: str | None = None) -> ExperimentConfig:
    """The full config of a command line: the YAML, then ``--set`` overrides, then ``--test-data``."""
    overrides = list(overrides) + ([f"data.test_path={test_data}"] if test_data else [])
    return load_config(config_path, overrides)


def summary(result: dict) -> str:
    """One line about a run, naming the split its score is on (test, or val when the split has no test part)."""
    part = "test" if "test" in result["metrics"] else "val"
    return (
        f"run {result['run_id']}: {result['method']} on {result['backbone'] or 'no backbone'} "
        f"{part} balanced accuracy {result['metrics'][part]['balanced_accuracy']:.3f} "
        f"({result['params']['trainable']} trainable parameters, {result['wall_time_s']:.1f} s)"
    )


def run(args: argparse.Namespace) -> int:
    """``reprogram run``: run one experiment and print where its result is."""
    config = resolve(args.config, args.overrides, args.test_data)
    result = run_experiment(config, args.out, progress=args.progress, cache_dir=args.cache_dir,
                            use_cache=args.cache, prefix_cache=args.prefix_cache)
    if result is None:  # a rank other than 0 under torchrun: rank 0 reports
        return 0
    print(summary(result))
    print(f"result: {run_dir(args.out, result['run_id']) / 'result.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``reprogram run`` with ``argv``."""
    parser = argparse.ArgumentParser(prog="reprogram run")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
