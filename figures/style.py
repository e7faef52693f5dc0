"""Paper style for every figure (matplotlib, Agg backend) and a PDF + PNG saver."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

#: single-column width of a two-column paper, in inches
COLUMN = 3.4
#: full text width, in inches
TEXT = 7.0

PAPER = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,  # editable text in the PDF
    "figure.dpi": 100,
}


@contextmanager
def paper_style():
    """Matplotlib settings of every figure of the paper."""
    with plt.rc_context(PAPER):
        yield


def save(fig, folder: str | Path, stem: str) -> list[Path]:
    """Save ``fig`` as ``folder/stem.pdf`` and ``folder/stem.png`` (300 dpi), close it, return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.pdf", folder / f"{stem}.png"]
    fig.savefig(paths[0])
    fig.savefig(paths[1], dpi=300)
    plt.close(fig)
    return paths


def slug(*parts: object) -> str:
    """A file-name-safe stem from ``parts`` (``"lora_r8_offline-whisper_tiny_en"``)."""
    text = "_".join(str(p) for p in parts if p not in (None, ""))
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-_") or "figure"


def method_label(method: str, variant: str = "") -> str:
    """``method`` or ``method [options]``."""
    return f"{method} [{variant}]" if variant else method


def system_label(method: str, budget: object = None, backbone: str | None = None, variant: str = "") -> str:
    """A short legend label of a system."""
    name = method_label(method, variant)
    name = name if budget is None else f"{name} ({budget})"
    return name if not backbone or backbone == "none" else f"{name} / {backbone.split(':')[-1]}"
