"""The CTranslate2 reader against CTranslate2's own writer and runtime, and on the packaged Whisper tiny.en.

Tiny random Whisper models are converted with ctranslate2's converter (its writer is the reference for
the format), read back with :mod:`backbones.ct2`, mapped into transformers' encoder and run against the
CTranslate2 runtime. HF initialises biases to 0 and norms to 1, so those are randomised first: a
swapped or dropped bias would otherwise go unnoticed.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from backbones.ct2 import DTYPES, CT2FormatError, read_ct2
from backbones.offline.whisper import encoder_state_dict, load_encoder, packaged_model_dir
from tests import numerics

ctranslate2 = pytest.importorskip("ctranslate2")


def tiny_whisper(seed: int = 0):
    """A random 2-layer transformers Whisper with non-trivial biases and norms."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(
        vocab_size=64,
        num_mel_bins=16,
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=4,
        decoder_layers=1,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=50,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.normal_(0.0, 0.5)
    return model


@pytest.fixture(scope="module", params=["float32", "float16", "int8_float32"])
def converted(request, tmp_path_factory):
    """(model dir, HF encoder weights, {name: variable or alias target} as written, quantization)."""
    from ctranslate2.converters.transformers import WhisperLoader

    model = tiny_whisper()
    # copied first: the converter's quantization rescales the module's tensors in place
    encoder_weights = {k: v.clone() for k, v in model.model.encoder.state_dict().items()}
    spec = WhisperLoader().get_model_spec(model)
    spec.register_vocabulary([f"tok{i}" for i in range(model.config.vocab_size)])
    spec.validate()
    spec.optimize(quantization=request.param)
    out = tmp_path_factory.mktemp(f"ct2_{request.param}")
    spec.save(str(out))
    return out, encoder_weights, dict(spec.variables(ordered=True)), request.param


def test_reader_round_trips_ctranslate2_writer(converted):
    path, _, written, _ = converted
    model = read_ct2(path)
    assert (model.binary_version, model.spec_name, model.spec_revision) == (6, "WhisperSpec", 3)
    stored = {k: v for k, v in written.items() if not isinstance(v, str)}
    assert list(model.variables) == list(stored)
    assert model.aliases == {k: v for k, v in written.items() if isinstance(v, str)}
    for name, var in stored.items():
        ours = model.variable(name)
        assert ours.shape == tuple(var.shape) and ours.dtype == var.dtype, name
        np.testing.assert_array_equal(model.array(name), var.numpy(), err_msg=name)


def test_encoder_mapping_reproduces_transformers_weights(converted):
    path, reference, _, quantization = converted
    encoder = load_encoder(path)
    assert set(encoder.state_dict()) == set(reference)
    # round to nearest: half an fp16 ulp of the value (<= the tensor's max), or half an int8 step of CTranslate2's
    # per-row absmax / 127 scale (the row max <= the tensor's max)
    tol = {"float32": 0.0, "float16": numerics.eps(torch.float16) / 2, "int8_float32": 0.5 / 127}[quantization]
    tol *= 1 + 4 * numerics.eps(torch.float32)  # the float32 rescaling of the stored value
    for name, value in encoder.state_dict().items():
        scale = reference[name].abs().max().clamp_min(1e-6)
        assert (value - reference[name]).abs().max() <= tol * scale, name


@pytest.mark.numerics
def test_encoder_matches_ctranslate2_runtime(converted):
    from transformers import WhisperFeatureExtractor

    from backbones.hf_whisper import WhisperEncoderBackbone

    path, _, _, quantization = converted
    backbone = WhisperEncoderBackbone(load_encoder(path), WhisperFeatureExtractor(feature_size=16), name="tiny-ct2")
    mel = torch.randn(2, 16, 60, generator=torch.Generator().manual_seed(0))  # (B, n_mels, T_mel), 0.6 s
    runtime = ctranslate2.models.Whisper(str(path), device="cpu", compute_type="float32")
    reference = torch.from_numpy(np.array(runtime.encode(ctranslate2.StorageView.from_array(mel.numpy()))))
    with torch.no_grad():
        h = backbone.embed(mel)
        for layer in backbone.model.layers:
            h = layer(h, None)
        ours = backbone.model.layer_norm(h)
    assert ours.shape == reference.shape == (2, 30, 32)
    # one set of weights run in float32 by two runtimes (quantized ones are dequantized by both)
    numerics.assert_chain_close(ours, reference, backbone.model, what=f"{quantization} encoder output")


def test_packaged_whisper_tiny_en_variables():
    model = read_ct2(packaged_model_dir())
    assert (model.binary_version, model.spec_name) == (6, "WhisperSpec")
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    end = None
    for var in model.variables.values():
        array = model.array(var.name)
        itemsize = DTYPES[[k for k, v in DTYPES.items() if v[0] == var.dtype][0]][1]
        assert array.shape == var.shape and array.nbytes == var.num_bytes == itemsize * array.size
        assert end is None or var.offset > end  # variables follow one another in the file
        end = var.offset + var.num_bytes
    assert model.variable("encoder/conv1/weight").shape == (384, 80, 3)
    assert model.variable("encoder/layer_3/self_attention/linear_0/weight").shape == (1152, 384)
    assert model.scalar("encoder/num_heads") == 6
    assert f"encoder/layer_{4}/ffn/linear_0/weight" not in model  # tiny has 4 encoder layers
    sd = encoder_state_dict(model, 4)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in sd.values())


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no CTranslate2 model"):
        read_ct2(tmp_path / "missing")
    good = (packaged_model_dir() / "model.bin").read_bytes()[:4096]
    (tmp_path / "model.bin").write_bytes(good)
    with pytest.raises(CT2FormatError, match="truncated"):
        read_ct2(tmp_path)
    (tmp_path / "model.bin").write_bytes(struct.pack("<I", 3) + good[4:])
    with pytest.raises(CT2FormatError, match="binary version 3"):
        read_ct2(tmp_path)
