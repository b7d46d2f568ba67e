"""Post-training quantization: calibrate once, fit every method, evaluate, report.

The pipeline, for a model built with IMC layers (`bskmq_jax.models`):

1. `calibrate`: one streaming pass over calibration batches in
   ``QuantMode.CALIBRATE`` fills each layer's `CalibrationStats` (memory
   independent of the number of batches).
2. `adc_ranges` + `fit_all`: the ADC range of each layer from its statistics
   (``lo = 0`` for a ReLU layer, else a low percentile; ``hi`` a high
   percentile, the observed maximum by default), then every layer of a method
   and bit width in one vmapped call on point sets prepared once
   (optionally from statistics merged to ``fit_bins`` bins, `coarsen`).
3. `run` / the task's metrics: quantized forwards (the jitted forward is
   compiled once; levels are state, not constants) against the float model.
4. `layer_errors`: per-layer error of every level set on held-out statistics
   (a calibration pass over the evaluation data), with every `quant_error`
   metric.

Calibration and evaluation data are disjoint; results record both sources.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bskmq_jax.imc.control import collect_stats, load_levels, reset_stats, set_mode
from bskmq_jax.imc.layers import QuantMode
from bskmq_jax.levels import NLLevels
from bskmq_jax.metrics import quant_error_from_points
from bskmq_jax.quantizers._common import weighted_quantiles
from bskmq_jax.stats import CalibrationStats, coarsen, points_for_fit, points_from_stats

__all__ = [
    "calibrate",
    "stack_stats",
    "adc_ranges",
    "fit_all",
    "merge_factor",
    "layer_errors",
    "layer_errors_many",
    "run",
    "Classification",
    "SentenceFidelity",
    "sweep",
]


def _progress(it, desc: str, total: int | None, enabled: bool):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, total=total, leave=False, disable=None)


def calibrate(model: nnx.Module, batches: Iterable[dict], forward: Callable, *, progress: bool = True,
              jit: bool = True) -> dict[str, CalibrationStats]:
    """Fills every IMC layer's statistics from one pass over ``batches``.

    Args:
      model: a model with IMC layers (put in eval mode here).
      batches: calibration batches.
      forward: ``forward(model, batch)``; jitted once here.
      progress: show a progress bar.
      jit: wrap ``forward`` in ``nnx.jit`` (pass False when it already is
        one: reusing one jitted function across calls avoids retracing).

    Returns:
      ``{dotted layer name: CalibrationStats}``.
    """
    model.eval()
    reset_stats(model)
    set_mode(model, QuantMode.CALIBRATE)
    step = nnx.jit(forward) if jit else forward
    for batch in _progress(batches, "calibrate", len(batches) if hasattr(batches, "__len__") else None, progress):
        jax.block_until_ready(step(model, batch))
    stats = collect_stats(model)
    if not stats:
        raise ValueError("calibrate: no IMC layer saw data; check that the batches are not empty and the model has quantized layers")
    return stats


def stack_stats(stats: list[CalibrationStats]) -> CalibrationStats:
    """Concatenates single- or multi-layer statistics along the layer axis."""
    first = stats[0]
    for s in stats[1:]:
        if (s.bins, s.boundary_tol) != (first.bins, first.boundary_tol):
            raise ValueError("stats: layers were calibrated with different bins or boundary_tol and cannot be fitted together")
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=0), *stats)


def adc_ranges(stats: dict[str, CalibrationStats], *, clip_percentile: float = 100.0) -> dict[str, tuple[float, float]]:
    """The ADC input range of each layer from its calibration statistics.

    ``lo`` is the statistics' range start when it is 0 (a ReLU layer: the ADC
    folds the ReLU), else the ``100 - clip_percentile`` percentile; ``hi`` is
    the ``clip_percentile`` percentile (100: the largest value seen).
    """
    if not 50.0 < clip_percentile <= 100.0:
        raise ValueError(f"clip_percentile: {clip_percentile} must be in (50, 100]")
    out = {}
    for name, s in stats.items():
        pts = jax.tree_util.tree_map(lambda a: a[0], points_from_stats(s, s.lo, s.hi, clamp=False))
        if clip_percentile == 100.0:
            lo_q, hi_q = float(s.min[0]), float(s.max[0])
        else:
            q = jnp.array([1.0 - clip_percentile / 100.0, clip_percentile / 100.0], jnp.float32)
            lo_q, hi_q = (float(v) for v in weighted_quantiles(pts, q))
        lo = 0.0 if float(s.lo[0]) == 0.0 else lo_q
        hi = max(hi_q, lo + 1e-6)
        out[name] = (lo, hi)
    return out


def fit_all(stats: dict[str, CalibrationStats], methods: Iterable[str], bits: Iterable[int], *,
            ranges: dict[str, tuple[float, float]] | None = None, key=None, progress: bool = True,
            pad_layers: int | None = None, fit_bins: int | None = 1024, clamp: bool = True,
            **options) -> dict[str, dict[int, dict[str, NLLevels]]]:
    """Fits every layer for every method and bit width.

    The point sets are prepared once; all layers of one (method, bits) are
    then fitted in one vmapped call.

    Args:
      stats: ``{layer: CalibrationStats}`` from `calibrate`.
      methods, bits: what to fit.
      ranges: ``{layer: (lo, hi)}`` (default: `adc_ranges` with 100%).
      key: PRNG key for k-means seeding.
      progress: show a progress bar.
      pad_layers: pad the layer axis to a multiple of this (1: no padding);
        None pads to the next power of two (at least 8), so models of
        similar depth share compiled fits while at most half the rows are
        padding (fitting time grows with the rows).
      fit_bins: fit on the statistics merged to at most this many bins
        (`merge_factor`, `coarsen`), the resolution `fit_levels` bins raw
        samples at; None fits at the statistics' full resolution (4096 bins
        by default). Fitting time grows with the bins; at 1024 the mean
        held-out MSE of the digits ResNet-18 is unchanged in the fourth
        digit and fitting is 2.7x faster (docs/metrics.md).
      clamp: fit on values clamped to each layer's range (`fit_levels`).
      **options: method options (e.g. ``mode=`` for bs_kmq), passed to the
        methods that have them.

    Returns:
      ``{method: {bits: {layer: NLLevels}}}``.
    """
    from bskmq_jax import _validate
    from bskmq_jax.quantizers import fit_points, layer_keys, make_configs

    names = list(stats)
    if not names:
        raise ValueError("stats: no layers to fit")
    if pad_layers is not None and (isinstance(pad_layers, bool) or not isinstance(pad_layers, int) or pad_layers < 1):
        raise ValueError(f"pad_layers: {pad_layers!r} must be an int >= 1 or None")
    ranges = ranges or adc_ranges(stats)
    # Layers are padded (with copies of the first), so models of different
    # depths share one compiled fit per (method, bits): compiling dominates
    # fitting on a first run.
    rows = max(8, 1 << (len(names) - 1).bit_length()) if pad_layers is None else -(-len(names) // pad_layers) * pad_layers
    padded = names + [names[0]] * (rows - len(names))
    stacked = stack_stats([stats[n] for n in padded])
    if fit_bins is not None:
        stacked = coarsen(stacked, merge_factor(stacked.bins, fit_bins))
    lo = jnp.asarray([ranges[n][0] for n in padded], jnp.float32)
    hi = jnp.asarray([ranges[n][1] for n in padded], jnp.float32)
    methods, bits = list(methods), [_validate.check_bits(b) for b in bits]
    if options.get("boundary_tol", stacked.boundary_tol) != stacked.boundary_tol:
        raise ValueError(f"boundary_tol: the statistics were collected with boundary_tol={stacked.boundary_tol}; "
                         "it is fixed by init_stats(boundary_tol=...)")
    configs = {m: make_configs(m, {**{k: v for k, v in options.items() if k in _method_options(m)},
                                   "clamp": clamp, "boundary_tol": stacked.boundary_tol}) for m in methods}
    pts, lo, hi = points_for_fit(stacked, lo, hi, clamp=clamp)
    keys = layer_keys(key, len(padded), squeeze=False)
    out: dict = {}
    jobs = [(m, b) for m in methods for b in bits]
    for m, b in _progress(jobs, "fit", len(jobs), progress):
        method, common, cfg = configs[m]
        levels, thresholds = fit_points(pts, lo, hi, keys, method=method.name, bits=b, common=common, cfg=cfg)
        nl = NLLevels(levels, thresholds, lo, hi, method=method.name, bits=b)
        out.setdefault(m, {})[b] = {n: nl[i] for i, n in enumerate(names)}
    return out


def merge_factor(bins: int, fit_bins: int) -> int:
    """The smallest whole number of adjacent bins to merge so ``bins`` become at most ``fit_bins``.

    Raises:
      ValueError: if ``fit_bins`` is not an int >= 16, or no divisor of
        ``bins`` leaves between 16 and ``fit_bins`` bins.
    """
    if isinstance(fit_bins, bool) or not isinstance(fit_bins, int) or fit_bins < 16:
        raise ValueError(f"fit_bins: {fit_bins!r} must be an int >= 16 or None")
    factor = next(f for f in range(1, bins + 1) if bins % f == 0 and bins // f <= fit_bins)
    if bins // factor < 16:
        raise ValueError(f"fit_bins: the statistics' {bins} bins cannot be merged evenly into 16..{fit_bins} bins; "
                         "pass fit_bins=None or calibrate with a bin count that has small divisors (e.g. 4096)")
    return factor


def _method_options(method: str) -> set[str]:
    from bskmq_jax.quantizers import METHODS, FitConfig

    return {f.name for f in dataclasses.fields(METHODS[method].config)} | {f.name for f in dataclasses.fields(FitConfig)}


def layer_errors(stats: dict[str, CalibrationStats], levels: dict[str, NLLevels]) -> dict[str, dict]:
    """Per-layer `quant_error` metrics of ``levels`` on ``stats`` (e.g. held-out statistics).

    Adds ``rel_mse`` and ``interior_rel_mse``: the MSEs divided by the mean
    square of the layer's values, so layers of different scales compare.
    """
    return layer_errors_many(stats, {"_": levels})["_"]


def layer_errors_many(stats: dict[str, CalibrationStats], level_sets: dict[str, dict[str, NLLevels]]) -> dict[str, dict]:
    """`layer_errors` of several level sets (e.g. every method and bit width) in one vectorized call.

    Args:
      stats: ``{layer: CalibrationStats}`` the errors are measured on.
      level_sets: ``{key: {layer: NLLevels}}``; any hashable keys, any mix
        of bit widths.

    Returns:
      ``{key: {layer: metrics}}`` as `layer_errors`.
    """
    pairs = [(k, n) for k, levels in level_sets.items() for n in levels if n in stats]
    if not pairs:
        return {k: {} for k in level_sets}
    # Padded to a multiple of 64 rows, so models of different depths share
    # one compiled program.
    padded = pairs + [pairs[0]] * (-len(pairs) % 64)
    # Each layer's statistics become points once; level sets of several
    # methods index into them (stacking and sorting per pair cost 2-3x more).
    layers = list(dict.fromkeys(n for _, n in pairs))
    st = stack_stats([stats[n] for n in layers])
    row = jnp.asarray([layers.index(n) for _, n in padded])
    one = [level_sets[k][n] if level_sets[k][n].batch_shape == () else level_sets[k][n][0] for k, n in padded]
    # Narrower level sets are padded to the widest: repeats of the top level
    # behind +inf thresholds, codes no value reaches, so every metric
    # (entropy and used levels included) is that of the unpadded set.
    bits = max(o.bits for o in one)
    k = 2**bits

    def widen(o):
        extra = k - o.levels.shape[-1]
        return (jnp.concatenate([o.levels, jnp.broadcast_to(o.levels[-1:], (extra,))]),
                jnp.concatenate([o.thresholds, jnp.full((extra,), jnp.inf, o.thresholds.dtype)]))

    wide = [widen(o) if o.bits < bits else (o.levels, o.thresholds) for o in one]
    # methods differ in static metadata, so stack the arrays, not the pytrees
    nl = NLLevels(jnp.stack([w[0] for w in wide]), jnp.stack([w[1] for w in wide]),
                  jnp.stack([o.lo for o in one]), jnp.stack([o.hi for o in one]), method="mixed", bits=bits)
    pts = jax.tree_util.tree_map(lambda a: a[row], points_from_stats(st, st.lo, st.hi, clamp=False))
    err = quant_error_from_points(pts, nl, boundary_tol=st.boundary_tol).as_dict()
    ms = np.maximum(np.asarray(st.sq_sum) / np.maximum(np.asarray(st.count), 1.0), 1e-30)[np.asarray(row)]
    out: dict = {k: {} for k in level_sets}
    for i, (k, n) in enumerate(pairs):
        e = {name: v[i] for name, v in err.items()}
        e["rel_mse"] = e["mse"] / float(ms[i])
        e["interior_rel_mse"] = e["interior_mse"] / float(ms[i])
        out[k][n] = e
    return out


def run(model: nnx.Module, batches: Iterable[dict], step: Callable, *, levels: dict[str, NLLevels] | None = None,
        progress: bool = True, desc: str = "evaluate") -> list:
    """Runs ``step(model, batch)`` over ``batches`` in float (``levels=None``) or quantized mode.

    ``step`` should be jitted once by the caller (e.g. ``nnx.jit``) so every
    level set reuses one compiled program.

    Returns:
      the list of per-batch outputs as numpy arrays.
    """
    model.eval()
    if levels is None:
        set_mode(model, QuantMode.FLOAT)
    else:
        load_levels(model, levels)
        set_mode(model, QuantMode.QUANTIZED)
    outs = []
    for batch in _progress(batches, desc, len(batches) if hasattr(batches, "__len__") else None, progress):
        outs.append(jax.tree_util.tree_map(np.asarray, step(model, batch)))
    return outs


@dataclasses.dataclass(frozen=True)
class Classification:
    """Classification: top-1 and top-5 accuracy from logits.

    ``step`` returns the top-5 class indices per example (small to keep).

    Attributes:
      inputs: batch fields passed to the model positionally, those present
        (images: ``("image",)``; text: ``("input_ids", "attention_mask",
        "token_type_ids")``).
    """

    inputs: tuple[str, ...] = ("image",)

    def step(self, model, batch):
        logits = model(*[batch[k] for k in self.inputs if k in batch])
        return jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]

    def metrics(self, outputs: list, batches, reference: list | None = None) -> dict:
        top = np.concatenate(outputs)
        labels = np.concatenate([b["label"] for b in batches])
        return {"top1": float(np.mean(top[:, 0] == labels)), "top5": float(np.mean(np.any(top == labels[:, None], axis=1)))}


@dataclasses.dataclass(frozen=True)
class SentenceFidelity:
    """Sentence-embedding fidelity against the float model.

    ``embed(model, batch) -> [B, H]`` normalized embeddings. Metrics: mean
    cosine between float and quantized embeddings of each sentence, and the
    Spearman correlation between the float and quantized pairwise-similarity
    matrices (upper triangles).
    """

    embed: Callable

    def step(self, model, batch):
        return self.embed(model, batch)

    def metrics(self, outputs: list, batches, reference: list | None = None) -> dict:
        q = np.concatenate(outputs)
        if reference is None:
            return {"cosine": 1.0, "spearman": 1.0}
        f = np.concatenate(reference)
        cos = np.sum(q * f, axis=1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(f, axis=1) + 1e-12)
        iu = np.triu_indices(len(f), 1)
        return {"cosine": float(np.mean(cos)), "spearman": _spearman((f @ f.T)[iu], (q @ q.T)[iu])}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


@functools.lru_cache(maxsize=16)
def _jitted_step(task):
    """One jitted ``task.step`` per task, so repeated sweeps reuse its trace (a fresh ``nnx.jit`` retraces)."""
    return nnx.jit(task.step)


def sweep(model: nnx.Module, task, calib_sets: list, eval_batches, *, methods: Iterable[str], bits: Iterable[int],
          clip_percentile: float = 100.0, seed: int = 0, progress: bool = True, **options) -> tuple[dict, dict]:
    """The full PTQ comparison: float baseline, then every method and bit width.

    For each calibration set (one per seed), calibrate, fit every method and
    bit width, and evaluate on ``eval_batches``; metrics are reported as mean
    and standard deviation over the sets. Per-layer errors are measured on
    held-out statistics (a calibration pass over ``eval_batches``) for the
    first set's levels.

    Args:
      model: model with IMC layers.
      task: `Classification` or `SentenceFidelity`.
      calib_sets: calibration batch streams, one per seed (disjoint from eval).
      eval_batches: evaluation batches.
      methods, bits: the grid.
      clip_percentile: ADC range policy (`adc_ranges`).
      seed: base PRNG seed for k-means seeding (set ``i`` uses ``seed + i``).
      progress: progress bars.
      **options: fitting options (e.g. ``mode=`` for bs_kmq).

    Returns:
      ``(summary, extras)``. ``summary`` (JSON-able): ``{"float": metrics,
      "results": {method: {bits: {"mean", "std", "per_seed", "layers"}}},
      "ranges", "calibration_sets", "timing"}`` with seconds per phase.
      ``extras``: the first set's ``calib_stats``, the ``held_out`` statistics
      and the first set's ``fits`` (``{method: {bits: {layer: NLLevels}}}``).
    """
    methods, bits = list(methods), list(bits)
    if not calib_sets:
        raise ValueError("calib_sets: at least one calibration set is needed")
    timing = {"float_eval": 0.0, "calibration": 0.0, "fit": 0.0, "quantized_eval": 0.0, "layer_errors": 0.0}

    def timed(phase, fn, *a, **k):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        timing[phase] += time.perf_counter() - t0
        return out

    step = _jitted_step(task)
    float_out = timed("float_eval", run, model, eval_batches, step, progress=progress, desc="float")
    float_metrics = task.metrics(float_out, eval_batches)
    held_out = timed("layer_errors", calibrate, model, eval_batches, step, progress=False, jit=False)
    per = {m: {b: [] for b in bits} for m in methods}
    layers, extras, ranges0 = {}, {"held_out": held_out}, None
    for i, calib in enumerate(calib_sets):
        stats = timed("calibration", calibrate, model, calib, step, progress=progress, jit=False)
        ranges = adc_ranges(stats, clip_percentile=clip_percentile)
        fits = timed("fit", lambda: jax.block_until_ready(
            fit_all(stats, methods, bits, ranges=ranges, key=jax.random.key(seed + i), progress=False, **options)))
        if i == 0:
            ranges0, extras["calib_stats"], extras["fits"] = ranges, stats, fits
        jobs = [(m, b) for m in methods for b in bits]
        for m, b in _progress(jobs, f"evaluate (set {i + 1}/{len(calib_sets)})", len(jobs), progress):
            out = timed("quantized_eval", run, model, eval_batches, step, levels=fits[m][b], progress=False)
            per[m][b].append(task.metrics(out, eval_batches, reference=float_out))
        if i == 0:
            errs = timed("layer_errors", layer_errors_many, held_out, {(m, b): fits[m][b] for m in methods for b in bits})
            for m, b in errs:
                layers.setdefault(m, {})[b] = errs[(m, b)]
    set_mode(model, QuantMode.FLOAT)
    results = {}
    for m in methods:
        for b in bits:
            keys = per[m][b][0].keys()
            results.setdefault(m, {})[b] = {
                "mean": {k: float(np.mean([r[k] for r in per[m][b]])) for k in keys},
                "std": {k: float(np.std([r[k] for r in per[m][b]])) for k in keys},
                "per_seed": per[m][b],
                "layers": layers[m][b],
            }
    summary = {"float": float_metrics, "results": results, "ranges": {k: list(v) for k, v in ranges0.items()},
               "calibration_sets": len(calib_sets), "timing": timing}
    return summary, extras
