"""Margins of the suite's "it learns" tests over seeds and thread counts: the evidence behind their thresholds.

``python -m tests.margins [--seeds 5] [--threads 1 2] [--only pad|probe|selection]`` reruns each such test's
computation with seeds ``0 .. seeds-1`` on each thread count (the process pinned to that many cores, so the
training loop's ``configure_threads`` follows, as in ``.ci/run``'s single-thread pass) and prints one line per run
and the smallest margin to the test's threshold. A margin that stays well above 0 here, at 1 and 2 threads
(different kernels and summation orders), is what makes the threshold hold on another CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))  # the suite's helpers (matrix_checks), as pytest does
CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def pin(threads: int) -> None:
    """Run this process (torch and the training loop's thread plan) on ``threads`` of its cores."""
    cores = CORES
    if cores and len(cores) < threads:
        raise SystemExit(f"--threads {threads}: only {len(cores)} cores are usable here")
    if cores:
        os.sched_setaffinity(0, cores[:threads])
    torch.set_num_threads(threads)


def pad_margin(seed: int, root: Path) -> tuple[float, str]:
    """tests/test_reprogram_matrix.py: the final loss must be below 0.5 x the first; margin = 0.5 - ratio."""
    from tests.test_reprogram_matrix import pad_linear_losses

    losses = pad_linear_losses(root / "corpus", seed=seed)
    ratio = losses[-1] / losses[0]
    return 0.5 - ratio, f"loss {losses[0]:.3f} -> {losses[-1]:.3f} (ratio {ratio:.3f}, asked < 0.5)"


def probe_margin(seed: int, root: Path) -> tuple[float, str]:
    """tests/test_probes.py weighted-sum probe: val balanced accuracy > 0.8 and layer 1 weighted most."""
    from reprogram.methods.probes import train_weighted_sum_probe
    from tests.test_probes import PARTS, layered

    x, y = layered(informative=1, seed=seed)
    result = train_weighted_sum_probe(torch.as_tensor(x), y, *PARTS, epochs=150, lr=0.05, seed=seed)
    top = int(np.argmax(result.layer_weights))
    margin = result.val_balanced_accuracy - 0.8 if top == 1 else -1.0
    return margin, f"val bacc {result.val_balanced_accuracy:.3f} (asked > 0.8), heaviest layer {top} (asked 1)"


def selection_margin(seed: int, root: Path) -> tuple[float, str]:
    """tests/test_train.py selection: best test epoch beats the val-selected epoch on test by more than 0.2."""
    from tests.test_train import selection_run

    best, val_scores, test_acc, selected = selection_run(root, seed=seed)
    ok = best == int(np.argmax(val_scores)) and abs(selected - test_acc[best]) < 1e-9
    gap = max(test_acc) - test_acc[best]
    return (gap - 0.2 if ok else -1.0), f"selected epoch {best}, test gap {gap:.3f} (asked > 0.2)"


CHECKS = {"pad": pad_margin, "probe": probe_margin, "selection": selection_margin}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", choices=sorted(CHECKS), nargs="+", default=sorted(CHECKS))
    args = parser.parse_args()
    for name in args.only:
        margins = []
        for threads in args.threads:
            pin(threads)
            for seed in range(args.seeds):
                with tempfile.TemporaryDirectory() as tmp:
                    margin, line = CHECKS[name](seed, Path(tmp))
                margins.append(margin)
                print(f"{name} threads={threads} seed={seed}: {line}; margin {margin:+.3f}", flush=True)
        print(f"{name}: min margin {min(margins):+.3f} over seeds 0-{args.seeds - 1} x threads {args.threads}",
              flush=True)


if __name__ == "__main__":
    main()
