"""Boundary-Suppressed K-Means Quantization (BS-KMQ).

The seed paper suppresses "boundary outliers" — the point masses that ReLU
and hardware clamping pile up at the ends ``lo``/``hi`` of the ADC range —
before k-means, so they do not pull levels toward the edges. Its exact rule
is not public; three readings are implemented (see docs/bs_kmq.md for the
math and the measurements behind the default):

- ``drop``: exclude the boundary masses (and anything outside the range) from
  clustering, pin two levels exactly at ``lo`` and ``hi`` (the NL-ADC's end
  references), and fit the other ``2**bits - 2`` levels to the interior.
- ``equalize``: cap each boundary mass's weight at the interior mass found in
  the adjacent window of width ``window * (hi - lo)`` (the density the
  interior has next to the boundary), then fit all levels by weighted k-means.
- ``clip``: remove the lowest ``lower_pct`` and highest ``100 - upper_pct``
  percent of the mass (point masses are cut partially, so exactly that share
  goes), then fit all levels by k-means.

A boundary mass is the weight of the samples within
``boundary_tol * (hi - lo)`` of ``lo`` or ``hi`` (a common `fit_levels` option).
The default is ``equalize`` with a 1/16 window and ``kmeans_exact`` inside,
chosen by measurement (docs/bs_kmq.md, ``experiments/bs_kmq_modes.py``).
An isolated boundary mass with no interior mass in its window gets weight 0
under ``equalize``.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from bskmq_jax.quantizers._common import FitConfig, boundary_tol, thresholds_from_levels, uniform_levels
from bskmq_jax.quantizers.kmeans import KMeansConfig, fit_kmeans
from bskmq_jax.quantizers.kmeans_exact import KMeansExactConfig, fit_kmeans_exact
from bskmq_jax.quantizers.lloyd_max import LloydMaxConfig, fit_lloyd_max

MODES = ("drop", "equalize", "clip")
_INNER = {
    "kmeans_exact": (fit_kmeans_exact, KMeansExactConfig()),
    "kmeans": (fit_kmeans, KMeansConfig()),
    "lloyd_max": (fit_lloyd_max, LloydMaxConfig()),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class BSKMQConfig:
    """Options of ``method="bs_kmq"``."""

    mode: str = "equalize"  # boundary suppression rule: drop | equalize | clip (default measured in docs/bs_kmq.md)
    inner: str = "kmeans_exact"  # k-means run after suppression: kmeans_exact | kmeans | lloyd_max
    window: float = 1.0 / 16  # equalize: adjacent-interior window, as a fraction of (hi - lo)
    lower_pct: float = 0.5  # clip: percent of the mass removed from the bottom
    upper_pct: float = 99.5  # clip: percentile above which the mass is removed

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode: unknown BS-KMQ mode {self.mode!r}; choose one of {list(MODES)}")
        if self.inner not in _INNER:
            raise ValueError(f"inner: unknown inner k-means {self.inner!r}; choose one of {sorted(_INNER)}")
        if not 0.0 < self.window <= 0.5:
            raise ValueError(f"window: {self.window} is outside (0, 0.5]")
        if not 0.0 <= self.lower_pct < self.upper_pct <= 100.0:
            raise ValueError(
                f"lower_pct/upper_pct: need 0 <= lower_pct < upper_pct <= 100, got {self.lower_pct}, {self.upper_pct}"
            )


def boundary_masks(px, lo, hi, rel_tol: float):
    """Masks of the points at ``lo`` and at ``hi`` (within the tolerance)."""
    tol = boundary_tol(lo, hi, rel_tol)
    return jnp.abs(px - lo) <= tol, jnp.abs(px - hi) <= tol


def _inner_fit(pts, lo, hi, key, k: int, cfg: BSKMQConfig, common):
    fit, inner_cfg = _INNER[cfg.inner]
    has_mass = jnp.sum(pts.w) > 0
    # If suppression removed everything (a layer that is all boundary), fall
    # back to uniform levels instead of dividing by zero.
    pts = pts.replace(w=jnp.where(has_mass, pts.w, jnp.ones_like(pts.w)))
    lv, _ = fit(pts, lo, hi, key, k=k, cfg=inner_cfg, common=common)
    return jnp.where(has_mass, lv, uniform_levels(lo, hi, k))


def suppressed_weights(pts, lo, hi, cfg: BSKMQConfig, rel_tol: float):
    """Weights after boundary suppression (``drop``, ``equalize`` or ``clip``).

    Args:
      pts: the layer's sorted `Points`.
      lo, hi: the ADC range.
      cfg: BS-KMQ options.
      rel_tol: boundary tolerance relative to ``hi - lo``.

    Returns:
      ``[P]`` new weights.
    """
    px, pw = pts.x, pts.w
    at_lo, at_hi = boundary_masks(px, lo, hi, rel_tol)
    if cfg.mode == "drop":
        inside = (px > lo) & (px < hi) & ~at_lo & ~at_hi
        return jnp.where(inside, pw, 0.0)
    if cfg.mode == "equalize":
        h = cfg.window * (hi - lo)
        interior = ~at_lo & ~at_hi
        near_lo = jnp.sum(jnp.where(interior & (px > lo) & (px <= lo + h), pw, 0.0))
        near_hi = jnp.sum(jnp.where(interior & (px < hi) & (px >= hi - h), pw, 0.0))
        # Point masses are capped in proportion, so several atoms inside the
        # tolerance keep their relative weights.
        m_lo = jnp.sum(jnp.where(at_lo, pw, 0.0))
        m_hi = jnp.sum(jnp.where(at_hi, pw, 0.0))
        f_lo = jnp.where(m_lo > 0, jnp.minimum(m_lo, near_lo) / jnp.where(m_lo > 0, m_lo, 1.0), 1.0)
        f_hi = jnp.where(m_hi > 0, jnp.minimum(m_hi, near_hi) / jnp.where(m_hi > 0, m_hi, 1.0), 1.0)
        return pw * jnp.where(at_lo, f_lo, 1.0) * jnp.where(at_hi, f_hi, 1.0)
    # clip: keep the mass between the two cumulative-weight cut points; a
    # point straddling a cut keeps only its part inside.
    cw = jnp.cumsum(pw)
    total = cw[-1]
    q_lo, q_hi = cfg.lower_pct / 100.0 * total, cfg.upper_pct / 100.0 * total
    return jnp.clip(jnp.minimum(cw, q_hi) - jnp.maximum(cw - pw, q_lo), 0.0, pw)


def fit_bs_kmq(pts, lo, hi, key, *, k: int, cfg: BSKMQConfig, common: FitConfig):
    """Fits one layer. Args/returns as in `bskmq_jax.quantizers.Method.fit`."""
    sup = pts.replace(w=suppressed_weights(pts, lo, hi, cfg, common.boundary_tol))
    if cfg.mode == "drop":
        if k == 2:
            lv = jnp.stack([lo, hi]).astype(jnp.float32)
        else:
            inner = _inner_fit(sup, lo, hi, key, k - 2, cfg, common)
            lv = jnp.sort(jnp.concatenate([lo[None], inner, hi[None]]))
    else:
        lv = _inner_fit(sup, lo, hi, key, k, cfg, common)
    return lv, thresholds_from_levels(lv)
