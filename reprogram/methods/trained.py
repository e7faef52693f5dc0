"""The kind of every torch method (programs, mappers, PEFT, torch probes): trained by the one training loop.

:data:`TRAINED` trains ``built.model`` (every rank under torchrun), on the cached activations below a frozen
cut where the method allows it (:mod:`reprogram.runtime.prefix`), then on rank 0 saves the selected trainable
state (``trainable.safetensors``) and, for programs, renders of one example (``program.safetensors``) and scores
every part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from reprogram.experiment.metrics import classification_metrics
from reprogram.experiment.train import count_parameters, predict, train
from reprogram.methods.features import clip_groups, clip_ids

if TYPE_CHECKING:  # pragma: no cover
    from reprogram.methods.base import Built, RunContext


class TorchTraining:
    """Train ``built.model`` with :func:`reprogram.experiment.train.train`, select on val, score every part."""

    parallel = True

    def fit(self, built: Built, context: RunContext) -> dict | None:
        from reprogram.experiment.inputs import make_dataset
        from reprogram.runtime.accel import AccelConfig
        from reprogram.runtime.prefix import Prefixed, prepare_prefix

        config, eval_sets, folder = context.config, dict(context.eval_sets), context.folder
        model, t = built.model, config.training
        train_set = make_dataset(context.parts["train"], built.sample_rate, config, context.classes, "random",
                                 context.caches["train"])
        if built.prepare is not None:  # e.g. prompts from real frames of the first training clips (center crops)
            built.prepare(eval_sets["train"])
        example = eval_sets.get("val", train_set)[0][0][None]  # (1, N)
        program = _program(model)
        before = _render(program, example) if program is not None else None
        if not context.prefix_cache:
            prefixed = Prefixed(None, record={"used": False, "reason": "turned off (--no-prefix-cache)"})
        else:
            external = eval_sets.get("external")
            prefixed = prepare_prefix(built, train_set, context.full, context.rows, external, context.cache_dir,
                                      accel=AccelConfig.from_training(t).enabled, distributed=context.distributed,
                                      batch_size=t.batch_size)
        if prefixed.model is not None:  # the same modules, trained on cached activations below the cut
            model, train_set, eval_sets = prefixed.model, prefixed.train, prefixed.evals
        outcome = train(
            model, train_set, eval_sets["val"], context.classes, t, seed=config.seed,
            checkpoint_dir=folder / "checkpoint" if config.output.checkpoint else None,
            positive=context.positive, progress=context.progress,
        )
        if not context.is_main:
            return None
        save_file(outcome.state, str(folder / "trainable.safetensors"),
                  metadata={"best_epoch": str(outcome.best_epoch)})
        if program is not None:
            after = _render(program, example)
            save_file(
                {"wave": example[0].contiguous(), **{f"{k}_init": v for k, v in before.items()}, **after},
                str(folder / "program.safetensors"),
            )
        metrics, predictions = {}, {}
        for name, ds in eval_sets.items():
            loader = DataLoader(ds, batch_size=t.batch_size, num_workers=t.num_workers)
            y, scores = predict(model, loader, t.device)
            metrics[name] = classification_metrics(y, scores, context.classes, context.positive)
            predictions[name] = {"target": y.tolist(), "scores": np.round(scores, 6).tolist(),
                                 "ids": clip_ids(ds.table), "groups": clip_groups(ds.table)}
        trainable, total = count_parameters(built.model)
        components = built.model.budget() if hasattr(built.model, "budget") else built.components  # trained norms
        return {
            "params": {"trainable": trainable, "total": total, "components": components},
            "metrics": metrics,
            "training": {
                "best_epoch": outcome.best_epoch,
                "epochs_run": outcome.epochs_run,
                "stopped_early": outcome.stopped_early,
                "resumed_from": outcome.resumed_from,
                "history": outcome.history,
            },
            "label_mapping": label_mapping(model, context.classes, built.label_names),
            "predictions": predictions if config.output.predictions else None,
            "prefix_cache": prefixed.record or None,
        }


#: how torch methods learn
TRAINED = TorchTraining()


def _program(model) -> torch.nn.Module | None:
    from reprogram.transforms.base import InputTransform

    for attr in ("transform", "program"):
        candidate = getattr(model, attr, None)
        if isinstance(candidate, InputTransform):
            return candidate
    return None


@torch.no_grad()
def _render(program, example: torch.Tensor) -> dict[str, torch.Tensor]:
    """The program's output (and inner spectrogram image, where it has one) on one example ``(1, N)``."""
    was = program.training
    program.eval()
    device = next((p.device for p in program.parameters()), torch.device("cpu"))
    out = {"input": program(example.to(device))[0].float().cpu().contiguous()}  # (*spec.shape)
    if hasattr(program, "inner"):
        out["inner"] = program.inner(example.to(device))[0].float().cpu().contiguous()  # (C, h, w)
    program.train(was)
    return out


def label_mapping(model, classes: list[str], label_names: tuple[str, ...], top: int = 3) -> dict | None:
    """Target class x source label weights of a mapper reading source logits (for label-mapping figures)."""
    mapper = getattr(model, "mapper", None)
    if mapper is None or getattr(mapper, "input_kind", "logits") != "logits" or not label_names:
        return None
    if hasattr(mapper, "assignment"):
        assignment = mapper.assignment.cpu()  # (K, m)
        sources = sorted({int(j) for j in assignment.flatten() if j >= 0})
        matrix = [[1.0 if j in set(row.tolist()) else 0.0 for j in sources] for row in assignment]
    elif hasattr(mapper, "linear"):
        weight = mapper.linear.weight.detach().cpu()  # (K, S)
        sources = sorted({int(j) for row in weight for j in row.topk(min(top, weight.shape[1])).indices})
        matrix = weight[:, sources].tolist()
    else:
        return None
    return {
        "kind": type(mapper).__name__,
        "targets": list(classes),
        "sources": [label_names[j] for j in sources],
        "source_index": sources,
        "matrix": matrix,
    }
