"""Configs of the NL-ADC simulation: hardware non-idealities and gradient rules.

All sigmas and error magnitudes are dimensionless fractions of the ADC's full
scale ``hi - lo`` (for the ramp) or of the per-step increment (``ref_sigma``),
so one config applies to every layer whatever its activation scale.
"""

from __future__ import annotations

import dataclasses
import math

NOISE_RNGS = ("hash", "normal")
THRESHOLD_RULES = ("fixed", "midpoint", "learned")
PASS_RANGES = ("range", "levels")


def _check_nonneg(name: str, v: float, upper: float | None = None) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{name}: {v!r} must be a finite number >= 0")
    if upper is not None and v >= upper:
        raise ValueError(f"{name}: {v!r} must be below {upper}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ADCConfig:
    """Non-idealities of the in-memory ramp NL-ADC (all off by default).

    Static errors (``ref_sigma``, ``offset_sigma``) are drawn once per chip
    from a chip key; ``noise_sigma`` is drawn per conversion from a
    conversion key; ``inl`` and ``saturation`` are deterministic.
    """

    ref_sigma: float = 0.0  # relative sigma of each ramp-step increment (reference-cell programming variation), static per chip
    offset_sigma: float = 0.0  # comparator offset sigma, fraction of full scale, static per column (last axis)
    noise_sigma: float = 0.0  # input-referred comparator/thermal noise sigma, fraction of full scale, per conversion
    inl: float = 0.0  # peak ramp integral non-linearity (bow-shaped, max at mid-scale), fraction of full scale
    saturation: float = 0.0  # soft compression strength of the analog input toward full scale (0: ideal, linear)
    noise_rng: str = "hash"  # "hash": fused counter-hash noise (1.8x clip); "normal": jax.random.normal (12x clip)

    def __post_init__(self):
        _check_nonneg("ref_sigma", self.ref_sigma)
        _check_nonneg("offset_sigma", self.offset_sigma)
        _check_nonneg("noise_sigma", self.noise_sigma)
        # Above 1/4 the bow can make adjacent ramp steps decrease (non-monotone ramp).
        _check_nonneg("inl", self.inl, upper=0.25)
        _check_nonneg("saturation", self.saturation)
        if self.noise_rng not in NOISE_RNGS:
            raise ValueError(f"noise_rng: unknown generator {self.noise_rng!r}; choose one of {list(NOISE_RNGS)}")

    @property
    def ideal(self) -> bool:
        """True when every non-ideality is off."""
        return not (self.ref_sigma or self.offset_sigma or self.noise_sigma or self.inl or self.saturation)

    @property
    def needs_chip_key(self) -> bool:
        """True when a chip key is needed to draw static errors."""
        return bool(self.ref_sigma or self.offset_sigma)


@dataclasses.dataclass(frozen=True, kw_only=True)
class STEConfig:
    """Gradient rules of the NL-ADC (see `bskmq_jax.adc.ste`)."""

    learn_levels: bool = False  # compute d out / d levels (False: frozen levels, zero gradient, cheaper backward)
    thresholds: str = "fixed"  # "fixed": as given, no gradient; "midpoint": recomputed from levels; "learned": surrogate gradient
    level_grad_scale: float = 1.0  # multiplier on level gradients (LSQ uses 1/sqrt(numel * Qp))
    pass_range: str = "range"  # input gradient passes for "range": lo <= x <= hi; "levels": first level <= x <= last level

    def __post_init__(self):
        if not isinstance(self.learn_levels, bool):
            raise ValueError(f"learn_levels: expected True or False, got {self.learn_levels!r}")
        if self.thresholds not in THRESHOLD_RULES:
            raise ValueError(f"thresholds: unknown rule {self.thresholds!r}; choose one of {list(THRESHOLD_RULES)}")
        _check_nonneg("level_grad_scale", self.level_grad_scale)
        if self.pass_range not in PASS_RANGES:
            raise ValueError(f"pass_range: unknown rule {self.pass_range!r}; choose one of {list(PASS_RANGES)}")
