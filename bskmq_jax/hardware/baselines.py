"""The chips the seed's NL-ADC accelerator is compared against, and the ratios.

All chips share the cell technology, node and component figures of the
design under study, so the comparison isolates ADC form, precision and
dataflow. Every ratio is reported with its baseline named beside it.

- **ISAAC-like** (ISCA 2016): 128 x 128 arrays, 1-bit DACs (bit-serial
  inputs), one 8-bit SAR per array (128 columns per ADC) with ISAAC's own
  energy, area and 1.28 GS/s speed (`ISAAC_SAR`), partial sums shift-added
  digitally.
- **NeuroSim-like** (DNN+NeuroSim V1.4 defaults): 128 x 128 arrays,
  bit-serial inputs, a NeuroSim SAR shared by 8 columns, partial sums, at the
  linear bit width that linear quantization needs for the accuracy of the
  NL-ADC (from PTQ results when they exist; until then a flag, default 6).
- **Same chip, linear ADC**: the design under study with its NL-ADC
  replaced by a linear ADC (default SAR) at equal bits. An in-memory ramp
  with uniform references costs exactly what the NL one costs, so a ramp
  here would give a ratio of 1: the NL gain at equal bits is accuracy only.
"""

from __future__ import annotations

import dataclasses

from bskmq_jax.hardware.adc import ISAAC_SAR, LINEAR_KINDS, AdcConfig, check_bits
from bskmq_jax.hardware.system import ChipConfig, SystemResult, evaluate

SEED_CLAIMS = {
    "speedup": 4.0,  # "up to 4x speedup" (seed abstract, ResNet-18 at 6/2/3b)
    "energy_efficiency": 24.0,  # "24x energy efficiency" (same)
    "nl_adc_area": 7.0,  # "7x better area than prior NL-ADCs" (same)
}


def parse_config(text: str) -> tuple[int, int, int]:
    """Parses ``"6/2/3"`` (input/weight/ADC bits) into ints, or raises ValueError."""
    parts = text.split("/")
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 3:
        raise ValueError(f"--config: expected input/weight/ADC bits like 6/2/3, got {text!r}")
    i, w, a = vals
    for name, v in (("input bits", i), ("weight bits", w)):
        if not 1 <= v <= 16:
            raise ValueError(f"--config: {name} {v} is outside 1..16")
    check_bits(a, "--config: ADC bits")
    return vals


def isaac_like(base: ChipConfig) -> ChipConfig:
    """ISAAC's choices (8-b SAR per 128 columns, bit-serial, partial sums) on ``base``'s cells and node."""
    return dataclasses.replace(
        base,
        name="ISAAC-like (8-b SAR, 128 col/ADC)",
        rows=128,
        cols=128,
        dac_bits=1,
        accumulation="partial_sum",
        adc=AdcConfig(kind="sar", bits=8, sharing=128, params=dataclasses.replace(base.adc.params, sar=ISAAC_SAR)),
    )


def neurosim_like(base: ChipConfig, linear_bits: int) -> ChipConfig:
    """NeuroSim's defaults (SAR per 8 columns, bit-serial, partial sums) at ``linear_bits``."""
    check_bits(linear_bits, "--linear-bits")
    return dataclasses.replace(
        base,
        name=f"NeuroSim-like ({linear_bits}-b SAR, 8 col/ADC)",
        rows=128,
        cols=128,
        dac_bits=1,
        accumulation="partial_sum",
        adc=AdcConfig(kind="sar", bits=linear_bits, sharing=8, params=base.adc.params),
    )


def same_chip_linear(chip: ChipConfig, kind: str = "sar") -> ChipConfig:
    """``chip`` with its ADC replaced by the linear form ``kind`` at equal bits and sharing."""
    if kind not in LINEAR_KINDS:
        raise ValueError(f"--linear-adc: {kind!r} is not a linear ADC; choose one of {', '.join(LINEAR_KINDS)}")
    return dataclasses.replace(
        chip,
        name=f"same chip, linear {kind} ({chip.adc.bits} b)",
        adc=dataclasses.replace(chip.adc, kind=kind),
    )


def compare(chip_result: SystemResult, baseline_results: dict[str, SystemResult]) -> list[dict]:
    """Speedup, energy-efficiency and area ratios of the chip over each baseline.

    ``speedup = latency_baseline / latency_chip``; ``energy_efficiency =
    energy_baseline / energy_chip`` (equal to the TOPS/W ratio: same MACs);
    ``tops_per_mm2_ratio`` compares compute density.
    """
    c = chip_result.totals
    rows = []
    for key, res in baseline_results.items():
        b = res.totals
        rows.append(
            {
                "baseline": key,
                "baseline_name": res.chip.name,
                "speedup": b["latency_s"] / c["latency_s"],
                "energy_efficiency": b["energy_j"] / c["energy_j"],
                "tops_per_mm2_ratio": c["tops_per_mm2"] / b["tops_per_mm2"],
                "area_ratio": b["area_m2"] / c["area_m2"],
                "seed_speedup": SEED_CLAIMS["speedup"],
                "seed_energy_efficiency": SEED_CLAIMS["energy_efficiency"],
            }
        )
    return rows


def build_chips(chip: ChipConfig, names, linear_bits: int = 6, linear_adc: str = "sar") -> dict[str, ChipConfig]:
    """The baseline chips named in ``names`` ("isaac", "neurosim", "same_chip")."""
    makers = {
        "isaac": lambda: isaac_like(chip),
        "neurosim": lambda: neurosim_like(chip, linear_bits),
        "same_chip": lambda: same_chip_linear(chip, linear_adc),
    }
    out = {}
    for n in names:
        if n not in makers:
            raise ValueError(f"--baseline: unknown baseline {n!r}; known: {', '.join(makers)}")
        out[n] = makers[n]()
    return out


def compare_chips(chip: ChipConfig, baselines: dict[str, ChipConfig], layers) -> tuple[SystemResult, dict, list[dict]]:
    """Evaluates the chip and every baseline on ``layers``; returns results and ratios."""
    layers = list(layers)
    res = evaluate(chip, layers)
    base = {k: evaluate(c, layers) for k, c in baselines.items()}
    return res, base, compare(res, base)
