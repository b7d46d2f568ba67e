"""Design-space sweep: every combination of ADC form, bits, array size,
sharing, input DAC width and accumulation, evaluated in one numpy pass.

`design_grid` builds the Cartesian product as flat ``[G]`` arrays;
`run_sweep` evaluates all of it on a network with `evaluate_grid` (one
vectorised call, no Python loop over points). Invalid combinations (an NL
form with partial sums, sharing above the column count, too few rows for the
in-memory ramp) are kept in the grid and marked ``valid = False``.

PTQ accuracy enters through a JSON file (`load_accuracy`)::

    {
      "model": "resnet18",              # optional, free text
      "metric": "top1",                 # optional, free text
      "accuracy": {                     # required
        "bs_kmq": {"3": 69.1, "4": 69.6},
        "linear": {"4": 40.2, "6": 68.9}
      }
    }

one number per quantization method and ADC bit width (keys "1".."8").
The method named ``linear`` (or starting with ``linear``) runs on a linear
ADC; every other method on the in-memory NL-ADC.

A PTQ result directory, or its ``results.json`` (``"schema":
"bskmq.ptq/1"``, `bskmq_jax.results`), is read as well: its ``accuracy``
block has the same shape and ``metric`` names the headline metric
(`bskmq_jax.hardware.accuracy.ptq_accuracy`).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path

import numpy as np

from bskmq_jax.hardware.adc import ADC_KINDS, MAX_BITS, kind_code
from bskmq_jax.hardware.system import ChipConfig, evaluate_grid, layer_table

DEFAULT_AXES = {
    "adc_kind": tuple(range(len(ADC_KINDS))),
    "adc_bits": tuple(range(1, MAX_BITS + 1)),
    "rows": (64, 128, 256, 512),
    "cols": (64, 128, 256, 512),
    "sharing": (1, 2, 4, 8, 16, 32),
    "dac_bits": None,  # (1, input_bits): bit-serial and bit-parallel
    "fused": (False, True),
}
SUMMARY_KEYS = ("energy_j", "latency_s_total", "area_m2", "tops_per_w", "tops_per_mm2", "conversions_total")


def design_grid(base: ChipConfig, **axes) -> dict[str, np.ndarray]:
    """The Cartesian product of the sweep axes as flat arrays of equal length.

    Args:
      base: fills ``dac_bits`` = (1, input_bits) when that axis is None.
      **axes: overrides of `DEFAULT_AXES` (ADC kinds as names or codes).
    """
    ax = dict(DEFAULT_AXES)
    unknown = set(axes) - set(ax)
    if unknown:
        raise ValueError(f"axes: unknown sweep axes {sorted(unknown)}; known: {sorted(ax)}")
    ax.update(axes)
    if ax["dac_bits"] is None:
        ax["dac_bits"] = tuple(sorted({1, base.input_bits}))
    ax["adc_kind"] = tuple(kind_code(k) if isinstance(k, str) else int(k) for k in ax["adc_kind"])
    for name, vals in ax.items():
        if len(vals) == 0:
            raise ValueError(f"{name}: the sweep axis is empty")
    mesh = np.meshgrid(*[np.asarray(v) for v in ax.values()], indexing="ij")
    return {k: m.ravel() for k, m in zip(ax, mesh)}


def run_sweep(layers, base: ChipConfig, grid: dict | None = None) -> dict:
    """Evaluates a design grid on ``layers`` in one vectorised call.

    Returns:
      ``{"grid": grid, "results": evaluate_grid(...), "points": G,
      "valid": count, "seconds": wall time of the evaluation}``.
    """
    grid = design_grid(base) if grid is None else grid
    lt = layer_table(layers)
    t0 = time.perf_counter()
    res = evaluate_grid(grid, lt, base)
    dt = time.perf_counter() - t0
    return {"grid": grid, "results": res, "points": int(res["valid"].size), "valid": int(res["valid"].sum()), "seconds": dt}


def pareto_mask(cost, benefit=None) -> np.ndarray:
    """Non-dominated points: minimise ``cost`` and, if given, maximise ``benefit``.

    With ``benefit=None`` ``cost`` is ``[n, 2]`` (both minimised). NaN
    points are never on the front.
    """
    if benefit is None:
        c = np.asarray(cost, dtype=np.float64)
        x, y = c[:, 0], c[:, 1]
    else:
        x, y = np.asarray(cost, dtype=np.float64), -np.asarray(benefit, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    idx = np.flatnonzero(ok)
    order = idx[np.lexsort((y[idx], x[idx]))]
    mask = np.zeros(x.shape, bool)
    best = math.inf
    for i in order:  # one pass over the sorted valid points
        if y[i] < best:
            mask[i], best = True, y[i]
    return mask


def point_record(sweep: dict, i: int) -> dict:
    """One design point's axes and totals as a JSON-ready dict."""
    g, r = sweep["grid"], sweep["results"]
    rec = {
        "adc": ADC_KINDS[int(g["adc_kind"][i])],
        "adc_bits": int(g["adc_bits"][i]),
        "rows": int(g["rows"][i]),
        "cols": int(g["cols"][i]),
        "sharing": int(g["sharing"][i]),
        "dac_bits": int(g["dac_bits"][i]),
        "accumulation": "fused" if bool(g["fused"][i]) else "partial_sum",
    }
    rec.update({k: float(r[k][i]) for k in SUMMARY_KEYS})
    return rec


def best_per_kind_bits(sweep: dict) -> list[dict]:
    """The minimum-energy valid point for every (ADC form, bits) on the grid."""
    g, r = sweep["grid"], sweep["results"]
    e = np.where(r["valid"], r["energy_j"], np.inf)
    out = []
    for k, b in itertools.product(np.unique(g["adc_kind"]), np.unique(g["adc_bits"])):
        sel = np.flatnonzero((g["adc_kind"] == k) & (g["adc_bits"] == b))
        if sel.size and np.isfinite(e[sel]).any():
            out.append(point_record(sweep, int(sel[np.argmin(e[sel])])))
    return out


def load_accuracy(path) -> dict:
    """Reads an accuracy file, a PTQ ``results.json`` or a PTQ directory (formats in the module docstring).

    Returns:
      ``{"model": str|None, "metric": str|None, "accuracy": {method: {bits: float}},
      "format": "accuracy" | "ptq", "skipped": ["method@bits", ..]}``; a PTQ
      input adds ``"std"`` and skips bits outside 1..8 instead of failing.

    Raises:
      ValueError: missing, unreadable or malformed file, with the reason.
    """
    from bskmq_jax.hardware.accuracy import is_ptq_path, load_ptq_accuracy

    path = Path(path)
    if path.exists() and is_ptq_path(path):
        acc = load_ptq_accuracy(path, flag="--accuracy")
        acc.pop("spec", None)
        return {**acc, "format": "ptq"}
    if not path.is_file():
        raise ValueError(f"--accuracy: {path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--accuracy: {path}: not readable JSON ({type(e).__name__}: {e})") from None
    where = f"--accuracy: {path}"
    if not isinstance(data, dict) or not isinstance(data.get("accuracy"), dict) or not data["accuracy"]:
        raise ValueError(f'{where}: expected an object with a non-empty "accuracy" object {{method: {{bits: number}}}}')
    acc = {}
    for method, per_bits in data["accuracy"].items():
        if not isinstance(per_bits, dict) or not per_bits:
            raise ValueError(f'{where}: accuracy["{method}"] must be a non-empty object {{bits: number}}')
        acc[method] = {}
        for bk, v in per_bits.items():
            try:
                b = int(bk)
            except (TypeError, ValueError):
                raise ValueError(f'{where}: accuracy["{method}"] key {bk!r} is not an integer bit width') from None
            if not 1 <= b <= MAX_BITS:
                raise ValueError(f'{where}: accuracy["{method}"] bits {b} is outside 1..{MAX_BITS}')
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f'{where}: accuracy["{method}"]["{bk}"] = {v!r} is not a finite number')
            acc[method][b] = float(v)
    return {"model": data.get("model"), "metric": data.get("metric"), "accuracy": acc, "format": "accuracy", "skipped": []}


def accuracy_energy_points(sweep: dict, accuracy: dict, linear_adc: str = "sar") -> dict[str, list[dict]]:
    """Pairs each (method, bits) accuracy with the minimum energy of its ADC form at those bits.

    Linear methods use ``linear_adc``; the others ``nl_inmem``. Points whose
    bits have no valid design on the grid get energy NaN. Each point has
    ``on_front`` (Pareto-optimal within its method).
    """
    best = {(p["adc"], p["adc_bits"]): p for p in best_per_kind_bits(sweep)}
    out = {}
    for method, per_bits in accuracy["accuracy"].items():
        kind = linear_adc if method.startswith("linear") else "nl_inmem"
        pts = []
        for b, a in sorted(per_bits.items()):
            p = best.get((kind, b))
            pts.append({"bits": b, "accuracy": a, "adc": kind, "energy_j": p["energy_j"] if p else float("nan")})
        front = pareto_mask([p["energy_j"] for p in pts], [p["accuracy"] for p in pts])
        for p, f in zip(pts, front):
            p["on_front"] = bool(f)
        out[method] = pts
    return out
