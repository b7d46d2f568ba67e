"""Streaming calibration statistics: fit NL-ADC levels from any amount of data.

`CalibrationStats` summarizes each layer's activations in fixed memory:

- slot layout ``[below, at_lo, bin_0 .. bin_{B-1}, at_hi, above]``: values
  below ``lo - tol``; values within ``tol`` of ``lo`` (the boundary mass, e.g.
  a ReLU's zeros); ``B`` equal-width bins over ``(lo, hi)``; values within
  ``tol`` of ``hi`` (a clamp's saturation); values above ``hi + tol``;
- for every slot an exact integer count and the sum of its values' offsets
  from the slot's nominal position (``lo`` for the first two slots, ``hi``
  for the last two, the bin centre otherwise), so each slot is represented by
  its true centroid when levels are fitted; offsets keep float32 sums
  accurate where plain sums of many equal values would drift;
- the sum of squares, min and max of everything seen.

Range policy: ``lo``/``hi`` are fixed when the statistics are created, either
given (`init_stats`, e.g. ``lo=0`` for a ReLU and the clamp value for ``hi``)
or read from a first batch (`init_stats_from_batch`, optionally widened by a
margin). Values that later fall outside the range are never lost: they are
counted exactly in the ``below``/``above`` slots with their sums, and
``min``/``max`` record how far out they went (see `outside_fraction`).

Counts are exact for any dataset size: each is held as two int32 limbs
(``count = limbs[..., 1] * 2**24 + limbs[..., 0]``), so they neither overflow
(2**55 samples) nor round as float32 counts would beyond 2**24, and a
cross-device `psum` of the limbs is exact. `merge` is associative and
commutative; `allreduce` is the same merge across a mapped device axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from bskmq_jax import _validate
from bskmq_jax.levels import NLLevels

__all__ = [
    "CalibrationStats",
    "init_stats",
    "init_stats_from_batch",
    "update",
    "merge",
    "allreduce",
    "coarsen",
    "points_from_stats",
    "points_for_fit",
    "fit_levels_from_stats",
]

_LIMB_BITS = 24
_LIMB = 1 << _LIMB_BITS
# A batch adds at most this many values per layer, so limb 0 (< 2**24) plus a
# batch count never overflows int32.
MAX_BATCH_PER_LAYER = (1 << 31) - _LIMB - 1


@struct.dataclass
class CalibrationStats:
    """Per-layer streaming statistics (a pytree; all leaves have leading ``[L]``).

    Attributes:
      lo, hi: ``[L]`` fixed histogram / ADC range.
      tol: ``[L]`` absolute boundary tolerance, ``boundary_tol * (hi - lo)``.
      limbs: ``[L, B + 4, 2]`` int32 exact counts per slot (two 24-bit limbs).
      sums: ``[L, B + 4]`` float32 sum of each slot's values minus its
        nominal position (see `nominal_positions`).
      sq_sum: ``[L]`` float32 sum of squares of all values.
      min, max: ``[L]`` extremes of all values seen (+inf/-inf when empty).
      nonfinite: ``[L]`` int32 count of NaN/Inf values, which are not counted
        anywhere else; fitting refuses statistics that saw any.
      bins: number of interior bins ``B`` (static).
      boundary_tol: tolerance relative to ``hi - lo`` (static).
    """

    lo: jax.Array
    hi: jax.Array
    tol: jax.Array
    limbs: jax.Array
    sums: jax.Array
    sq_sum: jax.Array
    min: jax.Array
    max: jax.Array
    nonfinite: jax.Array
    bins: int = struct.field(pytree_node=False, default=4096)
    boundary_tol: float = struct.field(pytree_node=False, default=1e-6)

    @property
    def num_layers(self) -> int:
        return self.lo.shape[0]

    @property
    def slot_counts(self) -> jax.Array:
        """``[L, B + 4]`` float32 counts per slot."""
        return self.limbs[..., 1].astype(jnp.float32) * _LIMB + self.limbs[..., 0].astype(jnp.float32)

    @property
    def count(self) -> jax.Array:
        """``[L]`` number of values seen."""
        return jnp.sum(self.slot_counts, axis=-1)

    @property
    def hist(self) -> jax.Array:
        """``[L, B]`` counts of the interior bins over ``(lo, hi)``."""
        return self.slot_counts[:, 2:-2]

    @property
    def n_lo(self) -> jax.Array:
        """``[L]`` exact count of the boundary mass at ``lo``."""
        return self.slot_counts[:, 1]

    @property
    def n_hi(self) -> jax.Array:
        """``[L]`` exact count of the boundary mass at ``hi``."""
        return self.slot_counts[:, -2]

    @property
    def n_below(self) -> jax.Array:
        """``[L]`` count of values below ``lo - tol``."""
        return self.slot_counts[:, 0]

    @property
    def n_above(self) -> jax.Array:
        """``[L]`` count of values above ``hi + tol``."""
        return self.slot_counts[:, -1]

    def nominal_positions(self) -> jax.Array:
        """``[L, B + 4]`` anchor of each slot: lo, lo, bin centres, hi, hi."""
        b = self.bins
        centers = self.lo[:, None] + (jnp.arange(b, dtype=jnp.float32) + 0.5) * ((self.hi - self.lo) / b)[:, None]
        lo_c, hi_c = self.lo[:, None], self.hi[:, None]
        return jnp.concatenate([lo_c, lo_c, centers, hi_c, hi_c], axis=1)

    def centroids(self) -> jax.Array:
        """``[L, B + 4]`` mean of each slot's values (its nominal position if empty)."""
        w = self.slot_counts
        return self.nominal_positions() + jnp.where(w > 0, self.sums / jnp.where(w > 0, w, 1.0), 0.0)

    @property
    def mean(self) -> jax.Array:
        """``[L]`` mean of all values."""
        return jnp.sum(self.sums + self.slot_counts * self.nominal_positions(), axis=-1) / self.count

    @property
    def var(self) -> jax.Array:
        """``[L]`` population variance of all values."""
        return jnp.maximum(self.sq_sum / self.count - self.mean**2, 0.0)

    def outside_fraction(self) -> jax.Array:
        """``[L]`` share of values that fell outside ``[lo - tol, hi + tol]``."""
        return (self.n_below + self.n_above) / self.count


def _normalize(limbs):
    carry = limbs[..., 0] >> _LIMB_BITS
    return jnp.stack([limbs[..., 0] & (_LIMB - 1), limbs[..., 1] + carry], axis=-1)


def init_stats(lo, hi, *, num_layers: int | None = None, bins: int = 4096, boundary_tol: float = 1e-6):
    """Empty statistics over a fixed range.

    Args:
      lo, hi: scalars or ``[L]`` range ends (``lo < hi``).
      num_layers: ``L`` when ``lo`` and ``hi`` are scalars (default 1).
      bins: interior histogram bins per layer (default 4096).
      boundary_tol: boundary tolerance relative to ``hi - lo``.

    Raises:
      ValueError: if ``lo >= hi``, ``bins < 16`` or the tolerance is out of range.
    """
    if isinstance(bins, bool) or int(bins) != bins or int(bins) < 16:
        raise ValueError(f"bins: {bins!r} must be an int >= 16 (4096 or more recommended)")
    if not 0.0 <= boundary_tol < 0.5:
        raise ValueError(f"boundary_tol: {boundary_tol} is outside [0, 0.5)")
    n = num_layers or max(np.size(lo), np.size(hi), 1)
    lo_a, hi_a = _validate.check_range(lo, hi, n)
    if lo_a is None or hi_a is None:
        raise ValueError("lo/hi: both range ends are required (or use init_stats_from_batch)")
    slots = int(bins) + 4
    return CalibrationStats(
        lo=lo_a,
        hi=hi_a,
        tol=boundary_tol * (hi_a - lo_a),
        limbs=jnp.zeros((n, slots, 2), jnp.int32),
        sums=jnp.zeros((n, slots), jnp.float32),
        sq_sum=jnp.zeros((n,), jnp.float32),
        min=jnp.full((n,), jnp.inf, jnp.float32),
        max=jnp.full((n,), -jnp.inf, jnp.float32),
        nonfinite=jnp.zeros((n,), jnp.int32),
        bins=int(bins),
        boundary_tol=float(boundary_tol),
    )


def init_stats_from_batch(batch, *, lo=None, hi=None, margin: float = 0.0, bins: int = 4096, boundary_tol: float = 1e-6):
    """Empty statistics whose range is read from a first batch.

    Each missing end is the batch's min (max) per layer, widened by
    ``margin * (max - min)``; a given end is kept. If that leaves no range (a
    constant batch, or a batch entirely beyond a given end), the missing end
    is placed one batch spread (or 1.0) away. The batch is *not* added; call
    `update` with it.

    Args:
      batch: ``[L, ...]`` floating activations.
      lo, hi: optional fixed ends (scalars or ``[L]``), e.g. ``lo=0`` for ReLU.
      margin: fraction of the batch's range to add beyond its min/max.
      bins, boundary_tol: as in `init_stats`.
    """
    x = _validate.check_float_array("batch", batch, tuple(range(1, 9)))
    x = x.reshape(x.shape[0], -1)
    _validate.check_finite("batch", x)
    if margin < 0:
        raise ValueError(f"margin: {margin} must be >= 0")
    bmin, bmax = jnp.min(x, axis=1), jnp.max(x, axis=1)
    span = bmax - bmin
    lo_a = bmin - margin * span if lo is None else jnp.broadcast_to(jnp.asarray(lo, jnp.float32), bmin.shape)
    hi_a = bmax + margin * span if hi is None else jnp.broadcast_to(jnp.asarray(hi, jnp.float32), bmax.shape)
    if hi is None:
        # A constant first batch (or one entirely below a given lo) leaves no
        # range; open one as wide as the batch's spread, or 1.
        hi_a = jnp.where(hi_a > lo_a, hi_a, lo_a + jnp.where(span > 0, span, 1.0))
    elif lo is None:
        lo_a = jnp.where(lo_a < hi_a, lo_a, hi_a - jnp.where(span > 0, span, 1.0))
    return init_stats(lo_a, hi_a, num_layers=x.shape[0], bins=bins, boundary_tol=boundary_tol)


def _slot(x, lo, hi, tol, bins: int):
    """Slot index of each value and the slot's nominal position (its anchor)."""
    width = (hi - lo) / bins
    b = jnp.clip(((x - lo) / width).astype(jnp.int32), 0, bins - 1)
    anchor = lo + (b.astype(jnp.float32) + 0.5) * width
    b = b + 2
    low, high = x <= lo + tol, x >= hi - tol
    b = jnp.where(x < lo - tol, 0, jnp.where(low, 1, b))
    b = jnp.where(x > hi + tol, bins + 3, jnp.where(high, bins + 2, b))
    return b, jnp.where(low, lo, jnp.where(high, hi, anchor))


@jax.jit
def update(stats: CalibrationStats, batch, mask=None) -> CalibrationStats:
    """Adds a batch of activations (jittable; memory independent of data size).

    Args:
      stats: statistics for ``L`` layers.
      batch: ``[L, ...]`` floating activations (flattened per layer); at most
        `MAX_BATCH_PER_LAYER` values per layer per call.
      mask: optional bool, same shape; False entries are ignored.

    Returns:
      the updated statistics.
    """
    if batch.shape[0] != stats.num_layers:
        raise ValueError(f"batch: leading axis {batch.shape[0]} != number of layers {stats.num_layers}")
    x = batch.reshape(batch.shape[0], -1).astype(jnp.float32)
    if x.shape[1] > MAX_BATCH_PER_LAYER:
        raise ValueError(f"batch: {x.shape[1]} values per layer; split batches above {MAX_BATCH_PER_LAYER}")
    m = jnp.ones(x.shape, bool) if mask is None else jnp.broadcast_to(mask, batch.shape).reshape(x.shape)
    # NaN/Inf cannot raise inside jit; they are counted and refused at fit time.
    finite = jnp.isfinite(x)
    bad = jnp.sum(m & ~finite, axis=1, dtype=jnp.int32)
    m = m & finite
    slots = stats.bins + 4

    def one(args):
        x, m, lo, hi, tol = args
        s, anchor = _slot(x, lo, hi, tol, stats.bins)
        cnt = jnp.zeros((slots,), jnp.int32).at[s].add(m.astype(jnp.int32))
        sm = jnp.zeros((slots,), jnp.float32).at[s].add(jnp.where(m, x - anchor, 0.0))
        xm = jnp.where(m, x, 0.0)
        return cnt, sm, jnp.sum(xm * xm), jnp.min(jnp.where(m, x, jnp.inf)), jnp.max(jnp.where(m, x, -jnp.inf))

    cnt, sm, sq, mn, mx = lax.map(one, (x, m, stats.lo, stats.hi, stats.tol))
    limbs = _normalize(stats.limbs.at[..., 0].add(cnt))
    return stats.replace(
        limbs=limbs,
        sums=stats.sums + sm,
        sq_sum=stats.sq_sum + sq,
        min=jnp.minimum(stats.min, mn),
        max=jnp.maximum(stats.max, mx),
        nonfinite=stats.nonfinite + bad,
    )


def _check_compatible(a: CalibrationStats, b: CalibrationStats) -> None:
    if (a.bins, a.boundary_tol) != (b.bins, b.boundary_tol) or a.lo.shape != b.lo.shape:
        raise ValueError(
            f"merge: incompatible statistics (bins {a.bins} vs {b.bins}, boundary_tol "
            f"{a.boundary_tol} vs {b.boundary_tol}, layers {a.lo.shape} vs {b.lo.shape})"
        )
    if all(_validate.is_concrete(v) for v in (a.lo, b.lo, a.hi, b.hi)):
        if not (bool(jnp.all(a.lo == b.lo)) and bool(jnp.all(a.hi == b.hi))):
            raise ValueError("merge: statistics have different lo/hi ranges; create both with the same range")


def merge(a: CalibrationStats, b: CalibrationStats) -> CalibrationStats:
    """Combines two statistics over the same ranges (associative, commutative)."""
    _check_compatible(a, b)
    return a.replace(
        limbs=_normalize(a.limbs + b.limbs),
        sums=a.sums + b.sums,
        sq_sum=a.sq_sum + b.sq_sum,
        min=jnp.minimum(a.min, b.min),
        max=jnp.maximum(a.max, b.max),
        nonfinite=a.nonfinite + b.nonfinite,
    )


def allreduce(stats: CalibrationStats, axis_name) -> CalibrationStats:
    """`merge` across a mapped axis (inside `shard_map`/`pmap`), e.g. devices.

    Counts stay exact for up to 127 participants (limb 0 sums below 2**31).
    """
    return stats.replace(
        limbs=_normalize(lax.psum(stats.limbs, axis_name)),
        sums=lax.psum(stats.sums, axis_name),
        sq_sum=lax.psum(stats.sq_sum, axis_name),
        min=lax.pmin(stats.min, axis_name),
        max=lax.pmax(stats.max, axis_name),
        nonfinite=lax.psum(stats.nonfinite, axis_name),
    )


def coarsen(stats: CalibrationStats, factor: int) -> CalibrationStats:
    """Merges every ``factor`` adjacent interior bins into one (exactly).

    The result is what statistics with ``bins // factor`` bins over the same
    range would have collected (up to float32 rounding of the value sums and
    of values within rounding distance of a bin edge): counts add exactly,
    value sums are re-anchored to the merged bins' centres, and the boundary
    and tail slots are unchanged. Fitting cost grows with the number of
    points, so a coarser summary fits faster; `bskmq_jax.ptq.fit_all` uses it
    (``fit_bins``).

    Args:
      stats: statistics with ``B`` interior bins.
      factor: bins merged into one; must divide ``B`` and leave at least 16.

    Returns:
      statistics with ``B // factor`` bins (``stats`` itself for factor 1).

    Raises:
      ValueError: if ``factor`` is not an int >= 1 that divides ``B`` into at
        least 16 bins.
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor: {factor!r} must be an int >= 1")
    factor = int(factor)
    if factor == 1:
        return stats
    b = stats.bins
    if b % factor or b // factor < 16:
        raise ValueError(f"factor: {factor} must divide the statistics' {b} bins into at least 16 bins")
    nb = b // factor
    n = stats.num_layers
    inner = stats.limbs[:, 2:-2].reshape(n, nb, factor, 2)
    # Limb 0 is split into two 12-bit halves before summing, so the group sums
    # stay far below 2**31 for any factor and the merged count is exact.
    l0 = inner[..., 0]
    hi12 = jnp.sum(l0 >> 12, axis=2)
    lo12 = jnp.sum(l0 & 4095, axis=2)
    limb0 = lo12 + ((hi12 & 4095) << 12)
    limb1 = jnp.sum(inner[..., 1], axis=2) + (hi12 >> 12)
    merged = _normalize(jnp.stack([limb0, limb1], axis=-1))
    counts = stats.slot_counts[:, 2:-2].reshape(n, nb, factor)
    width = ((stats.hi - stats.lo) / b)[:, None, None]
    # Old centre minus merged centre, in old bin widths: (j + 1/2) - factor/2.
    shift = (jnp.arange(factor, dtype=jnp.float32) + 0.5 - 0.5 * factor)[None, None, :] * width
    sums = jnp.sum(stats.sums[:, 2:-2].reshape(n, nb, factor) + counts * shift, axis=2)
    return stats.replace(
        limbs=jnp.concatenate([stats.limbs[:, :2], merged, stats.limbs[:, -2:]], axis=1),
        sums=jnp.concatenate([stats.sums[:, :2], sums, stats.sums[:, -2:]], axis=1),
        bins=nb,
    )


def points_from_stats(stats: CalibrationStats, lo, hi, clamp: bool):
    """Per-layer sorted point sets (`Points` with ``[L, B + 4]`` leaves).

    Each slot is one point at the centroid of its values (its nominal position
    when empty); interior bins are spread over one bin width, the four other
    slots are exact point masses. With ``clamp`` the points are clamped to
    ``[lo, hi]``, which merges the below/above tails into the boundary
    masses. Without it, each tail is one point at its mean: widen the range
    when the shape of the tails matters.
    """
    from bskmq_jax.quantizers import Points

    w = stats.slot_counts
    px = stats.centroids()
    hw = jnp.zeros_like(px).at[:, 2:-2].set((0.5 * (stats.hi - stats.lo) / stats.bins)[:, None])
    if clamp:
        px = jnp.clip(px, lo[:, None], hi[:, None])
    # Centroids are monotone by slot; a sort guards float round-off at edges.
    return Points(px, w, hw).sorted()


def fit_levels_from_stats(
    stats: CalibrationStats,
    *,
    method: str,
    bits: int,
    lo=None,
    hi=None,
    key=None,
    clamp: bool = True,
    **options,
) -> NLLevels:
    """Fits NL-ADC levels from streaming statistics (all layers in one call).

    Same methods, options and key rule as `fit_levels`; the point set is the
    statistics' slots (see `points_from_stats`). The boundary tolerance is the
    one the statistics were collected with.

    Args:
      stats: statistics of ``L`` layers.
      method, bits, key, clamp, options: as in `fit_levels`.
      lo, hi: ADC range, scalars or ``[L]``; default: the statistics' range.

    Returns:
      `NLLevels` with batch shape ``(L,)``.

    Raises:
      ValueError: as `fit_levels`, and for statistics that are empty or saw
        NaN/Inf values.
    """
    from bskmq_jax.quantizers import fit_points, layer_keys, make_configs

    bits = _validate.check_bits(bits)
    if options.get("boundary_tol", stats.boundary_tol) != stats.boundary_tol:
        raise ValueError(
            f"boundary_tol: the statistics were collected with boundary_tol={stats.boundary_tol}; "
            "it is fixed by init_stats(boundary_tol=...)"
        )
    options["boundary_tol"] = stats.boundary_tol
    m, common, cfg = make_configs(method, {"clamp": clamp, **options})
    pts, lo_a, hi_a = points_for_fit(stats, lo, hi, clamp=common.clamp)
    keys = layer_keys(key, stats.num_layers, squeeze=False)
    levels, thresholds = fit_points(pts, lo_a, hi_a, keys, method=m.name, bits=bits, common=common, cfg=cfg)
    return NLLevels(levels, thresholds, lo_a, hi_a, method=m.name, bits=bits)


def points_for_fit(stats: CalibrationStats, lo=None, hi=None, *, clamp: bool = True):
    """Validated statistics as the point sets every method fits (`fit_levels_from_stats`'s first half).

    Fitting several methods or bit widths on the same statistics can prepare
    the points once and call `bskmq_jax.quantizers.fit_points` per fit.

    Returns:
      ``(points, lo [L], hi [L])``.

    Raises:
      ValueError: for statistics that are empty or saw NaN/Inf, or a bad range.
    """
    if _validate.is_concrete(stats.nonfinite):
        bad = np.flatnonzero(np.asarray(stats.nonfinite))
        if bad.size:
            raise ValueError(
                f"stats: layer(s) {bad.tolist()} saw {np.asarray(stats.nonfinite)[bad].tolist()} NaN/Inf "
                "values during calibration; fix the model or data that produced them"
            )
        empty = np.flatnonzero(np.asarray(stats.count) <= 0)
        if empty.size:
            raise ValueError(f"stats: layer(s) {empty.tolist()} are empty; call update() with data first")
    n = stats.num_layers
    lo_a, hi_a = _validate.check_range(lo, hi, n)
    lo_a = stats.lo if lo_a is None else lo_a
    hi_a = stats.hi if hi_a is None else hi_a
    _validate.check_range(lo_a, hi_a, n)
    return points_from_stats(stats, lo_a, hi_a, clamp), lo_a, hi_a
