"""The experiment config's tree of dataclasses (``data``, ``task``, ``split``, ``method``, ``backbone``,
``training``, ``output``), their defaults and their checks (``__post_init__`` raises :class:`ConfigError` with
the fix). Reading YAML, ``--set`` overrides and run ids are in :mod:`reprogram.experiment.config`, which
re-exports every class here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SPLIT_KINDS = ("grouped", "kfold", "group_kfold", "logo")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
AUTOCAST_MODES = ("off", "bf16", "fp16")
SELECT_METRICS = ("balanced_accuracy", "accuracy", "macro_f1", "roc_auc", "average_precision", "neg_loss")


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and the fix."""


@dataclass
class DataConfig:
    """Where the recordings are.

    Args:
        path: a manifest CSV, a folder or Raven tables; ``None`` uses the embedded synthetic corpus.
        test_path: an external test set (other sites or seasons) read with the same columns; the model is
            trained and selected on ``path`` and also reported on this set (split name ``external``).
        clip_seconds: every clip is cropped or padded to this length.
        sample_rate: waveform rate in Hz; ``None`` uses the backbone's own rate (its ``InputSpec``).
        synthetic: options of the synthetic corpus (``reprogram.data.synthetic.SyntheticConfig``: seed,
            snr_db, n_individuals ...) when ``path`` is ``None`` or ``synthetic[:task]``.
        format: layout of ``path``: ``auto`` (detect), ``manifest``, ``raven``, ``hainan`` or ``folder``.
        path_column: manifest column with the audio path.
        start_column: manifest column with segment starts in seconds (``None``: whole files).
        end_column: manifest column with segment ends in seconds.
        on_error: ``error`` stops at the first bad row; ``skip`` drops bad rows (listed in the table's
            ``skipped``) and goes on.
        options: the format loader's own options (``audio_dir``, ``background_windows``, ``label_regex``,
            ``delimiter``, ``verify_audio`` ...; see ``reprogram.data.loaders.load_table``).
    """

    path: str | None = None
    test_path: str | None = None
    clip_seconds: float = 5.0
    sample_rate: int | None = None
    synthetic: dict[str, Any] = field(default_factory=dict)
    format: str = "auto"
    path_column: str = "path"
    start_column: str | None = None
    end_column: str | None = None
    on_error: str = "error"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from reprogram.data.loaders import FORMATS

        if self.format not in FORMATS:
            raise ConfigError(f"data.format={self.format!r}; use one of {FORMATS}")
        if self.on_error not in ("error", "skip"):
            raise ConfigError(f"data.on_error={self.on_error!r}; use error (stop at a bad row) or skip (drop it)")
        if self.clip_seconds <= 0:
            raise ConfigError(f"data.clip_seconds={self.clip_seconds}; set a positive length in seconds")
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise ConfigError(f"data.sample_rate={self.sample_rate}; set a positive rate in Hz or null")


@dataclass
class TaskConfig:
    """A task is a label column plus a grouping column.

    Args:
        label_column: the column holding the target label (synthetic corpus: call_type, individual, presence).
        group_column: the column no two splits may share (recorder, site); ``None`` for ungrouped splits.
        detection: a binary presence task: ROC-AUC and average precision are reported for ``positive_label``.
        positive_label: the label of the positive class when ``detection`` is true.
    """

    label_column: str = "call_type"
    group_column: str | None = "recorder"
    detection: bool = False
    positive_label: str | None = None

    def __post_init__(self) -> None:
        if not self.label_column:
            raise ConfigError("task.label_column is empty; name the column holding the labels")
        if self.detection and self.positive_label is None:
            raise ConfigError("task.detection is true but task.positive_label is unset; name the positive class")


@dataclass
class SplitConfig:
    """How clips are divided into train / val / test.

    Args:
        kind: ``grouped`` (one grouped train/val/test split), ``kfold`` (stratified k-fold, ungrouped),
            ``group_kfold`` (grouped k-fold) or ``logo`` (leave one group out, groups in sorted order). In the
            cross-validation kinds fold ``fold`` is the test part and the next fold validates.
        val_fraction: share of clips held out for validation in a ``grouped`` split.
        test_fraction: share held out for test in a ``grouped`` split.
        n_folds: number of folds for ``kfold`` / ``group_kfold``.
        fold: which fold is the test part (cross-validation kinds); 0 for ``grouped``.
        seed: seed of the split itself, kept apart from the training seed so that every seed of every
            method sees the same folds (paired comparisons need that).
    """

    kind: str = "grouped"
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    n_folds: int = 5
    fold: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SPLIT_KINDS:
            raise ConfigError(f"split.kind={self.kind!r}; use one of {SPLIT_KINDS}")
        if not 0 < self.val_fraction < 1 or not 0 < self.test_fraction < 1:
            raise ConfigError("split.val_fraction and split.test_fraction must lie strictly between 0 and 1")
        if self.kind == "grouped" and self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("split.val_fraction + split.test_fraction must be < 1; leave data for training")
        if self.n_folds < 3:
            raise ConfigError(f"split.n_folds={self.n_folds}; use at least 3 folds (train, validation and test folds)")
        if self.fold < 0 or (self.kind in ("kfold", "group_kfold") and self.fold >= self.n_folds):
            raise ConfigError(f"split.fold={self.fold} is outside 0..{self.n_folds - 1}; pick a fold in that range")
        if self.kind == "grouped" and self.fold != 0:
            raise ConfigError("split.fold is for cross-validation splits only; set split.kind=kfold or split.fold=0")


@dataclass
class MethodConfig:
    """The adaptation method (a name in ``reprogram.methods.METHODS``) and its budget.

    Args:
        name: e.g. ``program``, ``lora``, ``prompt``, ``attention_prompt``, ``linear_probe``, ``mfcc``.
        budget: the method's budget knob (pad width, rank, epsilon, prompt length, LoRA rank); ``None``
            keeps the method's default. Integral values are stored as ints.
        options: further keyword options for the method's builder (``transform``, ``mapper``, ``head`` ...).
    """

    name: str = "linear_probe"
    budget: int | float | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("method.name is empty; name a method (see `reprogram.methods.METHODS.names()`)")
        if isinstance(self.budget, float) and self.budget.is_integer():
            self.budget = int(self.budget)


@dataclass
class BackboneConfig:
    """The frozen source model: a name of ``backbones.create`` plus its keyword options."""

    name: str = "offline:whisper_tiny_en"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("backbone.name is empty; name a backbone (see `reprogram backbones`)")


@dataclass
class TrainingConfig:
    """The one training loop's settings (AdamW, warm-up + cosine, clipping, early stopping on val).

    Args:
        epochs: maximum number of epochs.
        batch_size: training batch size (evaluation uses the same).
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        warmup_fraction: share of all steps spent in linear warm-up.
        min_lr_ratio: the cosine decays to ``lr * min_lr_ratio``.
        grad_clip: max global gradient norm; ``None`` disables clipping.
        patience: stop after this many epochs without validation improvement; ``None`` never stops early.
        select_metric: validation metric used for model selection and early stopping.
        label_smoothing: cross-entropy label smoothing.
        balanced_loss: weight the cross-entropy by inverse class frequency of the training split.
        device: torch device string (``cpu``, ``cuda``, ``cuda:1``).
        num_workers: data-loader worker processes (batches are identical with any number of workers).
        channels_last: channels-last memory format for convnet backbones (``reprogram.runtime.accel``).
        compile: ``torch.compile`` the frozen backbone: ``off``, ``default``, ``reduce-overhead`` (CUDA),
            ``max-autotune``, ``max-autotune-no-cudagraphs``.
        autocast: mixed precision of the forward pass: ``off``, ``bf16`` (CPU or GPU), ``fp16`` (GPU, scaled).
        checkpointing: activation checkpointing of the frozen backbone's blocks (memory for time).
    """

    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    patience: int | None = 5
    select_metric: str = "balanced_accuracy"
    label_smoothing: float = 0.0
    balanced_loss: bool = False
    device: str = "cpu"
    num_workers: int = 0
    channels_last: bool = False
    compile: str = "off"
    autocast: str = "off"
    checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("training.epochs and training.batch_size must be >= 1")
        if self.lr <= 0:
            raise ConfigError(f"training.lr={self.lr}; use a positive learning rate such as 1e-3")
        if not 0 <= self.warmup_fraction < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("training.warmup_fraction must be in [0, 1) and training.min_lr_ratio in [0, 1]")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError("training.grad_clip must be positive, or null to disable clipping")
        if self.patience is not None and self.patience < 1:
            raise ConfigError("training.patience must be >= 1, or null to disable early stopping")
        if self.select_metric not in SELECT_METRICS:
            raise ConfigError(f"training.select_metric={self.select_metric!r}; use one of {SELECT_METRICS}")
        if self.compile not in COMPILE_MODES or self.autocast not in AUTOCAST_MODES:
            raise ConfigError(f"training.compile={self.compile!r} / training.autocast={self.autocast!r}; use "
                              f"compile in {COMPILE_MODES} and autocast in {AUTOCAST_MODES}")
        if self.autocast == "fp16" and not self.device.startswith("cuda"):
            raise ConfigError("training.autocast=fp16 needs a CUDA device; use bf16 on CPU, or off")
        if not 0 <= self.label_smoothing < 1 or self.num_workers < 0:
            raise ConfigError("training.label_smoothing must be in [0, 1) and training.num_workers >= 0")


@dataclass
class OutputConfig:
    """What a run saves besides ``result.json``.

    Args:
        checkpoint: save the trainable parameters (safetensors) every epoch, so a run can resume.
        predictions: save per-clip predictions and scores of every evaluated split in ``result.json``.
        tags: free labels carried into the result rows (experiment name, ablation axis ...).
    """

    checkpoint: bool = True
    predictions: bool = True
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentConfig:
    """One run: data, task, split, method, backbone, training and output, plus the seed."""

    name: str = "experiment"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed}; use a non-negative integer")
        if not self.task.detection and self.training.select_metric in ("roc_auc", "average_precision"):
            raise ConfigError(
                f"training.select_metric={self.training.select_metric!r} needs a detection task; "
                "set task.detection=true or select on balanced_accuracy"
            )


