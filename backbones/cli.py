"""``reprogram backbones [--json] [PATTERN ...]``: every registered backbone with its spec, size and weight status.

Hub models are described without downloading anything: the architecture is built on the meta
device from library metadata (timm ``pretrained_cfg``, open_clip model configs, torchvision
``Weights.meta``, a cached transformers config); weights count as available when they are in the
local cache. Offline models and tiny twins are built (their weights are packaged or random).
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import sys
import time

#: Families described from metadata (module with ``describe(rest)``); other names are built.
DESCRIBED = {
    "timm:": "backbones.timm_image",
    "open_clip:": "backbones.open_clip_image",
    "torchvision:": "backbones.video",
    "hf:": "backbones.hf_hub",
}
#: Where the weights of built families come from.
BUILT_WEIGHTS = {"offline:": "packaged", "tiny:": "random (test twin)"}
#: What a bare prefix accepts.
PREFIX_HELP = {
    "timm:": "any timm model: timm:<name>[.<pretrained tag>]",
    "open_clip:": "open_clip:<arch>/<pretrained tag>",
    "torchvision:": "torchvision:<video model> with Kinetics-400 weights",
    "hf:": "hf:<hub id or save_pretrained folder> (hubert, wav2vec2, wavlm, whisper, AST)",
}


def describe(name: str) -> dict:
    """One row: name, modality, spec summary, parameter count, source-label count, weights status.

    Args:
        name: a registered backbone name (exact, or a bare prefix such as ``"timm:"``).
    """
    import backbones

    row: dict = {"name": name}
    if name.endswith(":"):
        row.update(modality=None, spec=None, parameters=None, num_labels=None, weights_available=None)
        row["note"] = PREFIX_HELP.get(name, "prefix family")
        return row
    prefix = name.split(":", 1)[0] + ":" if ":" in name else ""
    if prefix in DESCRIBED or name == "vggish":
        module = importlib.import_module(DESCRIBED.get(prefix, "backbones.vggish"))
        info = module.describe(name[len(prefix) :]) if prefix else module.describe()
        spec = info["spec"]
        weights = "cached" if info["weights_available"] else "not cached"
        row.update(parameters=info["parameters"], weights_available=bool(info["weights_available"]))
        if info.get("note"):
            row["note"] = info["note"]
    else:
        backbone = backbones.create(name)
        spec = backbone.spec
        weights = BUILT_WEIGHTS.get(prefix, "loaded")
        row.update(parameters=backbone.num_parameters(), weights_available=True)
        if getattr(backbone, "licence", None):  # e.g. BirdNET's non-commercial model licence
            row["note"] = backbone.licence
    row["weights"] = weights
    row["modality"] = spec.modality if spec else None
    row["spec"] = spec.summary() if spec else None
    unknown = spec is None or row.get("note") == "config not cached"  # label names live in the config
    row["num_labels"] = None if unknown else spec.num_labels
    return row


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--json`` and name patterns."""
    parser.add_argument("patterns", nargs="*", metavar="PATTERN", help="shell-style name patterns (default: all)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows instead of a table")


def _table(rows: list[dict]) -> str:
    head = f"{'name':48} {'modality':8} {'input':>22} {'rate':>6} {'labels':>6} {'params':>12}  weights"
    lines = [head, "-" * len(head)]
    for r in rows:
        spec = r.get("spec") or {}
        shape = "x".join(str(s) for s in spec.get("shape", [])) or "-"
        params = f"{r['parameters']:,}" if r.get("parameters") is not None else "-"
        labels = r["num_labels"] if r.get("num_labels") is not None else "-"
        status = r.get("error") or r.get("weights") or r.get("note", "")
        extra = f"  ({r['note']})" if r.get("note") and r.get("weights") else ""
        lines.append(
            f"{r['name']:48} {r.get('modality') or '-':8} {shape:>22} {spec.get('sample_rate') or '-':>6} "
            f"{labels:>6} {params:>12}  {status}{extra}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Describe every matching backbone; exit status 1 if a pattern matches nothing or a row fails."""
    import backbones

    names = backbones.names()
    if args.patterns:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in args.patterns)]
        if not names:
            print(f"no backbone matches {args.patterns}; run `reprogram backbones` for the list", file=sys.stderr)
            return 1
    rows, status = [], 0
    for name in names:
        start = time.perf_counter()
        try:
            row = describe(name)
        except Exception as err:  # noqa: BLE001 - one broken entry must not hide the others
            row, status = {"name": name, "error": f"{type(err).__name__}: {err}".splitlines()[0]}, 1
        row["seconds"] = round(time.perf_counter() - start, 2)
        rows.append(row)
    print(json.dumps(rows, indent=1) if args.json else _table(rows))
    return status
