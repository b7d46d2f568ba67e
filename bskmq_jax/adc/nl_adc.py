"""The in-memory ramp NL-ADC, with non-idealities, and a linear ADC for partial sums.

Signal chain of one conversion (docs/imc_model.md has a figure):

1. the analog input (a bitline value) is compressed toward full scale when
   ``saturation > 0``: ``x' = lo + FS * tanh(s u) / s`` with ``u = (x - lo) / FS``,
   ``FS = hi - lo``;
2. input-referred noise is added, ``noise_sigma * FS * n`` per conversion;
3. the comparator of the column compares ``x'`` with the ramp; its static
   offset (``offset_sigma * FS``, one draw per column, the last axis) shifts
   every comparison of that column;
4. the ramp is a staircase through the thresholds, built from in-array
   reference cells: each step increment ``t_j - t_{j-1}`` (from the ramp
   start ``min(lo, t_0)``) is scaled by ``1 + ref_sigma * e_j`` (one draw per
   chip and step, increments kept >= 0 so the ramp stays monotone); a bow
   ``inl * FS * 4u(1 - u)`` models integral non-linearity;
5. the counter's code is the number of ramp steps the input reached (ties go
   up) and the output is that code's level, which is digital and exact.

With every non-ideality off this is exactly `bskmq_jax.quantize`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bskmq_jax.adc.config import ADCConfig, STEConfig
from bskmq_jax.adc.noise import chip_keys, conversion_noise
from bskmq_jax.adc.ste import quantize_ste
from bskmq_jax.levels import NLLevels, encode, thresholds_from_levels

__all__ = ["nl_adc", "linear_adc", "chip_thresholds", "column_offsets"]


def _bcast(p, x, batch_ndim):
    """Per-layer ``[*batch]`` values reshaped against ``x`` (layer axes first)."""
    return p.reshape(p.shape + (1,) * (x.ndim - batch_ndim))


def chip_thresholds(nl: NLLevels, thresholds, cfg: ADCConfig, chip_key=None):
    """Thresholds as a given chip realizes them (reference variation and INL).

    Args:
      nl: the programmed levels (for ``lo``/``hi``).
      thresholds: ``[*batch, K - 1]`` programmed thresholds.
      cfg: non-idealities.
      chip_key: key of the chip; required when ``ref_sigma > 0``.

    Returns:
      ``[*batch, K - 1]`` realized thresholds, still ascending.
    """
    t = thresholds
    fs = (nl.hi - nl.lo)[..., None]
    if cfg.ref_sigma:
        k_ref, _ = chip_keys(chip_key)
        start = jnp.minimum(nl.lo[..., None], t[..., :1])
        inc = jnp.diff(t, axis=-1, prepend=start)
        e = jax.random.normal(k_ref, t.shape, t.dtype)
        t = start + jnp.cumsum(jnp.maximum(inc * (1.0 + cfg.ref_sigma * e), 0.0), axis=-1)
    if cfg.inl:
        u = jnp.clip((thresholds - nl.lo[..., None]) / fs, 0.0, 1.0)
        t = t + cfg.inl * fs * 4.0 * u * (1.0 - u)
    return t


def column_offsets(chip_key, batch_shape, num_columns: int, dtype=jnp.float32):
    """Unit-sigma comparator offsets of a chip, ``[*batch, num_columns]``."""
    _, k_off = chip_keys(chip_key)
    return jax.random.normal(k_off, tuple(batch_shape) + (num_columns,), dtype)


def _analog_input(x, lo, hi, cfg: ADCConfig, key, chip_key, batch_ndim):
    """Steps 1-3: saturation, per-conversion noise, per-column comparator offset."""
    fs = _bcast(hi - lo, x, batch_ndim)
    lo_b = _bcast(lo, x, batch_ndim)
    if cfg.saturation:
        s = cfg.saturation
        x = lo_b + fs * jnp.tanh(s * (x - lo_b) / fs) / s
    if cfg.noise_sigma:
        if key is None:
            raise ValueError("key: noise_sigma > 0 needs a conversion key (nl_adc(..., key=...))")
        x = x + (cfg.noise_sigma * fs) * conversion_noise(key, x.shape, cfg.noise_rng).astype(x.dtype)
    if cfg.offset_sigma:
        off = column_offsets(chip_key, lo.shape, x.shape[-1], x.dtype)
        off = off.reshape(lo.shape + (1,) * (x.ndim - batch_ndim - 1) + (x.shape[-1],))
        # A comparator that flips late by `o` is the same as an input lower by `o`.
        x = x - (cfg.offset_sigma * fs) * off
    return x


def _check_keys(cfg: ADCConfig, chip_key) -> None:
    if cfg.needs_chip_key and chip_key is None:
        field = "ref_sigma" if cfg.ref_sigma else "offset_sigma"
        raise ValueError(f"chip_key: {field} > 0 draws static chip errors and needs nl_adc(..., chip_key=...)")


def nl_adc(
    x,
    nl: NLLevels,
    *,
    cfg: ADCConfig = ADCConfig(),
    key=None,
    chip_key=None,
    ste: STEConfig = STEConfig(),
    return_codes: bool = False,
):
    """Converts analog values with an in-memory ramp NL-ADC.

    Args:
      x: ``[*batch, ..., C]`` analog inputs; ``batch`` is ``nl``'s batch shape
        (layer axes first); the last axis indexes columns (comparators).
      nl: programmed levels and thresholds.
      cfg: non-idealities (all off by default).
      key: conversion key for per-conversion noise (needed if ``noise_sigma``).
      chip_key: chip key for static errors (needed if ``ref_sigma`` or
        ``offset_sigma``); the same key always gives the same chip, and a
        Monte-Carlo over chips is a ``vmap`` over chip keys.
      ste: gradient rules (`bskmq_jax.adc.ste`).
      return_codes: also return the int32 output codes.

    Returns:
      converted values shaped like ``x`` (and the codes if asked).
    """
    x = jnp.asarray(x)
    _check_keys(cfg, chip_key)
    nb = len(nl.batch_shape)
    if x.shape[:nb] != nl.batch_shape:
        raise ValueError(f"x: shape {x.shape} does not start with the NLLevels batch shape {nl.batch_shape}")
    t = thresholds_from_levels(nl.levels) if ste.thresholds == "midpoint" else nl.thresholds
    t = chip_thresholds(nl, t, cfg, chip_key)
    xa = _analog_input(x, nl.lo, nl.hi, cfg, key, chip_key, nb)
    out = quantize_ste(xa, nl.levels, t, nl.lo, nl.hi, ste).astype(x.dtype)
    if return_codes:
        codes = encode(jax.lax.stop_gradient(xa), NLLevels(nl.levels, t, nl.lo, nl.hi, bits=nl.bits))
        return out, codes
    return out


def linear_adc(x, lo, hi, bits: int, *, cfg: ADCConfig = ADCConfig(), key=None, chip_key=None):
    """A conventional linear ADC (e.g. on crossbar partial sums), up to 16 bits.

    ``2**bits`` uniform levels from ``lo`` to ``hi``; code
    ``clip(floor((x' - lo) / step + 1/2), 0, 2**bits - 1)``, which equals
    `nl_adc` with linear levels. ``noise_sigma``, ``offset_sigma``, ``inl``
    (applied as the equivalent input shift) and ``saturation`` apply;
    ``ref_sigma`` is a property of the in-memory NL ramp and is ignored.
    Gradient: straight-through inside ``[lo, hi]``.

    Args:
      x: values; ``lo``, ``hi``: scalars or arrays broadcasting against ``x``.
      bits: 1..16.
    """
    if not 1 <= bits <= 16:
        raise ValueError(f"bits: {bits} is outside 1..16 for a linear ADC")
    x = jnp.asarray(x)
    lo = jnp.asarray(lo, x.dtype)
    hi = jnp.asarray(hi, x.dtype)
    if cfg.offset_sigma and chip_key is None:
        raise ValueError("chip_key: offset_sigma > 0 draws static chip errors and needs linear_adc(..., chip_key=...)")
    fs = hi - lo
    xa = x
    if cfg.saturation:
        s = cfg.saturation
        xa = lo + fs * jnp.tanh(s * (xa - lo) / fs) / s
    if cfg.noise_sigma:
        if key is None:
            raise ValueError("key: noise_sigma > 0 needs a conversion key (linear_adc(..., key=...))")
        xa = xa + cfg.noise_sigma * fs * conversion_noise(key, x.shape, cfg.noise_rng).astype(x.dtype)
    if cfg.offset_sigma:
        xa = xa - cfg.offset_sigma * fs * column_offsets(chip_key, (), x.shape[-1], x.dtype)
    if cfg.inl:
        u = jnp.clip((xa - lo) / fs, 0.0, 1.0)
        xa = xa - cfg.inl * fs * 4.0 * u * (1.0 - u)
    step = fs / (2**bits - 1)
    code = jnp.clip(jnp.floor((xa - lo) / step + 0.5), 0, 2**bits - 1)
    q = lo + code * step
    c = jnp.clip(xa, lo, hi)
    return c + jax.lax.stop_gradient(q - c)
