"""Crossbar (in-memory computing) simulation: config, quantization, tiled products."""

from bskmq_jax.imc.config import IMCConfig
from bskmq_jax.imc.control import collect_stats, get_levels, get_mode, imc_layers, load_levels, reset_stats, set_chip, set_mode
from bskmq_jax.imc.crossbar import conv_channels_per_tile, imc_conv, imc_dense, psum_adc_range
from bskmq_jax.imc.layers import ACTIVATIONS, ADCLevels, CalibStats, IMCConv, IMCDense, IMCMatmul, NLADCActivation, QuantMode
from bskmq_jax.imc.quant import bit_planes, quantize_inputs, quantize_weights, round_ste, weight_slices

__all__ = [
    "ADCLevels",
    "CalibStats",
    "IMCConfig",
    "IMCConv",
    "IMCDense",
    "IMCMatmul",
    "NLADCActivation",
    "ACTIVATIONS",
    "QuantMode",
    "collect_stats",
    "get_levels",
    "get_mode",
    "imc_layers",
    "load_levels",
    "psum_adc_range",
    "reset_stats",
    "set_chip",
    "set_mode",
    "bit_planes",
    "conv_channels_per_tile",
    "imc_conv",
    "imc_dense",
    "quantize_inputs",
    "quantize_weights",
    "round_ste",
    "weight_slices",
]
