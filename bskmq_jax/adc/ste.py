"""Gradients of the NL-ADC conversion (custom VJP), kept apart from fitting and hardware.

The forward pass is the ramp conversion: ``code = #{j : x >= t_j}``,
``out = levels[code]``. It is piecewise constant, so training needs chosen
surrogate gradients. With ``x`` the (effective) ADC input, ``l`` the levels,
``t`` the thresholds, ``g`` the upstream cotangent and ``[lo, hi]`` the range:

| quantity          | rule                                                        | when                          |
|-------------------|-------------------------------------------------------------|-------------------------------|
| d out / d x       | 1 if lo <= x <= hi, else 0 (straight-through with clipping) | `pass_range="range"` (default)|
|                   | 1 if l_0 <= x <= l_{K-1}, else 0 (where the output can follow) | `pass_range="levels"`      |
| d out / d l_j     | s * [code == j]  (the output *is* l_code; codes held fixed) | `learn_levels=True`, else 0   |
| d out / d t_j     | -2 * max(0, 1 - abs(x - t_j) / w_j), w_j = (l_{j+1} - l_j)/2| `thresholds="learned"`, else 0|
| d out / d lo, hi  | 0 (the range is set by calibration, not learned here)       | always                        |

``s`` is `STEConfig.level_grad_scale` (1 by default; LSQ would use
``1 / sqrt(numel * Qp)``). The threshold rule is the derivative of the step
``(l_{j+1} - l_j) * H(x - t_j)`` with the Heaviside ``H`` smoothed by a
triangular kernel of half-width ``w_j``, normalized to unit area: moving a
threshold up turns inputs just above it from ``l_{j+1}`` into ``l_j``.
``thresholds="midpoint"`` recomputes thresholds from the levels in the
forward pass (see `nl_adc`); their gradient path is then zero, as for fixed
thresholds, and the levels learn through the level rule alone.

``pass_range="levels"`` matters when the outermost levels sit inside the
range (BS-KMQ's suppressed boundaries: e.g. a top level of 2.0 in
``[0, 6]``): inputs above the top level all convert to it, so passing their
gradient straight through would promise the loss a response the conversion
never gives, and fine-tuning then drives such pre-activations (and the
weights) up without effect. With learned levels, those inputs still reach
the outermost levels through the level rule, which moves them outward.

Level and threshold gradients are per-layer sums over every other axis, taken
as K-1 masked reductions that XLA fuses into one pass.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from bskmq_jax.adc.config import STEConfig
from bskmq_jax.levels import NLLevels, quantize

__all__ = ["quantize_ste"]


def _bcast(p, x):
    """``[*batch, K]`` or ``[*batch]`` params reshaped to broadcast against ``x``."""
    return p.reshape(p.shape + (1,) * (x.ndim - p.ndim))


def _layer_sum(v, batch_ndim: int):
    """Sum over every axis after the layer (batch) axes."""
    return jnp.sum(v, axis=tuple(range(batch_ndim, v.ndim)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def quantize_ste(x, levels, thresholds, lo, hi, rule: STEConfig):
    """Ramp conversion with the surrogate gradients in the module table.

    Args:
      x: ``[*batch, ...]`` ADC inputs (layer axes first).
      levels: ``[*batch, K]`` ascending levels.
      thresholds: ``[*batch, K - 1]`` ascending thresholds.
      lo, hi: ``[*batch]`` range used by the clipping STE.
      rule: static gradient rules.

    Returns:
      ``levels[code]``, same shape as ``x``.
    """
    bits = levels.shape[-1].bit_length() - 1
    return quantize(x, NLLevels(levels, thresholds, lo, hi, bits=bits))


def _fwd(x, levels, thresholds, lo, hi, rule):
    return quantize_ste(x, levels, thresholds, lo, hi, rule), (x, levels, thresholds, lo, hi)


def _bwd(rule: STEConfig, res, g):
    x, levels, thresholds, lo, hi = res
    nb = lo.ndim  # number of layer axes
    if rule.pass_range == "levels":
        inside = (x >= _bcast(levels[..., 0], x)) & (x <= _bcast(levels[..., -1], x))
    else:
        inside = (x >= _bcast(lo, x)) & (x <= _bcast(hi, x))
    g_x = jnp.where(inside, g, 0.0).astype(x.dtype)
    k = levels.shape[-1]
    lv = levels.reshape(levels.shape[:-1] + (1,) * (x.ndim - nb) + (k,))
    th = thresholds.reshape(thresholds.shape[:-1] + (1,) * (x.ndim - nb) + (k - 1,))
    g_levels = jnp.zeros_like(levels)
    if rule.learn_levels:
        # above[j] = sum of g over inputs at or above threshold j; the share
        # of code j is then above[j-1] - above[j] (thermometer differences).
        total = _layer_sum(g, nb)
        above = jnp.stack([_layer_sum(jnp.where(x >= th[..., j], g, 0.0), nb) for j in range(k - 1)], axis=-1)
        upper = jnp.concatenate([total[..., None], above], axis=-1)
        lower = jnp.concatenate([above, jnp.zeros_like(total)[..., None]], axis=-1)
        g_levels = (upper - lower) * rule.level_grad_scale
    g_thr = jnp.zeros_like(thresholds)
    if rule.thresholds == "learned":
        cols = []
        for j in range(k - 1):
            w = 0.5 * (lv[..., j + 1] - lv[..., j])
            safe = jnp.where(w > 0, w, 1.0)
            tri = jnp.where(w > 0, jnp.maximum(0.0, 1.0 - jnp.abs(x - th[..., j]) / safe), 0.0)
            cols.append(_layer_sum(-2.0 * g * tri, nb))
        g_thr = jnp.stack(cols, axis=-1)
    return g_x, g_levels, g_thr, jnp.zeros_like(lo), jnp.zeros_like(hi)


quantize_ste.defvjp(_fwd, _bwd)
