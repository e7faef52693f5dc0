"""Experiment configuration: one dataclass per experiment, YAML files, ``--set key=value`` overrides.

A config is a tree of small dataclasses (``data``, ``task``, ``split``, ``method``, ``backbone``,
``training``, ``output``; defined in :mod:`reprogram.experiment.schema` and re-exported here).
YAML files and ``--set`` overrides are checked against that tree: an unknown
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
from pathlib import Path
from typing import Any

import yaml

from reprogram.experiment.schema import (  # noqa: F401 - the config's public names
    AUTOCAST_MODES,
    COMPILE_MODES,
    SELECT_METRICS,
    SPLIT_KINDS,
    BackboneConfig,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    MethodConfig,
    OutputConfig,
    SplitConfig,
    TaskConfig,
    TrainingConfig,
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


#: words users write for a key -> the key's own word (matched per dotted part, before the fuzzy match)
SYNONYMS = {"learning_rate": "lr", "learningrate": "lr", "num_epochs": "epochs", "n_epochs": "epochs",
            "max_epochs": "epochs", "batchsize": "batch_size", "bs": "batch_size", "wd": "weight_decay",
            "random_seed": "seed", "folds": "n_folds", "num_folds": "n_folds", "kind_of_split": "kind"}


def _unknown_key(key: str, source: str) -> ConfigError:
    valid = valid_keys()
    translated = ".".join(SYNONYMS.get(part, part) for part in key.split("."))
    close = [translated] if translated in valid else difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
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
