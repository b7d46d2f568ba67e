"""The in-memory ramp NL-ADC: conversion with non-idealities, and its gradients."""

from bskmq_jax.adc.config import ADCConfig, STEConfig
from bskmq_jax.adc.nl_adc import chip_thresholds, column_offsets, linear_adc, nl_adc
from bskmq_jax.adc.noise import hash_normal
from bskmq_jax.adc.ste import quantize_ste

__all__ = [
    "ADCConfig",
    "STEConfig",
    "chip_thresholds",
    "column_offsets",
    "hash_normal",
    "linear_adc",
    "nl_adc",
    "quantize_ste",
]
