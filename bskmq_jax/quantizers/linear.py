"""Linear (uniform) levels: the conventional ADC.

``2**bits`` equally spaced levels from ``lo`` to ``hi``, with the end levels
exactly at ``lo`` and ``hi`` (so a ReLU's zero and a clamp's maximum are
represented exactly); thresholds are midpoints. The data only set the range.
"""

from __future__ import annotations

import dataclasses

from bskmq_jax.levels import thresholds_from_levels
from bskmq_jax.quantizers._common import uniform_levels


@dataclasses.dataclass(frozen=True, kw_only=True)
class LinearConfig:
    """Linear quantization has no options beyond the common ones."""


def fit_linear(pts, lo, hi, key, *, k: int, cfg: LinearConfig, common=None):
    """Fits one layer. Args/returns as in `bskmq_jax.quantizers.Method.fit`."""
    del pts, key, cfg, common
    lv = uniform_levels(lo, hi, k)
    return lv, thresholds_from_levels(lv)
