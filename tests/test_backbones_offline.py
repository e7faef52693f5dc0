"""The offline backbones are real pretrained models, frozen, and honour the Backbone interface.

Each model is proven pretrained by a behaviour random weights cannot show: EfficientNet-Lite0 names the
Grace Hopper photo, CREPE finds 440 Hz, the Whisper encoder reproduces the CTranslate2 runtime, and the
inflated video model reproduces the 2-D model on a clip of identical frames.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backbones import registry
from tests import numerics
from tests.backbone_checks import check_backbone

OFFLINE = ("offline:efficientnet_lite0", "offline:efficientnet_lite0_video", "offline:whisper_tiny_en", "offline:crepe")


@pytest.fixture(scope="module")
def lite0():
    return registry.create("offline:efficientnet_lite0")


@pytest.fixture(scope="module")
def lite0_video():
    return registry.create("offline:efficientnet_lite0_video", frames=4)


@pytest.fixture(scope="module")
def whisper():
    return registry.create("offline:whisper_tiny_en")


@pytest.fixture(scope="module")
def crepe():
    return registry.create("offline:crepe", hop_length=400)


def small_input(backbone, seed: int = 0) -> torch.Tensor:
    """A batch of 2 small inputs for ``backbone.spec``: 0.5 s clips, 64 x 64 images, 2-frame clips.

    The networks are convolutional or sliced-position transformers, so small inputs exercise the same code.
    """
    g = torch.Generator().manual_seed(seed)
    spec = backbone.spec
    if spec.modality in ("speech", "audio"):
        return 0.1 * torch.randn(2, spec.sample_rate // 2, generator=g)
    if spec.modality == "image":
        return torch.randn(2, spec.channels, 64, 64, generator=g)
    return torch.randn(2, spec.channels, 2, 64, 64, generator=g)


def test_registry_lists_offline_names():
    assert set(OFFLINE) <= set(registry.names())


@pytest.mark.parametrize("fixture", ["lite0", "lite0_video", "whisper", "crepe"])
def test_frozen_interface(fixture, request):
    backbone = request.getfixturevalue(fixture)
    assert backbone.num_parameters() > 1_000_000  # the real network, not a twin
    check_backbone(backbone, small_input(backbone))


def test_efficientnet_names_grace_hopper(lite0):
    from matplotlib import cbook
    from PIL import Image

    spec = lite0.spec
    assert spec.shape == (3, 224, 224) and spec.num_labels == 1000 and spec.feature_dim == 1280
    img = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    h, w = spec.height_width
    scale = h / min(img.size)  # shorter side to 224, centre crop
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    left, top = (img.width - w) // 2, (img.height - h) // 2
    img = img.crop((left, top, left + w, top + h))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)  # (3, H, W)
    x = (x - torch.tensor(spec.mean)[:, None, None]) / torch.tensor(spec.std)[:, None, None]
    with torch.no_grad():
        logits = lite0(x[None]).logits[0]
    assert spec.label_names[int(logits.argmax())] == "military uniform"


@pytest.mark.numerics
def test_video_boring_clip_equals_image_model(lite0, lite0_video):
    assert lite0_video.spec.shape == (3, 4, 224, 224)
    assert lite0_video.spec.label_names == lite0.spec.label_names
    frame = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    clip = frame[:, :, None].expand(-1, -1, 4, -1, -1)  # (1, 3, T, H, W), identical frames
    with torch.no_grad():
        image_out, video_out = lite0(frame), lite0_video(clip)
        moving = lite0_video(torch.cat([clip[:, :, :2], torch.flip(clip[:, :, 2:], dims=[-1])], dim=2))
    # two float32 computations of one function, the video one summing its inflated kernels over time
    numerics.assert_chain_close(video_out.logits, image_out.logits, lite0_video, what="logits")
    numerics.assert_chain_close(video_out.features, image_out.features, lite0_video, what="features")
    assert (moving.logits - image_out.logits).abs().max() > 1e-2  # time is mixed, not ignored


def test_video_kernels_are_inflated_and_depthwise(lite0, lite0_video):
    conv2d, conv3d = lite0.net._blocks[1]._depthwise_conv, lite0_video.net._blocks[1]._depthwise_conv
    assert conv3d.groups == conv2d.groups == conv2d.out_channels
    assert conv3d.weight.shape == (*conv2d.weight.shape[:2], 3, *conv2d.weight.shape[2:])
    torch.testing.assert_close(conv3d.weight.sum(dim=2), conv2d.weight)
    bn2d, bn3d = lite0.net._blocks[1]._bn1, lite0_video.net._blocks[1]._bn1
    assert isinstance(bn3d, torch.nn.BatchNorm3d) and torch.equal(bn3d.running_var, bn2d.running_var)


@pytest.mark.numerics
def test_crepe_finds_440_hz(crepe):
    import torchcrepe

    t = torch.arange(8000) / crepe.spec.sample_rate
    wave = 0.5 * torch.sin(2 * math.pi * 440.0 * t)[None]  # (1, N)
    with torch.no_grad():
        emb5, emb6, logits = crepe.frame_outputs(wave)
        hz = crepe.pitch_hz(logits[0, 2:-2])  # frames away from the zero-padded edges
        reference = torchcrepe.infer(next(torchcrepe.preprocess(wave, 16000, crepe.hop_length)), "full")
    assert emb5.shape == (1, 1 + 8000 // 400, 2048) and emb6.shape == emb5.shape
    cents = 1200 * torch.log2(hz / 440.0)
    assert cents.abs().max() < 10, cents
    numerics.assert_chain_close(torch.sigmoid(logits[0]), reference, crepe, what="torchcrepe's activations")
    assert crepe.spec.num_labels == 360 and crepe.spec.label_names[0].startswith("31.7 Hz")


@pytest.mark.numerics
def test_crepe_mask_counts_frames(crepe):
    wave = torch.randn(2, 4000, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = crepe(wave, lengths=torch.tensor([4000, 1200]))
        alone = crepe(wave[1:, :1200])
    assert out.mask.sum(1).tolist() == [11, 4]
    numerics.assert_chain_close(out.features[1], alone.features[0], crepe, what="features")


@pytest.mark.numerics
def test_whisper_padded_clip_equals_clip_alone(whisper):
    wave = 0.1 * torch.randn(3, 16000, generator=torch.Generator().manual_seed(5))  # padding is noise, not zeros
    lengths = [16000, 12345, 3201]  # off the hop (160) and the encoder stride (320)
    with torch.no_grad():
        out = whisper(wave, lengths=torch.tensor(lengths))
        for i, n in enumerate(lengths[1:], start=1):
            alone = whisper(wave[i : i + 1, :n])
            frames = alone.hidden_states[-1].shape[1]
            assert int(out.mask[i].sum()) == frames
            # batch shapes change the kernels' summation order, within float32's error of the exact result
            for layer, (batched, single) in enumerate(zip(out.hidden_states, alone.hidden_states, strict=True)):
                numerics.assert_chain_close(batched[i, :frames], single[0], whisper, what=f"clip {i} layer {layer}")
            numerics.assert_chain_close(out.features[i], alone.features[0], whisper, what=f"clip {i} features")


@pytest.mark.numerics
def test_whisper_matches_ctranslate2_runtime(whisper):
    ctranslate2 = pytest.importorskip("ctranslate2")
    from backbones.offline.whisper import packaged_model_dir

    assert whisper.spec.sample_rate == 16000 and whisper.spec.num_layers == 5 and whisper.spec.feature_dim == 384
    wave = 0.1 * torch.randn(1, 5 * 16000, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        mel = whisper.frontend(wave)  # (1, 80, 500): 5 s, not padded to 30 s
        out = whisper(wave)
    runtime = ctranslate2.models.Whisper(str(packaged_model_dir()), device="cpu", compute_type="float32")
    reference = torch.from_numpy(np.array(runtime.encode(ctranslate2.StorageView.from_array(mel.numpy()))))
    ours = out.hidden_states[-1]
    assert ours.shape == reference.shape == (1, 250, 384)
    # the same (fp16-stored) weights run in float32 by two runtimes: two float32 roundings of one function
    numerics.assert_chain_close(ours, reference, whisper, what="CTranslate2's encoder output")
