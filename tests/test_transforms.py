"""Front ends and programs on their own (no backbone): sizes from the spec, exact counts, neutral points, bounds."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchaudio.functional as AF

from reprogram.spec import InputSpec
from reprogram.transforms import TRANSFORMS, create
from reprogram.transforms.frontend import LogMel, LogMelConfig
from reprogram.transforms.image import pad_parameter_count
from reprogram.transforms.to_image import SpecToImage

SR = 8000
IMG = InputSpec("image", (3, 224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
ODD = InputSpec("image", (3, 72, 100), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))  # not square, not 224
VID = InputSpec("video", (3, 4, 48, 64), mean=(0.4, 0.4, 0.4), std=(0.2, 0.2, 0.2))
SPEECH = InputSpec("speech", (-1,), sample_rate=16000)
IMAGE_PROGRAMS = ("pad", "full", "lowrank", "band", "smm", "autovp")


def chirp(batch: int = 2, seconds: float = 1.0, rate: int = SR, seed: int = 0) -> torch.Tensor:
    """``(B, N)``: rising tones in noise, different per example."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(round(seconds * rate)) / rate
    f0 = 300 + 400 * torch.rand(batch, 1, generator=gen)
    wave = 0.3 * torch.sin(2 * math.pi * (f0 * t + 300 * t**2))
    return wave + 0.01 * torch.randn(batch, t.numel(), generator=gen)


def randomise(module: torch.nn.Module, scale: float = 3.0, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("p", [1, 16, 50, 111])
def test_pad_program_has_exactly_the_frame_parameters(p):
    t = create("pad", IMG, sample_rate=SR, budget=p)
    assert t.trainable_parameters() == 3 * (224**2 - (224 - 2 * p) ** 2)
    odd = create("pad", ODD, sample_rate=SR, budget=5)
    assert odd.trainable_parameters() == pad_parameter_count(3, 72, 100, 5) == 3 * (72 * 100 - 62 * 90)


def test_pad_neutral_init_equals_hand_built_front_end_image():
    wave = chirp()
    t = create("pad", ODD, sample_rate=SR, budget=6, frontend={"n_mels": 40, "f_max": 4000.0})
    # Reference built by hand: log-mel in dB, top 80 dB scaled to [0, 1], flipped, resized, replicated, padded.
    mel = LogMel(LogMelConfig(n_mels=40, f_max=4000.0), SR)
    db = 10 * torch.log10(mel.mel(wave).clamp_min(1e-10))
    top = db.amax(dim=(1, 2), keepdim=True)
    grey = ((db - top + 80).clamp(0, 80) / 80).flip(1).unsqueeze(1)
    grey = F.interpolate(grey, size=(60, 88), mode="bilinear", align_corners=False, antialias=True)  # time shrinks
    canvas = F.pad(grey.expand(-1, 3, -1, -1), (6, 6, 6, 6))
    expected = (canvas - 0.5) / 0.25
    torch.testing.assert_close(t(wave), expected, atol=1e-5, rtol=0)  # same maths, other rounding order
    assert torch.equal(t(wave), t.plain(wave))
    expected = t.plain(wave).detach()
    # Moving the frame leaves the inner image untouched and changes every frame pixel.
    randomise(t)
    out = t(wave)
    assert torch.equal(out[..., 6:-6, 6:-6], expected[..., 6:-6, 6:-6])
    frame = torch.ones(72, 100, dtype=torch.bool)
    frame[6:-6, 6:-6] = False
    assert (out != expected)[..., frame].all()


@pytest.mark.parametrize("name", IMAGE_PROGRAMS)
def test_image_programs_read_sizes_from_spec_and_start_neutral(name):
    wave = chirp()
    t = create(name, ODD, sample_rate=SR)
    out = t(wave)
    assert out.shape == (2, *ODD.shape)
    if t.exact_neutral:
        assert torch.equal(out, t.plain(wave))
    else:
        torch.testing.assert_close(out, t.plain(wave), atol=1e-4, rtol=0)
    assert t.perturbation_norms() == {"l2": 0.0, "linf": 0.0}
    out.square().mean().backward()
    grads = [p.grad for p in t.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize("name", ["pad", "full", "lowrank", "band", "smm"])
def test_perturbation_respects_linf_epsilon(name):
    wave = chirp()
    t = create(name, ODD, sample_rate=SR, epsilon=0.1)
    randomise(t, scale=50.0)
    delta = (t(wave) - t.plain(wave)) * 0.25  # back to pixel units
    assert 0.05 < delta.abs().max() <= 0.1 + 1e-6
    assert t.perturbation_norms()["linf"] <= 0.1 + 1e-6


def test_full_and_lowrank_counts_and_rank():
    assert create("full", IMG, sample_rate=SR).trainable_parameters() == 3 * 224 * 224
    t = create("lowrank", ODD, sample_rate=SR, budget=3, epsilon=None)
    assert t.trainable_parameters() == 3 * 3 * (72 + 100)
    randomise(t)
    delta = t.program.shared_delta()  # (C, H, W), unbounded: exactly U @ V
    assert delta.shape == (3, 72, 100)
    assert all(torch.linalg.matrix_rank(delta[c]) == 3 for c in range(3))


def test_band_program_learns_only_the_rows_of_its_band():
    cfg = {"n_mels": 64, "f_max": 4000.0, "win_ms": 128.0}
    t = create("band", ODD, sample_rate=SR, frontend=cfg, band_hz=(500.0, 1500.0), inner_size=(64, 100))
    randomise(t)
    delta = t.program.shared_delta()  # (C, 72, 100); inner image rows 4..68
    rows = delta.abs().amax(dim=(0, 2)).nonzero().flatten().tolist()
    assert t.trainable_parameters() == 3 * len(rows) * 100
    # Independent reference: each mel band's peak frequency from torchaudio's own filterbank.
    mel = t.frontend.mel.mel_scale
    bank = mel.fb  # (n_freqs, n_mels)
    peak_hz = bank.argmax(dim=0).double() * (SR / 2) / (bank.shape[0] - 1)  # (n_mels,)
    bin_hz = (SR / 2) / (bank.shape[0] - 1)
    band_of_row = {4 + r: float(peak_hz[63 - r]) for r in range(64)}  # row 0 of the inner image = top band
    for row, hz in band_of_row.items():
        if 500 + 2 * bin_hz < hz < 1500 - 2 * bin_hz:
            assert row in rows, (row, hz)
        if hz < 500 - 2 * bin_hz or hz > 1500 + 2 * bin_hz:
            assert row not in rows, (row, hz)


def test_smm_mask_makes_the_perturbation_input_dependent():
    t = create("smm", ODD, sample_rate=SR, budget=4)
    H, W, C, h = 72, 100, 3, 4
    cnn = (C * h * 9 + h) + (h * 2 * h * 9 + 2 * h) + (2 * h * C * 9 + C)
    assert t.trainable_parameters() == cnn + C * H * W
    randomise(t, scale=0.5)
    waves = chirp(batch=2)
    delta = t(waves) - t.plain(waves)
    assert not torch.allclose(delta[0], delta[1])


def test_channel_mappings():
    grey = torch.rand(2, 40, 30)
    rep = SpecToImage((20, 16), 3, "replicate")(grey)
    assert rep.shape == (2, 3, 20, 16) and torch.equal(rep[:, 0], rep[:, 2])
    learned = SpecToImage((20, 16), 3, "learned")
    assert torch.equal(learned(grey), rep)
    assert sum(p.numel() for p in learned.parameters()) == 3 + 3
    cmap = SpecToImage((2, 2), 3, "viridis")
    flat = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]], requires_grad=True)  # (1, F=2, T=2): quiet low band
    rgb = cmap(flat)
    lut = cmap.lut
    torch.testing.assert_close(rgb[0, :, 0, 0], lut[-1])  # high band (loud) on the top row
    torch.testing.assert_close(rgb[0, :, 1, 1], lut[0])  # low band (quiet) at the bottom
    x = torch.full((1, 1, 1, 1), 127.5 / 255, requires_grad=True)
    mid = cmap.map_channels(x)
    torch.testing.assert_close(mid[0, :, 0, 0], (lut[127] * 0.5 + lut[128] * 0.5), atol=1e-6, rtol=0)
    mid.sum().backward()  # differentiable: d(rgb)/dx = 255 * (lut[128] - lut[127]) summed over channels
    torch.testing.assert_close(x.grad.flatten(), (255 * (lut[128] - lut[127])).sum().view(1), rtol=1e-3, atol=0)
    with pytest.raises(ValueError, match="channel mapping"):
        SpecToImage((4, 4), 3, "no-such-map")


def test_fixed_reference_level_keeps_loudness():
    wave = chirp()
    per_clip = LogMel(LogMelConfig(n_mels=32), SR)
    fixed = LogMel(LogMelConfig(n_mels=32, ref_db=0.0), SR)
    torch.testing.assert_close(per_clip.scaled(wave), per_clip.scaled(0.1 * wave), atol=1e-4, rtol=0)  # gain-free
    assert fixed.scaled(wave).mean() > fixed.scaled(0.1 * wave).mean() + 0.1  # 20 dB quieter = darker
    assert float(fixed.scaled(wave).max()) <= 1.0 and float(fixed.scaled(wave).min()) >= 0.0


def test_front_end_resamples_only_when_rates_differ():
    wave = chirp(rate=8000)
    same = LogMel(LogMelConfig(n_mels=32), 8000)
    assert same.rate == 8000 and same(wave).shape[1] == 32
    up = LogMel(LogMelConfig(n_mels=32, sample_rate=16000), 8000)
    ref = LogMel(LogMelConfig(n_mels=32), 16000)
    assert torch.equal(up(wave), ref(AF.resample(wave, 8000, 16000)))
    with pytest.raises(ValueError, match="Nyquist"):
        LogMel(LogMelConfig(f_max=6000.0), 8000)
    with pytest.raises(ValueError, match="unknown front-end option"):
        create("pad", IMG, sample_rate=SR, frontend={"mels": 64})


def test_learned_scale_moves_the_inner_image():
    t = create("autovp", ODD, sample_rate=SR, budget=10)
    wave = chirp()
    t(wave).sum().backward()
    assert t.program.placement.log_scale.grad.abs().sum() > 0
    with torch.no_grad():
        t.program.placement.log_scale.fill_(-0.5)
    assert not torch.allclose(t(wave), t.plain(wave))


@pytest.mark.parametrize("share", [True, False])
def test_video_chunks_show_the_clip_in_time_order(share):
    t = create("video", VID, sample_rate=SR, share=share, budget=4)
    one = create("pad", InputSpec("image", (3, 48, 64)), sample_rate=SR, budget=4).trainable_parameters()
    assert t.trainable_parameters() == one * (1 if share else 4)
    wave = torch.zeros(1, SR)
    wave[0, : SR // 5] = torch.sin(2 * math.pi * 1000 * torch.arange(SR // 5) / SR)  # only at the start
    wave = wave + 1e-4 * torch.randn(1, SR, generator=torch.Generator().manual_seed(0))
    out = t(wave)
    assert out.shape == (1, *VID.shape)
    assert torch.equal(out, t.plain(wave))
    energy = out[0].mean(dim=(0, 2, 3))  # (T,) per-frame brightness
    assert int(energy.argmax()) == 0 and energy[0] > energy[-1] + 0.1
    rep = create("video_repeat", VID, sample_rate=SR, budget=4)(wave)
    assert all(torch.equal(rep[:, :, 0], rep[:, :, t]) for t in range(4))


def test_video_per_frame_programs_differ_per_frame():
    t = create("video", VID, sample_rate=SR, share=False, budget=4)
    randomise(t)
    wave = chirp(batch=1)
    delta = t(wave) - t.plain(wave)  # (1, C, T, H, W)
    assert not torch.allclose(delta[:, :, 0], delta[:, :, 1])


def test_waveform_embed_program():
    wave = chirp(rate=8000)  # 1 s at 8 kHz: resampled to the backbone's 16 kHz
    t = create("wave_embed", SPEECH, sample_rate=8000, budget=0.5)
    assert t.trainable_parameters() == 8000
    out = t(wave)
    assert out.shape == (2, 16000 + 8000)
    assert torch.equal(out, t.plain(wave))
    torch.testing.assert_close(out[:, 4000:-4000], AF.resample(wave, 8000, 16000))
    randomise(t)
    out = t(wave)
    assert torch.equal(out[0, :4000], out[1, :4000])  # universal: the same learned waveform for every clip
    assert out[:, :4000].abs().max() <= 1.0


def test_waveform_additive_program_and_errors():
    t = create("wave_additive", SPEECH, sample_rate=16000, clip_seconds=1.0, budget=0.02)
    assert t.trainable_parameters() == 16000
    wave = chirp(rate=16000)
    randomise(t, scale=20)
    assert (t(wave) - wave).abs().max() <= 0.02 + 1e-7
    with pytest.raises(ValueError, match="clip_seconds"):
        t(chirp(rate=16000, seconds=0.5))
    with pytest.raises(ValueError, match="clip_seconds"):
        create("wave_additive", SPEECH, sample_rate=16000)
    fixed = InputSpec("audio", (32000,), sample_rate=16000)
    emb = create("wave_embed", fixed, sample_rate=16000, clip_seconds=1.5)
    assert emb.trainable_parameters() == 8000 and emb(chirp(rate=16000, seconds=1.5)).shape == (2, 32000)
    with pytest.raises(ValueError, match="budget cannot be set"):
        create("wave_embed", fixed, sample_rate=16000, clip_seconds=1.5, budget=0.5)


def test_bad_configurations_raise_clear_errors():
    with pytest.raises(ValueError, match="pad width"):
        create("pad", IMG, sample_rate=SR, budget=112)
    with pytest.raises(ValueError, match="image backbone"):
        create("pad", VID, sample_rate=SR)
    with pytest.raises(ValueError, match="video backbone"):
        create("video", IMG, sample_rate=SR)
    with pytest.raises(ValueError, match="speech/audio"):
        create("wave_embed", IMG, sample_rate=SR)
    with pytest.raises(ValueError, match="rank"):
        create("lowrank", ODD, sample_rate=SR, budget=0)
    with pytest.raises(ValueError, match="band"):
        create("band", ODD, sample_rate=SR, band_hz=(5000.0, 6000.0), frontend={"f_max": 4000.0})
    with pytest.raises(KeyError, match="unknown transform"):
        create("nope", IMG, sample_rate=SR)
    assert {"pad", "full", "lowrank", "band", "smm", "video", "wave_embed"} <= set(TRANSFORMS.names())


def test_video_program_moves_between_devices_and_dtypes():
    """nn.Module.to() must reach the program's tensors (a method named _apply once shadowed it)."""
    import torch

    from reprogram import transforms
    from reprogram.spec import InputSpec

    spec = InputSpec("video", (3, 4, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    program = transforms.create("video", spec, sample_rate=16000)
    program = program.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in program.parameters())
    out = program(torch.randn(2, 16000, dtype=torch.float64))
    assert out.shape == (2, 3, 4, 32, 32)


def test_image_program_runs_under_cpu_bf16_autocast():
    """The front end stays float32 under autocast, so the resize after it (no bf16 CPU kernel) still runs."""
    import torch

    from reprogram import transforms
    from reprogram.spec import InputSpec

    spec = InputSpec("image", (3, 64, 64), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    program = transforms.create("pad", spec, sample_rate=16000)
    wave = torch.randn(2, 16000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = program(wave)
    assert out.shape == (2, 3, 64, 64)
    assert torch.allclose(out.float(), program(wave), atol=1e-2)
