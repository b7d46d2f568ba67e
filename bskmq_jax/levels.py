"""`NLLevels`: the reference levels of a nonlinear ADC, and the maps that use them.

An NL-ADC with ``b`` bits has ``K = 2**b`` reconstruction levels and ``K - 1``
comparator thresholds. A ramp converter compares its input with the ascending
thresholds; the number of thresholds the input has reached (``x >= t``, so ties
go up) is the output code, and the level of that code is the output value.

Everything here is a pure, jittable function of arrays. A per-layer
``NLLevels`` (batch shape ``[L]``) broadcasts against inputs whose *leading*
axes are the layer axes, e.g. ``x: [L, B, C]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

__all__ = [
    "NLLevels",
    "quantize",
    "encode",
    "decode",
    "thresholds_from_levels",
    "MAX_BITS",
    "MAX_LEVEL_BITS",
]

#: Level *fitting* covers 1 to 8 bits (8 bits is already 256 ramp steps).
MAX_BITS = 8
#: An `NLLevels` may hold up to 16 bits, e.g. a fine linear ADC in tests of
#: crossbar exactness.
MAX_LEVEL_BITS = 16

# Up to this many bits the comparator chain is unrolled into a fused chain of
# `where`s (1.0-1.3x the cost of `jnp.clip` on CPU, see shared/reference.md);
# above it, `searchsorted` is cheaper than 64+ unrolled compares.
_UNROLL_MAX_BITS = 5


@struct.dataclass
class NLLevels:
    """Reference levels of a nonlinear ADC (a registered pytree).

    Attributes:
      levels: ``[..., 2**bits]`` ascending (non-decreasing) reconstruction values.
      thresholds: ``[..., 2**bits - 1]`` ascending comparator references;
        ``levels[..., j] <= thresholds[..., j] <= levels[..., j + 1]``.
      lo: ``[...]`` lower end of the ADC input range.
      hi: ``[...]`` upper end of the ADC input range.
      method: name of the fitting method (static metadata).
      bits: ADC resolution in bits (static metadata).
    """

    levels: jax.Array
    thresholds: jax.Array
    lo: jax.Array
    hi: jax.Array
    method: str = struct.field(pytree_node=False, default="custom")
    bits: int = struct.field(pytree_node=False, default=0)

    @property
    def num_levels(self) -> int:
        """Number of reconstruction levels, ``2**bits``."""
        return 2**self.bits

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Shape of the layer axes (``()`` for one layer, ``(L,)`` for L layers)."""
        return tuple(self.levels.shape[:-1])

    def __getitem__(self, idx) -> "NLLevels":
        """Selects layers, e.g. ``nl[3]`` or ``nl[:4]``."""
        if not self.batch_shape:
            raise IndexError("NLLevels with batch shape () cannot be indexed")
        return jax.tree_util.tree_map(lambda a: a[idx], self)

    @classmethod
    def from_levels(cls, levels, *, lo=None, hi=None, method: str = "custom") -> "NLLevels":
        """Builds an `NLLevels` from levels alone, with midpoint thresholds.

        Args:
          levels: ``[..., K]`` with ``K`` a power of two between 2 and 256.
          lo: optional ``[...]`` range start; defaults to the first level.
          hi: optional ``[...]`` range end; defaults to the last level.
          method: a name to record.

        Raises:
          ValueError: if ``K`` is not a power of two in range, or levels are
            not ascending.
        """
        levels = jnp.asarray(levels, jnp.float32)
        k = levels.shape[-1]
        bits = k.bit_length() - 1
        if k < 2 or 2**bits != k or bits > MAX_LEVEL_BITS:
            raise ValueError(
                f"levels: last axis has {k} entries; an NL-ADC needs 2**bits entries "
                f"with bits in 1..{MAX_LEVEL_BITS}"
            )
        if not isinstance(levels, jax.core.Tracer) and bool(jnp.any(jnp.diff(levels) < 0)):
            raise ValueError("levels: must be ascending along the last axis")
        lo = levels[..., 0] if lo is None else jnp.broadcast_to(jnp.asarray(lo, jnp.float32), levels.shape[:-1])
        hi = levels[..., -1] if hi is None else jnp.broadcast_to(jnp.asarray(hi, jnp.float32), levels.shape[:-1])
        return cls(levels, thresholds_from_levels(levels), lo, hi, method=method, bits=bits)


def thresholds_from_levels(levels: jax.Array) -> jax.Array:
    """Nearest-level (Voronoi) thresholds: midpoints of adjacent levels.

    Args:
      levels: ``[..., K]`` non-decreasing.

    Returns:
      ``[..., K - 1]`` thresholds with ``levels[j] <= t[j] <= levels[j+1]``.
    """
    a, b = levels[..., :-1], levels[..., 1:]
    t = a + 0.5 * (b - a)
    # If rounding put the midpoint onto the lower of two distinct levels, the
    # lower level would map to the upper cell (ties go up) and `quantize` would
    # stop being idempotent; move such a threshold to the upper level instead.
    return jnp.where((t <= a) & (b > a), b, t)


def _expand(param: jax.Array, x: jax.Array) -> jax.Array:
    """Reshapes per-layer ``[*batch, K]`` params to broadcast against ``x``."""
    batch = param.shape[:-1]
    if x.shape[: len(batch)] != batch:
        raise ValueError(
            f"x: shape {x.shape} does not start with the NLLevels batch shape {batch}; "
            "put the layer axes first"
        )
    extra = x.ndim - len(batch)
    return param.reshape(batch + (1,) * extra + param.shape[-1:])


def encode(x: jax.Array, nl: NLLevels) -> jax.Array:
    """Output codes of the ramp comparator: number of thresholds ``<= x``.

    Args:
      x: ``[*batch, ...]`` values; ``batch`` is ``nl``'s batch shape.
      nl: the levels.

    Returns:
      int32 codes in ``[0, 2**bits - 1]``, same shape as ``x``.
    """
    x = jnp.asarray(x)
    t = _expand(nl.thresholds.astype(x.dtype), x)
    if nl.bits <= _UNROLL_MAX_BITS:
        code = jnp.zeros(x.shape, jnp.int32)
        for j in range(t.shape[-1]):
            code = code + (x >= t[..., j]).astype(jnp.int32)
        return code
    return _searchsorted_codes(x, nl)


def _searchsorted_codes(x: jax.Array, nl: NLLevels) -> jax.Array:
    batch = nl.batch_shape
    flat_t = nl.thresholds.reshape((-1, nl.thresholds.shape[-1])).astype(x.dtype)
    flat_x = x.reshape((flat_t.shape[0], -1)) if batch else x.reshape((1, -1))
    codes = jax.vmap(lambda t, v: jnp.searchsorted(t, v, side="right"))(flat_t, flat_x)
    return codes.reshape(x.shape).astype(jnp.int32)


def decode(codes: jax.Array, nl: NLLevels) -> jax.Array:
    """Maps codes back to their levels.

    Args:
      codes: integer ``[*batch, ...]`` codes in ``[0, 2**bits - 1]``.
      nl: the levels.

    Returns:
      float32 values of the same shape as ``codes``.
    """
    codes = jnp.asarray(codes)
    if not jnp.issubdtype(codes.dtype, jnp.integer):
        raise ValueError(f"codes: dtype {codes.dtype} is not an integer type; use encode() output")
    lv = _expand(nl.levels, codes)
    idx = jnp.clip(codes, 0, nl.levels.shape[-1] - 1)[..., None]
    return jnp.take_along_axis(jnp.broadcast_to(lv, codes.shape + lv.shape[-1:]), idx, axis=-1)[..., 0]


def quantize(x: jax.Array, nl: NLLevels) -> jax.Array:
    """Maps each value to the level of its threshold cell (ties go up).

    Equal to ``decode(encode(x, nl), nl)`` but computed as a fused chain of
    selects, which costs about one `jnp.clip` on CPU.

    Args:
      x: ``[*batch, ...]`` floating values; ``batch`` is ``nl``'s batch shape.
      nl: the levels.

    Returns:
      quantized values, same shape and dtype as ``x``.
    """
    x = jnp.asarray(x)
    if nl.bits > _UNROLL_MAX_BITS:
        return decode(encode(x, nl), nl).astype(x.dtype)
    t = _expand(nl.thresholds.astype(x.dtype), x)
    lv = _expand(nl.levels.astype(x.dtype), x)
    out = jnp.broadcast_to(lv[..., 0], x.shape)
    for j in range(t.shape[-1]):
        out = jnp.where(x >= t[..., j], lv[..., j + 1], out)
    return out
