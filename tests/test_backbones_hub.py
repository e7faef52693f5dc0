"""The hub-loading code paths (hf:, timm:, torchvision:, vggish, open_clip:) on tiny local checkpoints, offline.

Weights are written where the real loaders look (``save_pretrained`` folders, a timm checkpoint file,
torch-hub checkpoint names under a temporary ``TORCH_HOME``), then read back through the same factories
users call with hub ids.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import backbones
from backbones.tiny import SMALL, SMALL_CONV
from tests.backbone_checks import check_backbone, check_output_shapes, example_input

ROOT = Path(__file__).resolve().parents[1]


def test_offline_error_is_one_clear_error(tmp_path):
    """With an empty cache and HF_HUB_OFFLINE=1 every hub family fails fast with OfflineWeightsError."""
    ids = [
        "hf:facebook/hubert-base-ls960",
        "timm:resnet50.a1_in1k",
        "torchvision:r3d_18",
        "vggish",
        "open_clip:ViT-B-32/laion2b_s34b_b79k",
    ]
    script = textwrap.dedent(f"""
        import json, backbones
        out = {{}}
        for name in {ids!r}:
            try:
                backbones.create(name)
                out[name] = ["built", ""]
            except Exception as err:
                out[name] = [type(err).__name__, str(err)]
        print(json.dumps(out))
    """)
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), TORCH_HOME=str(tmp_path / "torch"), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
    )
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ids:
        kind, message = results[name]
        assert kind == "OfflineWeightsError", (name, kind, message)
        assert repr(name) in message and "offline:whisper_tiny_en" in message
        assert ("HF_HOME" in message) or ("TORCH_HOME" in message)
        assert "Traceback" not in message
    assert "HF_HOME" in results["hf:facebook/hubert-base-ls960"][1]


def _save_speech(tmp_path: Path, kind: str) -> Path:
    import transformers

    folder = tmp_path / kind
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if kind == "whisper":
            config = transformers.WhisperConfig(
                d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
                decoder_attention_heads=2, decoder_ffn_dim=64, vocab_size=64, pad_token_id=0, bos_token_id=1,
                eos_token_id=2, decoder_start_token_id=3, max_target_positions=16,
            )  # fmt: skip
            transformers.WhisperModel(config).save_pretrained(folder)
            transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
        elif kind == "ast":
            labels = {i: f"sound {i}" for i in range(5)}
            config = transformers.ASTConfig(
                **SMALL, num_mel_bins=32, max_length=64, id2label=labels, label2id={v: k for k, v in labels.items()}
            )
            transformers.ASTForAudioClassification(config).save_pretrained(folder)
            transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=64).save_pretrained(folder)
        else:
            config_cls, model_cls = {"hubert": ("HubertConfig", "HubertModel"), "wavlm": ("WavLMConfig", "WavLMModel")}[
                kind
            ]
            config = getattr(transformers, config_cls)(**SMALL, **SMALL_CONV)
            getattr(transformers, model_cls)(config).save_pretrained(folder)
            transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["hubert", "wavlm", "whisper", "ast"])
def test_hf_local_folder_goes_through_the_hub_path(tmp_path, kind):
    from backbones.hf_hub import describe

    folder = _save_speech(tmp_path, kind)
    backbone = backbones.create(f"hf:{folder}")
    assert backbone.name == f"hf:{folder}"
    out = check_backbone(backbone)
    info = describe(str(folder))
    assert info["parameters"] == backbone.num_parameters() and info["weights_available"]
    assert info["spec"] == backbone.spec
    if kind == "ast":
        assert backbone.spec.label_names == tuple(f"sound {i}" for i in range(5)) and out.logits.shape == (2, 5)
    else:
        assert backbone.spec.modality == "speech" and backbone.spec.num_layers == 3
        expected = "eager" if kind == "wavlm" else "sdpa"  # WavLM has no SDPA path in transformers
        assert backbone.model.config._attn_implementation == expected
    if kind == "whisper":
        assert type(backbone.model).__name__ == "WhisperEncoder"  # the decoder is not kept


def test_hf_loaded_weights_are_the_saved_ones(tmp_path):
    from transformers import HubertModel

    folder = _save_speech(tmp_path, "hubert")
    backbone = backbones.create(f"hf:{folder}")
    reference = HubertModel.from_pretrained(folder).eval()
    wave = example_input(backbone)
    normed = (wave - wave.mean(1, keepdim=True)) / torch.sqrt(wave.var(1, unbiased=False, keepdim=True) + 1e-7)
    assert torch.allclose(backbone(wave).hidden_states[-1], reference(normed).last_hidden_state, atol=1e-5)


def test_hf_half_precision_checkpoint_loads_as_float32(tmp_path):
    from transformers import HubertModel

    folder = _save_speech(tmp_path, "hubert")
    HubertModel.from_pretrained(folder).half().save_pretrained(folder)
    backbone = backbones.create(f"hf:{folder}")
    assert {p.dtype for p in backbone.parameters()} == {torch.float32}
    assert backbone(example_input(backbone)).features.dtype == torch.float32


def test_hf_errors_name_the_fix(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(
        tmp_path / "bert"
    )
    with pytest.raises(ValueError, match="supported model types"):
        backbones.create(f"hf:{tmp_path / 'bert'}")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        backbones.create(f"hf:{tmp_path / 'missing'}")
    folder = _save_speech(tmp_path, "hubert")
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        backbones.create(f"hf:{folder}")


def test_timm_random_and_local_checkpoint(tmp_path):
    from safetensors.torch import save_file

    from backbones.timm_image import describe

    random_vit = backbones.create("timm:test_vit", pretrained=False)
    assert describe("test_vit")["parameters"] == random_vit.num_parameters()
    state = {k: v.clone() + 0.01 for k, v in random_vit.model.state_dict().items()}
    save_file(state, tmp_path / "vit.safetensors")
    loaded = backbones.create("timm:test_vit", checkpoint=tmp_path / "vit.safetensors")
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in state.items())
    assert loaded.spec == random_vit.spec and loaded.spec.num_labels == 1000
    small = backbones.create("timm:test_vit", pretrained=False, img_size=64)  # the built size wins over the cfg
    assert small.spec.shape == (3, 64, 64)
    check_output_shapes(small, small(torch.randn(1, *small.spec.shape)), 1)
    with pytest.raises(KeyError, match="pretrained tag"):
        backbones.create("timm:resnet50.no_such_tag")
    with pytest.raises(KeyError, match="no model"):
        backbones.create("timm:resnet_from_mars")
    with pytest.raises(FileNotFoundError):
        backbones.create("timm:test_vit", checkpoint=tmp_path / "missing.pth")


def test_torch_hub_checkpoints_load_from_the_cache(tmp_path, monkeypatch):
    """torchvision and VGGish read their published checkpoint names from $TORCH_HOME (weights_only)."""
    from torchvggish.torchvggish import VGGISH_WEIGHTS
    from torchvision.models import get_model

    from backbones.vggish import VGGishNet
    from backbones.video import describe, kinetics_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    weights = kinetics_weights("mc3_18")
    assert not describe("mc3_18")["weights_available"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        video_state = get_model("mc3_18", weights=None).state_dict()
        vggish_state = VGGishNet().state_dict()
    torch.save(video_state, checkpoints / os.path.basename(weights.url))
    torch.save(vggish_state, checkpoints / os.path.basename(VGGISH_WEIGHTS))
    assert describe("mc3_18")["weights_available"]
    video = backbones.create("torchvision:mc3_18", frames=2)
    assert all(torch.equal(video.model.state_dict()[k], v) for k, v in video_state.items())
    assert video.spec.shape == (3, 2, 112, 112) and video.spec.num_labels == 400
    assert video.num_parameters() == weights.meta["num_params"]
    check_output_shapes(video, video(torch.randn(1, 3, 2, 112, 112)), 1)
    vggish = backbones.create("vggish")
    assert all(torch.equal(vggish.model.state_dict()[k], v) for k, v in vggish_state.items())
    with pytest.raises(KeyError, match="video model"):
        backbones.create("torchvision:resnet50")


def test_open_clip_names_are_checked():
    with pytest.raises(KeyError, match="tag"):
        backbones.create("open_clip:ViT-B-32/no_such_tag")
    with pytest.raises(KeyError, match="architecture"):
        backbones.create("open_clip:ViT-Z-99/openai")


def test_cli_lists_specs_without_downloading(capsys):
    from reprogram.cli import main

    patterns = ["timm:*", "torchvision:*", "hf:*", "open_clip:*", "vggish", "tiny:vit"]
    assert main(["backbones", "--json", *patterns]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"timm:", "hf:", "torchvision:s3d", "vggish", "tiny:vit"} <= set(rows)
    assert not any("error" in r for r in rows.values())
    resnet = rows["timm:resnet50.a1_in1k"]
    assert resnet["spec"]["shape"] == [3, 224, 224] and resnet["num_labels"] == 1000
    assert resnet["parameters"] == 25_557_032 and resnet["weights_available"] is False
    assert rows["torchvision:mvit_v2_s"]["spec"]["shape"] == [3, 16, 224, 224]
    assert rows["open_clip:ViT-B-32/laion2b_s34b_b79k"]["spec"]["feature_dim"] == 512
    hubert = rows["hf:facebook/hubert-base-ls960"]
    assert hubert["modality"] == "speech" and hubert["spec"]["sample_rate"] == 16000
    assert hubert["parameters"] is None and hubert["weights_available"] is False
    assert rows["tiny:vit"]["parameters"] == 371_240 and rows["tiny:vit"]["weights"].startswith("random")
    assert main(["backbones", "nothing-matches-*"]) == 1
