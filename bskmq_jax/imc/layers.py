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

With ``record_quantized`` set on an `NLADCActivation`, ``QUANTIZED`` mode
also adds the values it converts to the statistics: the running statistics
of the quantized network that level refits during fine-tuning use.

The calibration seam is the statistics variable: one forward pass per batch in
`CALIBRATE` mode (under `nnx.jit`) updates every layer's statistics in place,
in memory independent of the number of batches; `collect_stats` returns them
keyed by the layer's dotted name (e.g. ``"layer1.0.conv2"``).
"""

from __future__ import annotations

import contextlib
import enum

import jax
import jax.numpy as jnp
from flax import nnx

from bskmq_jax.adc.config import ADCConfig, STEConfig
from bskmq_jax.adc.nl_adc import nl_adc
from bskmq_jax.imc.config import IMCConfig
import dataclasses

from bskmq_jax.imc.crossbar import imc_conv, imc_dense
from bskmq_jax.imc.quant import quantize_inputs
from bskmq_jax.levels import NLLevels
from bskmq_jax.stats import CalibrationStats, init_stats, update

__all__ = [
    "QuantMode",
    "ADCLevels",
    "CalibStats",
    "NLADCActivation",
    "IMCDense",
    "IMCConv",
    "IMCMatmul",
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


#: Activations an NL-ADC folds into its conversion. The ADC converts the
#: pre-activation and outputs ``act(level)`` through its code-to-value table;
#: a ReLU's range starts at 0 (so the table is the identity), any other
#: activation's range at the calibration minimum. GELU is the exact (erf) form,
#: as in BERT and DistilBERT.
ACTIVATIONS = {
    "relu": jax.nn.relu,
    "identity": lambda x: x,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "tanh": jnp.tanh,
}


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
        # QUANTIZED mode also adds the converted values to the statistics
        # (running statistics while fine-tuning; see bskmq_jax.finetune).
        self.record_quantized = False
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
        """Programs fitted levels (batch shape ``()`` or ``(1,)``).

        The in-memory NL-ADC is reconfigurable, so levels of another bit
        width reprogram its resolution (a jitted forward retraces once for a
        new width).
        """
        squeeze = (lambda a: a.reshape(a.shape[1:])) if nl.batch_shape == (1,) else (lambda a: a)
        if nl.batch_shape not in ((), (1,)):
            raise ValueError(f"levels: expected one layer's levels, got batch shape {nl.batch_shape}")
        self.bits = nl.bits
        self.levels.set_value(squeeze(nl.levels).astype(jnp.float32))
        self.thresholds.set_value(squeeze(nl.thresholds).astype(jnp.float32))
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
        if self.record_quantized:
            self._record(z)
        key = self.rngs.adc() if self.adc_cfg.noise_sigma else None
        chip = jax.random.wrap_key_data(self.chip_key[...]) if self.adc_cfg.needs_chip_key else None
        out = nl_adc(z, self.nl_levels(), cfg=self.adc_cfg, key=key, chip_key=chip, ste=self.ste)
        return out if self.activation == "relu" else act(out)


# While `record_shapes` is active, every IMC layer call appends
# (layer, fan_in, output shape) here; used to read real layer shapes off a
# model (e.g. for the hardware model) with an abstract trace.
_SHAPE_LOG: list | None = None


@contextlib.contextmanager
def record_shapes():
    """Collects ``(layer, fan_in, output_shape)`` for every IMC layer call inside."""
    global _SHAPE_LOG
    prev, _SHAPE_LOG = _SHAPE_LOG, []
    try:
        yield _SHAPE_LOG
    finally:
        _SHAPE_LOG = prev


class _IMCLayer(nnx.Module):
    """Shared plumbing: the conversion module and the mode-dependent path."""

    def _init_common(self, quant: IMCConfig | None, activation: str, learn_levels: bool, rngs: nnx.Rngs,
                     bn_features: int | None = None, bn_eps: float = 1e-5, bn_momentum: float = 0.9):
        if quant is not None and not isinstance(quant, IMCConfig):
            raise ValueError(f"quant: expected an IMCConfig or None, got {type(quant).__name__}")
        self.quant = quant
        cfg = quant or IMCConfig()
        self.adc = NLADCActivation(bits=cfg.adc_bits, activation=activation, adc=cfg.adc, ste=cfg.ste, learn=learn_levels, rngs=rngs)
        # A BatchNorm after the product (conv -> BN -> act). In float mode it runs
        # as usual (batch statistics when training); on the crossbar it is
        # folded into the weights and bias with its running statistics, as a
        # deployed chip stores it.
        self.bn = nnx.BatchNorm(bn_features, epsilon=bn_eps, momentum=bn_momentum, rngs=rngs) if bn_features else None

    def _folded(self, w, b):
        """Weights and bias with the BatchNorm folded in (running statistics)."""
        if self.bn is None:
            return w, b
        bn = self.bn
        s = bn.scale[...] * jax.lax.rsqrt(bn.var[...] + bn.epsilon)
        b0 = jnp.zeros_like(bn.mean[...]) if b is None else b
        return w * s, (b0 - bn.mean[...]) * s + bn.bias[...]

    def _post(self, z):
        """Float-path BatchNorm."""
        return z if self.bn is None else self.bn(z)

    def _finish(self, z_float, z_imc, fan_in: int | None = None):
        """Applies the conversion for the current mode."""
        if _SHAPE_LOG is not None:
            _SHAPE_LOG.append((self, fan_in, tuple(jax.eval_shape(z_float).shape)))
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
      activation: ``"relu"``, ``"identity"``, ``"gelu"`` or ``"tanh"``.
      use_bias: add a bias (an always-on analog row in fused mode).
      learn_levels: train the NL-ADC levels.
      use_bn: a BatchNorm after the product (``bn_eps``; ``bn_momentum`` in
        Flax's convention, 1 - PyTorch's), folded into the crossbar weights.
      rngs: streams ``params``, ``adc``, ``chip``.
    """

    def __init__(self, in_features: int, out_features: int, *, quant: IMCConfig | None = None, activation: str = "relu",
                 use_bias: bool = True, learn_levels: bool = False, use_bn: bool = False, bn_eps: float = 1e-5,
                 bn_momentum: float = 0.9, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
        self._init_common(quant, activation, learn_levels, rngs, out_features if use_bn else None, bn_eps, bn_momentum)

    def __call__(self, x):
        w = self.kernel[...]
        b = None if self.bias is None else self.bias[...]

        def z_float():
            z = x @ w
            return self._post(z if b is None else z + b)

        def z_imc():
            key, chip = self._psum_keys()
            wf, bf = self._folded(w, b)
            return imc_dense(x, wf, bf, cfg=self.quant, key=key, chip_key=chip)

        return self._finish(z_float, z_imc, w.shape[0])


class IMCConv(_IMCLayer):
    """A 2-D convolution on crossbars (NHWC), kernel-wise mapped: ``convert(conv(x, W) + b)``.

    Args:
      in_features, out_features: channels.
      kernel_size: ``(kh, kw)``; strides; padding: as in `jax.lax.conv_general_dilated`.
      quant, activation, use_bias, learn_levels, use_bn, bn_eps, bn_momentum, rngs: as in `IMCDense`.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size=(3, 3), *, strides=(1, 1), padding="SAME",
                 quant: IMCConfig | None = None, activation: str = "relu", use_bias: bool = True,
                 learn_levels: bool = False, use_bn: bool = False, bn_eps: float = 1e-5, bn_momentum: float = 0.9,
                 rngs: nnx.Rngs):
        kh, kw = kernel_size
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (kh, kw, in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
        self.strides = tuple(strides)
        self.padding = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
        self._init_common(quant, activation, learn_levels, rngs, out_features if use_bn else None, bn_eps, bn_momentum)

    def __call__(self, x):
        w = self.kernel[...]
        b = None if self.bias is None else self.bias[...]

        def z_float():
            z = jax.lax.conv_general_dilated(x, w, self.strides, self.padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return self._post(z if b is None else z + b)

        def z_imc():
            key, chip = self._psum_keys()
            wf, bf = self._folded(w, b)
            return imc_conv(x, wf, bf, strides=self.strides, padding=self.padding, cfg=self.quant, key=key, chip_key=chip)

        return self._finish(z_float, z_imc, w.shape[0] * w.shape[1] * w.shape[2])


class IMCMatmul(_IMCLayer):
    """A product of two activations on a crossbar: ``convert(a @ b)``.

    For attention's score (``Q K^T``) and context (``P V``) products: ``b`` is
    written into the array at ``w_bits`` and ``a`` applied by the DAC at
    ``in_bits``, both with per-tensor symmetric scales (``a`` unsigned when
    ``input_signed=False``, e.g. softmax probabilities). These products are
    always converted once per output (``fused``): a ``partial_sum`` config is
    applied in fused mode, because per-tile conversion of dynamically written
    operands is not modelled.

    Args:
      quant: crossbar config, or None for a digital product.
      activation: conversion activation (default ``"identity"``).
      learn_levels, rngs: as in `IMCDense`.
    """

    def __init__(self, *, quant: IMCConfig | None = None, activation: str = "identity", learn_levels: bool = False,
                 rngs: nnx.Rngs):
        if quant is not None and quant.mode != "fused":
            quant = dataclasses.replace(quant, mode="fused")
        self._init_common(quant, activation, learn_levels, rngs)

    def __call__(self, a, b):
        """``a: [..., M, K]``, ``b: [..., K, N]`` -> ``[..., M, N]``."""

        def z_float():
            return a @ b

        def z_imc():
            q = self.quant
            a_int, sa = quantize_inputs(a, q.in_bits, q.input_signed)
            b_int, sb = quantize_inputs(b, max(q.w_bits, 2), True)
            return (a_int @ b_int) * (sa * sb)

        return self._finish(z_float, z_imc, a.shape[-1])
