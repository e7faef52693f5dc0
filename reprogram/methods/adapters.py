"""PEFT methods on a frozen speech encoder plus a head: LoRA, DoRA, IA3, shallow and deep prompts, adaption
prompts and full fine-tuning (the upper reference). The adapters themselves live in :mod:`reprogram.peft`;
this module turns a config into one of them attached to a backbone, with its head and its frozen cut.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from reprogram.experiment.config import ConfigError, ExperimentConfig
from reprogram.methods.base import Builder, Built, backbone_of, component_counts, native_rate, speech_head

#: which PEFT option ``method.budget`` sets
PEFT_BUDGET = {"lora": "r", "dora": "r", "prompt": "length", "deep_prompt": "length", "adaption": "length"}
#: PEFT methods whose adapters live in ``options.layers`` only (``options.top_k`` chooses the top k)
LAYERED = ("lora", "dora", "ia3")


def peft_builder(method: str) -> Builder:
    """Builder of PEFT ``method`` (a name of ``reprogram.peft.PEFT_METHODS``) plus a head (``options.head``)."""

    def build_peft(config: ExperimentConfig, classes: list) -> Built:
        from reprogram import peft
        from reprogram.mappers.heads import SpeechClassifier

        opts = dict(config.method.options)
        head = opts.pop("head", "linear")
        head_options = dict(opts.pop("head_options", {}))
        if config.method.budget is not None:
            if method not in PEFT_BUDGET:
                raise ValueError(f"method {method!r} has no budget knob; set method.budget=null")
            opts[PEFT_BUDGET[method]] = config.method.budget
        backbone = backbone_of(config)
        rate = native_rate(config, backbone)
        _top_k(method, opts, backbone)
        handle = peft.apply(backbone, method, **opts)
        model = SpeechClassifier(backbone, speech_head(config, backbone, len(classes), head, head_options))
        counts = {**component_counts(model), "method": peft.trainable_parameters(backbone)}
        prepare = None
        if hasattr(handle, "init_from_frames"):  # prompt tuning starts from real frames, as benchmarks/peft_speech

            def prepare(train_data: Sequence) -> None:
                init_prompts_from_frames(backbone, handle, train_data, config.seed)

        cut = _cut(method, opts, backbone.num_layers)
        return Built(model, rate, backbone.spec.modality, counts, prepare=prepare, cut=cut)

    return build_peft


def _top_k(method: str, opts: dict, backbone) -> None:
    """Turn ``options.top_k = k`` into ``layers = (L-k, ..., L-1)`` in place (adapters on the top k layers).

    Raises:
        ConfigError: ``top_k`` on a method without layers, together with ``layers``, or outside ``1..L``.
    """
    if "top_k" not in opts:
        return
    k, n = opts.pop("top_k"), int(getattr(backbone, "num_layers", 0))
    if method not in LAYERED:
        raise ConfigError(f"method.options.top_k is for {LAYERED} (adapters on the top k layers); remove it for "
                          f"{method!r}")
    if "layers" in opts:
        raise ConfigError("set method.options.top_k or method.options.layers, not both")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ConfigError(f"method.options.top_k={k!r}; use an integer in 1..{n} (the encoder has {n} layers)")
    opts["layers"] = tuple(range(n - k, n))


def _cut(method: str, opts: dict, num_layers: int) -> int | None:
    """The first encoder layer a PEFT method trains in (its input is the cut), or None (trains everywhere)."""
    if method in ("prompt", "deep_prompt"):
        return 0  # shallow prompts enter layer 0; deep prompts enter every layer
    if method == "adaption":  # gated prompts in the top num_layers layers (None: all)
        return num_layers - int(opts.get("num_layers") or num_layers)
    if method in LAYERED and opts.get("layers"):
        return min(int(i) % num_layers for i in opts["layers"])
    return None


@torch.no_grad()
def init_prompts_from_frames(backbone, handle, train_data: Sequence, seed: int, clips: int = 8) -> None:
    """Set prompt tuning's prompts to frames of the UNPROMPTED backbone on the first ``clips`` training clips.

    The prompt wrappers (instance ``forward`` attributes of the encoder layers) are set aside for that one
    forward pass, so the frames are the plain model's, as ``benchmarks/peft_speech.py`` draws them before
    attaching.

    Args:
        backbone: the speech backbone ``handle`` is attached to.
        handle: the attached :class:`reprogram.peft.prompt.PromptTuning`.
        train_data: items ``(wave (N,), target, ...)`` of the training split (deterministic crop).
        seed: seed of the frame sampling.
        clips: how many clips give frames.
    """
    from reprogram.peft.base import encoder_layers

    waves = torch.stack([train_data[i][0] for i in range(min(clips, len(train_data)))])  # (B, N)
    wrapped = {layer: vars(layer).pop("forward") for layer in encoder_layers(backbone) if "forward" in vars(layer)}
    was = backbone.training
    try:
        backbone.eval()
        plain = backbone(waves)  # hidden states: L + 1 tensors (B, T, D)
    finally:
        backbone.train(was)
        for layer, forward in wrapped.items():
            layer.forward = forward
    handle.init_from_frames(plain.hidden_states, plain.mask, seed=seed)
