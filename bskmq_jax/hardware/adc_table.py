"""The NL-ADC comparison: every ADC form at each bit width and sharing factor,
and the area ratio of the in-memory NL-ADC against each prior NL form.

The ratio is taken per column at one ADC per column (sharing 1), the
operating point of column-parallel ramp ADCs; the table also lists other
sharing factors, where a shared ADC's area is divided over its columns
but each column waits ``sharing`` conversions.
"""

from __future__ import annotations

import numpy as np

from bskmq_jax.hardware.adc import ADC_KINDS, PRIOR_NL_KINDS, AdcParams, adc_breakdown, adc_cost, check_bits, check_kind
from bskmq_jax.hardware.crossbar import SRAM_CELL, CellConfig, DriverConfig
from bskmq_jax.hardware.digital import DigitalConfig
from bskmq_jax.hardware.technology import TechConfig

SEED_AREA_RATIO = 7.0  # "7x better area than prior NL-ADCs" (seed abstract)


def adc_rows(bits_list, sharings, *, cols: int = 128, rows: int = 128, kinds=ADC_KINDS, params: AdcParams = AdcParams(),
             cell: CellConfig = SRAM_CELL, driver: DriverConfig = DriverConfig(), digital: DigitalConfig = DigitalConfig(),
             tech: TechConfig = TechConfig()) -> list[dict]:
    """One row per (form, bits, sharing) for a ``rows x cols`` array.

    Each row: ``area_per_adc_um2`` (with its share of per-array parts),
    ``area_per_column_um2``, ``energy_fj`` per conversion, ``time_ns`` per
    conversion, ``array_time_ns`` to convert all columns (``sharing`` x
    time), ``comparators`` per ADC.
    """
    out = []
    for kind in kinds:
        check_kind(kind)
        for bits in bits_list:
            check_bits(bits, "--bits")
            for s in sharings:
                if not 1 <= s <= cols:
                    raise ValueError(f"--sharing: {s} is outside 1..{cols} (columns per ADC)")
                n_adc = int(np.ceil(cols / s))
                c = adc_cost(kind, bits, adcs_per_array=n_adc, rows=rows, params=params, cell=cell, driver=driver,
                             digital=digital, tech=tech)
                area = float(c.area) / 1e-12
                out.append({
                    "adc": kind, "bits": int(bits), "sharing": int(s),
                    "area_per_adc_um2": area, "area_per_column_um2": area * n_adc / cols,
                    "energy_fj": float(c.energy) / 1e-15, "time_ns": float(c.time) / 1e-9,
                    "array_time_ns": s * float(c.time) / 1e-9, "comparators": int(c.comparators),
                })
    return out


def nl_area_ratios(bits_list, *, cols: int = 128, rows: int = 128, params: AdcParams = AdcParams(),
                   cell: CellConfig = SRAM_CELL, driver: DriverConfig = DriverConfig(),
                   digital: DigitalConfig = DigitalConfig(), tech: TechConfig = TechConfig()) -> list[dict]:
    """Area of each prior NL-ADC over the in-memory NL-ADC's, per column, one ADC per column.

    Each row names the largest area part of both ADCs (what drives the
    ratio) and carries the seed's claim beside the modelled ratio.
    """
    kw = dict(adcs_per_array=cols, rows=rows, params=params, cell=cell, driver=driver, digital=digital, tech=tech)
    out = []
    for bits in bits_list:
        ours = adc_breakdown("nl_inmem", bits, **kw)
        a_ours = sum(ours["area"].values())
        for prior in PRIOR_NL_KINDS:
            theirs = adc_breakdown(prior, bits, **kw)
            a_prior = sum(theirs["area"].values())
            out.append({
                "bits": int(bits), "prior": prior,
                "nl_inmem_area_um2": a_ours / 1e-12, "prior_area_um2": a_prior / 1e-12,
                "ratio": a_prior / a_ours, "seed_ratio": SEED_AREA_RATIO,
                "prior_parts_um2": {k: v / 1e-12 for k, v in theirs["area"].items()},
                "nl_inmem_parts_um2": {k: v / 1e-12 for k, v in ours["area"].items()},
                "driver": explain(prior, theirs["area"], ours["area"]),
            })
    return out


def explain(prior: str, prior_parts: dict, ours_parts: dict) -> str:
    """One sentence on what drives the area ratio of ``prior`` over the in-memory NL-ADC."""
    top_p = max(prior_parts, key=prior_parts.get)
    top_o = max(ours_parts, key=ours_parts.get)
    share_p = prior_parts[top_p] / sum(prior_parts.values())
    share_o = ours_parts[top_o] / sum(ours_parts.values())
    why = {
        "nl_sar_lut": "a SAR at b + extra bits plus a 2**(b+extra) x b register LUT per ADC",
        "nl_flash": "2**b - 1 comparators, each with its own programmable reference DAC, plus the encoder",
        "nl_mem_ramp": "the same comparator + counter per column; only the ramp column differs and it is shared by the array",
    }[prior]
    return (f"{prior}: {why}; its largest part is the {top_p} ({100 * share_p:.0f}%), "
            f"against the {top_o} ({100 * share_o:.0f}%) of nl_inmem")
