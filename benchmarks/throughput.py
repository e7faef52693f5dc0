"""Issue 7 (a): training throughput of each method's real training path vs the backbone's bare forward + backward.

Method path (what ``reprogram run`` trains): the runner's data helpers (``load_data``, ``make_split``, the
memory-mapped waveform cache of every clip, a random-crop ``WaveformDataset`` of the training split), the loader
of :func:`reprogram.runtime.threads.make_loader`, the model built by :func:`reprogram.methods.build` from an
``ExperimentConfig`` (transform + backbone + mapper/head), cross-entropy, backward, gradient clipping, AdamW and
the warm-up/cosine schedule, step for step as :func:`reprogram.experiment.train.train` runs them. As in the runner,
methods
that train above a frozen prefix (prompt tuning: above Whisper's front end and conv stem) train on its cached
activations (:mod:`reprogram.runtime.prefix`; the one-off computation is untimed and printed); ``--no-prefix-cache``
measures them from the waveform, as ``reprogram run --no-prefix-cache`` trains them.

Bare path: the same backbone object (PEFT methods: with their adapters/prompts attached) on ready-made inputs of
its own input shape (the method's transform applied once to a real batch, detached: images ``(B, 3, H, W)``,
frames ``(B, 3, T, H, W)``, waveforms ``(B, N)`` for Whisper, whose forward takes waveforms), forward + backward
of the sum of the output the method reads (logits or pooled features); the gradient goes to the input for
programs and to the adapted parameters for PEFT (reported per row). No data loading, head, loss or optimizer.
The bare path always runs the whole backbone from its input, so a method on cached activations can exceed 1.

Ratio = method clips/s / bare clips/s (goal >= 0.95). The method step is split into sections timed with
``time.perf_counter`` (forward hooks on the model, its transform, the backbone's front end and the mapper/head;
the backbone's section is the model's forward minus those three; CPU execution is synchronous, so the wall
sections are exact and add up to the step): data wait, transform, front end, backbone, mapper, loss/other,
backward, optimizer (zero_grad, clipping, AdamW, schedule). Both paths use the thread plan of
:func:`reprogram.runtime.threads.configure_threads` for the loader's worker count. After one warm-up step each, method
and bare steps alternate, so load drift on a shared machine hits both alike. With ``--num-workers`` > 0 (the
runner's default is 0) the workers also prefetch during the bare steps, so the data wait is then a lower bound.

With --epoch (default) it also times one epoch of the real loop (train(), checkpoint written) and prints its
clips/s against the isolated step and the bare path. --device cuda synchronizes at every section boundary.

Usage: python benchmarks/throughput.py [--methods pad_linear,lora_qv_r8] [--batch 32] [--repeats 10] [--device cpu]
       [--synthetic] [--tiny] [--json out.json]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_models import finish, machine_line  # noqa: E402
from training_setup import (  # noqa: E402
    METHODS,
    add_common_arguments,
    cycled,
    data_choice,
    describe_prefix,
    experiment_config,
    limit_cores,
    parse_methods,
    sync,
    train_rows,
    training_inputs,
)

from reprogram.experiment.config import ExperimentConfig  # noqa: E402
from reprogram.experiment.train import epoch_seed, make_optimizer, seed_everything, unpack, warmup_cosine  # noqa: E402
from reprogram.methods import build  # noqa: E402
from reprogram.runtime.threads import configure_threads, make_loader  # noqa: E402

SECTIONS = ("data_wait", "transform", "frontend", "backbone", "mapper", "loss_other", "backward", "optimizer")


class SectionTimer:
    """Wall seconds spent inside named submodules, accumulated through forward pre-/post-hooks."""

    def __init__(self, parts: dict[str, nn.Module | None]) -> None:
        self.totals = {name: 0.0 for name in parts}
        self.handles = []
        for name, module in parts.items():
            if module is None:
                continue
            starts: list[float] = []  # a stack: a module may call itself nested
            self.handles.append(module.register_forward_pre_hook(lambda *_, s=starts: s.append(time.perf_counter())))
            self.handles.append(module.register_forward_hook(lambda *_, s=starts, n=name: self._add(n, s.pop())))

    def _add(self, name: str, start: float) -> None:
        self.totals[name] += time.perf_counter() - start

    def take(self) -> dict[str, float]:
        out, self.totals = self.totals, dict.fromkeys(self.totals, 0.0)
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def parts_of(model: nn.Module) -> dict[str, nn.Module | None]:
    """The whole model, its transform, the backbone's own front end (inside it) and the mapper/head.

    The backbone's section is the model's forward minus the other three, so it also covers the upper layers
    a cached-prefix model runs without calling the backbone's ``forward``.
    """
    frontend = getattr(model.backbone, "frontend", None) if hasattr(model, "backbone") else None
    return {
        "model": model,
        "transform": getattr(model, "transform", None) or getattr(model, "program", None),
        "frontend": frontend if isinstance(frontend, nn.Module) else None,
        "mapper": getattr(model, "mapper", None) or getattr(model, "head", None),
    }


def endless(loader, model: nn.Module, seed: int) -> Iterator:
    """Batches of epoch 0, 1, ... with the training loop's per-epoch seeding, ``set_epoch`` and ``start_epoch``."""
    epoch = 0
    while True:
        seed_everything(epoch_seed(seed, epoch))
        loader.set_epoch(epoch)
        if hasattr(model, "start_epoch"):
            model.start_epoch(loader, epoch)
        yield from loader
        epoch += 1


class MethodStepper:
    """Training steps of ``model`` exactly as :func:`reprogram.experiment.train.train` runs them; each call times one.

    Args:
        config: the experiment config (its ``training`` section: batch, optimizer, clipping, schedule, workers).
        model: the built model (``forward(wave (B, N)) -> (B, K)``).
        train_set: the random-crop training dataset.
    """

    def __init__(self, config: ExperimentConfig, model: nn.Module, train_set) -> None:
        tc = self.tc = config.training
        self.model = model
        seed_everything(epoch_seed(config.seed, -1))
        self.optimizer = make_optimizer(model, tc)
        steps_per_epoch = max(1, len(train_set) // tc.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(steps_per_epoch * tc.epochs, tc.warmup_fraction, tc.min_lr_ratio))
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=tc.label_smoothing)
        # drop_last: every timed step has the full batch, as the bare path does
        loader = make_loader(train_set, tc.batch_size, True, config.seed, tc.num_workers, tc.device, drop_last=True)
        configure_threads(loader.num_workers)  # as train() does
        self.workers = loader.num_workers
        self.timer = SectionTimer(parts_of(model))
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.batches = endless(loader, model, config.seed)

    def __call__(self) -> dict:
        """One step; returns its section seconds (they add up to ``"step"``) and ``"clips"``."""
        tc, model = self.tc, self.model
        model.train()
        t0 = time.perf_counter()
        batch = next(self.batches)
        t1 = time.perf_counter()
        wave, target = unpack(batch)
        wave, target = wave.to(tc.device, non_blocking=True), target.to(tc.device, non_blocking=True)
        self.timer.take()
        logits = model(wave)  # (B, K)
        loss = self.loss_fn(logits.float(), target)
        sync(tc.device)
        t2 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        loss.backward()
        sync(tc.device)
        t4 = time.perf_counter()
        if tc.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.trainable, tc.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        loss.item()
        t5 = time.perf_counter()
        inside = self.timer.take()
        return {
            "data_wait": t1 - t0, "transform": inside["transform"], "frontend": inside["frontend"],
            "backbone": inside["model"] - inside["transform"] - inside["frontend"] - inside["mapper"],
            "mapper": inside["mapper"], "loss_other": (t2 - t1) - inside["model"],
            "backward": t4 - t3, "optimizer": (t3 - t2) + (t5 - t4), "step": t5 - t0, "clips": len(target),
        }

    def close(self) -> None:
        self.timer.remove()


def bare_stepper(
    model: nn.Module, example: torch.Tensor, device: str = "cpu"
) -> tuple[Callable[[], float], str, tuple[int, ...]]:
    """Backbone forward + backward on ready-made inputs (the transform's output on a real batch, detached).

    Returns:
        ``(a function timing one step, where the gradient goes, the input shape)``.
    """
    backbone = model.backbone
    with torch.no_grad():
        program = parts_of(model)["transform"]
        example = example.to(device)
        x = (program(example) if program is not None else example).detach().clone()  # backbone input (B, ...)
    adapted = [p for p in backbone.parameters() if p.requires_grad]
    if not adapted:
        x.requires_grad_(True)
    target = "adapted parameters" if adapted else "input"
    reads_logits = getattr(getattr(model, "mapper", None), "input_kind", "features") == "logits"

    def step() -> float:
        model.train()  # the frozen backbone stays in eval; attached adapters follow, as in the method step
        t0 = time.perf_counter()
        out = backbone(x)
        (out.logits if reads_logits else out.features).float().sum().backward()
        x.grad = None
        for p in adapted:
            p.grad = None
        sync(device)
        return time.perf_counter() - t0

    return step, target, tuple(x.shape)


def measure(name: str, args: argparse.Namespace, data_path: str | None, cache_dir: Path) -> dict:
    """One row: method and bare clips/s, their ratio, and the method step's mean section seconds.

    After one warm-up step of each, method and bare steps alternate (``--repeats`` of each), so a change of
    machine load during the measurement hits both paths alike.
    """
    config = experiment_config(name, args, data_path, args.batch)
    table, rows, _ = train_rows(config)
    built = build(config, table.classes)
    n = max(len(rows), args.batch) if args.clips is None else args.clips
    run = training_inputs(config, built, table, cycled(rows, n), cache_dir, prefix=args.prefix_cache)
    run.model.to(config.training.device)
    built.model.to(config.training.device)
    method = MethodStepper(config, run.model, run.train)
    example = torch.stack([run.center[i % len(run.center)][0] for i in range(args.batch)])  # (B, N)
    bare_step, grad_to, shape = bare_stepper(built.model, example, config.training.device)
    try:
        method(), bare_step()  # warm-up
        steps, bare = [], []
        for _ in range(args.repeats):
            steps.append(method())
            bare.append(bare_step())
    finally:
        method.close()
    clips, seconds = sum(s["clips"] for s in steps), sum(s["step"] for s in steps)
    method_rate, bare_rate = clips / seconds, args.batch * len(bare) / sum(bare)
    epoch = epoch_of_loop(config, run, args.batch, table.classes) if args.epoch else None
    return {"device": config.training.device, "epoch": epoch,
            "epoch_to_step": None if epoch is None else epoch["clips_per_s"] / method_rate,
            "epoch_to_bare": None if epoch is None else epoch["clips_per_s"] / bare_rate,
        "method": name, "backbone": config.backbone.name, "batch": args.batch, "timed_steps": len(steps),
        "train_clips": n, "workers": method.workers, "threads": torch.get_num_threads(), "setup_s": run.setup_s,
        "prefix_cache": run.prefix,
        "method_clips_per_s": method_rate, "bare_clips_per_s": bare_rate, "ratio": method_rate / bare_rate,
        "bare_grad_to": grad_to, "bare_input_shape": list(shape),
        "method_step_s": [s["step"] for s in steps], "bare_step_s": bare,
        "sections_s": {k: sum(s[k] for s in steps) / len(steps) for k in (*SECTIONS, "step")},
    }


def epoch_of_loop(config: ExperimentConfig, run, batch: int, classes: list[str]) -> dict:
    """One epoch of the real loop (:func:`reprogram.experiment.train.train`, checkpoint written) over the training
    clips; validation on one batch of them. Its clips/s counts the step loop only (``TrainResult.timing``)."""
    from torch.utils.data import Subset

    from reprogram.experiment.train import train

    with tempfile.TemporaryDirectory(prefix="throughput-epoch-") as ckpt:
        result = train(run.model, run.train, Subset(run.train, range(batch)), list(classes),
                       config.training, seed=config.seed, checkpoint_dir=ckpt, progress=False)
    t = result.timing
    return {"clips": len(run.train), "steps": t["steps"], "train_s": t["train_s"], "eval_s": t["eval_s"],
            "checkpoint_s": t["checkpoint_s"], "clips_per_s": len(run.train) / t["train_s"]}


def print_row(row: dict) -> None:
    sec = row["sections_s"]
    print(f"{row['method']:<14} {row['backbone']:<33} B={row['batch']:<3} method {row['method_clips_per_s']:7.2f} "
          f"clips/s  bare {row['bare_clips_per_s']:7.2f} clips/s  ratio {row['ratio']:.3f}  "
          f"(bare: grad to {row['bare_grad_to']}, input {tuple(row['bare_input_shape'])})")
    shares = "  ".join(f"{k} {1e3 * sec[k]:.1f} ms ({sec[k] / sec['step']:.0%})" for k in SECTIONS)
    print(f"{'':14} step {1e3 * sec['step']:.1f} ms = {shares}")
    print(f"{'':14} {describe_prefix(row['prefix_cache'])}; untimed one-off setup {row['setup_s']:.2f} s; "
          f"{row['train_clips']} training clips, "
          f"{row['workers']} workers, {row['threads']} threads, device {row['device']}")
    if row["epoch"] is not None:
        e = row["epoch"]
        print(f"{'':14} real loop epoch: {e['clips']} clips in {e['steps']} steps, {e['clips_per_s']:.2f} clips/s "
              f"(x{row['epoch_to_step']:.3f} of the isolated step, x{row['epoch_to_bare']:.3f} of bare); "
              f"validation {e['eval_s']:.2f} s, checkpoint {e['checkpoint_s']:.3f} s")


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, list(METHODS), "timed steps of each path (default 10; --tiny: 1)")
    parser.add_argument("--clips", type=int, default=None,
                        help="training clips in the loader (default: the split's train part; --tiny: 8)")
    parser.add_argument("--epoch", action=argparse.BooleanOptionalAction, default=True,
                        help="also time one epoch of the real training loop over the training clips")
    args = parser.parse_args(argv)
    args.batch = args.batch or (4 if args.tiny else 32)
    args.repeats = args.repeats or (1 if args.tiny else 10)
    args.clips = args.clips or (8 if args.tiny else None)
    if args.batch < 1 or args.repeats < 1 or (args.clips is not None and args.clips < args.batch):
        raise SystemExit("--batch and --repeats must be >= 1 and --clips >= --batch")
    methods = parse_methods(args.methods)
    data_path, source = data_choice(args)
    limit_cores(args.threads)
    configure_threads(args.num_workers)  # again per method, after its loader is made
    print(machine_line())
    print(f"# data: {source}; 5 s clips{', tiny:* backbones' if args.tiny else ''}; timing: "
          "time.perf_counter sections (forward hooks); 1 warm-up step each, then --repeats method and bare steps "
          "alternating")
    rows = []
    with tempfile.TemporaryDirectory(prefix="throughput-cache-") as tmp:
        cache_dir = args.cache_dir or Path(tmp)
        for name in methods:
            row = measure(name, args, data_path, cache_dir)
            row["data"] = source
            print_row(row)
            assert all(math.isfinite(v) for v in row["sections_s"].values())
            rows.append(row)
    return finish(rows, args.json)


if __name__ == "__main__":
    main()
