"""The Audio Spectrogram Transformer (``hf:MIT/ast-finetuned-audioset-10-10-0.4593``) as a frozen waveform model.

The front end is transformers' ``ASTFeatureExtractor`` recomputed in torch so gradients reach the
waveform: Kaldi filterbanks (``torchaudio.compliance.kaldi.fbank``, Hanning window, the extractor's
mel count), zero-padded or cropped to ``max_length`` frames, then ``(x - mean) / (2 * std)``.
Logits are over the checkpoint's own labels (``config.id2label``: AudioSet's 527 names).
"""

from __future__ import annotations

import torch
from torch import nn

from backbones.base import Backbone, BackboneOutput
from reprogram.spec import InputSpec


def label_names(config) -> tuple[str, ...]:
    """Source-label names in index order from a transformers config's ``id2label``."""
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    return tuple(id2label[i] for i in range(len(id2label)))


class ASTFrontEnd(nn.Module):
    """``ASTFeatureExtractor`` in torch: waveform ``(B, N)`` -> normalised filterbanks ``(B, max_length, n_mels)``.

    Args:
        feature_extractor: an ``ASTFeatureExtractor`` (sampling_rate, num_mel_bins, max_length, do_normalize,
            mean, std).
    """

    def __init__(self, feature_extractor) -> None:
        super().__init__()
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.num_mel_bins = int(feature_extractor.num_mel_bins)
        self.max_length = int(feature_extractor.max_length)
        self.do_normalize = bool(feature_extractor.do_normalize)
        self.mean = float(feature_extractor.mean)
        self.std = float(feature_extractor.std)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            wave: ``(B, N)`` waveforms in [-1, 1] at ``sample_rate``.
            lengths: optional ``(B,)`` valid samples per clip (filterbanks use only those).

        Returns:
            ``(B, max_length, n_mels)``.
        """
        from torchaudio.compliance import kaldi

        rows = []
        for i in range(wave.shape[0]):
            clip = wave[i : i + 1] if lengths is None else wave[i : i + 1, : int(lengths[i])]
            if clip.shape[1] < 400:
                raise ValueError(f"AST needs at least 400 samples (25 ms) per clip, got {clip.shape[1]}")
            fbank = kaldi.fbank(
                clip, sample_frequency=self.sample_rate, window_type="hanning", num_mel_bins=self.num_mel_bins
            )  # (frames, n_mels)
            fbank = fbank[: self.max_length]
            rows.append(nn.functional.pad(fbank, (0, 0, 0, self.max_length - fbank.shape[0])))
        x = torch.stack(rows)  # (B, max_length, n_mels)
        return (x - self.mean) / (self.std * 2) if self.do_normalize else x


class ASTBackbone(Backbone):
    """A frozen ``ASTForAudioClassification`` taking waveforms.

    Args:
        model: a built ``ASTForAudioClassification``.
        feature_extractor: its ``ASTFeatureExtractor``.
        name: the registry name.
    """

    def __init__(self, model: nn.Module, feature_extractor, name: str) -> None:
        super().__init__()
        if int(feature_extractor.num_mel_bins) != int(model.config.num_mel_bins):
            raise ValueError(f"{name}: feature extractor and model disagree on num_mel_bins; use the checkpoint's own")
        self.model = model
        self.name = name
        self.frontend = ASTFrontEnd(feature_extractor)
        self.spec = InputSpec(
            modality="audio",
            shape=(-1,),
            sample_rate=self.frontend.sample_rate,
            label_names=label_names(model.config),
            feature_dim=int(model.config.hidden_size),
        )
        self.freeze()

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> BackboneOutput:
        """Args:
            wave: ``(B, N)`` waveforms at ``spec.sample_rate``; clips longer than ``max_length`` frames are cropped.
            lengths: optional ``(B,)`` valid samples per clip.

        Returns:
            ``logits`` ``(B, S)`` over ``spec.label_names`` and ``features`` ``(B, D)``: the pooled
            (class + distillation token) output the classifier reads.
        """
        if wave.dim() != 2:
            raise ValueError(f"AST takes (B, N) waveforms, got shape {tuple(wave.shape)}")
        x = self.frontend(wave, lengths)  # (B, max_length, n_mels)
        pooled = self.model.audio_spectrogram_transformer(input_values=x).pooler_output  # (B, D)
        return BackboneOutput(logits=self.model.classifier(pooled), features=pooled)
