"""A speech backbone run in two parts at a cut: ``lower`` (frozen, computed once and cached) and ``upper``.

Cut ``k`` is the input of transformer layer ``k``: ``k = 0`` is the output of the feature encoder / conv stem
plus positional embedding (``hidden_states[0]``), ``k`` in ``1..L`` the raw output of layer ``k - 1`` (for
``k = L`` before the final layer norm of pre-norm encoders). For a wave batch ``x``::

    hidden, mask = split.lower(x, lengths)          # (B, T, D), (B, T) bool or None
    out = split.upper(hidden, mask)                 # == backbone(x, lengths) for hidden states >= k

``upper`` runs the backbone's own layer modules, so PEFT modules that live in layers ``>= k`` (LoRA adapters,
prompt wrappers of the layers' ``forward``) act in it exactly as in the full forward. Its
:class:`~backbones.base.BackboneOutput` has ``len(hidden_states) == L + 1`` with the states below the cut set to
``None`` (they were not computed: a head reading them fails loudly instead of reading a shifted index);
``hidden_states[k]`` is the input ``hidden`` itself, ``features`` the masked mean of the last state.

Supported: :class:`~backbones.hf_whisper.WhisperEncoderBackbone` and
:class:`~backbones.hf_speech.Wav2Vec2StyleBackbone` (HuBERT, wav2vec 2.0, post- and pre-norm, and WavLM, whose
relative position bias is recomputed from layer 0's attention for cuts above 0, as layer 0 computes it). The
last hidden state is the final-normed one or the raw one as the backbone itself reports it (WavLM: raw).
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from backbones.base import BackboneOutput
from backbones.hf_speech import SpeechBackbone, Wav2Vec2StyleBackbone, _check_wave, masked_mean
from backbones.hf_whisper import WhisperEncoderBackbone


class SplitBackbone:
    """A speech backbone cut before transformer layer ``cut`` (see the module docstring).

    Args:
        backbone: the speech backbone (may carry PEFT modules in layers ``>= cut``).
        cut: ``0 <= cut <= backbone.num_layers``.
    """

    def __init__(self, backbone: SpeechBackbone, cut: int) -> None:
        if not 0 <= int(cut) <= backbone.num_layers:
            raise ValueError(
                f"cut={cut} is outside 0..{backbone.num_layers} for {backbone.name!r} ({backbone.num_layers} layers); "
                "0 cuts after the feature encoder, k after layer k-1"
            )
        self.backbone, self.cut = backbone, int(cut)

    @property
    def point(self) -> str:
        """Name of the cut for cache keys and results: ``"layer_input_<k>"``."""
        return f"layer_input_{self.cut}"

    @property
    def layers(self) -> nn.ModuleList:
        return self.backbone.model.layers if isinstance(self.backbone, WhisperEncoderBackbone) \
            else self.backbone.model.encoder.layers

    def lower_modules(self) -> nn.ModuleDict:
        """The modules ``lower`` reads weights from (for a weight fingerprint of the cached part only)."""
        return nn.ModuleDict({"stem": self._stem(), **{f"layer_{i}": self.layers[i] for i in range(self.cut)}})

    def lower(
        self, wave: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The input of layer ``cut``.

        Args:
            wave: ``(B, N)`` waveforms at ``spec.sample_rate``.
            lengths: optional ``(B,)`` valid samples per clip.

        Returns:
            ``hidden (B, T, D)`` and the frame mask ``(B, T)`` bool (None when no clip is padded).
        """
        full = lengths is None
        lengths = _check_wave(wave, lengths)
        full = full or bool((lengths == wave.shape[1]).all())
        self.backbone._check_min_length(lengths)
        h, mask = self._embed(wave, None if full else lengths)  # (B, T, D)
        return self._run_layers(h, mask, 0, self.cut)[-1] if self.cut else h, mask

    def lower_hidden(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` equal-length clips -> the input of layer ``cut``, ``(B, T, D)`` (what a cache stores)."""
        return self.lower(wave)[0]

    def upper(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> BackboneOutput:
        """Layers ``cut..L-1`` (and the final norm) on the input of layer ``cut``.

        Args:
            hidden: ``(B, T, D)`` from :meth:`lower`.
            mask: ``(B, T)`` bool frame mask from :meth:`lower`, or None.

        Returns:
            :class:`BackboneOutput`: ``hidden_states`` of length ``L + 1`` (None below the cut), ``mask``,
            ``features`` (masked mean of the last state), ``logits`` None.
        """
        states = self._run_layers(hidden, mask, self.cut, self.backbone.num_layers)  # cut's input, then outputs
        states[-1] = self._final_norm(states[-1])
        full = (None,) * self.cut + tuple(states)
        return BackboneOutput(logits=None, features=masked_mean(full[-1], mask), hidden_states=full, mask=mask)

    # family specifics ---------------------------------------------------------------------------------------

    def _stem(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _embed(self, wave: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _run_layers(self, h: torch.Tensor, mask: torch.Tensor | None, start: int, stop: int) -> list[torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _final_norm(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - abstract


class WhisperSplit(SplitBackbone):
    """:class:`WhisperEncoderBackbone` cut: log-mel + conv stem + positions below, layers + final norm above."""

    def _stem(self) -> nn.Module:
        enc = self.backbone.model
        return nn.ModuleDict({"frontend": self.backbone.frontend, "conv1": enc.conv1, "conv2": enc.conv2,
                              "positions": enc.embed_positions})

    def _embed(self, wave, lengths):
        b = self.backbone
        mel = b.frontend(wave, lengths)  # (B, n_mels, T_mel)
        h = b.embed(mel, None if lengths is None else b.frontend.num_frames(lengths))  # (B, T, D)
        return h, None if lengths is None else b._frame_mask(lengths, h.shape[1], False)

    def _run_layers(self, h, mask, start, stop):
        attn = None
        if mask is not None:  # additive key mask (B, 1, 1, T), as the backbone's forward builds it
            attn = torch.zeros(mask.shape, dtype=h.dtype, device=h.device).masked_fill(~mask, torch.finfo(h.dtype).min)
            attn = attn[:, None, None, :]
        states = [h]
        for layer in self.layers[start:stop]:
            h = layer(h, attn)
            states.append(h)
        return states

    def _final_norm(self, h):
        return self.backbone.model.layer_norm(h)


class Wav2Vec2Split(SplitBackbone):
    """:class:`Wav2Vec2StyleBackbone` cut: conv feature encoder, projection, positional conv (+ norm) below."""

    def __init__(self, backbone: SpeechBackbone, cut: int) -> None:
        super().__init__(backbone, cut)
        encoder = backbone.model.encoder
        self.pre_norm = "StableLayerNorm" in type(encoder).__name__  # final layer norm after the last layer
        # transformers reports the normed last state as hidden_states[-1] for some pre-norm models and the raw
        # one for others (WavLM); ask the model once, on one short silent-free clip, which it does
        self.norm_last = self.pre_norm and self._reports_normed_last()
        first = self.layers[0]
        self.relative = hasattr(getattr(first, "attention", None), "compute_bias")  # WavLM position bias
        self.pass_index = "index" in inspect.signature(type(first).forward).parameters

    def _stem(self) -> nn.Module:
        m = self.backbone.model
        enc = m.encoder
        parts = {"feature_extractor": m.feature_extractor, "feature_projection": m.feature_projection,
                 "pos_conv_embed": enc.pos_conv_embed}
        if not self.pre_norm:
            parts["layer_norm"] = enc.layer_norm
        if getattr(m, "masked_spec_embed", None) is not None:
            parts["masked_spec_embed"] = nn.ParameterList([m.masked_spec_embed])
        return nn.ModuleDict(parts)

    def _embed(self, wave, lengths):
        b, m = self.backbone, self.backbone.model
        n = _check_wave(wave, lengths)
        x = b.normalize(wave, n) if b.do_normalize else wave
        feats = m.feature_extractor(x, lengths=lengths).transpose(1, 2)  # (B, T, C)
        mask = None if lengths is None else b._frame_mask(lengths, feats.shape[1], False)
        projected = m.feature_projection(feats)
        h = projected[0] if isinstance(projected, tuple) else projected  # (B, T, D)
        h = m._mask_hidden_states(h, attention_mask=mask)
        enc = m.encoder
        if mask is not None:  # padded frames output 0 before the positional convolution, as the encoder does
            h = h.masked_fill(~mask[..., None], 0.0)
        h = h + enc.pos_conv_embed(h)
        if not self.pre_norm:
            h = enc.layer_norm(h)
        return enc.dropout(h), mask

    def _run_layers(self, h, mask, start, stop):
        enc = self.backbone.model.encoder
        if self.relative:  # WavLM: the 2-d key mask and the ungated bias that layer 0 computes and passes on
            attn = mask
            bias = None if start == 0 else self._relative_bias(h)
        else:
            from transformers.masking_utils import create_bidirectional_mask

            attn = create_bidirectional_mask(config=enc.config, inputs_embeds=h, attention_mask=mask)
        states = [h]
        for i in range(start, stop):
            layer = self.layers[i]
            if self.relative:
                extra = {"index": i} if self.pass_index else {}
                out = layer(h, attention_mask=attn, position_bias=bias, **extra)
                h, bias = out[0], out[1]
            else:
                out = layer(h, attention_mask=attn)
                h = out[0] if isinstance(out, tuple) else out
            states.append(h)
        return states

    def _relative_bias(self, h: torch.Tensor) -> torch.Tensor:
        """``(B * H, T, T)``: the bias layer 0's attention computes when it is given none."""
        attention = self.layers[0].attention
        b, t = h.shape[:2]
        bias = attention.compute_bias(t, t)  # (H, T, T)
        return bias.unsqueeze(0).repeat(b, 1, 1, 1).view(b * attention.num_heads, t, t)

    def _final_norm(self, h):
        return self.backbone.model.encoder.layer_norm(h) if self.norm_last else h

    @torch.no_grad()
    def _reports_normed_last(self) -> bool:
        wave = torch.linspace(-0.5, 0.5, 2 * self.backbone.min_samples())[None]  # (1, N)
        device = next(self.backbone.parameters()).device
        out = self.backbone.model(wave.to(device), output_hidden_states=True, return_dict=True)
        return bool(torch.allclose(out.hidden_states[-1], out.last_hidden_state))


def split_backbone(backbone: nn.Module, cut: int) -> SplitBackbone:
    """``backbone`` cut before transformer layer ``cut``.

    Args:
        backbone: a :class:`WhisperEncoderBackbone` or :class:`Wav2Vec2StyleBackbone` (HuBERT, wav2vec 2.0, WavLM).
        cut: ``0`` (after the feature encoder) .. ``num_layers`` (after the last layer, before a final norm).

    Raises:
        ValueError: another kind of backbone, or a cut out of range.
    """
    if isinstance(backbone, WhisperEncoderBackbone):
        return WhisperSplit(backbone, cut)
    if isinstance(backbone, Wav2Vec2StyleBackbone):
        return Wav2Vec2Split(backbone, cut)
    raise ValueError(
        f"{getattr(backbone, 'name', type(backbone).__name__)!r} cannot be split into a cached lower part and a "
        "trained upper part; use a Whisper encoder or a HuBERT / wav2vec 2.0 / WavLM backbone, or run uncached"
    )
