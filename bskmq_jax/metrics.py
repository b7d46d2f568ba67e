"""Quantization-error metrics for NL-ADC levels.

No single number ranks level sets honestly (see docs/metrics.md): on a fixed
sample set, exact k-means has the lowest full-data MSE by construction, so
claims of "lower error" must say which error. `quant_error` reports them all:

- ``mse``: mean squared error over all values;
- ``interior_mse``: the same over values not at a boundary (``lo``/``hi``
  within the tolerance), i.e. with the ReLU/clamp point masses excluded;
- ``sqnr_db``: ``10 log10(mean(ref^2) / mse)``, signal power over error power;
- ``max_abs``: the largest absolute error;
- ``entropy_bits``: entropy of the output-code distribution, in bits (at most
  ``bits``; "balanced and informative" levels use the codes evenly);
- ``used_levels``: number of codes that occur.

The reference is what the NL-ADC is asked to output: the input clamped to
``[lo, hi]`` (``clamp=True``, the default), or the raw input.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from bskmq_jax.levels import NLLevels, encode, quantize

__all__ = ["QuantError", "quant_error", "quant_error_from_stats", "quant_error_from_points"]


@struct.dataclass
class QuantError:
    """Error metrics, each ``[...]`` over the NLLevels batch shape."""

    mse: jax.Array
    interior_mse: jax.Array  # NaN if every value is at a boundary
    sqnr_db: jax.Array  # +inf when the error is zero
    max_abs: jax.Array
    entropy_bits: jax.Array
    used_levels: jax.Array

    def as_dict(self) -> dict:
        """Plain Python floats (one layer) or lists (several layers)."""
        return {k: jnp.asarray(v).tolist() for k, v in vars(self).items()}


@functools.partial(jax.jit, static_argnames=("clamp",))
def _weighted_error(x, w, nl: NLLevels, clamp: bool, rel_tol):
    lo = nl.lo[..., None]
    hi = nl.hi[..., None]
    ref = jnp.clip(x, lo, hi) if clamp else x
    err = quantize(ref, nl) - ref
    tol = rel_tol * (hi - lo)
    interior = (jnp.abs(ref - lo) > tol) & (jnp.abs(ref - hi) > tol)
    wsum = jnp.sum(w, axis=-1)
    e2 = w * err * err
    mse = jnp.sum(e2, axis=-1) / wsum
    wi = jnp.sum(jnp.where(interior, w, 0.0), axis=-1)
    imse = jnp.where(wi > 0, jnp.sum(jnp.where(interior, e2, 0.0), axis=-1) / jnp.where(wi > 0, wi, 1.0), jnp.nan)
    power = jnp.sum(w * ref * ref, axis=-1) / wsum
    sqnr = 10.0 * jnp.log10(power / mse)
    max_abs = jnp.max(jnp.where(w > 0, jnp.abs(err), 0.0), axis=-1)
    k = nl.levels.shape[-1]
    codes = encode(ref, nl)
    p = _code_hist(codes, w, k) / wsum[..., None]
    ent = -jnp.sum(jnp.where(p > 0, p * jnp.log2(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)
    return QuantError(mse, imse, sqnr, max_abs, ent, jnp.sum(p > 0, axis=-1))


def _code_hist(codes, w, k):
    """Weighted code counts ``[..., k]`` with one flat scatter-add."""
    flat_c = codes.reshape(-1, codes.shape[-1])
    offset = (jnp.arange(flat_c.shape[0]) * k)[:, None]
    h = jnp.zeros((flat_c.shape[0] * k,), jnp.float32).at[(flat_c + offset).ravel()].add(w.ravel())
    return h.reshape(codes.shape[:-1] + (k,))


def quant_error(x, nl: NLLevels, *, weights=None, clamp: bool = True, boundary_tol: float = 1e-6) -> QuantError:
    """Error metrics of quantizing ``x`` with ``nl``.

    Args:
      x: ``[*batch, ...]`` values; ``batch`` is ``nl``'s batch shape (layer
        axes first); the rest is flattened per layer.
      nl: the levels.
      weights: optional non-negative weights shaped like ``x``.
      clamp: compare against ``clip(x, lo, hi)`` (what the NL-ADC should
        output) rather than raw ``x``.
      boundary_tol: boundary tolerance relative to ``hi - lo`` for
        ``interior_mse``.

    Returns:
      `QuantError` with fields of shape ``batch``.
    """
    x = jnp.asarray(x, jnp.float32)
    batch = nl.batch_shape
    if x.shape[: len(batch)] != batch:
        raise ValueError(f"x: shape {x.shape} does not start with the NLLevels batch shape {batch}")
    x2 = x.reshape(batch + (-1,))
    if x2.shape[-1] == 0:
        raise ValueError("x: no values to measure")
    w2 = jnp.ones_like(x2) if weights is None else jnp.broadcast_to(jnp.asarray(weights, jnp.float32), x.shape).reshape(x2.shape)
    return _weighted_error(x2, w2, nl, clamp, boundary_tol)


def quant_error_from_stats(stats, nl: NLLevels, *, clamp: bool = True) -> QuantError:
    """`quant_error` on the statistics' weighted slot centroids.

    Exact up to the spread of values inside each histogram bin (width
    ``(hi - lo) / bins``): each bin is measured at its centroid. ``max_abs``
    is over centroids.
    """
    from bskmq_jax.stats import points_from_stats

    pts = points_from_stats(stats, nl.lo, nl.hi, clamp)
    return _weighted_error(pts.x, pts.w, nl, clamp, stats.boundary_tol)


def quant_error_from_points(pts, nl: NLLevels, *, clamp: bool = True, boundary_tol: float = 1e-6) -> QuantError:
    """`quant_error` on weighted point sets (`bskmq_jax.quantizers.Points`, ``[*batch, P]`` leaves).

    `quant_error_from_stats` is this on the statistics' points; preparing
    the points once measures many level sets of the same layers without
    rebuilding them. Points are measured at their centroids.
    """
    return _weighted_error(pts.x, pts.w, nl, clamp, boundary_tol)
