"""Accuracy inputs of the hardware model: PTQ results, and the linear ADC bits that match the NL-ADC.

The NeuroSim-like baseline runs linear ADCs "at the bit width that linear
quantization needs for the same accuracy". `linear_bits_for_accuracy` reads
that width off PTQ results (``bskmq.ptq/1``, `bskmq_jax.results.load_ptq`):
with ``a_m(b)`` the headline metric's mean and ``s_m(b)`` its standard
deviation over calibration seeds for method ``m`` at ``b`` ADC bits, and
``B`` the NL-ADC bits of the chip under study,

    target = a_nl(B) - max(tolerance, s_nl(B))
    linear bits = min { b measured for linear : a_linear(b) >= target }

The tolerance is in the metric's own units (PTQ writes fractions, so the
default 0.005 is half a percentage point of top-1); the NL method's seed
spread widens it, so that linear is not charged extra bits for a gap smaller
than the calibration noise. When linear never reaches the target within its
measured bits the width is not guessed: `resolve_linear_bits` falls back to
``--linear-bits`` and records a warning.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from bskmq_jax.hardware.adc import MAX_BITS, check_bits

DEFAULT_LINEAR_BITS = 6  # NeuroSim-like bits without --linear-bits or a usable --ptq (placeholder, not sourced)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MatchConfig:
    """How the linear bit width of "the same accuracy" is chosen."""

    tolerance: float = 0.005  # metric units; accepted shortfall of linear below the NL method (0.005 = 0.5 points of a fraction)
    nl_method: str = "bs_kmq"  # the NL method whose accuracy linear must match (the seed's)
    linear_method: str = "linear"  # the PTQ method that runs on linear ADCs (bskmq_jax.quantizers "linear")

    def __post_init__(self):
        t = self.tolerance
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise ValueError(f"tolerance (--match-tolerance): {t!r} must be a finite number >= 0, in the metric's units")
        for name in ("nl_method", "linear_method"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name}: {getattr(self, name)!r} must be a non-empty method name")


def _number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def is_ptq_path(path) -> bool:
    """True if ``path`` is a directory or a JSON file whose ``schema`` is ``bskmq.ptq/1``.

    Reads only the file's text; unreadable files count as not PTQ (the
    caller's own reader then reports the problem).
    """
    import json

    from bskmq_jax.results import SCHEMA

    p = Path(path)
    if p.is_dir():
        return True
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and data.get("schema") == SCHEMA


def ptq_accuracy(res: dict, where: str) -> dict:
    """The accuracy table of a PTQ results dict (as `bskmq_jax.results.load_ptq` returns it).

    Args:
      res: the parsed ``results.json``.
      where: prefix of error messages (flag and path).

    Returns:
      ``{"model": name|None, "metric": str|None, "accuracy": {method: {bits: mean}},
      "std": {method: {bits: std}}, "skipped": ["method@bits", ..]}``; bits
      outside the ADC model's 1..MAX_BITS are skipped and listed (PTQ may
      measure wider linear grids). ``std`` is 0 where the results lack it.

    Raises:
      ValueError: malformed ``accuracy`` block, naming the entry.
    """
    metric = res.get("metric")
    model = res.get("model")
    name = model.get("name") if isinstance(model, dict) else model
    block = res.get("accuracy")
    if not isinstance(block, dict) or not block:
        raise ValueError(f'{where}: "accuracy" must be a non-empty object {{method: {{bits: number}}}}')
    acc, std, skipped = {}, {}, []
    for method, per_bits in block.items():
        if not isinstance(per_bits, dict) or not per_bits:
            raise ValueError(f'{where}: accuracy["{method}"] must be a non-empty object {{bits: number}}')
        for bk, v in per_bits.items():
            try:
                b = int(bk)
            except (TypeError, ValueError):
                raise ValueError(f'{where}: accuracy["{method}"] key {bk!r} is not an integer bit width') from None
            if not _number(v):
                raise ValueError(f'{where}: accuracy["{method}"]["{bk}"] = {v!r} is not a finite number')
            if not 1 <= b <= MAX_BITS:
                skipped.append(f"{method}@{b}")
                continue
            acc.setdefault(method, {})[b] = float(v)
            s = (res.get("results", {}).get(method, {}).get(str(bk), {}) or {}).get("std", {})
            s = s.get(metric) if isinstance(s, dict) else None
            std.setdefault(method, {})[b] = float(s) if _number(s) else 0.0
    if not acc:
        raise ValueError(f"{where}: no accuracy entry has ADC bits within 1..{MAX_BITS} (skipped {', '.join(skipped)})")
    return {"model": name, "metric": metric, "accuracy": acc, "std": std, "skipped": skipped,
            "spec": model if isinstance(model, dict) else None}


def load_ptq_accuracy(path, flag: str = "--ptq") -> dict:
    """Reads a PTQ directory or its ``results.json`` into `ptq_accuracy`'s table.

    Raises:
      ValueError: missing, unreadable or malformed results, prefixed with ``flag``.
    """
    from bskmq_jax.results import load_ptq

    try:
        res = load_ptq(path)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"{flag}: {e}") from None
    out = ptq_accuracy(res, f"{flag}: {path}")
    out["path"] = str(path)
    return out


def linear_bits_for_accuracy(acc: dict, nl_bits: int, cfg: MatchConfig = MatchConfig()) -> dict:
    """The smallest linear bit width whose accuracy matches the NL method at ``nl_bits`` (formula in the module docstring).

    Args:
      acc: a `ptq_accuracy` table (``std`` optional).
      nl_bits: ADC bits of the NL chip under study.
      cfg: tolerance and method names.

    Returns:
      ``{"reached": bool, "bits": int|None, "metric", "nl_method", "nl_bits",
      "nl_accuracy", "nl_std", "tolerance", "effective_tolerance", "target",
      "linear_method", "linear_accuracy": {bits: mean}}``; ``bits`` is None
      when linear stays below the target at every measured width.

    Raises:
      ValueError: when the NL method has no result at ``nl_bits`` or the
        linear method has none at all.
    """
    nl_bits = check_bits(nl_bits, "NL-ADC bits")
    table = acc["accuracy"]
    nl = table.get(cfg.nl_method, {})
    if nl_bits not in nl:
        have = ", ".join(map(str, sorted(nl))) or "none"
        raise ValueError(f"no {cfg.nl_method} result at the chip's {nl_bits} ADC bits (measured: {have}); "
                         f"run PTQ at {nl_bits} bits or change --config")
    lin = table.get(cfg.linear_method)
    if not lin:
        raise ValueError(f"no {cfg.linear_method!r} results (methods: {', '.join(sorted(table))}); PTQ must include the linear method")
    a_nl = nl[nl_bits]
    s_nl = acc.get("std", {}).get(cfg.nl_method, {}).get(nl_bits, 0.0)
    tol = max(cfg.tolerance, s_nl)
    target = a_nl - tol
    slack = 1e-9 * max(1.0, abs(target))  # float rounding of mean - tolerance
    bits = next((b for b in sorted(lin) if lin[b] >= target - slack), None)
    return {"reached": bits is not None, "bits": bits, "metric": acc.get("metric"), "nl_method": cfg.nl_method, "nl_bits": nl_bits,
            "nl_accuracy": a_nl, "nl_std": s_nl, "tolerance": cfg.tolerance, "effective_tolerance": tol, "target": target,
            "linear_method": cfg.linear_method, "linear_accuracy": {b: lin[b] for b in sorted(lin)}}


def resolve_linear_bits(flag_bits: int | None, ptq_path=None, *, nl_bits: int, cfg: MatchConfig = MatchConfig(),
                        model: str | None = None, input_bits: int | None = None, weight_bits: int | None = None) -> dict:
    """Chooses the NeuroSim-like baseline's ADC bits from ``--linear-bits`` and ``--ptq``.

    Precedence: an explicit ``flag_bits`` wins (the PTQ derivation, if any,
    is still recorded); else the PTQ-derived width; else, when linear never
    reaches the target or there is no PTQ input, ``flag_bits`` or
    `DEFAULT_LINEAR_BITS`.

    Args:
      flag_bits: ``--linear-bits`` (None when not given).
      ptq_path: ``--ptq`` directory or results.json (None when not given).
      nl_bits: ADC bits of the chip under study.
      cfg: tolerance and method names.
      model, input_bits, weight_bits: the system run's model and precisions;
        a mismatch with the PTQ run's is a warning (accuracy may not transfer).

    Returns:
      ``{"bits": int, "source": "ptq" | "flag", "reason": str,
      "warnings": [str], "ptq": linear_bits_for_accuracy(...) + {"path"} | None}``.

    Raises:
      ValueError: bad ``flag_bits``, or unreadable or unusable PTQ results.
    """
    if flag_bits is not None:
        check_bits(flag_bits, "--linear-bits")
    warnings = []
    match = None
    if ptq_path is not None:
        acc = load_ptq_accuracy(ptq_path)
        try:
            match = linear_bits_for_accuracy(acc, nl_bits, cfg)
        except ValueError as e:
            raise ValueError(f"--ptq: {ptq_path}: {e}") from None
        match["path"] = acc["path"]
        if acc["skipped"]:
            warnings.append(f"--ptq: ignored results outside the ADC model's 1..{MAX_BITS} bits: {', '.join(acc['skipped'])}")
        spec = acc.get("spec") or {}
        if model is not None and acc["model"] is not None and acc["model"] != model:
            warnings.append(f"--ptq: results are for model {acc['model']!r}, the system run maps {model!r}")
        for key, mine in (("in_bits", input_bits), ("w_bits", weight_bits)):
            theirs = spec.get(key)
            if mine is not None and _number(theirs) and int(theirs) != mine:
                warnings.append(f"--ptq: PTQ ran with {key}={int(theirs)}, --config has {mine}; its accuracy may not transfer")
    m = match
    if m is not None:
        how = (f"{m['linear_method']} {m['metric']} >= {m['nl_method']} at {m['nl_bits']} b ({m['nl_accuracy']:.4g}) "
               f"- {m['effective_tolerance']:.4g} = {m['target']:.4g}")
    if flag_bits is not None:
        if m is None:
            reason = f"--linear-bits {flag_bits}"
        elif m["reached"]:
            reason = f"--linear-bits {flag_bits} overrides the PTQ-derived {m['bits']} b (smallest {how})"
            if flag_bits != m["bits"]:
                warnings.append(f"--linear-bits {flag_bits} overrides the {m['bits']} b that --ptq gives")
        else:
            reason = f"--linear-bits {flag_bits}; PTQ: {m['linear_method']} never reaches {m['target']:.4g} within measured bits"
            warnings.append(f"--ptq: {m['linear_method']} does not reach the target {m['target']:.4g} within its measured bits; "
                            f"--linear-bits {flag_bits} is not backed by PTQ")
        return {"bits": flag_bits, "source": "flag", "reason": reason, "warnings": warnings, "ptq": m}
    if m is not None and m["reached"]:
        return {"bits": m["bits"], "source": "ptq", "reason": f"smallest {how}", "warnings": warnings, "ptq": m}
    if m is not None:
        measured = ", ".join(f"{b} b: {a:.4g}" for b, a in m["linear_accuracy"].items())
        warnings.append(f"--ptq: {m['linear_method']} does not reach {m['nl_method']}'s {m['metric']} at {m['nl_bits']} b "
                        f"({m['nl_accuracy']:.4g} - {m['effective_tolerance']:.4g} = {m['target']:.4g}) within its measured bits "
                        f"({measured}); using --linear-bits default {DEFAULT_LINEAR_BITS}")
        return {"bits": DEFAULT_LINEAR_BITS, "source": "flag",
                "reason": f"--linear-bits default {DEFAULT_LINEAR_BITS}: PTQ linear not reached within measured bits",
                "warnings": warnings, "ptq": m}
    return {"bits": DEFAULT_LINEAR_BITS, "source": "flag", "reason": f"--linear-bits default {DEFAULT_LINEAR_BITS} (no --ptq)",
            "warnings": warnings, "ptq": None}
