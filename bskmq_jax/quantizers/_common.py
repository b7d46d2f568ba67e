"""Building blocks shared by the level-fitting methods.

Every method fits one layer from a *weighted point set* ``(x [P], w [P])``
sorted by ``x``. A layer with at most ``max_points`` samples is used exactly
(sorted samples); a larger one is summarized in one pass into ``bins``
equal-width bins, each represented by its weighted centroid, plus two exact
atoms for the samples at ``lo`` and ``hi`` (the boundary masses). Streaming
`CalibrationStats` produce the same kind of point set, so fitting from
samples and fitting from statistics run the same code.

All functions here act on one layer and are vmapped by the caller.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from bskmq_jax.levels import thresholds_from_levels


@dataclasses.dataclass(frozen=True, kw_only=True)
class FitConfig:
    """Options common to every method (`fit_levels` keywords)."""

    clamp: bool = True  # fit on samples clamped to [lo, hi] (what the NL-ADC sees); False: raw samples
    boundary_tol: float = 1e-6  # a sample within boundary_tol * (hi - lo) of lo or hi is a boundary mass
    max_points: int = 4096  # layers with at most this many samples are fitted on the exact samples
    bins: int = 4096  # larger layers are summarized in this many equal-width bins (+ 2 exact boundary atoms)

    def __post_init__(self):
        if not isinstance(self.clamp, bool):
            raise ValueError(f"clamp: expected True or False, got {self.clamp!r}")
        if not 0.0 <= self.boundary_tol < 0.5:
            raise ValueError(f"boundary_tol: {self.boundary_tol} is outside [0, 0.5)")
        if int(self.max_points) < 1:
            raise ValueError(f"max_points: {self.max_points} must be >= 1")
        if int(self.bins) < 16:
            raise ValueError(f"bins: {self.bins} must be >= 16 for a usable histogram")


def boundary_tol(lo, hi, rel):
    """Absolute boundary tolerance for a range."""
    return rel * (hi - lo)


def uniform_levels(lo, hi, k: int) -> jax.Array:
    """``k`` equally spaced levels from ``lo`` to ``hi`` inclusive, ``[k]``."""
    return lo + (hi - lo) * jnp.linspace(0.0, 1.0, k, dtype=jnp.float32)


def points_from_samples(x, w, lo, hi, cfg: FitConfig):
    """Turns one layer's samples into a sorted weighted point set.

    Args:
      x: ``[N]`` samples; w: ``[N]`` weights (0 marks padding).
      lo, hi: scalars, the ADC range.
      cfg: common options.

    Returns:
      ``(px [P], pw [P])`` sorted by ``px``; ``P = N`` if ``N <= max_points``,
      else ``bins + 2``.
    """
    if cfg.clamp:
        x = jnp.clip(x, lo, hi)
    n = x.shape[0]
    if n <= cfg.max_points:
        order = jnp.argsort(x)
        return x[order], w[order]
    tol = boundary_tol(lo, hi, cfg.boundary_tol)
    live = w > 0
    rlo = jnp.minimum(jnp.min(jnp.where(live, x, jnp.inf)), lo)
    rhi = jnp.maximum(jnp.max(jnp.where(live, x, -jnp.inf)), hi)
    b = cfg.bins
    scale = b / jnp.maximum(rhi - rlo, jnp.finfo(jnp.float32).tiny)
    slot = jnp.clip(((x - rlo) * scale).astype(jnp.int32), 0, b - 1) + 1
    # Boundary masses get their own exact atoms, so a ReLU's zeros are not
    # smeared over the first bin and boundary suppression can find them.
    slot = jnp.where(jnp.abs(x - lo) <= tol, 0, slot)
    slot = jnp.where(jnp.abs(x - hi) <= tol, b + 1, slot)
    acc = jnp.zeros((b + 2, 2), jnp.float32).at[slot].add(jnp.stack([w, w * x], axis=-1))
    pw, sx = acc[:, 0], acc[:, 1]
    centers = rlo + (jnp.arange(b, dtype=jnp.float32) + 0.5) / scale
    default = jnp.concatenate([lo[None], centers, hi[None]])
    px = jnp.where(pw > 0, sx / jnp.where(pw > 0, pw, 1.0), default)
    # Atoms at lo/hi may sit inside the binned range when clamp=False.
    order = jnp.argsort(px)
    return px[order], pw[order]


def assign(px, thresholds):
    """Cell index of each point: number of thresholds ``<= x`` (ties go up)."""
    return jnp.searchsorted(thresholds, px, side="right")


def cell_moments(px, pw, thresholds, k: int):
    """Weight and weighted mean of each threshold cell.

    Returns:
      ``(wsum [k], mean [k])``; ``mean`` is 0 where ``wsum`` is 0.
    """
    c = assign(px, thresholds)
    wsum = jax.ops.segment_sum(pw, c, num_segments=k)
    xsum = jax.ops.segment_sum(pw * px, c, num_segments=k)
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
    src = jnp.where(below >= 0, below, above)
    src = jnp.clip(src, 0, k - 1)
    return jnp.where(live, levels, levels[src])


def lloyd(px, pw, levels0, *, max_iter: int, tol_abs, stop: str = "max"):
    """Lloyd iterations on a weighted 1-D point set (nearest-level cells).

    An empty cell keeps its previous level, as in the classical algorithm.

    Args:
      px, pw: ``[P]`` points and weights.
      levels0: ``[k]`` ascending start levels.
      max_iter: iteration cap.
      tol_abs: stop when the level change is at most this.
      stop: ``"max"`` compares the largest absolute change (Lloyd-Max papers);
        ``"sumsq"`` the summed squared change (scikit-learn's k-means).

    Returns:
      ``(levels [k], wsum [k], iterations)``.
    """
    k = levels0.shape[0]

    def step(lv):
        wsum, mean = cell_moments(px, pw, thresholds_from_levels(lv), k)
        return jnp.where(wsum > 0, mean, lv), wsum

    def cond(s):
        _, _, it, delta = s
        return (it < max_iter) & (delta > tol_abs)

    def body(s):
        lv, _, it, _ = s
        new, wsum = step(lv)
        d = new - lv
        delta = jnp.max(jnp.abs(d)) if stop == "max" else jnp.sum(d * d)
        return new, wsum, it + 1, delta

    init = (levels0, jnp.zeros_like(levels0), jnp.int32(0), jnp.float32(jnp.inf))
    lv, _, it, _ = lax.while_loop(cond, body, init)
    wsum, _ = cell_moments(px, pw, thresholds_from_levels(lv), k)
    return lv, wsum, it


def weighted_quantiles(px, pw, q):
    """Quantiles of a sorted weighted point set (lower / inverse-CDF rule).

    Args:
      px: ``[P]`` sorted values; pw: ``[P]`` weights.
      q: ``[m]`` probabilities in ``[0, 1]``.

    Returns:
      ``[m]`` values: the smallest ``x`` with ``F(x) >= q``.
    """
    cw = jnp.cumsum(pw)
    total = cw[-1]
    # A relative slack keeps float32 round-off from pushing q*total just past
    # an exact cumulative weight (e.g. 1/8 of the mass ending on an atom).
    target = q * total * (1.0 - 4 * jnp.finfo(jnp.float32).eps)
    idx = jnp.searchsorted(cw, target, side="left")
    return px[jnp.clip(idx, 0, px.shape[0] - 1)]


def finish_midpoint(levels, wsum):
    """Fills empty cells, sorts, and adds midpoint thresholds."""
    lv = jnp.sort(fill_empty(levels, wsum))
    return lv, thresholds_from_levels(lv)


def data_range(px, pw):
    """Min and max of the points that carry weight."""
    live = pw > 0
    return jnp.min(jnp.where(live, px, jnp.inf)), jnp.max(jnp.where(live, px, -jnp.inf))
