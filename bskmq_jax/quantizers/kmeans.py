"""K-means as a scikit-learn user gets it: k-means++ seeding, then Lloyd.

Seeding is scikit-learn's greedy k-means++: the first center is drawn with
probability proportional to the sample weight; each further center is the
best (lowest resulting potential) of ``2 + floor(ln k)`` candidates drawn with
probability proportional to ``weight * D(x)^2``. Lloyd iterations follow until
the summed squared center shift is at most ``tol`` times the data variance,
or ``max_iter`` iterations (scikit-learn's defaults: 300 and 1e-4). Local
optima are kept: this is the baseline whose seeds matter.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax import lax

from bskmq_jax.quantizers._common import finish_midpoint, lloyd


@dataclasses.dataclass(frozen=True, kw_only=True)
class KMeansConfig:
    """Options of ``method="kmeans"``."""

    max_iter: int = 300  # Lloyd iteration cap (scikit-learn default)
    tol: float = 1e-4  # stop when sum of squared center shifts <= tol * variance (scikit-learn rule)
    n_local_trials: int | None = None  # k-means++ candidates per center; None: 2 + floor(ln k)

    def __post_init__(self):
        if int(self.max_iter) < 1:
            raise ValueError(f"max_iter: {self.max_iter} must be >= 1")
        if not self.tol >= 0:
            raise ValueError(f"tol: {self.tol} must be >= 0")
        if self.n_local_trials is not None and int(self.n_local_trials) < 1:
            raise ValueError(f"n_local_trials: {self.n_local_trials} must be >= 1 or None")


def _sample(key, cum, n: int):
    """Draws ``n`` indices with probability proportional to the increments of ``cum``."""
    u = jax.random.uniform(key, (n,), dtype=jnp.float32) * cum[-1]
    return jnp.clip(jnp.searchsorted(cum, u, side="right"), 0, cum.shape[0] - 1)


def kmeanspp(px, pw, key, k: int, n_trials: int):
    """Greedy weighted k-means++ seeding on one layer; returns ``[k]`` centers."""
    key0, key = jax.random.split(key)
    first = _sample(key0, jnp.cumsum(pw), 1)[0]
    d2 = (px - px[first]) ** 2
    centers = jnp.zeros((k,), jnp.float32).at[0].set(px[first])

    def body(c, carry):
        centers, d2, key = carry
        key, sub = jax.random.split(key)
        cum = jnp.cumsum(pw * d2)
        # All remaining potential zero (fewer distinct values than k): any
        # point will do; the duplicate center becomes an empty cluster.
        cand = _sample(sub, jnp.where(cum[-1] > 0, cum, jnp.cumsum(pw)), n_trials)
        new_d2 = jnp.minimum(d2[None, :], (px[None, :] - px[cand][:, None]) ** 2)
        pot = jnp.sum(new_d2 * pw[None, :], axis=1)
        best = jnp.argmin(pot)
        return centers.at[c].set(px[cand[best]]), new_d2[best], key

    centers, _, _ = lax.fori_loop(1, k, body, (centers, d2, key))
    return centers


def fit_kmeans(pts, lo, hi, key, *, k: int, cfg: KMeansConfig, common=None):
    """Fits one layer. Args/returns as in `bskmq_jax.quantizers.Method.fit`."""
    del lo, hi, common
    trials = cfg.n_local_trials or 2 + int(math.log(k))
    px, pw = pts.x, pts.w
    c0 = jnp.sort(kmeanspp(px, pw, key, k, int(trials)))
    total = jnp.sum(pw)
    mean = jnp.sum(pw * px) / total
    var = jnp.sum(pw * (px - mean) ** 2) / total
    lv, wsum, _ = lloyd(pts, c0, max_iter=int(cfg.max_iter), tol_abs=cfg.tol * var, stop="sumsq")
    return finish_midpoint(lv, wsum)
