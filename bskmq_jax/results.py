"""The PTQ result directory: what `bskmq ptq` writes and later jobs read.

Layout of ``--out DIR``::

    DIR/results.json                 config, versions, seed, every number (schema below)
    DIR/results.md                   the Markdown tables
    DIR/levels/<method>-<bits>b.safetensors   fitted levels of every layer (first calibration seed)
    DIR/*.png                        plots

``results.json`` (schema ``bskmq.ptq/1``) holds, among others:

- ``model``: the `ModelSpec` as a dict (``bskmq_jax.zoo``), ``checkpoint``:
  the weights it was built from, ``dataset``;
- ``metric``: the headline task metric (``"top1"``, ``"cosine"``),
  ``float``: the float model's metrics;
- ``results[method][bits]``: ``mean``/``std``/``per_seed`` task metrics and
  per-layer error metrics;
- ``accuracy[method][bits]``: the headline metric's mean (what
  ``bskmq hardware sweep --accuracy`` reads).

Fine-tuning (``bskmq finetune --from-ptq DIR``) rebuilds the model from
``model`` + ``checkpoint`` and programs ``levels/<method>-<bits>b``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bskmq_jax.io import atomic_path
from bskmq_jax.levels import NLLevels

__all__ = ["SCHEMA", "levels_path", "save_levels", "load_levels", "load_ptq"]

SCHEMA = "bskmq.ptq/1"
_FIELDS = ("levels", "thresholds", "lo", "hi")


def levels_path(out_dir, method: str, bits: int) -> Path:
    """``DIR/levels/<method>-<bits>b.safetensors``."""
    return Path(out_dir) / "levels" / f"{method}-{bits}b.safetensors"


def save_levels(path, levels: dict[str, NLLevels]) -> Path:
    """Writes ``{layer: NLLevels}`` (one layer each) to a safetensors file atomically."""
    from safetensors.numpy import save_file

    if not levels:
        raise ValueError("levels: nothing to save (no layers)")
    methods = {nl.method for nl in levels.values()}
    bits = {nl.bits for nl in levels.values()}
    tensors = {}
    for name, nl in levels.items():
        if nl.batch_shape not in ((), (1,)):
            raise ValueError(f"levels: {name} has batch shape {nl.batch_shape}; save one layer's levels per name")
        for f in _FIELDS:
            tensors[f"{name}/{f}"] = np.asarray(getattr(nl, f), np.float32).reshape(-1 if f in ("levels", "thresholds") else ())
    meta = {"method": ",".join(sorted(methods)), "bits": json.dumps(sorted(bits)), "schema": SCHEMA}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def load_levels(path) -> dict[str, NLLevels]:
    """Reads a file written by `save_levels` back into ``{layer: NLLevels}``.

    Raises:
      FileNotFoundError: when ``path`` does not exist (names the PTQ command that writes it).
      ValueError: when the file is not a levels file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"levels file {path} does not exist; `bskmq ptq --out DIR` writes DIR/levels/<method>-<bits>b.safetensors")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"levels file {path} is not a readable safetensors file: {e}") from e
    if meta.get("schema") != SCHEMA:
        raise ValueError(f"levels file {path}: not written by bskmq ptq (metadata {meta})")
    method = meta["method"]
    names = sorted({k.rsplit("/", 1)[0] for k in arrays})
    out = {}
    for n in names:
        try:
            lv, th, lo, hi = (arrays[f"{n}/{f}"] for f in _FIELDS)
        except KeyError as e:
            raise ValueError(f"levels file {path}: layer {n} lacks {e.args[0]}") from None
        bits = int(round(np.log2(lv.shape[-1])))
        out[n] = NLLevels(lv, th, np.float32(lo), np.float32(hi), method=method, bits=bits)
    return out


def load_ptq(out_dir) -> dict:
    """Reads and checks ``DIR/results.json``.

    Raises:
      FileNotFoundError: when the directory or its results.json is missing.
      ValueError: when the file is not a PTQ result of this schema.
    """
    p = Path(out_dir)
    f = p / "results.json" if p.is_dir() or not p.suffix else p
    if not f.is_file():
        raise FileNotFoundError(f"PTQ results {f} do not exist; run `bskmq ptq --out {p}` first")
    try:
        res = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"PTQ results {f} are not valid JSON: {e}") from None
    if res.get("schema") != SCHEMA:
        raise ValueError(f"PTQ results {f}: schema {res.get('schema')!r}, expected {SCHEMA!r}")
    for key in ("model", "results", "accuracy"):
        if key not in res:
            raise ValueError(f"PTQ results {f}: missing field {key!r}")
    return res
