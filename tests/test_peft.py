"""PEFT methods on every speech family: closed-form budgets, frozen base, live adapters, exact neutral starts,
save/load and merge round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import backbones
from backbones.base import TRAINABLE_TAG
from reprogram.peft import PEFT_METHODS, apply
from reprogram.peft.base import encoder_layers, extend_mask
from reprogram.peft.io import load, read_config, save
from reprogram.peft.lora import LoraConfig
from tests import numerics

ROOT = Path(__file__).resolve().parents[1]

TINY = ["tiny:hubert", "tiny:wav2vec2", "tiny:wavlm", "tiny:whisper"]
REAL = "offline:whisper_tiny_en"
ALL = TINY + [REAL]
#: a family whose padded frames are exactly separable (wav2vec2-style conv front end, masked attention);
#: Whisper's STFT windows at a clip's end see the padding, so its padded batches differ slightly anyway.
MASKED = ["tiny:wavlm"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make(name: str):
    return backbones.create(name)


def wave(batch: int = 2, seconds: float = 0.3, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, int(16000 * seconds), generator=torch.Generator().manual_seed(seed))


def projected(out, seed: int = 1) -> torch.Tensor:
    """A loss that depends on every hidden state through fixed random directions (a plain sum of layer-normed
    states is constant)."""
    g = torch.Generator().manual_seed(seed)
    return sum((h.mean(1) * torch.randn(h.shape[-1], generator=g)).sum() for h in out.hidden_states)


def train_steps(backbone, steps: int = 3, lr: float = 0.05) -> None:
    params = [p for p in backbone.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    backbone.train()
    for i in range(steps):
        opt.zero_grad()
        projected(backbone(wave(seed=10 + i))).backward()
        opt.step()
    backbone.eval()


def check_padded_batch_matches_single_clip(b):
    """Assert that the shorter clip of a padded batch of two gives the last hidden state it gives alone.

    Returns:
        the batch output and the number of frames of the clip alone.
    """
    x = wave(seconds=0.6)  # (2, N)
    lengths = torch.tensor([x.shape[1], x.shape[1] // 2])
    with torch.no_grad():
        batch = b(x, lengths)
        alone = b(x[1:, : lengths[1]])
    frames = alone.hidden_states[-1].shape[1]
    numerics.assert_chain_close(batch.hidden_states[-1][1, :frames], alone.hidden_states[-1][0], b, what="clip 1")
    return batch, frames


def frozen_state(backbone) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in backbone.named_parameters() if not p.requires_grad}


def sizes(backbone) -> tuple[int, int]:
    return len(encoder_layers(backbone)), backbone.hidden_size


@pytest.mark.parametrize("name,r", [(n, 2) for n in TINY] + [("tiny:hubert", 4), (REAL, 4)])
def test_lora_count_is_closed_form(name, r):
    b = make(name)
    apply(b, "lora", r=r)
    n_layers, d = sizes(b)
    assert b.num_parameters(trainable_only=True) == n_layers * 2 * 2 * r * d


@pytest.mark.parametrize("name", TINY)
def test_dora_and_ia3_counts(name):
    b, c = make(name), make(name)
    apply(b, "dora", r=4)
    apply(c, "ia3")
    n_layers, d = sizes(b)
    assert b.num_parameters(trainable_only=True) == n_layers * 2 * (2 * 4 * d + d)
    assert c.num_parameters(trainable_only=True) == n_layers * 2 * d


@pytest.mark.parametrize("name,method", [(n, m) for n in TINY for m in ("lora", "dora", "ia3")] + [(REAL, "lora")])
def test_adapters_are_live_and_base_stays_bit_identical(name, method):
    b = make(name)
    x = wave()
    with torch.no_grad():
        ref = b(x).hidden_states[-1]
    apply(b, method, **({"r": 4} if method != "ia3" else {}))
    before = frozen_state(b)
    train_steps(b)
    after = frozen_state(b)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        out = b(x).hidden_states[-1]
    # the adapters act (WavLM reads projection weights directly unless rerouted: a bypass would fail here)
    assert not torch.allclose(out, ref, atol=1e-4), f"{method} on {name} changed nothing: adapters bypassed"


@pytest.mark.numerics
@pytest.mark.parametrize("name", ALL)
def test_lora_merge_matches_unmerged(name):
    b = make(name)
    handle = apply(b, "lora", r=4)
    train_steps(b)
    x = wave(seed=3)
    with torch.no_grad():
        unmerged = b(x).hidden_states
        handle.merge()
        assert handle.merged
        merged = b(x).hidden_states
        handle.unmerge()
        again = b(x).hidden_states
    for u, m, a in zip(unmerged, merged, again, strict=True):
        # float32 rounding of (W + BA) x vs W x + B (A x): two computations through the adapted encoder
        numerics.assert_chain_close(m, u, b, what=f"{name} merged")
        numerics.assert_chain_close(a, u, b, what=f"{name} unmerged again")


def test_lora_targets_layers_and_roles():
    b = make("tiny:hubert")
    apply(b, "lora", r=2, targets=["q", "k", "v", "o"], layers=[1])
    n_layers, d = sizes(b)
    assert b.num_parameters(trainable_only=True) == 1 * 4 * 2 * 2 * d
    names = [n for n, p in b.named_parameters() if p.requires_grad]
    assert all(".layers.1." in n for n in names)


def test_lora_dropout_follows_train_mode_only():
    b = make("tiny:hubert")
    apply(b, "lora", r=2, dropout=0.5)
    b.train()
    drops = [m for n, m in b.named_modules() if n.endswith("lora_dropout.default")]
    assert drops and all(m.training for m in drops)
    assert not b.model.encoder.layers[0].attention.training  # the frozen network stays in eval
    assert any(getattr(m, TRAINABLE_TAG, False) for m in b.modules())
    b.eval()
    assert not any(m.training for m in drops)


@pytest.mark.parametrize("name,deep", [(n, d) for n in TINY for d in (False, True)] + [(REAL, True)])
def test_prompts_change_output_get_gradient_and_keep_frames(name, deep):
    b = make(name)
    x = wave()
    with torch.no_grad():
        ref = b(x)
    handle = apply(b, "deep_prompt" if deep else "prompt", length=3)
    n_layers, d = sizes(b)
    assert b.num_parameters(trainable_only=True) == (n_layers if deep else 1) * 3 * d
    out = b(x)
    assert [h.shape for h in out.hidden_states] == [h.shape for h in ref.hidden_states]  # prompts stripped
    assert torch.equal(out.hidden_states[0], ref.hidden_states[0])  # frames enter with their own positions
    assert not torch.allclose(out.hidden_states[-1], ref.hidden_states[-1], atol=1e-4)
    projected(out).backward()
    assert handle.prompts.grad is not None and handle.prompts.grad.abs().sum() > 0
    if deep:  # every layer's own prompts receive gradient
        assert (handle.prompts.grad.flatten(1).abs().sum(1) > 0).all()


@pytest.mark.parametrize("method", ["prompt", "deep_prompt", "adaption"])
@pytest.mark.parametrize("name", MASKED)
def test_prompted_padded_batch_matches_single_clips(name, method):
    """Prompts stay visible and padding stays masked: a clip's output does not depend on its batch mates."""
    b = make(name)
    apply(b, method, length=3)
    if method == "adaption":
        with torch.no_grad():
            b.peft_adaption.gates.fill_(0.5)
    batch, frames = check_padded_batch_matches_single_clip(b)
    assert batch.mask is not None and int(batch.mask[1].sum()) == frames


def test_prompts_init_from_frames_is_nearly_neutral():
    b = make("tiny:whisper")
    x = wave()
    with torch.no_grad():
        ref = b(x)
    handle = apply(b, "deep_prompt", length=2)
    handle.init_from_frames(ref.hidden_states, ref.mask)
    for layer in range(handle.prompts.shape[0]):
        frames = ref.hidden_states[layer].reshape(-1, ref.hidden_states[layer].shape[-1])
        for p in handle.prompts[layer]:
            assert (frames == p).all(dim=1).any()  # every prompt is one of the layer's real input frames


@pytest.mark.parametrize("name", ALL)
def test_attention_prompting_starts_exactly_at_the_frozen_model(name):
    b = make(name)
    x = wave()
    with torch.no_grad():
        ref = b(x)
    handle = apply(b, "adaption", length=4, num_layers=1)
    n_layers, d = sizes(b)
    heads = handle.gates.shape[1]
    assert b.num_parameters(trainable_only=True) == 1 * (4 * d + heads)
    out = b(x)
    for h, r in zip(out.hidden_states, ref.hidden_states, strict=True):
        assert torch.equal(h, r)
    projected(out).backward()
    assert handle.gates.grad.abs().sum() > 0  # the gate learns first; the prompts follow once it opens
    with torch.no_grad():
        handle.gates.fill_(1.0)
        assert not torch.allclose(b(x).hidden_states[-1], ref.hidden_states[-1], atol=1e-4)


def test_attention_prompting_only_touches_top_layers():
    b = make("tiny:hubert")
    x = wave()
    with torch.no_grad():
        ref = b(x)
        handle = apply(b, "adaption", length=4, num_layers=1)
        handle.gates.fill_(1.0)
        out = b(x)
    assert torch.equal(out.hidden_states[1], ref.hidden_states[1])  # layer 0 untouched
    assert not torch.allclose(out.hidden_states[2], ref.hidden_states[2], atol=1e-4)


@pytest.mark.parametrize("method,options", [
    ("lora", {"r": 4}), ("dora", {"r": 2}), ("ia3", {}), ("prompt", {"length": 3}),
    ("deep_prompt", {"length": 2}), ("adaption", {"length": 3, "num_layers": 2}),
])
@pytest.mark.parametrize("name", ["tiny:wavlm"])
def test_save_load_round_trip(tmp_path, name, method, options):
    b = make(name)
    apply(b, method, **options)
    if method == "adaption":
        with torch.no_grad():
            b.peft_adaption.gates.fill_(0.3)
    train_steps(b, steps=2)
    x = wave(seed=5)
    with torch.no_grad():
        expected = b(x).hidden_states
    save(b, tmp_path / "adapter")
    assert read_config(tmp_path / "adapter")["methods"][0]["method"] == method
    fresh = make(name)
    load(fresh, tmp_path / "adapter")
    with torch.no_grad():
        got = fresh(x).hidden_states
    for e, g in zip(expected, got, strict=True):
        assert torch.equal(e, g)


def test_save_load_errors(tmp_path):
    b = make("tiny:hubert")
    with pytest.raises(ValueError, match="no PEFT method"):
        save(b, tmp_path / "a")
    handle = apply(b, "lora", r=2)
    handle.merge()
    with pytest.raises(ValueError, match="unmerge"):
        save(b, tmp_path / "a")
    handle.unmerge()
    save(b, tmp_path / "a")
    with pytest.raises(ValueError, match="tiny:hubert"):
        load(make("tiny:wav2vec2"), tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load(make("tiny:hubert"), tmp_path / "missing")


def test_full_finetune_trains_the_encoder_not_the_conv_front_end():
    b = make("tiny:wav2vec2")
    apply(b, "finetune")
    trainable = {n for n, p in b.named_parameters() if p.requires_grad}
    assert any(".encoder.layers." in n for n in trainable)
    assert not any("feature_extractor" in n for n in trainable)
    before = frozen_state(b)
    train_steps(b, steps=1, lr=1e-3)
    assert all(torch.equal(before[k], dict(b.named_parameters())[k]) for k in before)
    b.train()
    assert b.model.encoder.layers[0].dropout.training  # plain PyTorch train mode under fine-tuning


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="rank"):
        LoraConfig(r=0)
    b = make("tiny:hubert")
    with pytest.raises(KeyError, match="valid options"):
        apply(b, "lora", rank=4)
    with pytest.raises(KeyError, match="unknown PEFT method"):
        apply(b, "lorax")
    with pytest.raises(ValueError, match="do not exist"):
        apply(b, "lora", layers=[5])
    apply(b, "prompt", length=2)
    with pytest.raises(ValueError, match="already attached"):
        apply(b, "prompt", length=2)
    with pytest.raises(ValueError, match="num_layers"):
        apply(make("tiny:hubert"), "adaption", num_layers=9)
    assert set(PEFT_METHODS.names()) >= {"lora", "dora", "ia3", "prompt", "deep_prompt", "adaption", "finetune"}


def test_extend_mask_forms():
    keep2 = torch.tensor([[1, 1, 0]])
    assert extend_mask(keep2, 2).tolist() == [[1, 1, 1, 1, 0]]
    additive = torch.tensor([0.0, 0.0, -1e9]).view(1, 1, 1, 3)
    assert extend_mask(additive, 1).tolist() == [[[[0.0, 0.0, 0.0, -1e9]]]]
    square = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    square[..., 2] = False
    out = extend_mask(square, 2)
    assert out.shape == (1, 1, 5, 5) and out[0, 0, :, :2].all() and not out[0, 0, :, 4].any()
    assert extend_mask(None, 3) is None


@pytest.mark.parametrize("method", ["prompt", "adaption"])
def test_detach_restores_the_frozen_model(method):
    b = make("tiny:wavlm")
    x = wave()
    with torch.no_grad():
        ref = b(x).hidden_states[-1]
        handle = apply(b, method, length=2)
        if method == "adaption":
            handle.gates.fill_(1.0)
        assert not torch.allclose(b(x).hidden_states[-1], ref, atol=1e-4)
        handle.detach_from(b)
        assert torch.equal(b(x).hidden_states[-1], ref)
    assert b.num_parameters(trainable_only=True) == 0


def masked_hubert(attn_implementation: str):
    """A tiny HuBERT with a layer-norm front end that passes the attention mask (like hubert-large), so the layers
    receive 4-d masks (boolean under SDPA, additive under eager attention)."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    from backbones.hf_speech import Wav2Vec2StyleBackbone
    from backbones.tiny import SMALL, SMALL_CONV

    torch.manual_seed(0)
    config = HubertConfig(**SMALL, **SMALL_CONV, feat_extract_norm="layer", attn_implementation=attn_implementation)
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    return Wav2Vec2StyleBackbone(HubertModel(config).eval(), extractor, "hubert-masked")


@pytest.mark.parametrize("method", ["prompt", "deep_prompt", "adaption"])
@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_prompts_with_4d_attention_masks(attn_implementation, method):
    b = masked_hubert(attn_implementation)
    handle = apply(b, method, length=3)
    if method == "adaption":
        with torch.no_grad():
            handle.gates.fill_(0.5)
    check_padded_batch_matches_single_clip(b)


@pytest.mark.slow
def test_benchmark_main_runs_end_to_end(tmp_path, capsys):
    """benchmarks/peft_speech.py on tiny:whisper and two small synthetic datasets laid out like the real ones."""
    import importlib.util
    import json

    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)

    def dataset(folder, header, rows):
        (tmp_path / folder / "audio").mkdir(parents=True)
        lines = [header]
        for i, (label, group) in enumerate(rows):
            tone = np.sin(2 * np.pi * (300 + 500 * label) * np.arange(8000) / 16000)
            sf.write(tmp_path / folder / "audio" / f"{i}.flac", 0.3 * tone + 0.05 * rng.normal(size=8000), 16000)
            lines.append(f"audio/{i}.flac,{'ab'[label]},{group}")
        (tmp_path / folder / "manifest.csv").write_text("\n".join(lines) + "\n")

    dataset("gibbon-caller-id", "path,individual,site", [(i % 2, "s") for i in range(10)])
    dataset("danum-gibbon", "path,label,recorder", [(i % 2, f"R{i // 4}") for i in range(16)])
    spec = importlib.util.spec_from_file_location("peft_speech", ROOT / "benchmarks" / "peft_speech.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "rows.jsonl"
    argv = ["--backbone", "tiny:whisper", "--data-root", str(tmp_path), "--clip-seconds", "0.5", "--epochs", "1",
            "--folds", "1", "--methods", "linear_probe", "per_layer_probe", "lora_r4", "adaption", "--out", str(out)]
    assert bench.main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["task"], r["method"]) for r in rows} >= {("caller_id", "lora_r4"), ("danum", "adaption")}
    assert all(0.0 <= r["test_bacc"] <= 1.0 for r in rows)
    lora = next(r for r in rows if r["method"] == "lora_r4")
    assert lora["trainable"] == 2 * 2 * 2 * 4 * 32  # 2 layers, q and v, rank 4, width 32
    assert "| caller_id | lora_r4 |" in capsys.readouterr().out
    assert bench.main(["--data-root", str(tmp_path / "absent"), "--methods", "linear_probe"]) == 0  # skips cleanly
