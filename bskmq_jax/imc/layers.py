"""Flax NNX layers that run on crossbars and convert with an NL-ADC.

`IMCDense` and `IMCConv` compute their pre-activation with the crossbar model
and pass it to an `NLADCActivation`, which holds the layer's NL-ADC levels in
a non-trainable variable collection (`ADCLevels`; `nnx.Param` when levels are
learned) and its streaming `CalibrationStats` (`CalibStats`).

One model-wide switch, `QuantMode`, selects what every such layer does:

| mode        | pre-activation                         | output                               |
|-------------|----------------------------------------|--------------------------------------|
| `FLOAT`     | float ``x @ W + b``                    | float activation (the float model)   |
| `CALIBRATE` | crossbar (quantized weights and inputs)| float activation; pre-ADC values are added to the layer's statistics |
| `QUANTIZED` | crossbar                               | NL-ADC conversion (fused mode) or digital activation after partial-sum ADCs |

The calibration seam is the statistics variable: one forward pass per batch in
`CALIBRATE` mode (under `nnx.jit`) updates every layer's statistics in place,
in memory independent of the number of batches; `collect_stats` returns them
keyed by the layer's dotted name (e.g. ``"layer1.0.conv2"``).
"""

from __future__ import annotations

import enum

import jax
import jax.numpy as jnp
from flax import nnx

from bskmq_jax.adc.config import ADCConfig, STEConfig
from bskmq_jax.adc.nl_adc import nl_adc
from bskmq_jax.imc.config import IMCConfig
from bskmq_jax.imc.crossbar import imc_conv, imc_dense
from bskmq_jax.levels import NLLevels
from bskmq_jax.stats import CalibrationStats, init_stats, update

__all__ = [
    "QuantMode",
    "ADCLevels",
    "CalibStats",
    "NLADCActivation",
    "IMCDense",
    "IMCConv",
    "ACTIVATIONS",
]


class QuantMode(enum.Enum):
    """What the IMC layers of a model compute."""

    FLOAT = "float"
    CALIBRATE = "calibrate"
    QUANTIZED = "quantized"


class ADCLevels(nnx.Variable):
    """NL-ADC levels and range: state, but not trained (excluded from `nnx.Param`)."""


class CalibStats(nnx.Variable):
    """Streaming calibration statistics of one layer's pre-ADC values."""


class ChipKey(nnx.Variable):
    """Raw key data of the chip this layer's ADC belongs to (static errors)."""


#: Float activations an NL-ADC can fold into its conversion, with the ADC's
#: range start: a ReLU's range starts at 0; an identity layer's at its minimum.
ACTIVATIONS = {"relu": jax.nn.relu, "identity": lambda x: x}


class NLADCActivation(nnx.Module):
    """The conversion at the output of an IMC layer.

    Args:
      bits: NL-ADC resolution (levels hold ``2**bits`` entries).
      activation: ``"relu"`` (ADC range starts at 0, ReLU folded in) or
        ``"identity"``.
      adc: non-idealities; ste: gradient rules.
      learn: levels and thresholds become `nnx.Param` (trainable).
      calib_bins: histogram bins of the statistics.
      calib_margin: the statistics' range is read from the first calibration
        batch: ``[0 or min, max + margin * (max - start)]``; later values
        beyond it are kept exactly in the tail slots.
      rngs: streams ``adc`` (per-conversion noise) and ``chip`` (static errors).
    """

    def __init__(
        self,
        *,
        bits: int,
        activation: str = "relu",
        adc: ADCConfig = ADCConfig(),
        ste: STEConfig = STEConfig(),
        learn: bool = False,
        calib_bins: int = 4096,
        calib_margin: float = 0.5,
        rngs: nnx.Rngs,
    ):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: unknown {activation!r}; choose one of {list(ACTIVATIONS)}")
        if calib_margin < 0:
            raise ValueError(f"calib_margin: {calib_margin} must be >= 0")
        self.bits = bits
        self.activation = activation
        self.adc_cfg = adc
        self.ste = ste
        self.calib_margin = float(calib_margin)
        self.mode = QuantMode.FLOAT
        self.fitted = False
        var = nnx.Param if learn else ADCLevels
        k = 2**bits
        placeholder = NLLevels.from_levels(jnp.linspace(0.0, 1.0, k))
        self.levels = var(placeholder.levels)
        self.thresholds = var(placeholder.thresholds)
        self.lo = ADCLevels(jnp.float32(0.0))
        self.hi = ADCLevels(jnp.float32(1.0))
        self.stats = CalibStats(init_stats(0.0, 1.0, bins=calib_bins))
        self.chip_key = ChipKey(jax.random.key_data(rngs.chip()))
        self.rngs = rngs

    def nl_levels(self) -> NLLevels:
        """The current levels as an `NLLevels` (batch shape ``()``)."""
        return NLLevels(self.levels[...], self.thresholds[...], self.lo[...], self.hi[...], method="layer", bits=self.bits)

    def set_levels(self, nl: NLLevels) -> None:
        """Programs fitted levels (batch shape ``()`` or ``(1,)``)."""
        if nl.bits != self.bits:
            raise ValueError(f"levels: {nl.bits}-bit levels do not fit this {self.bits}-bit NL-ADC")
        squeeze = (lambda a: a.reshape(a.shape[1:])) if nl.batch_shape == (1,) else (lambda a: a)
        if nl.batch_shape not in ((), (1,)):
            raise ValueError(f"levels: expected one layer's levels, got batch shape {nl.batch_shape}")
        self.levels[...] = squeeze(nl.levels).astype(jnp.float32)
        self.thresholds[...] = squeeze(nl.thresholds).astype(jnp.float32)
        self.lo[...] = squeeze(nl.lo).astype(jnp.float32)
        self.hi[...] = squeeze(nl.hi).astype(jnp.float32)
        self.fitted = True

    def _record(self, z) -> None:
        st: CalibrationStats = self.stats.get_value()
        flat = jax.lax.stop_gradient(z).reshape(1, -1).astype(jnp.float32)
        start = jnp.zeros((1,), jnp.float32) if self.activation == "relu" else jnp.min(flat, axis=1)
        top = jnp.max(flat, axis=1)
        span = top - start
        hi = jnp.where(span > 0, top + self.calib_margin * span, start + 1.0)
        # The first batch fixes the range; later batches keep it.
        fresh = st.count <= 0
        lo = jnp.where(fresh, start, st.lo)
        hi = jnp.where(fresh, hi, st.hi)
        st = st.replace(lo=lo, hi=hi, tol=st.boundary_tol * (hi - lo))
        self.stats.set_value(update(st, flat))

    def __call__(self, z):
        """Converts a pre-activation ``z`` (``[..., C]``, columns last)."""
        act = ACTIVATIONS[self.activation]
        if self.mode is QuantMode.FLOAT:
            return act(z)
        if self.mode is QuantMode.CALIBRATE:
            self._record(z)
            return act(z)
        key = self.rngs.adc() if self.adc_cfg.noise_sigma else None
        chip = jax.random.wrap_key_data(self.chip_key[...]) if self.adc_cfg.needs_chip_key else None
        return nl_adc(z, self.nl_levels(), cfg=self.adc_cfg, key=key, chip_key=chip, ste=self.ste)


class _IMCLayer(nnx.Module):
    """Shared plumbing: the conversion module and the mode-dependent path."""

    def _init_common(self, quant: IMCConfig | None, activation: str, learn_levels: bool, rngs: nnx.Rngs):
        if quant is not None and not isinstance(quant, IMCConfig):
            raise ValueError(f"quant: expected an IMCConfig or None, got {type(quant).__name__}")
        self.quant = quant
        cfg = quant or IMCConfig()
        self.adc = NLADCActivation(bits=cfg.adc_bits, activation=activation, adc=cfg.adc, ste=cfg.ste, learn=learn_levels, rngs=rngs)

    def _finish(self, z_float, z_imc):
        """Applies the conversion for the current mode."""
        mode = self.adc.mode
        if mode is QuantMode.FLOAT or self.quant is None:
            return ACTIVATIONS[self.adc.activation](z_float())
        z = z_imc()
        if self.quant.mode == "partial_sum":
            # The conversions happened per tile; the activation is digital.
            if mode is QuantMode.CALIBRATE:
                self.adc._record(z)
            return ACTIVATIONS[self.adc.activation](z)
        return self.adc(z)

    def _psum_keys(self):
        cfg = self.quant.adc
        key = self.adc.rngs.adc() if (self.quant.mode == "partial_sum" and cfg.noise_sigma) else None
        chip = jax.random.wrap_key_data(self.adc.chip_key[...]) if cfg.offset_sigma else None
        return key, chip


class IMCDense(_IMCLayer):
    """A dense layer on crossbars: ``convert(x @ W + b)``.

    Args:
      in_features, out_features: sizes (``out_features`` crossbar columns).
      quant: crossbar config; None keeps the layer digital (float) in every mode.
      activation: ``"relu"`` or ``"identity"``.
      use_bias: add a bias (an always-on analog row in fused mode).
      learn_levels: train the NL-ADC levels.
      rngs: streams ``params``, ``adc``, ``chip``.
    """

    def __init__(self, in_features: int, out_features: int, *, quant: IMCConfig | None = None, activation: str = "relu",
                 use_bias: bool = True, learn_levels: bool = False, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
        self._init_common(quant, activation, learn_levels, rngs)

    def __call__(self, x):
        w = self.kernel[...]
        b = None if self.bias is None else self.bias[...]

        def z_float():
            z = x @ w
            return z if b is None else z + b

        def z_imc():
            key, chip = self._psum_keys()
            return imc_dense(x, w, b, cfg=self.quant, key=key, chip_key=chip)

        return self._finish(z_float, z_imc)


class IMCConv(_IMCLayer):
    """A 2-D convolution on crossbars (NHWC), kernel-wise mapped: ``convert(conv(x, W) + b)``.

    Args:
      in_features, out_features: channels.
      kernel_size: ``(kh, kw)``; strides; padding: as in `jax.lax.conv_general_dilated`.
      quant, activation, use_bias, learn_levels, rngs: as in `IMCDense`.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size=(3, 3), *, strides=(1, 1), padding="SAME",
                 quant: IMCConfig | None = None, activation: str = "relu", use_bias: bool = True,
                 learn_levels: bool = False, rngs: nnx.Rngs):
        kh, kw = kernel_size
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (kh, kw, in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
        self.strides = tuple(strides)
        self.padding = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
        self._init_common(quant, activation, learn_levels, rngs)

    def __call__(self, x):
        w = self.kernel[...]
        b = None if self.bias is None else self.bias[...]

        def z_float():
            z = jax.lax.conv_general_dilated(x, w, self.strides, self.padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return z if b is None else z + b

        def z_imc():
            key, chip = self._psum_keys()
            return imc_conv(x, w, b, strides=self.strides, padding=self.padding, cfg=self.quant, key=key, chip_key=chip)

        return self._finish(z_float, z_imc)
