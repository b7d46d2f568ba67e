"""CDF (equal-probability) levels.

Thresholds sit at the ``j / 2**bits`` quantiles of the (weighted) data, so each
cell holds an equal share of the mass, and each level is the mean of its cell.
With a point mass (e.g. 50% of a ReLU's outputs at 0) several quantiles
coincide: those cells are empty and their codes are never produced. An empty
cell's level is the nearest non-empty cell's level, clipped into the cell's
bounds so every threshold stays between its neighbouring levels.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from bskmq_jax.quantizers._common import cell_moments, fill_empty, weighted_quantiles


@dataclasses.dataclass(frozen=True, kw_only=True)
class CDFConfig:
    """CDF quantization has no options beyond the common ones."""


def fit_cdf(pts, lo, hi, key, *, k: int, cfg: CDFConfig, common=None):
    """Fits one layer. Args/returns as in `bskmq_jax.quantizers.Method.fit`."""
    del lo, hi, key, cfg, common
    q = jnp.arange(1, k, dtype=jnp.float32) / k
    thr = weighted_quantiles(pts, q)
    wsum, mean = cell_moments(pts, thr, k)
    lv = fill_empty(mean, wsum)
    lower = jnp.concatenate([jnp.array([-jnp.inf]), thr])
    upper = jnp.concatenate([thr, jnp.array([jnp.inf])])
    return jnp.clip(lv, lower, upper), thr
