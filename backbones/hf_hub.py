"""``hf:<model id or local folder>``: transformers speech encoders and audio classifiers, chosen by ``model_type``.

The architecture comes from the checkpoint's ``config.json`` (``model_type``), never from the id's
spelling; the input normalisation from its ``preprocessor_config.json``. Weights load through
``from_pretrained`` (safetensors, or ``torch.load`` with ``weights_only`` as transformers does), with no
``trust_remote_code``. A local folder written by ``save_pretrained`` works the same way
(``hf:/path/to/folder``), which is how the tests exercise this path without a download.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from backbones.base import Backbone, offline_error
from backbones.hub_cache import hf_cached
from reprogram.spec import InputSpec

#: model_type -> (transformers model class, wrapper module, wrapper class, feature-extractor class).
MODEL_TYPES: dict[str, tuple[str, str, str, str]] = {
    "hubert": ("HubertModel", "backbones.hf_speech", "Wav2Vec2StyleBackbone", "Wav2Vec2FeatureExtractor"),
    "wav2vec2": ("Wav2Vec2Model", "backbones.hf_speech", "Wav2Vec2StyleBackbone", "Wav2Vec2FeatureExtractor"),
    "wavlm": ("WavLMModel", "backbones.hf_speech", "Wav2Vec2StyleBackbone", "Wav2Vec2FeatureExtractor"),
    "whisper": ("WhisperModel", "backbones.hf_whisper", "WhisperEncoderBackbone", "WhisperFeatureExtractor"),
    "audio-spectrogram-transformer": (
        "ASTForAudioClassification",
        "backbones.hf_audio",
        "ASTBackbone",
        "ASTFeatureExtractor",
    ),
}

#: The documented example ids (registered as exact names) and their model_type, used only to describe
#: them when their config is not cached; any other id is resolved from its own config.
EXAMPLES: dict[str, str] = {
    "facebook/hubert-base-ls960": "hubert",
    "facebook/wav2vec2-base": "wav2vec2",
    "microsoft/wavlm-base-plus": "wavlm",
    "openai/whisper-base": "whisper",
    "MIT/ast-finetuned-audioset-10-10-0.4593": "audio-spectrogram-transformer",
}

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _fetch(loader, model_id: str, what: str, **kwargs):
    """Call a ``from_pretrained`` and turn download failures into one clear error."""
    local = Path(model_id).is_dir()
    if not local and model_id.startswith((".", "/", "~")):
        raise FileNotFoundError(f"hf:{model_id}: no such folder; give a save_pretrained folder or a hub id")
    try:
        return loader(model_id, local_files_only=local, **kwargs)
    except OSError as err:  # missing file, offline mode, no connection, unknown repo
        if local:
            raise FileNotFoundError(
                f"hf:{model_id}: cannot read the {what} from this folder ({err}); it must hold what "
                f"save_pretrained writes (config.json, preprocessor_config.json, model.safetensors)"
            ) from None
        raise offline_error(f"hf:{model_id}", "HF_HOME", err) from None


def load_config(model_id: str):
    """The checkpoint's transformers config (``AutoConfig``; no remote code)."""
    from transformers import AutoConfig

    return _fetch(AutoConfig.from_pretrained, model_id, "config")


def _entry(config, model_id: str) -> tuple[str, str, str, str]:
    if config.model_type not in MODEL_TYPES:
        raise ValueError(
            f"hf:{model_id} is a {config.model_type!r} model; supported model types: {sorted(MODEL_TYPES)}"
        )
    return MODEL_TYPES[config.model_type]


#: ``backbone.options`` an ``hf:`` backbone passes to ``from_pretrained``; anything else is a user error
LOAD_OPTIONS = ("revision", "cache_dir", "local_files_only", "token", "force_download", "subfolder",
                "attn_implementation", "dtype")


def build(model_id: str, **options) -> Backbone:
    """Factory of the ``hf:`` prefix.

    Args:
        model_id: a hub id (``facebook/hubert-base-ls960``) or a local ``save_pretrained`` folder.
        **options: passed to ``from_pretrained``, only the keys of :data:`LOAD_OPTIONS`; defaults:
            ``attn_implementation="sdpa"`` where transformers has it (else ``"eager"``), ``dtype=torch.float32``.
    """
    import transformers
    from transformers import AutoFeatureExtractor

    unknown = sorted(set(options) - set(LOAD_OPTIONS))
    if unknown:
        raise ValueError(f"backbone.options {unknown} are not loading options of hf:{model_id}; known: "
                         f"{sorted(LOAD_OPTIONS)}. Fix: remove them (model settings come from the checkpoint's "
                         f"config), or set one of the known keys")
    config = load_config(model_id)
    model_cls_name, module, wrapper_name, _ = _entry(config, model_id)
    model_cls = getattr(transformers, model_cls_name)
    options.setdefault("attn_implementation", "sdpa" if getattr(model_cls, "_supports_sdpa", False) else "eager")
    options.setdefault("dtype", torch.float32)  # transformers 5 defaults to the checkpoint's dtype (fp16 for some)
    extractor = _fetch(AutoFeatureExtractor.from_pretrained, model_id, "preprocessor config")
    model = _fetch(model_cls.from_pretrained, model_id, "weights", **options)
    if config.model_type == "whisper":
        model = model.get_encoder()  # the decoder is dropped with the WhisperModel
    wrapper = getattr(importlib.import_module(module), wrapper_name)
    return wrapper(model.eval(), extractor, f"hf:{model_id}")


def _spec_from_config(config, extractor) -> tuple[InputSpec, int]:
    """Spec and parameter count from a config (model built on the meta device, no weights)."""
    import transformers

    model_cls = getattr(transformers, _entry(config, "?")[0])
    with torch.device("meta"):
        model = model_cls(config)
    if config.model_type == "whisper":
        model = model.get_encoder()
    params = sum(p.numel() for p in model.parameters())
    rate = int(extractor.sampling_rate)
    if config.model_type == "audio-spectrogram-transformer":
        from backbones.hf_audio import label_names

        spec = InputSpec("audio", (-1,), rate, label_names=label_names(config), feature_dim=config.hidden_size)
    else:
        layers = config.encoder_layers if config.model_type == "whisper" else config.num_hidden_layers
        width = config.d_model if config.model_type == "whisper" else config.hidden_size
        spec = InputSpec("speech", (-1,), rate, feature_dim=int(width), num_layers=int(layers) + 1)
    return spec, params


def describe(model_id: str) -> dict:
    """Spec, parameter count and weight availability without any download.

    With a cached (or local) config the architecture is built on the meta device; otherwise, for the
    documented example ids, the spec holds only what the feature extractor's defaults give (modality,
    sample rate) and the parameter count is ``None``.
    """
    import transformers

    local = Path(model_id).is_dir()
    cached_config = local or hf_cached(model_id, ("config.json",))
    weights = (local and any((Path(model_id) / f).is_file() for f in WEIGHT_FILES)) or (
        not local and hf_cached(model_id, WEIGHT_FILES)
    )
    if cached_config:
        from transformers import AutoConfig, AutoFeatureExtractor

        config = AutoConfig.from_pretrained(model_id, local_files_only=True)
        try:
            extractor = AutoFeatureExtractor.from_pretrained(model_id, local_files_only=True)
        except OSError:
            extractor = getattr(transformers, _entry(config, model_id)[3])()
        spec, params = _spec_from_config(config, extractor)
        return {"spec": spec, "parameters": params, "weights_available": bool(weights)}
    model_type = EXAMPLES.get(model_id)
    if model_type is None:
        return {"spec": None, "parameters": None, "weights_available": False, "note": "config not cached"}
    extractor = getattr(transformers, MODEL_TYPES[model_type][3])()
    modality = "audio" if model_type == "audio-spectrogram-transformer" else "speech"
    spec = InputSpec(modality, (-1,), int(extractor.sampling_rate))
    return {"spec": spec, "parameters": None, "weights_available": False, "note": "config not cached"}
