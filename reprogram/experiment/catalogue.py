"""The catalogue of compared systems: every program, label mapper and PEFT method at its default budget, and
the budget-ablation axes. ``experiments/*.py`` pick from here (see :mod:`reprogram.experiment.suite` for the machinery).

Budgets under ``--tiny`` (``tiny_budgets``) fit the tiny twins' small canvases (``tiny:r3d`` frames are 32 px).
The semantic (CLIP text) mapper is left out: it needs an ``open_clip:`` backbone (``--backbone image=open_clip:...``
with ``--set method.options.mapper=semantic`` in a ``reprogram run``).
"""

from __future__ import annotations

from reprogram.experiment.suite import NO_ROLE, System

#: settings of pixel programs (image and video): the data's rate feeds the log-mel front end; programs take a
#: larger learning rate than adapters (as in the reprogramming literature) and no weight decay
PIXEL = {"training.lr": 0.01, "training.weight_decay": 0.0, "data.sample_rate": 16000}
IMAGE_SYSTEMS = [
    System("program", "image", {"transform": "pad", "mapper": mapper}, (16,), (None,), PIXEL)
    for mapper in ("random", "flm", "ilm", "linear")
] + [
    System("program", "image", {"transform": "full", "mapper": "linear"}, (1.0,), (None,), PIXEL),
    System("program", "image", {"transform": "lowrank", "mapper": "linear"}, (4,), (2,), PIXEL),
    System("program", "image", {"transform": "band", "mapper": "linear"}, (None,), (None,), PIXEL),
    System("program", "image", {"transform": "smm", "mapper": "linear"}, (8,), (2,), PIXEL),
    System("program", "image", {"transform": "autovp", "mapper": "linear"}, (16,), (None,), PIXEL),
]
#: the control of every image program: a logistic probe of the same network's features of the program's neutral
#: canvas (pad, AutoVP: the inner image inside the 16 px frame; full, low-rank, band, SMM: the whole canvas)
IMAGE_PROBES = [
    System("image_probe", "image", {"transform": "pad"}, (16,), (None,), PIXEL),
    System("image_probe", "image", {"transform": "full"}, (None,), (None,), PIXEL),
]
IMAGE_SYSTEMS += IMAGE_PROBES
VIDEO_SYSTEMS = [
    System("program", "video", {"transform": frames, "mapper": mapper}, (16,), (None,), PIXEL)
    for frames in ("video", "video_repeat")
    for mapper in ("flm", "linear")
] + [  # the probe of each video program's canvas (time chunks, repeated image)
    System("image_probe", "video", {"transform": frames}, (16,), (None,), PIXEL) for frames in ("video", "video_repeat")
]
SPEECH_PROGRAM_SYSTEMS = [
    System("program", "speech", {"transform": "wave_embed", "mapper": "feature_linear"}, (1.0,), (0.25,)),
    System("program", "speech", {"transform": "wave_additive", "mapper": "feature_linear"}, (None,), (None,)),
]
PEFT_SYSTEMS = [
    System("lora", "speech", {"head": "linear"}, (8,), (2,)),
    System("dora", "speech", {"head": "linear"}, (8,), (2,)),
    System("ia3", "speech", {"head": "linear"}),
    System("prompt", "speech", {"head": "linear"}, (8,), (2,)),
    System("deep_prompt", "speech", {"head": "linear"}, (8,), (2,)),
    System("adaption", "speech", {"head": "linear"}, (8,), (2,)),
    System("finetune", "speech", {"head": "linear"}, overrides={"training.lr": 1e-4}),
    System("linear_probe", "speech"),
    System("weighted_probe", "speech"),
    System("attentive_probe", "speech"),
]
BASELINE_SYSTEMS = [System("mfcc", NO_ROLE), System("mfcc", NO_ROLE, {"classifier": "random_forest"})]
#: the in-domain self-supervised reference (SimCLR on the training clips, then a logistic probe)
SSL_SYSTEMS = [System("simclr", NO_ROLE)]

#: budget-ablation axes: the knob swept, the system it belongs to, its values (and under --tiny)
ABLATIONS: dict[str, System] = {
    "pad_width": System("program", "image", {"transform": "pad", "mapper": "linear"}, (2, 4, 8, 16, 32, 48), (1, 2),
                        {**PIXEL, "output.tags": {"axis": "pad width (px)"}}),
    "lowrank_rank": System("program", "image", {"transform": "lowrank", "mapper": "linear"}, (1, 2, 4, 8, 16), (1, 2),
                           {**PIXEL, "output.tags": {"axis": "low-rank program rank"}}),
    "epsilon": System("program", "image", {"transform": "full", "mapper": "linear"}, (0.01, 0.03, 0.1, 0.3, 1.0),
                      (0.1, 1.0), {**PIXEL, "output.tags": {"axis": "epsilon (L-inf)"}}),
    "wave_seconds": System("program", "speech", {"transform": "wave_embed", "mapper": "feature_linear"},
                           (0.25, 0.5, 1.0, 2.0), (0.25, 0.5), {"output.tags": {"axis": "learned seconds"}}),
    "prompt_length": System("prompt", "speech", {"head": "linear"}, (1, 2, 4, 8, 16, 32), (1, 2),
                            {"output.tags": {"axis": "prompt length"}}),
    "lora_rank": System("lora", "speech", {"head": "linear"}, (1, 2, 4, 8, 16), (1, 2),
                        {"output.tags": {"axis": "LoRA rank"}}),
}
