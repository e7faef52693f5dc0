"""One matrix of (transform, backbone, mapper) cases run through the shared invariant checks of matrix_checks.py.

Tiny random twins carry most of the matrix; the offline pretrained models run the cases the experiments use.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from matrix_checks import (
    Case,
    batch_for,
    check_budget,
    check_frozen_after_steps,
    check_gradients,
    check_neutral,
    check_output_shape,
)

import backbones
from reprogram import mappers, transforms
from reprogram.mappers import SemanticMapping
from reprogram.methods.program import ReprogrammedModel
from tests import numerics

K = 3
CLASSES = ["female great call", "duet", "background noise"]
WAVE = {"clip_seconds": 1.0}

CASES = [
    # image programs x mappers on the tiny ViT (160 x 160, 1000 source labels)
    Case("pad", "tiny:vit", "linear", {"budget": 8}),
    Case("pad", "tiny:vit", "flm", {"budget": 8}),
    Case("pad", "tiny:vit", "ilm", {"budget": 8}),
    Case("pad", "tiny:vit", "random", {"budget": 8}),
    Case("pad", "tiny:vit", "feature_linear", {"budget": 8, "colour": "viridis"}),
    Case("full", "tiny:vit", "linear", {"epsilon": 0.5}),
    Case("full", "tiny:vit", "flm", {}),
    Case("lowrank", "tiny:vit", "linear", {"budget": 2}),
    Case("smm", "tiny:vit", "linear", {"budget": 2}),
    Case("band", "tiny:vit", "linear", {"band_hz": (400.0, 3000.0)}),
    Case("autovp", "tiny:vit", "linear", {"budget": 8}),
    # CLIP: semantic mapping through its own text encoder
    Case("pad", "tiny:clip", "semantic", {"budget": 2}, {"class_names": CLASSES}),
    Case("full", "tiny:clip", "semantic", {}, {"class_names": CLASSES, "trainable": True}),
    Case("pad", "tiny:clip", "linear", {"budget": 2, "colour": "learned"}),
    # video: time chunks as frames, shared or per-frame programs, and the repeated-image baseline
    Case("video", "tiny:r3d", "linear", {"budget": 2}),
    Case("video", "tiny:r3d", "flm", {"budget": 2, "share": False}),
    Case("video", "tiny:r3d", "linear", {"program": "full", "overlap": 0.0}),
    Case("video_repeat", "tiny:r3d", "linear", {"budget": 2}),
    # waveform programs on speech encoders and raw-audio models
    Case("wave_embed", "tiny:hubert", "feature_linear", {"budget": 0.25}),
    Case("wave_additive", "tiny:wav2vec2", "feature_linear", {"budget": 0.01, **WAVE}),
    Case("wave_embed", "tiny:wavlm", "feature_linear", {"budget": 0.25}),
    Case("wave_additive", "tiny:whisper", "feature_linear", {"budget": 0.01, **WAVE}),
    Case("wave_embed", "tiny:whisper", "feature_linear", {"budget": 0.25}, rate=8000),  # resampled to 16 kHz
    Case("wave_embed", "tiny:ast", "ilm", {"budget": 0.25}),
    Case("wave_embed", "tiny:vggish", "feature_linear", {"budget": 0.25}),
    # offline pretrained models
    Case("pad", "offline:efficientnet_lite0", "linear", {"budget": 16}),
    Case("wave_embed", "offline:whisper_tiny_en", "feature_linear", {"budget": 0.5}),
]
# offline:crepe is left out: one forward+backward of its full CNN on 0.1 s takes seconds on 2 cores; the
# backbone tests cover its interface and the waveform programs are covered on six other audio models.


@pytest.fixture(scope="module")
def backbone_of():
    """Each backbone built once per module."""
    cache: dict[str, backbones.Backbone] = {}

    def get(name: str) -> backbones.Backbone:
        if name not in cache:
            cache[name] = backbones.create(name)
        return cache[name]

    return get


def build(case: Case, backbone) -> ReprogrammedModel:
    torch.manual_seed(0)
    transform = transforms.create(case.transform, backbone.spec, sample_rate=case.rate, **case.options)
    mapper = mappers.create(case.mapper, backbone, K, **case.mapper_options)
    return ReprogrammedModel(transform, backbone, mapper)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_reprogramming_invariants(case: Case, backbone_of):
    model = build(case, backbone_of(case.backbone))
    wave, target = batch_for(case, K)
    if model.mapper.needs_fit:
        assert model.fit_mapper([(wave, target)])
    check_budget(model, case)
    check_output_shape(model, wave)
    check_neutral(model, wave)
    check_gradients(model, wave, target)
    check_frozen_after_steps(model, wave, target, steps=2)


@pytest.mark.slow
def test_video_program_on_the_inflated_efficientnet(backbone_of):
    case = Case("video", "offline:efficientnet_lite0_video", "linear", {"budget": 16}, batch=1)
    model = build(case, backbone_of(case.backbone))
    wave, target = batch_for(case, K)
    check_budget(model, case)
    check_neutral(model, wave)
    check_gradients(model, wave, target)


def test_flm_fits_once_and_ilm_every_epoch(backbone_of):
    backbone = backbone_of("tiny:vit")
    loader = [batch_for(Case("pad", "tiny:vit", "flm"), K, seed=s) for s in range(2)]
    flm = build(Case("pad", "tiny:vit", "flm", {"budget": 8}), backbone)
    ilm = build(Case("pad", "tiny:vit", "ilm", {"budget": 8}), backbone)
    assert flm.start_epoch(loader, 0) and not flm.start_epoch(loader, 1)
    assert ilm.start_epoch(loader, 0) and ilm.start_epoch(loader, 1)
    # The fit sees the source outputs through the current program: an assignment FLM recomputes by hand.
    source, targets = ilm.source_outputs(loader)
    with torch.no_grad():
        by_hand = torch.cat([backbone(ilm.transform(w)).logits for w, _ in loader])
    assert torch.equal(source, by_hand) and targets.tolist() == [0, 1, 0, 1]


def test_semantic_mapping_uses_the_clip_text_encoder(backbone_of):
    clip = backbone_of("tiny:clip")
    sem = mappers.create("semantic", clip, K, descriptions=CLASSES)
    text = clip.text_embeddings(CLASSES)  # (K, D)
    torch.testing.assert_close(sem.classes, F.normalize(text, dim=-1))
    assert sem.scale == pytest.approx(float(clip.model.logit_scale.exp()))
    out = sem(text * 3.0)  # a feature equal to class k's text embedding scores class k highest
    assert out.argmax(dim=1).tolist() == [0, 1, 2]
    named = mappers.create("semantic", clip, K, class_names=["duet", "noise", "solo"], template="a {} sound")
    torch.testing.assert_close(
        named.classes, F.normalize(clip.text_embeddings(["a duet sound", "a noise sound", "a solo sound"]), dim=-1)
    )
    assert isinstance(sem, SemanticMapping)


def test_model_rejects_mismatched_parts(backbone_of):
    vit, clip, hubert = backbone_of("tiny:vit"), backbone_of("tiny:clip"), backbone_of("tiny:hubert")
    t = transforms.create("pad", vit.spec, sample_rate=16000, budget=4)
    with pytest.raises(ValueError, match="build it with spec=backbone.spec"):
        ReprogrammedModel(t, clip, mappers.create("linear", clip, K))
    with pytest.raises(ValueError, match="MAPPERS.create"):
        ReprogrammedModel(t, vit, mappers.create("feature_linear", clip, K))
    with pytest.raises(ValueError, match="feature_linear"):
        mappers.create("linear", hubert, K)


def test_budget_reports_norms_and_components(backbone_of):
    vit = backbone_of("tiny:vit")
    model = build(Case("full", "tiny:vit", "linear", {"epsilon": 0.1}), vit)
    with torch.no_grad():
        model.transform.program.theta.fill_(10.0)
    b = model.budget()
    assert b["linf"] == pytest.approx(0.1 * torch.tanh(torch.tensor(10.0)).item(), rel=1e-6)
    # a float32 sum of n squares is within (n - 1) eps of the exact sum in ANY summation order (Higham, Thm 4.1;
    # equal terms round alike, so no sqrt(n) averaging), its square root within half that, plus the squaring
    n, eps32 = 3 * 160 * 160, numerics.eps(torch.float32)
    assert b["l2"] == pytest.approx(b["linf"] * n**0.5, rel=0.5 * n * eps32 + 2 * eps32)
    assert b["program_parts"] == {"program": 3 * 160 * 160}
    assert b["mapper"] == 1000 * K + K and b["head"] == 0 and b["budget"] == 0.1


def pad_linear_losses(root, seed: int, steps: int = 10) -> list[float]:
    """Training losses of a padding program + linear mapping on offline:efficientnet_lite0 over ``steps``
    full-batch Adam steps (lr 1e-3) on a 12-clip synthetic corpus drawn with ``seed``; the last entry is the
    loss after the last step. Full batches: no sampling order, so only float rounding differs between CPUs."""
    from torch.utils.data import DataLoader

    from reprogram.data.dataset import WaveformDataset
    from reprogram.data.loaders import load_table
    from reprogram.data.synthetic import SyntheticConfig, generate_corpus

    config = SyntheticConfig(
        seed=1 + seed,
        clip_s=4.0,
        n_individuals=2,
        n_recorders=2,
        female_calls_per_individual=2,
        duets_per_individual=1,
        male_calls_per_individual=1,
        noise_clips_per_recorder=2,
    )
    table = load_table(generate_corpus(root, config), label_column="call_type", group_columns=("recorder",))
    data = WaveformDataset(table, sample_rate=16000, clip_seconds=4.0)
    backbone = backbones.create("offline:efficientnet_lite0")
    torch.manual_seed(seed)
    model = ReprogrammedModel(
        transforms.create("pad", backbone.spec, sample_rate=16000, budget=16),
        backbone,
        mappers.create("linear", backbone, len(data.classes)),
    )
    wave, target, _ = next(iter(DataLoader(data, batch_size=len(data))))  # (12, N), (12,)
    opt = torch.optim.Adam(list(model.trainable()), lr=1e-3)
    losses = []
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(wave), target)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        losses.append(float(F.cross_entropy(model(wave), target)))
    return losses


@pytest.mark.slow
@pytest.mark.numerics
def test_pad_program_with_linear_mapping_learns_on_the_synthetic_corpus(tmp_path):
    """Ten full-batch steps of a padding program + linear mapping halve the training loss. Over corpus/init seeds
    0-4 at 1 and 2 threads the loss ended at 0.15-0.23 of its start (the margin to 0.5 is > 2x)."""
    losses = pad_linear_losses(tmp_path / "corpus", seed=0)
    assert losses[-1] < 0.5 * losses[0], losses
