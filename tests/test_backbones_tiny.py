"""Tiny random twins: the shared invariants, and each wrapper's numerics against the library it reimplements."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import backbones
from backbones.tiny import TWINS
from tests import numerics
from tests.backbone_checks import check_backbone, example_input

_CACHE: dict[str, backbones.Backbone] = {}


def twin(name: str) -> backbones.Backbone:
    """Build each twin once per session (the checks leave it unchanged)."""
    if name not in _CACHE:
        _CACHE[name] = backbones.create(name)
    return _CACHE[name]


@pytest.mark.parametrize("name", sorted(TWINS))
def test_twin_passes_shared_checks(name):
    backbone = twin(name)
    check_backbone(backbone)
    assert backbone.num_parameters() > 0 and backbone.num_parameters(trainable_only=True) == 0


def test_names_list_every_family_and_example():
    names = set(backbones.names())
    required = set(TWINS) | {
        "timm:", "open_clip:", "torchvision:", "hf:", "vggish",
        "timm:vit_base_patch16_224.augreg_in21k_ft_in1k", "timm:resnet50.a1_in1k",
        "open_clip:ViT-B-32/laion2b_s34b_b79k", "hf:facebook/hubert-base-ls960", "hf:facebook/wav2vec2-base",
        "hf:microsoft/wavlm-base-plus", "hf:openai/whisper-base", "hf:MIT/ast-finetuned-audioset-10-10-0.4593",
    } | {f"torchvision:{m}" for m in ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t")}  # fmt: skip
    assert required <= names, sorted(required - names)


def test_twins_are_seeded_and_leave_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = TWINS["tiny:hubert"](), TWINS["tiny:hubert"](), TWINS["tiny:hubert"](seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.numerics
def test_wav2vec2_normalisation_matches_feature_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    backbone = twin("tiny:wav2vec2")
    wave = example_input(backbone) * 3 + 0.05
    ref_in = Wav2Vec2FeatureExtractor(do_normalize=True)(list(wave.numpy()), sampling_rate=16000, return_tensors="pt")
    ref = backbone.model(ref_in.input_values, output_hidden_states=True)
    out = backbone(wave)
    numerics.assert_chain_close(out.hidden_states[-1], ref.last_hidden_state, backbone, what="last hidden state")
    assert len(out.hidden_states) == len(ref.hidden_states) == backbone.num_layers + 1
    assert backbone.attention_projections() == {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "out_proj"}
    assert backbone.hidden_size == backbone.spec.feature_dim


@pytest.mark.numerics
def test_padded_batch_masks_frames_and_normalises_valid_samples_only():
    backbone = twin("tiny:wavlm")  # passes the attention mask, as checkpoints with return_attention_mask do
    wave = example_input(backbone)
    lengths = torch.tensor([16000, 9600])
    out = backbone(wave, lengths=lengths)
    valid = backbone.frame_lengths(lengths)
    assert out.mask.sum(1).tolist() == valid.tolist()
    alone = backbone(wave[1:, :9600])
    numerics.assert_chain_close(out.features[1], alone.features[0], backbone, what="features")
    numerics.assert_chain_close(out.hidden_states[-1][1, : valid[1]], alone.hidden_states[-1][0], backbone,
                                what="last hidden state")


@pytest.mark.numerics
def test_wavlm_attention_rerouting_is_exact_and_lora_is_live():
    from peft import LoraConfig, inject_adapter_in_model
    from transformers import WavLMModel

    backbone = TWINS["tiny:wavlm"]()
    original = WavLMModel(backbone.model.config).eval()  # untouched transformers attention
    original.load_state_dict(backbone.model.state_dict())
    wave = example_input(backbone)
    mask = torch.ones(2, wave.shape[1], dtype=torch.long)
    mask[1, 8000:] = 0
    ref = original(wave, attention_mask=mask).last_hidden_state
    mine = backbone.model(wave, attention_mask=mask).last_hidden_state
    numerics.assert_chain_close(mine, ref, original, what="rerouted attention")
    base = backbone(wave).features
    lora = LoraConfig(target_modules=["q_proj", "v_proj"], r=2, init_lora_weights=False)
    inject_adapter_in_model(lora, backbone.model)
    assert not torch.allclose(backbone(wave).features, base, atol=1e-4), "LoRA on WavLM q/v must change the output"


def test_whisper_keeps_clip_length_and_matches_manual_reference():
    from transformers import WhisperFeatureExtractor

    backbone = twin("tiny:whisper")
    wave = 0.1 * torch.randn(1, 5 * 16000, generator=torch.Generator().manual_seed(3))
    out = backbone(wave)
    assert all(h.shape[1] == wave.shape[1] // 320 for h in out.hidden_states)  # 250 frames for 5 s, not 1500
    fe = WhisperFeatureExtractor(feature_size=80)
    mel = torch.from_numpy(fe._np_extract_fbank_features(wave.numpy().astype(np.float64), "cpu")).float()
    assert torch.allclose(backbone.frontend(wave), mel, atol=1e-4)
    enc = backbone.model
    h = torch.nn.functional.gelu(enc.conv2(torch.nn.functional.gelu(enc.conv1(mel)))).transpose(1, 2)
    h = h + enc.embed_positions.weight[: h.shape[1]]
    numerics.assert_chain_close(out.hidden_states[0], h, enc.conv1, enc.conv2, what="conv stem")
    numerics.assert_chain_close(out.hidden_states[1], enc.layers[0](h, None), enc.conv1, enc.conv2, enc.layers[0],
                                what="first layer")


@pytest.mark.numerics
def test_whisper_on_30_s_equals_transformers_encoder():
    from transformers import WhisperFeatureExtractor

    backbone = twin("tiny:whisper")
    wave = 0.1 * torch.randn(1, 30 * 16000, generator=torch.Generator().manual_seed(4))
    feats = WhisperFeatureExtractor(feature_size=80)(wave.numpy(), sampling_rate=16000, return_tensors="pt")
    ref = backbone.model(feats.input_features).last_hidden_state
    numerics.assert_chain_close(backbone(wave).hidden_states[-1], ref, backbone, what="last hidden state")
    with pytest.raises(ValueError, match="at most 30 s"):
        backbone(torch.zeros(1, 31 * 16000))


def assert_padded_batch_equals_alone(backbone, wave: torch.Tensor, lengths: list[int]) -> None:
    """Each clip's hidden states at its valid frames and its features equal those of the clip run alone, to
    float32's error of the two computations through the backbone (batch shapes change the summation order)."""
    with torch.no_grad():
        out = backbone(wave, lengths=torch.tensor(lengths))
        for i, n in enumerate(lengths):
            alone = backbone(wave[i : i + 1, :n])
            frames = alone.hidden_states[-1].shape[1]
            assert int(out.mask[i].sum()) == frames
            for layer, (batched, single) in enumerate(zip(out.hidden_states, alone.hidden_states, strict=True)):
                numerics.assert_chain_close(batched[i, :frames], single[0], backbone, what=f"clip {i} layer {layer}")
            numerics.assert_chain_close(out.features[i], alone.features[0], backbone, what=f"clip {i} features")


@pytest.mark.numerics
def test_whisper_padded_clip_equals_clip_alone():
    backbone = twin("tiny:whisper")
    # Lengths off the hop (160) and the encoder stride (320); the padding is noise, not zeros, so nothing
    # past a clip's end may reach its frames (reflect padding at its own end, own log-mel floor, conv stem).
    wave = example_input(backbone, batch=4, seconds=2.0)
    lengths = [32000, 16000, 12345, 3201]
    assert_padded_batch_equals_alone(backbone, wave, lengths)
    mel = backbone.frontend(wave, torch.tensor(lengths))
    torch.testing.assert_close(mel[2, :, : 12345 // 160], backbone.frontend(wave[2:3, :12345])[0], atol=1e-5, rtol=0)


@pytest.mark.numerics
@pytest.mark.parametrize("name", ["tiny:hubert", "tiny:wav2vec2", "tiny:wavlm"])
def test_wav2vec2_style_padded_clip_equals_clip_alone(name):
    backbone = twin(name)
    # Noise in the padding: the group-norm front ends (hubert, wav2vec2) used to average it into every frame.
    wave = example_input(backbone, batch=4, seconds=2.0)
    lengths = [32000, 16000, 12345, 3201]
    assert_padded_batch_equals_alone(backbone, wave, lengths)


@pytest.mark.numerics
@pytest.mark.parametrize("name", ["tiny:hubert", "tiny:wav2vec2"])
def test_conv_front_end_with_lengths_is_each_clip_alone_and_zero_past_its_end(name):
    from backbones.hf_speech import masked_group_norm

    encoder = twin(name).model.feature_extractor
    first = encoder.conv_layers[0]
    assert isinstance(first.layer_norm, torch.nn.GroupNorm)  # the case this guards
    wave = 3 * example_input(twin(name), batch=3, seconds=1.0, seed=5) + 0.2  # raw, unnormalised, noisy padding
    lengths = torch.tensor([16000, 7777, 401])
    with torch.no_grad():
        out = encoder(wave, lengths)  # (B, C, T)
        frames = twin(name).frame_lengths(lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = encoder(wave[i : i + 1, :n])[0]
            assert alone.shape[-1] == frames[i]
            numerics.assert_chain_close(out[i, :, : frames[i]], alone, encoder, what=f"clip {i}")
            assert not out[i, :, frames[i] :].any()
        h = first.conv(wave[:, None])  # all valid: masked_group_norm is the module itself
        full = masked_group_norm(h, torch.ones(3, h.shape[-1], dtype=torch.bool), first.layer_norm)
        # two float32 normalisations (mean, then variance: 2 reductions of one channel's T frames) of the same h
        bound = 2 * numerics.chain_tol(torch.float32, 2, h.shape[-1])
        err = numerics.rel_error(full, first.layer_norm(h))
        assert err <= bound, (err, bound)
        assert torch.equal(encoder(wave), type(encoder).forward(encoder, wave))  # no lengths: the library's own


def test_padded_batch_gradient_reaches_valid_samples_only():
    backbone = twin("tiny:hubert")
    wave = example_input(backbone, batch=2, seconds=1.0).requires_grad_(True)
    out = backbone(wave, lengths=torch.tensor([16000, 9000]))
    (out.features.sum() + out.hidden_states[1].sum()).backward()
    assert wave.grad[:, :9000].abs().sum(1).min() > 0
    assert not wave.grad[1, 9000:].any()


def test_ast_front_end_matches_feature_extractor():
    from transformers import ASTFeatureExtractor

    backbone = twin("tiny:ast")
    wave = example_input(backbone, seconds=0.7)
    fe = ASTFeatureExtractor(num_mel_bins=32, max_length=100)
    ref = fe(list(wave.numpy()), sampling_rate=16000, return_tensors="pt").input_values
    assert torch.allclose(backbone.frontend(wave), ref, atol=1e-4)
    out = backbone(wave)
    direct = backbone.model(input_values=ref).logits
    assert torch.allclose(out.logits, direct, atol=1e-4)
    assert backbone.spec.label_names[3] == "tiny_label_3"


def test_vggish_front_end_and_network_match_torchvggish():
    from torchvggish import vggish_input
    from torchvggish.torchvggish import VGG, make_layers

    from backbones.vggish import VGGishBackbone, VGGishFrontEnd, VGGishNet

    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 3 * 16000)
    ref = vggish_input.waveform_to_examples(wave, 16000, return_tensor=False)  # (3, 96, 64), numpy
    frontend = VGGishFrontEnd()
    mine = frontend(torch.tensor(wave[None], dtype=torch.float32))[0]
    assert mine.shape == ref.shape and np.abs(mine.numpy() - ref).max() < 1e-4
    net = VGGishNet().eval()
    port = VGG(make_layers(), postprocess=False).eval()
    port.load_state_dict(net.state_dict())  # same keys: the published checkpoint loads into VGGishNet
    patches = torch.tensor(ref, dtype=torch.float32)[:, None]
    numerics.assert_chain_close(net(patches), port(patches), net, what="VGGish embeddings")
    backbone = VGGishBackbone(net, frontend, "vggish-random")
    with pytest.raises(ValueError, match="at least"):
        backbone(torch.zeros(1, 8000))


def test_vit_logits_are_timm_forward_and_spec_is_its_pretrained_cfg():
    backbone = twin("tiny:vit")
    x = example_input(backbone)
    out = backbone(x)
    numerics.assert_chain_close(out.logits, backbone.model(x), backbone.model, what="logits")
    assert backbone.spec.shape == tuple(backbone.model.pretrained_cfg["input_size"])
    assert backbone.spec.label_names[1] == "goldfish, Carassius auratus"


def test_clip_text_head_and_text_embeddings():
    backbone = twin("tiny:clip")
    emb = backbone.text_embeddings(["a photo of a gibbon.", "a photo of a bird."])
    assert emb.shape == (2, backbone.spec.feature_dim)
    # unit vectors: the normalisation and this check are reductions of length D, then a division
    unit = numerics.chain_tol(torch.float32, 3, backbone.spec.feature_dim)
    assert (emb.norm(dim=-1) - 1).abs().max() <= unit
    x = example_input(backbone)
    out = backbone(x)
    assert (out.features.norm(dim=-1) - 1).abs().max() <= unit
    head = backbone.text_embeddings([f"a photo of a {backbone.spec.label_names[0]}."])
    expected = backbone.model.logit_scale.exp() * out.features @ head.T
    numerics.assert_chain_close(out.logits[:, :1], expected, backbone.model, what="text-head logits")
    assert backbone.spec.num_labels == 1000
    with pytest.raises(ValueError):
        backbone.text_embeddings([])


def test_video_features_feed_the_classifier():
    backbone = twin("tiny:r3d")
    x = example_input(backbone)
    out = backbone(x)
    numerics.assert_chain_close(backbone.model.fc(out.features), out.logits, backbone.model.fc, what="logits")
    assert backbone.spec.label_names[0] == "abseiling" and backbone.spec.frames == 4


@pytest.mark.parametrize("name", ["tiny:hubert", "tiny:whisper"])
def test_speech_minimum_clip_length(name):
    backbone = twin(name)
    shortest = backbone.min_samples()
    assert backbone(torch.zeros(1, shortest)).hidden_states[-1].shape[1] == 1
    with pytest.raises(ValueError, match="too short"):
        backbone(torch.zeros(1, shortest - 1))
    with pytest.raises(ValueError, match="lengths"):
        backbone(torch.zeros(2, shortest), lengths=torch.tensor([shortest, shortest + 1]))


def test_full_finetuning_in_train_mode_keeps_every_layer():
    """LayerDrop is off: an unfrozen encoder in train mode still returns every hidden state, every step."""
    import torch
    import transformers

    from backbones.hf_speech import Wav2Vec2StyleBackbone
    from backbones.tiny import SMALL, SMALL_CONV

    for config_cls, model_cls in (("HubertConfig", "HubertModel"), ("WavLMConfig", "WavLMModel")):
        # A checkpoint may ship a high LayerDrop; the wrapper must switch it off.
        config = getattr(transformers, config_cls)(**SMALL, **SMALL_CONV, layerdrop=0.9)
        model = getattr(transformers, model_cls)(config)
        bb = Wav2Vec2StyleBackbone(model, transformers.Wav2Vec2FeatureExtractor(), "layerdrop-test")
        bb.unfreeze().train()
        for _ in range(5):
            out = bb(torch.randn(2, 16000))
            assert len(out.hidden_states) == bb.spec.num_layers
