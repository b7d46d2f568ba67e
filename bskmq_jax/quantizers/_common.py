"""Building blocks shared by the level-fitting methods.

Every method fits one layer from a sorted weighted point set, `Points`. A
layer with at most ``max_points`` samples is used exactly (its sorted
samples). A larger one is summarized in one pass into ``bins`` equal-width
bins plus two exact atoms for the samples at ``lo`` and ``hi`` (the boundary
masses); streaming `CalibrationStats` give the same kind of summary, so
fitting from samples and from statistics run the same code.

A bin is not a point mass: its mass is spread uniformly over one bin width
centred on its centroid (``half_width`` > 0), which keeps its mass and mean
exact. Cell statistics split a bin that straddles a threshold. Without this,
Lloyd-type iterations on a histogram stop as soon as every threshold move is
smaller than a bin (measured: Lloyd-Max on a 1M-sample Laplacian at 4 bits
stalls 1.35% above the optimum on 4096 point-mass bins, even in float64, and
reaches the raw-sample result only at 65536 bins; see docs/metrics.md). Atoms
and raw samples have ``half_width == 0`` and behave as exact point masses.

All functions here act on one layer and are vmapped by the caller.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct
from jax import lax

from bskmq_jax.levels import thresholds_from_levels


@dataclasses.dataclass(frozen=True, kw_only=True)
class FitConfig:
    """Options common to every method (`fit_levels` keywords)."""

    clamp: bool = True  # fit on samples clamped to [lo, hi] (what the NL-ADC sees); False: raw samples
    boundary_tol: float = 1e-6  # a sample within boundary_tol * (hi - lo) of lo or hi is a boundary mass
    max_points: int = 4096  # layers with at most this many samples are fitted on the exact samples
    bins: int = 1024  # larger layers are summarized in this many equal-width bins (+ 2 exact boundary atoms)

    def __post_init__(self):
        if not isinstance(self.clamp, bool):
            raise ValueError(f"clamp: expected True or False, got {self.clamp!r}")
        if not 0.0 <= self.boundary_tol < 0.5:
            raise ValueError(f"boundary_tol: {self.boundary_tol} is outside [0, 0.5)")
        if int(self.max_points) < 1:
            raise ValueError(f"max_points: {self.max_points} must be >= 1")
        if int(self.bins) < 16:
            raise ValueError(f"bins: {self.bins} must be >= 16 for a usable histogram")


@struct.dataclass
class Points:
    """A sorted weighted point set of one layer (or ``[L, P]`` for L layers).

    Attributes:
      x: ``[P]`` ascending centroids.
      w: ``[P]`` non-negative masses (0 marks padding or empty bins).
      half_width: ``[P]`` half the width over which each mass is spread
        uniformly around ``x`` (0: an exact point mass).
    """

    x: jax.Array
    w: jax.Array
    half_width: jax.Array

    def sorted(self) -> "Points":
        """The same points in ascending order of ``x``."""
        order = jnp.argsort(self.x, axis=-1)
        return jax.tree_util.tree_map(lambda a: jnp.take_along_axis(a, order, axis=-1), self)


def boundary_tol(lo, hi, rel):
    """Absolute boundary tolerance for a range."""
    return rel * (hi - lo)


def uniform_levels(lo, hi, k: int) -> jax.Array:
    """``k`` equally spaced levels from ``lo`` to ``hi`` inclusive, ``[k]``.

    The end levels are exactly ``lo`` and ``hi`` (``lo + (hi - lo) * 1`` can
    round past ``hi``).
    """
    lv = jnp.clip(lo + (hi - lo) * jnp.linspace(0.0, 1.0, k, dtype=jnp.float32), lo, hi)
    return lv.at[0].set(lo).at[-1].set(hi)


def points_from_samples(x, w, lo, hi, cfg: FitConfig) -> Points:
    """Turns one layer's samples into a sorted point set.

    Args:
      x: ``[N]`` samples; w: ``[N]`` weights (0 marks padding) or None for
        unit weights (saves reading an all-ones array: ~30% of the pass).
      lo, hi: scalars, the ADC range.
      cfg: common options.

    Returns:
      `Points` with ``P = N`` if ``N <= max_points``, else ``bins + 2``.
    """
    if cfg.clamp:
        x = jnp.clip(x, lo, hi)
    n = x.shape[0]
    if n <= cfg.max_points:
        return Points(x, jnp.ones_like(x) if w is None else w, jnp.zeros_like(x)).sorted()
    tol = boundary_tol(lo, hi, cfg.boundary_tol)
    dlo, dhi = data_range(x, w)
    rlo, rhi = jnp.minimum(dlo, lo), jnp.maximum(dhi, hi)
    b = cfg.bins
    width = jnp.maximum(rhi - rlo, jnp.finfo(jnp.float32).tiny) / b
    slot = jnp.clip(((x - rlo) / width).astype(jnp.int32), 0, b - 1) + 1
    # Boundary masses get their own exact atoms, so a ReLU's zeros are not
    # smeared over the first bin and boundary suppression can find them.
    slot = jnp.where(jnp.abs(x - lo) <= tol, 0, slot)
    slot = jnp.where(jnp.abs(x - hi) <= tol, b + 1, slot)
    # Sums are taken of offsets from each slot's nominal position: a float32
    # sum of thousands of equal values drifts (measured 1e-5 on a 5000-value
    # atom, beyond the boundary tolerance); offsets are small and exact at atoms.
    anchor = jnp.where(slot == 0, lo, jnp.where(slot == b + 1, hi, rlo + (slot.astype(jnp.float32) - 0.5) * width))
    w = jnp.ones_like(x) if w is None else w  # fused into the scatter, never stored
    acc = jnp.zeros((b + 2, 2), jnp.float32).at[slot].add(jnp.stack([w, w * (x - anchor)], axis=-1))
    pw, sx = acc[:, 0], acc[:, 1]
    centers = rlo + (jnp.arange(b, dtype=jnp.float32) + 0.5) * width
    nominal = jnp.concatenate([lo[None], centers, hi[None]])
    px = nominal + jnp.where(pw > 0, sx / jnp.where(pw > 0, pw, 1.0), 0.0)
    hw = jnp.concatenate([jnp.zeros((1,)), jnp.full((b,), 0.5) * width, jnp.zeros((1,))])
    # Atoms at lo/hi may sit inside the binned range when clamp=False.
    return Points(px, pw, hw.astype(jnp.float32)).sorted()


def _below(pts: Points, t):
    """Mass and first moment of each point lying below ``t`` (``t`` broadcasts)."""
    a = pts.x - pts.half_width
    spread = pts.half_width > 0
    width = jnp.where(spread, 2.0 * pts.half_width, 1.0)
    u = jnp.clip(t, a, pts.x + pts.half_width)
    frac = jnp.where(spread, (u - a) / width, (pts.x < t).astype(jnp.float32))
    mom = jnp.where(spread, (u * u - a * a) / (2.0 * width), jnp.where(pts.x < t, pts.x, 0.0))
    return pts.w * frac, pts.w * mom


# Points that can straddle a threshold: at most 3 equal-width bins (a centroid
# lies inside its own bin) plus up to 4 atoms between them.
_WINDOW = 8


def _two_sum(a, b):
    """``a + b`` as an unevaluated pair ``(s, e)`` with ``s + e`` exact (Knuth's TwoSum)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _combine(a, b):
    """Double-float addition of ``(hi, lo)`` pairs (error ~ eps**2 of the sum)."""
    s, e = _two_sum(a[0], b[0])
    t = a[1] + b[1] + e
    h = s + t
    return h, t - (h - s)


def prefix_sums(v):
    """Compensated inclusive prefix sums of ``v [P]`` as ``(hi [P + 1], lo [P + 1])``, starting at 0.

    ``hi[j] + lo[j]`` is the sum of ``v[:j]`` to about float32 eps**2 of the
    running total, so a difference of two entries, ``(hi[b] - hi[a]) + (lo[b]
    - lo[a])``, is accurate relative to the segment's own sum, not to the
    total (a plain float32 cumsum loses ``eps * total`` per entry, which is
    the whole value of a small cell).
    """
    # A sequential scan: a parallel (associative) scan of the same pairs
    # compiles to a log2(P)-deep graph that doubled the first-compile time of
    # every fit; the scan runs once per fit, not per Lloyd iteration.
    def step(acc, x):
        acc = _combine(acc, (x, jnp.zeros_like(x)))
        return acc, acc

    zero = jnp.zeros((1,), v.dtype)
    _, (hi, lo) = lax.scan(step, (zero[0], zero[0]), v, unroll=8)
    return jnp.concatenate([zero, hi]), jnp.concatenate([zero, lo])


@struct.dataclass
class CellSums:
    """Prefix sums of one layer's masses and first moments (`prefix_sums` pairs), for `cell_moments`."""

    w_hi: jax.Array
    w_lo: jax.Array
    x_hi: jax.Array
    x_lo: jax.Array

    @classmethod
    def of(cls, pts: Points) -> "CellSums":
        return cls(*prefix_sums(pts.w), *prefix_sums(pts.w * pts.x))


def _segment(hi, lo, a, b):
    return (hi[b] - hi[a]) + (lo[b] - lo[a])


def cell_moments(pts: Points, thresholds, k: int, sums: CellSums | None = None):
    """Mass and mean of each threshold cell (ties go up).

    Each point first goes whole to the cell of its centroid: the points are
    sorted, so a cell is the index range between two `searchsorted`
    positions and its sums are differences of compensated prefix sums
    (``sums``, computed once per layer and reused across Lloyd iterations:
    an iteration then costs O(k log P), not O(P)). Then, for every threshold,
    the part of each straddling bin on the other side is moved across it.
    Applied threshold by threshold, these moves telescope to the exact split
    even when one bin spans several thresholds.

    Args:
      pts: sorted points of one layer.
      thresholds: ``[k - 1]`` ascending thresholds.
      k: number of cells.
      sums: ``CellSums.of(pts)``; computed here when None.

    Returns:
      ``(wsum [k], mean [k])``; ``mean`` is 0 where ``wsum`` is 0.
    """
    sums = CellSums.of(pts) if sums is None else sums
    p = pts.x.shape[0]
    cut = jnp.searchsorted(pts.x, thresholds, side="left")  # points below each threshold
    a = jnp.concatenate([jnp.zeros((1,), cut.dtype), cut])
    b = jnp.concatenate([cut, jnp.full((1,), p, cut.dtype)])
    wsum = _segment(sums.w_hi, sums.w_lo, a, b)
    xsum = _segment(sums.x_hi, sums.x_lo, a, b)
    start = cut - _WINDOW // 2
    idx = jnp.clip(start[:, None] + jnp.arange(_WINDOW)[None, :], 0, p - 1)  # [k-1, W]
    # Clipping at the ends can repeat an index; count each point once.
    first = jnp.concatenate([jnp.ones_like(idx[:, :1], bool), idx[:, 1:] != idx[:, :-1]], axis=1)
    win = jax.tree_util.tree_map(lambda a: a[idx], pts)
    t = thresholds[:, None]
    straddle = first & (win.half_width > 0) & (win.x - win.half_width < t) & (t < win.x + win.half_width)
    m_below, x_below = _below(win, t)
    above = win.x >= t  # base cell is above the threshold
    # Positive transfer: from the cell above the threshold to the one below.
    dm = jnp.where(straddle, jnp.where(above, m_below, m_below - win.w), 0.0).sum(axis=1)
    dx = jnp.where(straddle, jnp.where(above, x_below, x_below - win.w * win.x), 0.0).sum(axis=1)
    wsum = wsum.at[:-1].add(dm).at[1:].add(-dm)
    xsum = xsum.at[:-1].add(dx).at[1:].add(-dx)
    wsum = jnp.maximum(wsum, 0.0)
    return wsum, jnp.where(wsum > 0, xsum / jnp.where(wsum > 0, wsum, 1.0), 0.0)


def fill_empty(levels, wsum):
    """Gives empty cells the level of the nearest non-empty cell below (else above).

    Keeps the levels non-decreasing and `quantize` idempotent: a copied level
    is the mean of a non-empty cell, so it maps back to itself. The copies are
    duplicate levels whose codes are never produced.
    """
    k = levels.shape[0]
    idx = jnp.arange(k)
    live = wsum > 0
    below = lax.cummax(jnp.where(live, idx, -1))
    above = lax.cummin(jnp.where(live, idx, k), reverse=True)
    src = jnp.clip(jnp.where(below >= 0, below, above), 0, k - 1)
    return jnp.where(live, levels, levels[src])


def lloyd(pts: Points, levels0, *, max_iter: int, tol_abs, stop: str = "max"):
    """Lloyd iterations on a point set (nearest-level cells).

    An empty cell keeps its previous level, as in the classical algorithm.

    Args:
      pts: the layer's points.
      levels0: ``[k]`` ascending start levels.
      max_iter: iteration cap.
      tol_abs: stop when the level change is at most this.
      stop: ``"max"`` compares the largest absolute change (Lloyd-Max papers);
        ``"sumsq"`` the summed squared change (scikit-learn's k-means).

    Returns:
      ``(levels [k], wsum [k], iterations)``.
    """
    k = levels0.shape[0]
    sums = CellSums.of(pts)  # once per fit; each iteration reads it in O(k log P)

    def cond(s):
        _, _, it, delta = s
        return (it < max_iter) & (delta > tol_abs)

    def body(s):
        lv, _, it, _ = s
        wsum, mean = cell_moments(pts, thresholds_from_levels(lv), k, sums)
        new = jnp.where(wsum > 0, mean, lv)
        d = new - lv
        delta = jnp.max(jnp.abs(d)) if stop == "max" else jnp.sum(d * d)
        return new, wsum, it + 1, delta

    init = (levels0, jnp.zeros_like(levels0), jnp.int32(0), jnp.float32(jnp.inf))
    lv, _, it, _ = lax.while_loop(cond, body, init)
    wsum, _ = cell_moments(pts, thresholds_from_levels(lv), k, sums)
    return lv, wsum, it


def weighted_quantiles(pts: Points, q):
    """Quantiles (inverse CDF) of a point set, interpolated inside bins.

    Args:
      pts: sorted points.
      q: ``[m]`` probabilities in ``[0, 1]``.

    Returns:
      ``[m]`` values: the smallest ``x`` with ``F(x) >= q`` for point masses;
      the linearly interpolated position inside a spread bin.
    """
    cw = jnp.cumsum(pts.w)
    total = cw[-1]
    # A relative slack keeps float32 round-off from pushing q*total just past
    # an exact cumulative weight (e.g. 1/8 of the mass ending on an atom).
    target = q * total * (1.0 - 4 * jnp.finfo(jnp.float32).eps)
    i = jnp.clip(jnp.searchsorted(cw, target, side="left"), 0, cw.shape[0] - 1)
    hw, w = pts.half_width[i], pts.w[i]
    into = jnp.where(w > 0, (target - (cw[i] - w)) / jnp.where(w > 0, w, 1.0), 0.5)
    return pts.x[i] + jnp.where(hw > 0, (2.0 * into - 1.0) * hw, 0.0)


def finish_midpoint(levels, wsum):
    """Fills empty cells, sorts, and adds midpoint thresholds."""
    lv = jnp.sort(fill_empty(levels, wsum))
    return lv, thresholds_from_levels(lv)


def data_range(x, w):
    """Min and max of the samples that carry weight (all of them if ``w`` is None)."""
    if w is None:
        return jnp.min(x), jnp.max(x)
    live = w > 0
    return jnp.min(jnp.where(live, x, jnp.inf)), jnp.max(jnp.where(live, x, -jnp.inf))
