"""Run a ``.tflite`` model with the LiteRT runtime (``ai-edge-litert``, TensorFlow Lite's successor), reading the
graph outputs and, when asked, intermediate tensors by name (kept with ``experimental_preserve_all_tensors``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class LiteRTRunner:
    """One LiteRT interpreter for a single-input model; the batch dimension is resized on demand.

    Args:
        path: the ``.tflite`` file, or its bytes.
        taps: names of intermediate tensors to return as well (e.g. ``model/GLOBAL_AVG_POOL/Mean``).
        num_threads: CPU threads of the interpreter (``None``: LiteRT's default).
    """

    def __init__(self, path: str | Path | bytes, taps: Sequence[str] = (), num_threads: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError("the LiteRT engine needs the runtime: pip install ai-edge-litert") from err
        source = {"model_content": path} if isinstance(path, bytes) else {"model_path": str(path)}
        self.path = "<bytes>" if isinstance(path, bytes) else str(path)
        with warnings.catch_warnings():  # preserving tensors is reported as a debugging feature; it is what we need
            warnings.simplefilter("ignore", UserWarning)
            self.interpreter = Interpreter(**source, num_threads=num_threads,
                                           experimental_preserve_all_tensors=bool(taps))
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1:
            raise ValueError(f"{self.path}: LiteRTRunner runs single-input models; this one has {len(inputs)}")
        self.input = inputs[0]
        self.outputs = [d["index"] for d in self.interpreter.get_output_details()]
        by_name = {d["name"]: d["index"] for d in self.interpreter.get_tensor_details()}
        missing = [t for t in taps if t not in by_name]
        if missing:
            raise KeyError(f"{self.path}: no tensors named {missing}")
        self.taps = [by_name[t] for t in taps]
        self._shape: tuple[int, ...] | None = None

    def __call__(self, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Args:
            x: the input batch, e.g. ``(B, 144000)`` float32.

        Returns:
            ``(outputs, taps)``: copies of the graph outputs and of the tapped tensors.
        """
        x = np.ascontiguousarray(x, dtype=self.input["dtype"])
        if self._shape != x.shape:
            self.interpreter.resize_tensor_input(self.input["index"], list(x.shape))
            self.interpreter.allocate_tensors()
            self._shape = x.shape
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        get = self.interpreter.get_tensor
        return [get(i).copy() for i in self.outputs], [get(i).copy() for i in self.taps]
