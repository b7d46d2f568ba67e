"""Matrix products computed the way a crossbar computes them.

Mapping. A dense layer's fan-in rows are tiled into arrays of
``rows_per_array`` rows. A convolution is mapped kernel-wise: each array
holds whole ``kh x kw`` kernels of ``floor(rows_per_array / (kh * kw))``
input channels (e.g. 28 channels = 252 rows of a 256-row array for 3x3),
so a tile's partial sum is a convolution over a slice of input channels.
Columns are output channels; their weights are quantized symmetrically per
channel to ``w_bits`` and stored on differential cell pairs, optionally split
into ``cell_bits`` slices. Inputs are quantized by a DAC to ``in_bits``
(per-tensor scale from the batch maximum), applied bit-parallel or
bit-serially (two's complement for signed inputs).

Conversion. In ``fused`` mode all tiles' analog column sums are combined and
converted once, so the result is the exact product of the quantized operands
(the NL-ADC is applied by the caller, `bskmq_jax.imc.layers`). In
``partial_sum`` mode each (tile, input bit, weight slice) column sum, an
integer in ``[-FS, FS]`` with ``FS = rows * max input code * max slice``, is
converted by its own ADC (a mid-tread linear ADC over that range, see
`psum_adc_range`, unless NL levels are given), then shift-added and summed
digitally. Gradients of the
``partial_sum`` path are those of the exact product (straight-through over
the partial-sum ADCs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from bskmq_jax.adc.nl_adc import linear_adc, nl_adc
from bskmq_jax.imc.config import IMCConfig
from bskmq_jax.imc.quant import bit_planes, input_range, quantize_inputs, quantize_weights, weight_slices, weight_qmax

__all__ = ["imc_dense", "imc_conv", "conv_channels_per_tile", "psum_adc_range"]

_DN = ("NHWC", "HWIO", "NHWC")


def _operands(x, w, cfg: IMCConfig):
    x_int, sx = quantize_inputs(x, cfg.in_bits, cfg.input_signed)
    w_int, sw = quantize_weights(w, cfg.w_bits)
    if cfg.bit_serial:
        planes, pweights = bit_planes(x_int, cfg.in_bits, cfg.input_signed)
        xmax = 1.0
    else:
        planes, pweights = x_int[None], jnp.ones((1,), jnp.float32)
        qlo, qhi = input_range(cfg.in_bits, cfg.input_signed)
        xmax = float(max(-qlo, qhi))
    slices, sweights = weight_slices(w_int, cfg.w_bits, cfg.cell_bits)
    wmax = float(2**cfg.cell_bits - 1) if slices.shape[0] > 1 else float(weight_qmax(cfg.w_bits))
    return (x_int, sx), (w_int, sw), (planes, pweights, xmax), (slices, sweights, wmax)


def psum_adc_range(fs: float, bits: int) -> tuple[float, float]:
    """Range of the mid-tread partial-sum ADC for sums in ``[-FS, FS]``.

    Codes ``k - 2**(bits-1)`` times a step: zero is a level (a symmetric
    even-level ADC has none and turns every small sum into +-step/2, which
    the shift-add then amplifies), and the step is never finer than one
    integer unit of the column sum, so with ``2**(bits-1) >= FS`` the
    conversion is lossless.
    """
    step = max(1.0, fs / 2 ** (bits - 1))
    return -(2 ** (bits - 1)) * step, (2 ** (bits - 1) - 1) * step


def _convert(ps, fs: float, cfg: IMCConfig, key, chip_key, psum_levels):
    """One ADC conversion per partial sum (integer units)."""
    if psum_levels is not None:
        return nl_adc(ps, psum_levels, cfg=cfg.adc, key=key, chip_key=chip_key)
    lo, hi = psum_adc_range(fs, cfg.adc_bits)
    return linear_adc(ps, lo, hi, cfg.adc_bits, cfg=cfg.adc, key=key, chip_key=chip_key)


def imc_dense(x, w, b=None, *, cfg: IMCConfig, key=None, chip_key=None, psum_levels=None):
    """Pre-activation ``x @ w + b`` of a crossbar dense layer.

    Args:
      x: ``[..., K]`` inputs.
      w: ``[K, N]`` weights (N columns).
      b: optional ``[N]`` bias (an always-on analog row in ``fused`` mode,
        a digital add in ``partial_sum`` mode; not quantized).
      cfg: crossbar config.
      key: conversion key (partial-sum ADC noise).
      chip_key: chip key (partial-sum ADC offsets).
      psum_levels: optional scalar `NLLevels` for NL partial-sum ADCs, in
        integer partial-sum units.

    Returns:
      ``[..., N]`` pre-activation in the units of ``x @ w``.
    """
    (x_int, sx), (w_int, sw), (planes, pw, xmax), (slices, swt, wmax) = _operands(x, w, cfg)
    exact = (x_int @ w_int) * (sx * sw)
    if cfg.mode == "partial_sum":
        k, n = w.shape
        r = cfg.rows_per_array
        t = -(-k // r)
        pad = t * r - k
        xp = jnp.pad(planes, [(0, 0)] * (planes.ndim - 1) + [(0, pad)])
        xp = xp.reshape(xp.shape[:-1] + (t, r))
        wp = jnp.pad(slices, [(0, 0), (0, pad), (0, 0)]).reshape(slices.shape[0], t, r, n)
        ps = jnp.einsum("p...tr,strn->ps...tn", xp, wp)
        q = _convert(ps, min(r, k) * xmax * wmax, cfg, key, chip_key, psum_levels)
        acc = jnp.einsum("ps...tn,p,s->...n", q, pw, swt)
        exact = exact + lax.stop_gradient(acc * (sx * sw) - exact)
    return exact if b is None else exact + b


def conv_channels_per_tile(kernel_hw: tuple[int, int], rows_per_array: int) -> int:
    """Input channels per array under kernel-wise mapping."""
    kk = kernel_hw[0] * kernel_hw[1]
    if kk > rows_per_array:
        raise ValueError(
            f"rows_per_array: {rows_per_array} rows cannot hold one {kernel_hw[0]}x{kernel_hw[1]} kernel "
            f"({kk} rows) under kernel-wise mapping; use rows_per_array >= {kk}"
        )
    return rows_per_array // kk


def _conv(x, w, strides, padding):
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_DN)


def imc_conv(x, w, b=None, *, strides=(1, 1), padding="SAME", cfg: IMCConfig, key=None, chip_key=None, psum_levels=None):
    """Pre-activation of a crossbar 2-D convolution (NHWC inputs, HWIO weights).

    Args:
      x: ``[B, H, W, Cin]`` inputs.
      w: ``[kh, kw, Cin, N]`` weights.
      b: optional ``[N]`` bias.
      strides, padding: as in `jax.lax.conv_general_dilated`.
      cfg, key, chip_key, psum_levels: as in `imc_dense`.

    Returns:
      ``[B, H', W', N]`` pre-activation.
    """
    (x_int, sx), (w_int, sw), (planes, pw, xmax), (slices, swt, wmax) = _operands(x, w, cfg)
    exact = _conv(x_int, w_int, strides, padding) * (sx * sw)
    if cfg.mode == "partial_sum":
        kh, kw, cin, n = w.shape
        ct = min(conv_channels_per_tile((kh, kw), cfg.rows_per_array), cin)
        t = -(-cin // ct)
        pad = t * ct - cin
        p, s = planes.shape[0], slices.shape[0]
        bsz = x.shape[0]
        xp = jnp.pad(planes, [(0, 0)] * 4 + [(0, pad)]).reshape((p * bsz,) + x.shape[1:3] + (t * ct,))
        # Slices side by side as extra output channels: one conv per tile.
        wp = jnp.pad(slices, [(0, 0)] * 3 + [(0, pad), (0, 0)])
        wp = jnp.transpose(wp, (1, 2, 3, 0, 4)).reshape(kh, kw, t * ct, s * n)
        fs = kh * kw * ct * xmax * wmax
        keys = None if key is None else jax.random.split(key, t)

        def tile(acc, i):
            xs = lax.dynamic_slice_in_dim(xp, i * ct, ct, axis=3)
            ws = lax.dynamic_slice_in_dim(wp, i * ct, ct, axis=2)
            ps = _conv(xs, ws, strides, padding)
            ps = ps.reshape((p, bsz) + ps.shape[1:3] + (s, n))
            q = _convert(ps, fs, cfg, None if keys is None else keys[i], chip_key, psum_levels)
            return acc + jnp.einsum("pbhwsn,p,s->bhwn", q, pw, swt), None

        acc, _ = lax.scan(tile, jnp.zeros_like(exact), jnp.arange(t))
        exact = exact + lax.stop_gradient(acc * (sx * sw) - exact)
    return exact if b is None else exact + b
