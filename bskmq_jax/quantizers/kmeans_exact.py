"""Globally optimal weighted 1-D k-means by dynamic programming.

For sorted points ``x_0 <= ... <= x_{n-1}`` with weights ``w``, let
``D[r][i]`` be the least weighted squared error of splitting ``x_0..x_i``
into ``r`` contiguous clusters (optimal 1-D clusters are contiguous). Then

    D[r][i] = min_{0 <= j <= i+1}  D[r-1][j-1] + cost(j, i),

where ``cost(j, i)`` is the within-cluster error of ``x_j..x_i`` (zero for
the empty cluster ``j = i+1``), computed in O(1) from prefix sums. The cost
matrix is totally monotone, so the best split ``opt[r][i]`` is non-decreasing
in ``i`` (Wang & Song 2011; Grønlund et al. 2017). Each row is solved by
divide and conquer: the midpoints of an implicit binary tree over ``i`` are
processed level by level, each searching only between the optima of its
already-solved neighbours. A level's searches together cover at most
``n + 1 + 2**d`` candidates, which are laid out in one flat buffer and reduced
with segment-min, so a row costs O(n log n) work in ``log2(n)`` vectorised
steps and the whole fit O(k n log n) — not the O(k n^2) of the textbook DP.

The prefix sums are taken on standardized data with unit total weight, which
keeps the ``S2 - S1^2 / S0`` cancellation small in float32.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bskmq_jax.levels import thresholds_from_levels
from bskmq_jax.quantizers._common import finish_midpoint, lloyd


@dataclasses.dataclass(frozen=True, kw_only=True)
class KMeansExactConfig:
    """Options of ``method="kmeans_exact"``.

    The DP is exact over the fitted point set: the samples themselves when a
    layer has at most ``max_points`` samples, else the bin centroids of the
    ``bins``-bin summary. On a summary, Lloyd iterations that split bins at
    thresholds then place the thresholds inside bins; they never raise the
    error and stop at once on exact samples (an optimal partition is a Lloyd
    fixed point).
    """

    refine_iter: int = 50  # Lloyd iterations after the DP (0: DP result as is)
    refine_tol: float = 1e-7  # stop refining when no level moves more than this times (hi - lo)

    def __post_init__(self):
        if int(self.refine_iter) < 0:
            raise ValueError(f"refine_iter: {self.refine_iter} must be >= 0")
        if not self.refine_tol >= 0:
            raise ValueError(f"refine_tol: {self.refine_tol} must be >= 0")


def _prefix(px, pw):
    total = jnp.sum(pw)
    mu = jnp.sum(pw * px) / total
    sd = jnp.sqrt(jnp.sum(pw * (px - mu) ** 2) / total)
    sd = jnp.where(sd > 0, sd, 1.0)
    xn = (px - mu) / sd
    wn = pw / total
    zero = jnp.zeros((1,), jnp.float32)
    p0 = jnp.concatenate([zero, jnp.cumsum(wn)])
    p1 = jnp.concatenate([zero, jnp.cumsum(wn * xn)])
    p2 = jnp.concatenate([zero, jnp.cumsum(wn * xn * xn)])

    def cost(j, i):
        """Error of cluster ``x_j..x_i`` inclusive (``j == i + 1``: empty, 0)."""
        s0 = p0[i + 1] - p0[j]
        s1 = p1[i + 1] - p1[j]
        s2 = p2[i + 1] - p2[j]
        pos = s0 > 0
        return jnp.maximum(s2 - jnp.where(pos, s1 * s1 / jnp.where(pos, s0, 1.0), 0.0), 0.0)

    return cost


def _solve_row(d_prev, cost, n: int):
    """One DP row by level-order divide and conquer.

    Args:
      d_prev: ``[n + 1]``; ``d_prev[j]`` is the best error of ``x_0..x_{j-1}``
        with one cluster fewer (``d_prev[0] = 0``).
      cost: cluster cost function.
      n: number of points (static).

    Returns:
      ``(d [n], opt [n])``: best errors and the start index of the last cluster.
    """
    m = max(1, math.ceil(math.log2(n + 1)))
    # Slot s in `opt` is virtual index s - 1; slot 0 and the last are sentinels
    # bounding the search of the first and last midpoints.
    opt = jnp.zeros((2**m + 1,), jnp.int32).at[-1].set(n)
    d = jnp.zeros((2**m + 1,), jnp.float32)
    for lev in range(m):
        half = 2 ** (m - 1 - lev)
        count = 2**lev
        mids = (2 * np.arange(count) + 1) * half - 1  # virtual indices (static)
        live = mids < n
        a = opt[mids - half + 1]
        b = jnp.minimum(opt[mids + half + 1], jnp.asarray(mids + 1))
        b = jnp.where(live, b, a)
        length = b - a + 1
        size = n + 2 + count  # bound on the summed search lengths
        off = jnp.cumsum(length) - length
        total = off[-1] + length[-1]
        seg = jnp.cumsum(jnp.zeros((size,), jnp.int32).at[off].add(1, mode="drop")) - 1
        pos = jnp.arange(size)
        j = jnp.clip(a[seg] + pos - off[seg], 0, n)
        i = jnp.clip(jnp.asarray(mids)[seg], 0, n - 1)
        ok = (pos < total) & jnp.asarray(live)[seg]
        val = jnp.where(ok, d_prev[j] + cost(j, i), jnp.inf)
        best = jax.ops.segment_min(val, seg, num_segments=count, indices_are_sorted=True)
        # Leftmost minimizer: a consistent tie rule keeps the optima monotone.
        arg = jax.ops.segment_min(
            jnp.where(val == best[seg], j, n + 1), seg, num_segments=count, indices_are_sorted=True
        )
        opt = opt.at[mids + 1].set(jnp.where(live, arg, n))
        d = d.at[mids + 1].set(best)
    return d[1 : n + 1], opt[1 : n + 1]


def optimal_partition(px, pw, k: int):
    """Optimal contiguous k-partition of a sorted weighted point set.

    Args:
      px: ``[n]`` sorted values; pw: ``[n]`` weights (not all zero).
      k: number of clusters (static).

    Returns:
      ``cluster [n]`` int32 cluster id of each point (non-decreasing; some ids
      may be unused when there are fewer distinct values than ``k``).
    """
    n = px.shape[0]
    cost = _prefix(px, pw)
    d1 = cost(jnp.zeros((n,), jnp.int32), jnp.arange(n))
    if k == 1:
        return jnp.zeros((n,), jnp.int32)

    def row(d_prev, _):
        d, opt = _solve_row(jnp.concatenate([jnp.zeros((1,), jnp.float32), d_prev]), cost, n)
        return d, opt

    _, opts = lax.scan(row, d1, None, length=k - 1)  # opts[r - 2]: row r = 2..k

    def back(end, opt):
        start = opt[jnp.clip(end, 0, n - 1)]
        start = jnp.where(end >= 0, start, 0)
        return start - 1, start

    first_end, starts = lax.scan(back, jnp.int32(n - 1), opts, reverse=True)
    # Cluster r (0-based) starts at starts[r - 1] for r >= 1 and at 0 for r = 0.
    starts = jnp.concatenate([jnp.zeros((1,), jnp.int32), starts])
    del first_end
    return jnp.sum(jnp.arange(n)[:, None] >= starts[None, 1:], axis=1).astype(jnp.int32)


def fit_kmeans_exact(pts, lo, hi, key, *, k: int, cfg: KMeansExactConfig, common=None):
    """Fits one layer. Args/returns as in `bskmq_jax.quantizers.Method.fit`."""
    del key, common
    cid = optimal_partition(pts.x, pts.w, k)
    wsum = jax.ops.segment_sum(pts.w, cid, num_segments=k)
    xsum = jax.ops.segment_sum(pts.w * pts.x, cid, num_segments=k)
    lv, _ = finish_midpoint(jnp.where(wsum > 0, xsum / jnp.where(wsum > 0, wsum, 1.0), 0.0), wsum)
    if cfg.refine_iter:
        lv, wsum, _ = lloyd(pts, lv, max_iter=int(cfg.refine_iter), tol_abs=cfg.refine_tol * (hi - lo))
        return finish_midpoint(lv, wsum)
    return lv, thresholds_from_levels(lv)
