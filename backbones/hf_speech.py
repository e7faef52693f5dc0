"""Frozen transformers speech encoders: HuBERT, wav2vec 2.0 and WavLM (the shared base :class:`SpeechBackbone`).

Every wrapper takes ``(B, N)`` waveforms at the feature extractor's rate plus optional per-clip
``lengths`` and returns all hidden states (embedding output first), a frame mask and the masked
mean of the last hidden state. The Whisper encoder's wrapper and its log-mel front end are in
:mod:`backbones.hf_whisper`. The model's own input normalisation (wav2vec 2.0's per-clip
zero-mean/unit-variance, Whisper's log-mel) is computed in torch, so gradients reach the waveform.

The wrappers take already-built transformers modules; loading from the hub (``hf:<id>``) lives in
:mod:`backbones.hf_hub`, random twins in :mod:`backbones.tiny`.
"""

from __future__ import annotations

from types import MethodType

import torch
from torch import nn

from backbones.base import Backbone, BackboneOutput
from reprogram.spec import InputSpec

#: LoRA target suffixes of the self-attention projections (the same names in all four families).
ATTENTION_PROJECTIONS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "out_proj"}


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over valid frames.

    Args:
        hidden: ``(B, T, D)``.
        mask: ``(B, T)`` bool (True = valid) or ``None`` (all valid).

    Returns:
        ``(B, D)``.
    """
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def _check_wave(wave: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Validate ``(B, N)`` waves and return ``(B,)`` lengths (full length when ``lengths`` is None)."""
    if wave.dim() != 2:
        raise ValueError(f"speech backbones take (B, N) waveforms, got shape {tuple(wave.shape)}; add a batch dim")
    if lengths is None:
        return torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long, device=wave.device)
    lengths = torch.as_tensor(lengths, dtype=torch.long, device=wave.device)
    if lengths.shape != (wave.shape[0],) or int(lengths.min()) < 1 or int(lengths.max()) > wave.shape[1]:
        raise ValueError(f"lengths must be (B,) integers in [1, N={wave.shape[1]}], got {lengths.tolist()}")
    return lengths


def _attention_through_modules(self, hidden: torch.Tensor, attention_mask, position_bias: torch.Tensor):
    """WavLM self-attention calling ``q_proj``/``k_proj``/``v_proj``/``out_proj`` as modules (bound per instance).

    transformers' WavLM attention hands the projection *weights* to ``F.multi_head_attention_forward``,
    so a LoRA layer wrapped around ``q_proj`` would be bypassed and train nothing. This computes the
    same function (scaled dot-product attention plus the gated relative-position bias and the key
    padding mask) through the modules, so wrappers take effect.

    Args:
        hidden: ``(B, T, D)``.
        attention_mask: ``(B, T)`` with 1 at valid frames, or None.
        position_bias: ``(B * H, T, T)`` gated relative-position bias.

    Returns:
        ``((B, T, D), None)``: the attention output; attention weights are not materialised.
    """
    b, t, d = hidden.shape
    heads = self.num_heads

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(b, t, heads, d // heads).transpose(1, 2)  # (B, H, T, Dh)

    bias = position_bias.view(b, heads, t, t).to(hidden.dtype)
    if attention_mask is not None:
        bias = bias.masked_fill(attention_mask.ne(1)[:, None, None, :], float("-inf"))
    q, k, v = split(self.q_proj(hidden)), split(self.k_proj(hidden)), split(self.v_proj(hidden))
    drop = self.dropout if self.training else 0.0
    out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop)  # (B, H, T, Dh)
    return self.out_proj(out.transpose(1, 2).reshape(b, t, d)), None


def route_projections_through_modules(model: nn.Module) -> int:
    """Make attention layers that read projection weights directly (WavLM) call the projection modules.

    Returns:
        The number of attention layers rerouted (0 for models that already call their modules).
    """
    count = 0
    for module in model.modules():
        if hasattr(module, "torch_multi_head_self_attention") and hasattr(module, "q_proj"):
            module.torch_multi_head_self_attention = MethodType(_attention_through_modules, module)
            count += 1
    return count


def masked_group_norm(hidden: torch.Tensor, valid: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm`` (an ``nn.GroupNorm``) with each clip's statistics taken over its valid frames only.

    For a clip whose frames are all valid this is ``norm(hidden)``; for a padded clip it is ``norm`` of the
    clip's valid frames alone (biased variance, ``norm.eps``, the module's own affine weights), so padded
    frames never shift a valid frame. Padded output frames carry no meaning; the caller zeroes them.

    Args:
        hidden: ``(B, C, T)``.
        valid: ``(B, T)`` bool, True at valid frames (at least one per clip).
        norm: the GroupNorm whose groups, eps and affine parameters to use.

    Returns:
        ``(B, C, T)``.
    """
    b, c, t = hidden.shape
    keep = valid[:, None, None, :]  # (B, 1, 1, T)
    x = hidden.reshape(b, norm.num_groups, c // norm.num_groups, t)  # (B, G, C/G, T)
    count = keep.sum(dim=-1, keepdim=True).to(x.dtype) * x.shape[2]  # (B, 1, 1, 1) valid entries per group
    mean = torch.where(keep, x, 0.0).sum(dim=(2, 3), keepdim=True) / count  # (B, G, 1, 1)
    var = torch.where(keep, x - mean, 0.0).pow(2).sum(dim=(2, 3), keepdim=True) / count  # biased, as GroupNorm
    x = ((x - mean) * torch.rsqrt(var + norm.eps)).reshape(b, c, t)
    if norm.affine:
        x = x * norm.weight[None, :, None] + norm.bias[None, :, None]
    return x


def _feature_encoder_forward(self, input_values: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """wav2vec 2.0 conv feature encoder that keeps each clip of a padded batch as it is alone (bound per instance).

    Without ``lengths`` this is the library's own ``forward``. With ``lengths``, the first layer's GroupNorm
    (group-norm front ends: one group per channel, statistics over time) is taken over each clip's valid
    frames only, as for the clip run alone; transformers' version averages over the padding too, so a clip's
    output depended on its batch mates. The later layers are the library's own modules (hooks, LoRA and
    gradient checkpointing apply); no padding is needed for them: frame ``t < L_k`` of layer ``k``
    (``L_k = (L_{k-1} - kernel) // stride + 1``, the model's ``_get_feat_extract_output_lengths``) reads
    frames ``t * stride .. t * stride + kernel - 1 < L_{k-1}`` only. Padded frames are zeroed after every
    layer all the same (no gradient reaches padding), so the output past each clip's last frame is 0.

    Args:
        input_values: ``(B, N)`` waveforms.
        lengths: optional ``(B,)`` valid samples per clip.

    Returns:
        ``(B, C, T)`` conv features.
    """
    if lengths is None:
        return type(self).forward(self, input_values)

    def valid_frames(n: torch.Tensor, frames: int, conv: nn.Conv1d) -> tuple[torch.Tensor, torch.Tensor]:
        n = torch.div(n - conv.kernel_size[0], conv.stride[0], rounding_mode="floor") + 1  # (B,)
        return n, torch.arange(frames, device=n.device)[None, :] < n[:, None]  # (B,), (B, T)

    hidden = input_values[:, None]  # (B, 1, N)
    if self._requires_grad and self.training:  # as the library does, for gradient checkpointing
        hidden.requires_grad = True
    for layer in self.conv_layers:
        norm = getattr(layer, "layer_norm", None)
        if isinstance(norm, nn.GroupNorm):  # the first layer of group-norm front ends
            hidden = layer.conv(hidden)  # (B, C, T_k)
            lengths, valid = valid_frames(lengths, hidden.shape[-1], layer.conv)
            hidden = layer.activation(masked_group_norm(hidden, valid, norm))
        else:  # no norm, or a per-frame LayerNorm: nothing mixes frames
            hidden = layer(hidden)  # (B, C, T_k)
            lengths, valid = valid_frames(lengths, hidden.shape[-1], layer.conv)
        hidden = hidden.masked_fill(~valid[:, None, :], 0.0)
    return hidden


class SpeechBackbone(Backbone):
    """Common surface of the speech encoders, for probes and PEFT methods.

    Attributes:
        model: the transformers module (LoRA / prompt methods insert their layers here).
        num_layers: number of transformer layers (``spec.num_layers == num_layers + 1`` hidden states).
        hidden_size: width D of every hidden state.
    """

    model: nn.Module
    num_layers: int
    hidden_size: int

    def _make_spec(self, sample_rate: int) -> InputSpec:
        return InputSpec(
            modality="speech",
            shape=(-1,),
            sample_rate=int(sample_rate),
            feature_dim=self.hidden_size,
            num_layers=self.num_layers + 1,
        )

    def attention_projections(self) -> dict[str, str]:
        """Module-name suffixes of the attention projections, e.g. ``{"q": "q_proj", ...}``, for LoRA targets."""
        return dict(ATTENTION_PROJECTIONS)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Number of valid output frames for clips of ``lengths`` samples, ``(B,)``."""
        raise NotImplementedError

    def min_samples(self) -> int:  # pragma: no cover - abstract
        """Shortest clip (in samples) that gives one output frame."""
        raise NotImplementedError

    def _check_min_length(self, lengths: torch.Tensor) -> None:
        if int(lengths.min()) < self.min_samples():
            raise ValueError(
                f"{self.name}: a clip of {int(lengths.min())} samples is too short for one output frame; "
                f"use clips of at least {self.min_samples()} samples at {self.spec.sample_rate} Hz"
            )

    def _frame_mask(self, lengths: torch.Tensor, frames: int, full: bool) -> torch.Tensor | None:
        if full:
            return None
        valid = self.frame_lengths(lengths).clamp(max=frames)
        return torch.arange(frames, device=lengths.device)[None, :] < valid[:, None]  # (B, T)


class Wav2Vec2StyleBackbone(SpeechBackbone):
    """HuBERT, wav2vec 2.0 or WavLM (any ``*Model`` with the wav2vec 2.0 conv front end).

    Without ``lengths`` (or when no clip is padded) the output is transformers' own. With ``lengths``, each
    clip of a padded batch gives what it gives alone (to float rounding), whatever fills the padding: the
    input is normalised over the clip's own samples, the conv front end's GroupNorm (group-norm checkpoints
    such as hubert-base-ls960, wav2vec2-base) over the clip's own frames (:func:`masked_group_norm`), and the
    encoder gets the frame mask (padded frames zeroed before the positional conv, masked out of attention).
    transformers advises zero padding *without* a mask for group-norm checkpoints because its GroupNorm then
    averages over the padding either way; here nothing averages over padding, so the mask is always passed.

    Args:
        model: a built ``HubertModel`` / ``Wav2Vec2Model`` / ``WavLMModel``; its ``feature_extractor``'s
            ``forward`` is rebound to one that takes ``lengths`` (the library's own without them).
        feature_extractor: its ``Wav2Vec2FeatureExtractor`` (reads ``sampling_rate``, ``do_normalize``).
        name: the registry name.
    """

    def __init__(self, model: nn.Module, feature_extractor, name: str) -> None:
        super().__init__()
        self.model = model
        self.name = name
        # LayerDrop skips whole layers at random in train mode (full fine-tuning), which would change the number of
        # hidden states between steps and make runs irreproducible; every method here sees every layer.
        model.config.layerdrop = 0.0
        route_projections_through_modules(model)  # WavLM: so that LoRA on q/k/v/out_proj is not bypassed
        # The conv front end takes per-clip lengths (group norm over each clip's own frames); see forward.
        model.feature_extractor.forward = MethodType(_feature_encoder_forward, model.feature_extractor)
        self.do_normalize = bool(getattr(feature_extractor, "do_normalize", True))
        self.num_layers = int(model.config.num_hidden_layers)
        self.hidden_size = int(model.config.hidden_size)
        self.spec = self._make_spec(feature_extractor.sampling_rate)
        self.freeze()

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.model._get_feat_extract_output_lengths(lengths).long()

    def min_samples(self) -> int:
        """Receptive field of the conv front end (400 samples for the standard 7-layer stack)."""
        n, config = 1, self.model.config
        for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride, strict=True))):
            n = (n - 1) * stride + kernel
        return n

    def normalize(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The feature extractor's per-clip zero-mean/unit-variance over valid samples; padding set to 0.

        Args:
            wave: ``(B, N)``.
            lengths: ``(B,)`` valid samples per clip.
        """
        valid = torch.arange(wave.shape[1], device=wave.device)[None, :] < lengths[:, None]  # (B, N)
        w = valid.to(wave.dtype)
        n = lengths.to(wave.dtype)[:, None]
        mean = (wave * w).sum(1, keepdim=True) / n
        var = (((wave - mean) * w) ** 2).sum(1, keepdim=True) / n  # population variance, as numpy's .var()
        return (wave - mean) / torch.sqrt(var + 1e-7) * w

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> BackboneOutput:
        """Args:
            wave: ``(B, N)`` waveforms at ``spec.sample_rate``.
            lengths: optional ``(B,)`` valid samples per clip (the rest is padding).

        Returns:
            :class:`BackboneOutput` with ``hidden_states`` (``num_layers + 1`` tensors ``(B, T, D)``),
            ``mask`` ``(B, T)`` (None when no clip is padded), ``features`` ``(B, D)``, ``logits`` None.
        """
        full_lengths = lengths is None
        lengths = _check_wave(wave, lengths)
        full = full_lengths or bool((lengths == wave.shape[1]).all())
        self._check_min_length(lengths)
        x = self.normalize(wave, lengths) if self.do_normalize else wave
        if full:
            out = self.model(x, output_hidden_states=True, return_dict=True)
        else:
            sample_mask = (torch.arange(wave.shape[1], device=wave.device)[None, :] < lengths[:, None]).long()
            # model.forward calls feature_extractor(x) without lengths: hand them over for this call only.
            handle = self.model.feature_extractor.register_forward_pre_hook(
                lambda _module, args, kwargs: (args, {**kwargs, "lengths": lengths}), with_kwargs=True
            )
            try:
                out = self.model(x, attention_mask=sample_mask, output_hidden_states=True, return_dict=True)
            finally:
                handle.remove()
        hidden = tuple(out.hidden_states)
        assert len(hidden) == self.num_layers + 1, (len(hidden), self.num_layers)
        mask = self._frame_mask(lengths, hidden[-1].shape[1], full)
        return BackboneOutput(logits=None, features=masked_mean(hidden[-1], mask), hidden_states=hidden, mask=mask)
