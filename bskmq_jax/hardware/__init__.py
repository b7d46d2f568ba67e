"""Hardware cost and system model of in-memory-computing accelerators with NL-ADCs.

Pure numpy functions of frozen configs (no JAX), so a whole design grid is
one broadcast evaluation. Every config field states its unit and the source
of its default; formulas and sources are collected in docs/hardware_model.md.

- `technology`: node, supply voltage, units and scaling rules.
- `crossbar`: SRAM/RRAM cells and row DACs.
- `digital`: counters, registers, adders, shift-add, buffers, interconnect.
- `adc`: every ADC form (linear SAR/flash/ramp; in-memory NL-ADC; prior NL forms).
- `adc_table`: the NL-ADC comparison and area ratios.
- `system`: `LayerShape`, `ChipConfig`, layer-by-layer mapping (`evaluate`, `evaluate_grid`).
- `networks`: layer shape tables (ResNet-18 at 224 x 224).
- `baselines`: ISAAC-like, NeuroSim-like and same-chip-linear baselines and ratios.
- `sweep`: design-space sweeps, Pareto fronts, PTQ accuracy input.
- `accuracy`: PTQ results as accuracy input; the linear bits that match the NL-ADC's accuracy.
- `plots`: figures (imports matplotlib).
"""

from bskmq_jax.hardware.accuracy import MatchConfig, linear_bits_for_accuracy, resolve_linear_bits
from bskmq_jax.hardware.adc import (
    ADC_KINDS,
    ISAAC_SAR,
    LINEAR_KINDS,
    NONLINEAR_KINDS,
    PRIOR_NL_KINDS,
    AdcConfig,
    AdcCost,
    AdcParams,
    SarParams,
    adc_breakdown,
    adc_cost,
    required_linear_bits,
)
from bskmq_jax.hardware.adc_table import adc_rows, nl_area_ratios
from bskmq_jax.hardware.baselines import SEED_CLAIMS, build_chips, compare, compare_chips, isaac_like, neurosim_like, same_chip_linear
from bskmq_jax.hardware.crossbar import RRAM_CELL, SRAM_CELL, CellConfig, DriverConfig, cell_preset
from bskmq_jax.hardware.digital import DigitalConfig
from bskmq_jax.hardware.networks import network_shapes, resnet18_imagenet_shapes
from bskmq_jax.hardware.sweep import design_grid, load_accuracy, pareto_mask, run_sweep
from bskmq_jax.hardware.system import ChipConfig, LayerShape, SystemResult, evaluate, evaluate_grid
from bskmq_jax.hardware.technology import TechConfig

__all__ = [
    "ADC_KINDS",
    "ISAAC_SAR",
    "LINEAR_KINDS",
    "NONLINEAR_KINDS",
    "PRIOR_NL_KINDS",
    "RRAM_CELL",
    "SEED_CLAIMS",
    "SRAM_CELL",
    "AdcConfig",
    "AdcCost",
    "AdcParams",
    "CellConfig",
    "ChipConfig",
    "DigitalConfig",
    "DriverConfig",
    "LayerShape",
    "MatchConfig",
    "SarParams",
    "SystemResult",
    "TechConfig",
    "adc_breakdown",
    "adc_cost",
    "adc_rows",
    "build_chips",
    "cell_preset",
    "compare",
    "compare_chips",
    "design_grid",
    "evaluate",
    "evaluate_grid",
    "isaac_like",
    "linear_bits_for_accuracy",
    "load_accuracy",
    "nl_area_ratios",
    "network_shapes",
    "neurosim_like",
    "pareto_mask",
    "required_linear_bits",
    "resnet18_imagenet_shapes",
    "resolve_linear_bits",
    "run_sweep",
    "same_chip_linear",
]
