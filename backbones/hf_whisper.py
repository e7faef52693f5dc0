"""The frozen Whisper encoder (transformers ``WhisperEncoder``) as a speech backbone, with Whisper's log-mel
front end computed in torch so gradients reach the waveform, at the clip's true length (no 30 s padding).
"""

from __future__ import annotations

import torch
from torch import nn

from backbones.base import BackboneOutput
from backbones.hf_speech import SpeechBackbone, _check_wave, masked_mean


class WhisperLogMel(nn.Module):
    """Whisper's log-mel front end in torch (differentiable), numerically as ``WhisperFeatureExtractor``.

    ``n_fft``-point Hann STFT (centred, reflect-padded) every ``hop_length`` samples, the last frame
    dropped; power spectrum through the extractor's Slaney mel filters; ``log10(max(., 1e-10))``;
    floor at the clip's maximum minus 8; ``(x + 4) / 4``. No padding to 30 s.

    With ``lengths``, each clip is reflect-padded at its *own* end (not at the batch's) and its floor
    is its own maximum over its own frames, so a clip's valid frames do not depend on its batch mates.

    Args:
        feature_extractor: a ``WhisperFeatureExtractor`` (reads ``n_fft``, ``hop_length``,
            ``feature_size``, ``sampling_rate``, ``mel_filters``).
    """

    def __init__(self, feature_extractor) -> None:
        super().__init__()
        self.n_fft = int(feature_extractor.n_fft)
        self.hop_length = int(feature_extractor.hop_length)
        self.n_mels = int(feature_extractor.feature_size)
        self.sample_rate = int(feature_extractor.sampling_rate)
        filters = torch.as_tensor(feature_extractor.mel_filters, dtype=torch.float32).T  # (n_mels, n_fft//2+1)
        if filters.shape != (self.n_mels, self.n_fft // 2 + 1):
            raise ValueError(f"mel_filters shape {tuple(filters.shape)} does not match n_fft={self.n_fft}")
        self.register_buffer("mel_filters", filters, persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Mel frames for ``lengths`` samples (``N // hop``)."""
        return torch.div(lengths, self.hop_length, rounding_mode="floor")

    def reflect_pad(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The centred STFT's reflect padding, done per clip: ``n_fft // 2`` samples each side of ``[0, length)``.

        One gather (differentiable, no loop over clips): output sample ``j`` (``-pad <= j < N + pad`` in clip
        coordinates) reads ``|j|`` at the start and ``2 * (length - 1) - j`` past the clip's end, exactly as
        ``torch.stft(center=True)`` (``numpy.pad(mode="reflect")``) does for a clip run alone. Samples more
        than ``pad`` past a clip's end only reach frames beyond ``length // hop`` (masked downstream).

        Args:
            wave: ``(B, N)``.
            lengths: ``(B,)`` valid samples, each above ``n_fft // 2`` (see ``min_samples``).

        Returns:
            ``(B, N + 2 * (n_fft // 2))``.
        """
        pad = self.n_fft // 2
        last = (lengths - 1)[:, None]  # (B, 1)
        idx = torch.arange(-pad, wave.shape[1] + pad, device=wave.device).abs()[None, :]  # (1, N + 2 pad)
        idx = torch.where(idx > last, 2 * last - idx, idx).clamp(min=0)  # (B, N + 2 pad)
        return wave.gather(1, idx)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            wave: ``(B, N)``.
            lengths: optional ``(B,)`` valid samples: each clip is reflect-padded at its own end and its
                dynamic-range floor uses its valid frames only. Frames past ``length // hop`` are undefined.

        Returns:
            ``(B, n_mels, N // hop)`` log-mel features.
        """
        centre_here = lengths is None  # one clip length: torch.stft's own centring is the same padding
        x = wave if centre_here else self.reflect_pad(wave, lengths)  # (B, N) or (B, N + 2 * (n_fft // 2))
        stft = torch.stft(x, self.n_fft, self.hop_length, window=self.window, center=centre_here, return_complex=True)
        power = torch.view_as_real(stft[..., :-1]).pow(2).sum(-1)  # (B, F, T); no |z| so no NaN grad at 0
        log_spec = (self.mel_filters @ power).clamp_min(1e-10).log10()  # (B, M, T)
        if lengths is None:
            peak = log_spec.amax(dim=(1, 2), keepdim=True)
        else:
            valid = torch.arange(log_spec.shape[-1], device=wave.device)[None, :] < self.num_frames(lengths)[:, None]
            peak = log_spec.masked_fill(~valid[:, None, :], float("-inf")).amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        return (log_spec + 4.0) / 4.0


class WhisperEncoderBackbone(SpeechBackbone):
    """The encoder of a Whisper model on clips of any length up to 30 s (no padding to 30 s).

    transformers' ``WhisperEncoder.forward`` insists on 3000 mel frames, so this wrapper runs the
    encoder's own submodules (``conv1``, ``conv2``, ``embed_positions``, ``layers``, ``layer_norm``)
    with the positional table sliced to the actual frame count, as Whisper's architecture allows.
    Output rate: one frame per ``2 * hop`` samples (20 ms at 16 kHz). With ``lengths``, each clip's
    log-mel is computed as if it ran alone (reflect padding at its own end, its own dynamic-range
    floor), the conv stem sees zeros past its end, and padded frames are masked out of every attention
    layer: a clip's valid frames do not depend on its batch mates (to float rounding).

    Args:
        encoder: a built ``WhisperEncoder`` (e.g. ``WhisperModel(...).encoder``), any attention backend.
        feature_extractor: its ``WhisperFeatureExtractor`` (n_fft, hop_length, feature_size = n_mels,
            sampling_rate, mel_filters).
        name: the registry name.
    """

    def __init__(self, encoder: nn.Module, feature_extractor, name: str) -> None:
        super().__init__()
        if int(feature_extractor.feature_size) != int(encoder.config.num_mel_bins):
            raise ValueError(
                f"{name}: feature extractor gives {feature_extractor.feature_size} mels but the encoder expects "
                f"{encoder.config.num_mel_bins}; use the checkpoint's own preprocessor_config.json"
            )
        self.model = encoder
        self.name = name
        self.frontend = WhisperLogMel(feature_extractor)
        self.num_layers = len(encoder.layers)
        self.hidden_size = int(encoder.config.d_model)
        self.max_frames = int(encoder.embed_positions.num_embeddings)
        self.spec = self._make_spec(feature_extractor.sampling_rate)
        self.freeze()

    def min_samples(self) -> int:
        """One mel frame, and more than half an FFT window for the centred STFT's reflect padding."""
        return max(self.frontend.hop_length, self.frontend.n_fft // 2 + 1)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        mel = self.frontend.num_frames(lengths)
        return torch.div(mel - 1, 2, rounding_mode="floor") + 1  # conv2: kernel 3, stride 2, padding 1

    def embed(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Conv stem plus sliced sinusoidal positions: ``(B, n_mels, T_mel) -> (B, T, D)``.

        Args:
            mel: ``(B, n_mels, T_mel)`` log-mel features.
            mel_lengths: optional ``(B,)`` valid mel frames. Both convolutions zero-pad a clip run alone, so
                the mel frames and ``conv1`` outputs past each clip's end are zeroed before the next
                convolution reads them: the frames at a clip's end then equal those of the clip alone.
        """
        enc = self.model
        valid = None
        if mel_lengths is not None:
            valid = (torch.arange(mel.shape[-1], device=mel.device)[None, :] < mel_lengths[:, None])[:, None, :]
            mel = mel * valid.to(mel.dtype)  # (B, n_mels, T_mel)
        x = nn.functional.gelu(enc.conv1(mel))  # (B, D, T_mel)
        if valid is not None:
            x = x * valid.to(x.dtype)
        x = nn.functional.gelu(enc.conv2(x)).transpose(1, 2)  # (B, T, D)
        if x.shape[1] > self.max_frames:
            seconds = self.max_frames * 2 * self.frontend.hop_length / self.frontend.sample_rate
            raise ValueError(
                f"{self.name}: clip gives {x.shape[1]} encoder frames but Whisper has {self.max_frames} positions "
                f"({seconds:g} s); cut clips into windows of at most {seconds:g} s"
            )
        x = x + enc.embed_positions.weight[: x.shape[1]]
        return nn.functional.dropout(x, p=enc.dropout, training=enc.training)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> BackboneOutput:
        """Args:
            wave: ``(B, N)`` waveforms at ``spec.sample_rate`` (N up to 30 s).
            lengths: optional ``(B,)`` valid samples per clip.

        Returns:
            :class:`BackboneOutput`: ``hidden_states`` = embedding output, then every layer's output, the
            last one after the final layer norm (as transformers reports them), each ``(B, N // 320, D)``
            at 16 kHz; ``mask`` ``(B, T)`` or None; ``features`` = masked mean of the last; ``logits`` None.
        """
        full_lengths = lengths is None
        lengths = _check_wave(wave, lengths)
        full = full_lengths or bool((lengths == wave.shape[1]).all())
        self._check_min_length(lengths)
        mel = self.frontend(wave, None if full else lengths)  # (B, n_mels, T_mel)
        h = self.embed(mel, None if full else self.frontend.num_frames(lengths))  # (B, T, D)
        mask = self._frame_mask(lengths, h.shape[1], full)
        attn = None
        if mask is not None:  # additive key mask (B, 1, 1, T), understood by eager and SDPA attention alike
            attn = torch.zeros(mask.shape, dtype=h.dtype, device=h.device).masked_fill(~mask, torch.finfo(h.dtype).min)
            attn = attn[:, None, None, :]
        hidden = [h]
        for layer in self.model.layers:
            h = layer(h, attn)
            hidden.append(h)
        hidden[-1] = self.model.layer_norm(hidden[-1])
        return BackboneOutput(
            logits=None, features=masked_mean(hidden[-1], mask), hidden_states=tuple(hidden), mask=mask
        )
