"""Experiment configuration: one dataclass per experiment, YAML files, ``--set key=value`` overrides.

A config is a tree of small dataclasses (``data``, ``task``, ``split``, ``method``, ``backbone``,
``training``, ``output``). YAML files and ``--set`` overrides are checked against that tree: an unknown
or mistyped key is a :class:`ConfigError` (a ``ValueError``) naming the key, the closest valid key and
every valid key. Values are coerced to the field's declared type (``--set training.lr=3e-4`` is a float).
A run's id is a hash of the FULL resolved config, so two runs share an id exactly when every setting,
defaults included, is equal.

Example:
    >>> cfg = load_config("experiments/configs/speech.yaml", ["training.lr=3e-4", "seed=1"])
    >>> run_id(cfg)
    '3f9c0a1b2d4e'
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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


# --------------------------------------------------------------------------------------------------
# dict <-> dataclass with checked keys and coerced types


def valid_keys(cls: type = ExperimentConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the config tree (``training.lr`` ...), sections included."""
    keys = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        keys.append(key)
        tp = _hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            keys.extend(valid_keys(tp, key + "."))
    return keys


def _unknown_key(key: str, source: str) -> ConfigError:
    valid = valid_keys()
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r} in {source}.{hint} Valid keys: {', '.join(valid)}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Convert ``value`` to the declared type ``tp`` or raise a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            if type(None) in options:
                return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, key, source)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}={value!r} in {source} is not of type {_type_name(tp)}") from None
    if tp is Any:
        return value
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} in {source} is not a list; write [a, b] or a,b")
        return [_coerce(v, item, key, source) for v in value]
    if origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} in {source} is not a mapping; write {{k: v}}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} in {source} is a section: give a mapping of its keys, not {value!r}")
        return _build(tp, value, key + ".", source)
    bad = ConfigError(f"{key}={value!r} in {source} is not of type {_type_name(tp)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value))
        except ValueError:
            raise bad from None
    if tp is float:
        if isinstance(value, bool):
            raise bad
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad from None
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise bad
        return str(value)
    raise AssertionError(f"unsupported config field type {tp!r} for {key}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _build(cls: type, data: dict, prefix: str, source: str):
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise _unknown_key(prefix + str(key), source)
    kwargs = {k: _coerce(v, hints[k], prefix + k, source) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict, source: str = "<dict>") -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from a nested mapping (missing keys take defaults)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of config sections, got {type(data).__name__}")
    return _build(ExperimentConfig, data, "", source)


def to_dict(config: ExperimentConfig) -> dict:
    """The full resolved config as plain JSON-friendly data."""
    return dataclasses.asdict(config)


def _field_type(key: str) -> Any:
    """The declared type at dotted ``key``; ``Any`` inside a free-form dict field."""
    cls: Any = ExperimentConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(cls):
            if typing.get_origin(cls) is dict:  # method.options.transform=pad: free-form
                return Any
            raise _unknown_key(key, "--set")
        hints = _hints(cls)
        if part not in hints:
            raise _unknown_key(".".join(parts[: i + 1]) if i else part, "--set")
        cls = hints[part]
    return cls


def apply_overrides(data: dict, overrides: list[str] | dict[str, Any]) -> dict:
    """Apply ``key=value`` overrides to a nested config mapping (a new mapping is returned).

    Args:
        data: nested config mapping (as read from YAML).
        overrides: ``["training.lr=3e-4", ...]`` (values parsed as YAML, then coerced to the field's
            type) or a mapping ``{"training.lr": 3e-4}``.
    """
    data = json.loads(json.dumps(data))  # deep copy of plain data
    items = overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides]
    for key, raw in items:
        tp = _field_type(key)
        value = raw
        if isinstance(raw, str) and tp is not str:
            value = yaml.safe_load(raw) if raw.strip() else None
        if tp is not Any:
            value = _coerce(value, tp, key, "--set")
            if dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
        node[last] = value
    return data


def _split_override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} has no '='; write --set section.key=value (e.g. training.lr=3e-4)")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found; pass the path of a YAML file (see experiments/configs)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config sections, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] = ()) -> ExperimentConfig:
    """Read a YAML config (or start from defaults when ``path`` is None) and apply overrides."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, list(overrides) if not isinstance(overrides, dict) else overrides)
    return config_from_dict(data, str(path) if path is not None else "<defaults>")


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the full resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def canonical_json(config: ExperimentConfig) -> str:
    """The config as canonical JSON (sorted keys, no whitespace): the input of :func:`run_id`."""
    return json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def run_id(config: ExperimentConfig, length: int = 12) -> str:
    """Short SHA-256 hash of the FULL resolved config (defaults included)."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:length]
