"""``tiny:*``: random twins of every hub family, built from the real architectures with small configs.

Each twin goes through the same wrapper as its full-size family (so tests exercise the real code
path) and is deterministic: weights come from ``seed`` under a forked RNG, leaving the caller's
global RNG untouched. Nothing is downloaded. Source labels of classifier twins are the real
label sets where the library ships them (ImageNet-1k for ``tiny:vit``/``tiny:clip``, Kinetics-400
for ``tiny:r3d``); ``tiny:ast`` has 10 placeholder labels (AudioSet names live in the hub config).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from backbones.base import Backbone

#: Shared transformer sizes: 2 layers, width 32, 2 heads, feed-forward 64.
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
#: wav2vec 2.0 conv front end narrowed to 16 channels (same 7 layers, kernels and strides: 320x downsampling).
SMALL_CONV = {"conv_dim": (16,) * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}


def _seeded(build: Callable[[], Backbone], seed: int) -> Backbone:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _wav2vec2_style(config_cls: str, model_cls: str, name: str, seed: int, config: dict, **extractor) -> Backbone:
    import transformers

    from backbones.hf_speech import Wav2Vec2StyleBackbone

    def build() -> Backbone:
        config_obj = getattr(transformers, config_cls)(**SMALL, **SMALL_CONV, **config)
        model = getattr(transformers, model_cls)(config_obj).eval()
        fe = transformers.Wav2Vec2FeatureExtractor(**extractor)
        return Wav2Vec2StyleBackbone(model, fe, name)

    return _seeded(build, seed)


def hubert(seed: int = 0) -> Backbone:
    """``tiny:hubert``: HubertModel, group-norm front end, no attention mask (like hubert-base)."""
    return _wav2vec2_style("HubertConfig", "HubertModel", "tiny:hubert", seed, {}, do_normalize=True)


def wav2vec2(seed: int = 0) -> Backbone:
    """``tiny:wav2vec2``: Wav2Vec2Model with per-clip normalisation (like wav2vec2-base)."""
    return _wav2vec2_style("Wav2Vec2Config", "Wav2Vec2Model", "tiny:wav2vec2", seed, {}, do_normalize=True)


def wavlm(seed: int = 0) -> Backbone:
    """``tiny:wavlm``: WavLMModel (relative position bias) with the large models' layer-norm conv front end and
    pre-norm layers, passing the attention mask for padded batches (as their feature extractors ask)."""
    layer_norm = {"feat_extract_norm": "layer", "do_stable_layer_norm": True}
    return _wav2vec2_style(
        "WavLMConfig", "WavLMModel", "tiny:wavlm", seed, layer_norm, do_normalize=True, return_attention_mask=True
    )


def whisper(seed: int = 0) -> Backbone:
    """``tiny:whisper``: a 2-layer WhisperEncoder (80 mels, 1500 positions) behind the torch log-mel front end."""
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from backbones.hf_whisper import WhisperEncoderBackbone

    def build() -> Backbone:
        config = WhisperConfig(
            d_model=32,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=64,
            num_mel_bins=80,
            vocab_size=64,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=3,
            max_target_positions=16,
            attn_implementation="sdpa",
        )
        extractor = WhisperFeatureExtractor(feature_size=80)
        return WhisperEncoderBackbone(WhisperEncoder(config).eval(), extractor, "tiny:whisper")

    return _seeded(build, seed)


def ast(seed: int = 0) -> Backbone:
    """``tiny:ast``: ASTForAudioClassification on 32 Kaldi mel bands x 100 frames (1 s), 10 labels."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    from backbones.hf_audio import ASTBackbone

    def build() -> Backbone:
        labels = {i: f"tiny_label_{i}" for i in range(10)}
        config = ASTConfig(
            **SMALL,
            num_mel_bins=32,
            max_length=100,
            id2label=labels,
            label2id={v: k for k, v in labels.items()},
            attn_implementation="sdpa",
        )
        model = ASTForAudioClassification(config).eval()
        return ASTBackbone(model, ASTFeatureExtractor(num_mel_bins=32, max_length=100), "tiny:ast")

    return _seeded(build, seed)


def vggish(seed: int = 0) -> Backbone:
    """``tiny:vggish``: the VGGish layout at 1/8 width (fc 64, 16-d embeddings) with the real front end."""
    from backbones.vggish import VGGishBackbone, VGGishFrontEnd, VGGishNet

    layout = (8, "M", 16, "M", 32, 32, "M", 64, 64, "M")
    return _seeded(lambda: VGGishBackbone(VGGishNet(layout, 64, 16).eval(), VGGishFrontEnd(), "tiny:vggish"), seed)


def vit(seed: int = 0) -> Backbone:
    """``tiny:vit``: timm's own ``test_vit`` (random init), with its pretrained_cfg (160 px, ImageNet-1k names)."""
    import timm

    from backbones.timm_image import TimmBackbone

    return _seeded(lambda: TimmBackbone(timm.create_model("test_vit", pretrained=False).eval(), "tiny:vit"), seed)


def clip(seed: int = 0) -> Backbone:
    """``tiny:clip``: open_clip's CLIP class (2-layer ViT on 32 px, 2-layer text tower, 16 tokens), ImageNet head."""
    from dataclasses import asdict

    from open_clip import set_model_preprocess_cfg
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    from open_clip.tokenizer import SimpleTokenizer
    from open_clip.transform import PreprocessCfg

    from backbones.open_clip_image import OpenClipBackbone

    def build() -> Backbone:
        vision = CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8, image_size=32)
        text = CLIPTextCfg(context_length=16, vocab_size=49408, width=32, heads=2, layers=2)
        model = CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text).eval()
        set_model_preprocess_cfg(model, asdict(PreprocessCfg(size=32)))
        return OpenClipBackbone(model, SimpleTokenizer(context_length=16), "tiny:clip", templates="photo")

    return _seeded(build, seed)


def r3d(seed: int = 0) -> Backbone:
    """``tiny:r3d``: torchvision's VideoResNet (R3D blocks, one per stage) on 4 frames of 32 px, Kinetics-400 head."""
    from torchvision.models.video.resnet import BasicBlock, BasicStem, Conv3DSimple, VideoResNet

    from backbones.video import VideoBackbone, kinetics_weights

    def build() -> Backbone:
        weights = kinetics_weights("r3d_18")
        model = VideoResNet(BasicBlock, [Conv3DSimple] * 4, [1, 1, 1, 1], BasicStem, num_classes=400).eval()
        return VideoBackbone(model, weights, "tiny:r3d", frames=4, size=32)

    return _seeded(build, seed)


#: name -> builder, for registration and test matrices.
def birdnet(seed: int = 0, engine: str = "torch") -> Backbone:
    """``tiny:birdnet``: a BirdNET-shaped ``.tflite`` written with seeded random weights
    (:func:`backbones.tflite.writer.tiny_birdnet_tflite`), through the ``offline:birdnet`` wrapper: 1024-sample
    windows at 8 kHz every 512 samples, 8-d embeddings, 5 placeholder labels. ``engine="litert"`` runs the same
    bytes in LiteRT (the reference of the torch rebuild)."""
    from backbones.offline.birdnet import BirdNET
    from backbones.tflite.writer import TINY, tiny_birdnet_tflite

    labels = tuple(f"tiny species {i}" for i in range(TINY["labels"]))
    return BirdNET(tiny_birdnet_tflite(seed), labels, engine=engine, sample_rate=8000, hop_seconds=0.064,
                   name="tiny:birdnet")


TWINS: dict[str, Callable[..., Backbone]] = {
    "tiny:hubert": hubert,
    "tiny:wav2vec2": wav2vec2,
    "tiny:wavlm": wavlm,
    "tiny:whisper": whisper,
    "tiny:ast": ast,
    "tiny:vggish": vggish,
    "tiny:vit": vit,
    "tiny:clip": clip,
    "tiny:r3d": r3d,
    "tiny:birdnet": birdnet,
}

