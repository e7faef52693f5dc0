"""A small reader of CTranslate2's binary model format (``model.bin``), with no dependency on ctranslate2.

Layout (binary version 6, little-endian), as written by ``ctranslate2.specs.ModelSpec``:

```
uint32 binary_version
string spec_name                     # string = uint16 length (including the final NUL), bytes, NUL
uint32 spec_revision
uint32 num_variables
  num_variables x { string name; uint8 rank; uint32 dim[rank]; uint8 dtype_id; uint32 num_bytes; bytes }
uint32 num_aliases
  num_aliases x { string alias; string target_variable_name }
```

dtype ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16. Scalars (rank 0) hold model
options (``encoder/num_heads``, activation ids...). Quantized weights come as an int8/int16 ``.../weight``
plus a float ``.../weight_scale`` with one scale per output row, where ``weight = quantized / scale``
(:meth:`CT2Model.tensor` dequantizes). Variable data are read lazily from the file by offset.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SUPPORTED_BINARY_VERSIONS = (6,)
#: CTranslate2 dtype id -> (name, item size in bytes).
DTYPES: dict[int, tuple[str, int]] = {
    0: ("float32", 4),
    1: ("int8", 1),
    2: ("int16", 2),
    3: ("int32", 4),
    4: ("float16", 2),
    5: ("bfloat16", 2),
}
_NUMPY = {"float32": np.float32, "int8": np.int8, "int16": np.int16, "int32": np.int32, "float16": np.float16}


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 model this reader understands; the message names the file and the fix."""


@dataclass(frozen=True)
class CT2Variable:
    """One stored variable: its name, shape, CTranslate2 dtype name and where its bytes are in the file."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int
    num_bytes: int


class _Cursor:
    """Sequential little-endian reads from an open file, raising CT2FormatError on truncation."""

    def __init__(self, fh, path: Path) -> None:
        self.fh, self.path = fh, path

    def take(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise CT2FormatError(f"{self.path}: truncated at byte {self.fh.tell()}; re-install or re-convert the model")
        return data

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]

    def string(self) -> str:
        raw = self.take(self.unpack("H"))
        if not raw.endswith(b"\0"):
            raise CT2FormatError(f"{self.path}: string at byte {self.fh.tell() - len(raw)} is not NUL-terminated")
        return raw[:-1].decode("utf-8")


class CT2Model:
    """The parsed header and variable table of a CTranslate2 ``model.bin``.

    Args:
        path: the ``model.bin`` file, or the model directory that contains it.

    Attributes:
        binary_version, spec_name, spec_revision: the header.
        variables: name -> :class:`CT2Variable`, in file order.
        aliases: alias name -> the stored variable it stands for (CTranslate2 stores shared weights once).
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / "model.bin"
        if not path.is_file():
            raise FileNotFoundError(f"no CTranslate2 model at {path}; pass a model.bin or the directory holding it")
        self.path = path
        size = path.stat().st_size
        with path.open("rb") as fh:
            cur = _Cursor(fh, path)
            self.binary_version = cur.unpack("I")
            if self.binary_version not in SUPPORTED_BINARY_VERSIONS:
                raise CT2FormatError(
                    f"{path}: CTranslate2 binary version {self.binary_version}, this reader knows "
                    f"{SUPPORTED_BINARY_VERSIONS}; re-convert the model with ctranslate2>=4"
                )
            self.spec_name = cur.string()
            self.spec_revision = cur.unpack("I")
            self.variables: dict[str, CT2Variable] = {}
            for _ in range(cur.unpack("I")):
                name = cur.string()
                shape = tuple(cur.unpack("I") for _ in range(cur.unpack("B")))
                type_id = cur.unpack("B")
                if type_id not in DTYPES:
                    raise CT2FormatError(f"{path}: variable {name!r} has unknown dtype id {type_id}")
                dtype, itemsize = DTYPES[type_id]
                num_bytes = cur.unpack("I")
                if num_bytes != itemsize * int(np.prod(shape, dtype=np.int64)):
                    raise CT2FormatError(f"{path}: variable {name!r} {shape} {dtype} declares {num_bytes} bytes")
                self.variables[name] = CT2Variable(name, shape, dtype, fh.tell(), num_bytes)
                fh.seek(num_bytes, 1)
            self.aliases: dict[str, str] = {}
            for _ in range(cur.unpack("I")):
                alias = cur.string()
                self.aliases[alias] = cur.string()
            if fh.tell() != size:
                raise CT2FormatError(f"{path}: {size - fh.tell()} trailing bytes after the alias table")
        missing = {a: t for a, t in self.aliases.items() if t not in self.variables}
        if missing:
            raise CT2FormatError(f"{path}: aliases point to missing variables {missing}")

    def __contains__(self, name: str) -> bool:
        return name in self.variables or name in self.aliases

    def names(self, prefix: str = "") -> list[str]:
        """Stored and aliased variable names starting with ``prefix``."""
        return [n for n in (*self.variables, *self.aliases) if n.startswith(prefix)]

    def variable(self, name: str) -> CT2Variable:
        """The stored variable ``name`` (aliases resolved)."""
        key = self.aliases.get(name, name)
        if key not in self.variables:
            raise KeyError(f"{self.path} has no variable {name!r}; it has e.g. {', '.join(list(self.variables)[:5])}")
        return self.variables[key]

    def array(self, name: str) -> np.ndarray:
        """The raw stored values of ``name`` as numpy (bfloat16 comes back as its uint16 bit pattern)."""
        var = self.variable(name)
        dtype = _NUMPY.get(var.dtype, np.uint16)
        data = np.fromfile(self.path, dtype=dtype, count=var.num_bytes // np.dtype(dtype).itemsize, offset=var.offset)
        return data.reshape(var.shape)

    def scalar(self, name: str) -> int | float:
        """A rank-0 option such as ``encoder/num_heads``."""
        value = self.array(name)
        if value.shape != ():
            raise KeyError(f"{self.path}: {name!r} has shape {value.shape}, not a scalar")
        return value.item()

    def tensor(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``name`` as a torch tensor of ``dtype``, dequantized when a ``<name>_scale`` is stored next to it."""
        var = self.variable(name)
        raw = self.array(name)
        if var.dtype == "bfloat16":
            t = torch.from_numpy(raw.view(np.int16).copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(raw.copy())
        scale_name = name + "_scale"
        if var.dtype in ("int8", "int16") and scale_name in self:
            scale = self.tensor(scale_name, torch.float32)  # (rows,) or scalar
            t = t.to(torch.float32) / scale.reshape(-1, *([1] * (t.dim() - 1)))
        return t.to(dtype)


def read_ct2(path: str | Path) -> CT2Model:
    """Parse the CTranslate2 model at ``path`` (a ``model.bin`` or its directory)."""
    return CT2Model(path)
