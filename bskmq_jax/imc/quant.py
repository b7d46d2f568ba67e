"""Digital-to-analog side of a crossbar: weight and input quantization, slicing, bit planes.

Every rounding uses a straight-through estimator, so a quantized forward pass
can be trained (gradients pass as if rounding were the identity).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def round_ste(x):
    """``round(x)`` forward, identity gradient."""
    return x + jax.lax.stop_gradient(jnp.round(x) - x)


def weight_qmax(w_bits: int) -> int:
    """Largest integer weight magnitude (1 for binary weights)."""
    return max(1, 2 ** (w_bits - 1) - 1)


def quantize_weights(w, w_bits: int):
    """Symmetric per-output-channel weight quantization.

    Args:
      w: ``[..., N]`` float weights; the last axis is the output channel
        (a crossbar column).
      w_bits: bits; 1 gives binary ``sign(w) * mean|w|`` per channel.

    Returns:
      ``(w_int, scale)``: integer-valued float ``w_int`` in
      ``[-qmax, qmax]`` and ``scale [N]`` with ``w ~ w_int * scale``.
    """
    axes = tuple(range(w.ndim - 1))
    if w_bits == 1:
        scale = jax.lax.stop_gradient(jnp.mean(jnp.abs(w), axis=axes))
        sign = jnp.where(w >= 0, 1.0, -1.0)
        # STE: gradient of w / scale inside [-1, 1].
        wn = jnp.clip(w / jnp.where(scale > 0, scale, 1.0), -1.0, 1.0)
        return wn + jax.lax.stop_gradient(sign - wn), scale
    qmax = weight_qmax(w_bits)
    amax = jax.lax.stop_gradient(jnp.max(jnp.abs(w), axis=axes))
    scale = jnp.where(amax > 0, amax / qmax, 1.0)
    return round_ste(jnp.clip(w / scale, -qmax, qmax)), scale


def input_range(x_bits: int, signed: bool) -> tuple[int, int]:
    """Integer range of the input DAC codes."""
    if signed:
        q = 2 ** (x_bits - 1) - 1
        return -q, q
    return 0, 2**x_bits - 1


def quantize_inputs(x, in_bits: int, signed: bool):
    """Per-tensor input DAC quantization with a scale from the tensor's maximum.

    Args:
      x: inputs of any shape (negative values clip to 0 when ``signed=False``).
      in_bits: DAC bits.
      signed: symmetric signed codes, else unsigned ``[0, 2**bits - 1]``.

    Returns:
      ``(x_int, scale)``, a scalar scale with ``x ~ x_int * scale``.
    """
    qlo, qhi = input_range(in_bits, signed)
    amax = jax.lax.stop_gradient(jnp.max(jnp.abs(x)) if signed else jnp.max(x))
    scale = jnp.where(amax > 0, amax / qhi, 1.0)
    return round_ste(jnp.clip(x / scale, qlo, qhi)), scale


def bit_planes(x_int, in_bits: int, signed: bool):
    """Input bit planes for bit-serial application, and their weights.

    Signed inputs use two's complement: the top plane weighs ``-2**(b-1)``.

    Returns:
      ``(planes [in_bits, ...] in {0, 1}, weights [in_bits])``.
    """
    u = x_int.astype(jnp.int32)
    if signed:
        u = u & ((1 << in_bits) - 1)
    planes = jnp.stack([((u >> i) & 1).astype(jnp.float32) for i in range(in_bits)])
    w = [float(2**i) for i in range(in_bits)]
    if signed:
        w[-1] = -w[-1]
    return planes, jnp.asarray(w, jnp.float32)


def weight_slices(w_int, w_bits: int, cell_bits: int | None):
    """Signed bit slices of integer weights over differential cell pairs.

    The magnitude is split into ``ceil((w_bits - 1) / cell_bits)`` slices of
    ``cell_bits`` bits; each slice keeps the weight's sign (it is stored on
    the positive or the negative cell of the pair).

    Returns:
      ``(slices [S, ...], weights [S])`` with ``w_int = sum_s weights[s] * slices[s]``.
    """
    mag_bits = max(1, w_bits - 1)
    if cell_bits is None or cell_bits >= mag_bits:
        return w_int[None], jnp.ones((1,), jnp.float32)
    m = jnp.abs(w_int).astype(jnp.int32)
    sign = jnp.sign(w_int)
    n = -(-mag_bits // cell_bits)
    mask = (1 << cell_bits) - 1
    slices = jnp.stack([sign * ((m >> (i * cell_bits)) & mask).astype(jnp.float32) for i in range(n)])
    return slices, jnp.asarray([float(2 ** (i * cell_bits)) for i in range(n)], jnp.float32)
