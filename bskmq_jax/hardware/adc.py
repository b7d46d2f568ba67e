"""ADC models: area, energy per conversion and conversion time of every ADC form.

Linear forms:

- ``sar``: successive approximation. Energy from a Walden figure of merit,
  ``E = FOM * 2**b`` (or a Schreier one, see `sar_energy`); area
  ``a0 + a1 * b`` fitted to NeuroSim's SAR areas; ``b + 1`` cycles.
- ``flash``: ``2**b - 1`` comparators (NeuroSim's sense amplifier per level)
  and a thermometer-to-binary encoder of ``2**b - 1 - b`` full adders (a
  population count of ``n`` bits needs ``n - popcount(n)`` full adders;
  ``popcount(2**b - 1) = b``). One comparator decision.
- ``ramp``: single-slope: per column a comparator and a ``b``-bit counter;
  one ``b``-bit DAC ramp generator per array. ``2**b`` steps.

Nonlinear (NL) forms:

- ``nl_inmem`` (the seed's): the ramp comes from reference cells inside the
  array, one extra column of the array's own cells (``2**b`` ramp cells plus
  ``calibration_cells``), driven through the array's existing row drivers,
  one step per row; per column a comparator and a counter. ``2**b`` steps.
- ``nl_sar_lut`` (prior): a linear SAR at ``r = b + lut_extra_bits`` bits and
  a ``2**r x b``-bit register look-up table mapping its code to the NL code.
- ``nl_flash`` (prior): ``2**b - 1`` comparators, each with a programmable
  reference (an ``r``-bit DAC, set once per layer, so only its area counts),
  plus the encoder.
- ``nl_mem_ramp`` (prior, Nature Comms 2025): a separate memristor ramp
  column of ``2**b + calibration_cells`` 1T1R cells with its own row drivers
  and a shift register to step them; per column a comparator and a counter.

Shared parts (ramp generators, reference columns, a shared counter) are
divided over the ``adcs_per_array`` ADCs of one array. No per-conversion
energy or area of the seed's NL-ADC is public: ``nl_inmem`` is built from
the component figures above, and so is every other form.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from bskmq_jax.hardware.crossbar import RRAM_CELL, SRAM_CELL, CellConfig, DriverConfig, cell_area, cell_read_energy, dac_area, dac_energy
from bskmq_jax.hardware.digital import DigitalConfig, digital_figures
from bskmq_jax.hardware.technology import FJ, NS, UM2, TechConfig

MAX_BITS = 8  # ADC bits accepted, 1..8 (the same bound as bskmq_jax.levels.MAX_BITS)
ADC_KINDS = ("sar", "flash", "ramp", "nl_inmem", "nl_sar_lut", "nl_flash", "nl_mem_ramp")
LINEAR_KINDS = ADC_KINDS[:3]
NONLINEAR_KINDS = ADC_KINDS[3:]
PRIOR_NL_KINDS = ("nl_sar_lut", "nl_flash", "nl_mem_ramp")
RAMP_KINDS = ("ramp", "nl_inmem", "nl_mem_ramp")
COUNTER_MODES = ("per_column", "shared")


def check_kind(kind: str) -> str:
    """Returns ``kind`` if it is a known ADC form, else raises ValueError listing them."""
    if kind not in ADC_KINDS:
        raise ValueError(f"adc kind: unknown ADC type {kind!r}; known: {', '.join(ADC_KINDS)}")
    return kind


def check_bits(bits, name: str = "bits") -> int:
    """Returns ``bits`` as an int in 1..MAX_BITS, else raises ValueError naming ``name``."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= int(bits) <= MAX_BITS:
        raise ValueError(f"{name}: {bits!r} is outside 1..{MAX_BITS}")
    return int(bits)


def kind_code(kind) -> int:
    """Index of an ADC form in `ADC_KINDS` (the code vectorised models use)."""
    return ADC_KINDS.index(check_kind(kind))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SarParams:
    """SAR ADC model parameters (defaults: NeuroSim's SAR at 22 nm)."""

    energy_model: str = "walden"  # "walden": E = FOM * 2**b; "schreier": E = 10**((6.02b+1.76-FOM_S)/10) / 2
    walden_fom_fj: float = 1.3125  # fJ per conversion step at fom_node_nm; derived: NeuroSim SarADC 5 b at 22 nm, 42 fJ / 2**5
    fom_node_nm: float = 22.0  # node of walden_fom_fj (nm)
    schreier_fom_db: float = 186.7  # dB; Murmann ADC survey envelope below ~51 MHz (node-independent)
    area_offset_um2: float = 31.1  # um^2; derived: least-squares a0 of a0 + a1*b on NeuroSim SAR 87/124/180 um^2 at 3/5/8 b
    area_per_bit_um2: float = 18.6  # um^2 per bit; same fit (residuals below 0.2 um^2)
    area_node_nm: float = 22.0  # node of the area fit (nm)
    cycle_ns: float = 1.0  # ns per SAR cycle (b + 1 cycles); derived: NeuroSim SarADC latency (b+1) ns at 22 nm

    def __post_init__(self):
        if self.energy_model not in ("walden", "schreier"):
            raise ValueError(f"energy_model: {self.energy_model!r} must be 'walden' or 'schreier'")
        for name in ("walden_fom_fj", "fom_node_nm", "schreier_fom_db", "area_offset_um2", "area_per_bit_um2", "area_node_nm", "cycle_ns"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name}: {v!r} must be > 0")


# ISAAC's 8-bit SAR (ISCA 2016 Table I, 32 nm): 2 mW at 1.28 GS/s -> 1.5625 pJ per
# conversion = 6.10 fJ per step (derived); 1200 um^2 at 8 b, the NeuroSim per-bit
# area fit rescaled to hit it (x6.67, derived); 1/1.28 GS/s over 9 cycles.
_ISAAC_AREA_SCALE = 1200.0 / (31.1 + 18.6 * 8)
ISAAC_SAR = SarParams(
    walden_fom_fj=1562.5 / 256,
    fom_node_nm=32.0,
    area_offset_um2=31.1 * _ISAAC_AREA_SCALE,
    area_per_bit_um2=18.6 * _ISAAC_AREA_SCALE,
    area_node_nm=32.0,
    cycle_ns=1.0 / 1.28 / 9,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdcParams:
    """Component figures and design choices shared by the ADC forms."""

    comparator_energy_fj: float = 1.9  # fJ per decision at 22 nm; derived: NeuroSim MultilevelSenseAmp, per level per column
    comparator_area_um2: float = 0.93  # um^2 at 22 nm; same derivation
    comparator_node_nm: float = 22.0  # node of the comparator figures (nm)
    comparator_time_ns: float = 1.0  # ns per decision (flash); = one NeuroSim SAR cycle (derived)
    ramp_step_ns: float = 1.0  # ns per ramp step; assumption: one reference settle + decision, as a SAR cycle
    calibration_cells: int = 5  # bias/calibration cells beside the 2**b ramp cells; Nature Comms 2025 Fig. 3 (32 + 5 at 5 b)
    lut_extra_bits: int = 2  # r = b + this for SAR+LUT and NL-flash references; derived: measured, docs/hardware_model.md
    counter: str = "per_column"  # "per_column": a b-bit counter per ramp ADC; "shared": one per array + a b-bit latch per ADC
    sar: SarParams = SarParams()  # SAR model (also used inside nl_sar_lut)

    def __post_init__(self):
        for name in ("comparator_energy_fj", "comparator_area_um2", "comparator_node_nm", "comparator_time_ns", "ramp_step_ns"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name}: {v!r} must be > 0")
        if isinstance(self.calibration_cells, bool) or not isinstance(self.calibration_cells, int) or self.calibration_cells < 0:
            raise ValueError(f"calibration_cells: {self.calibration_cells!r} must be an int >= 0")
        if isinstance(self.lut_extra_bits, bool) or not isinstance(self.lut_extra_bits, int) or not 0 <= self.lut_extra_bits <= 4:
            raise ValueError(f"lut_extra_bits: {self.lut_extra_bits!r} must be an int in 0..4")
        if self.counter not in COUNTER_MODES:
            raise ValueError(f"counter: {self.counter!r} must be one of {', '.join(COUNTER_MODES)}")
        if not isinstance(self.sar, SarParams):
            raise ValueError(f"sar: expected SarParams, got {type(self.sar).__name__}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdcConfig:
    """The ADC of a design: form, bits and column sharing."""

    kind: str = "nl_inmem"  # ADC form, one of ADC_KINDS
    bits: int = 3  # output bits, 1..8; the seed's 6/2/3b uses 3
    sharing: int = 1  # columns per ADC (a column mux time-shares it); NeuroSim default 8, ISAAC 128
    params: AdcParams = AdcParams()  # component figures

    def __post_init__(self):
        check_kind(self.kind)
        check_bits(self.bits, "bits")
        if isinstance(self.sharing, bool) or not isinstance(self.sharing, (int, np.integer)) or self.sharing < 1:
            raise ValueError(f"sharing: {self.sharing!r} must be an int >= 1 (columns per ADC)")
        if not isinstance(self.params, AdcParams):
            raise ValueError(f"params: expected AdcParams, got {type(self.params).__name__}")

    @property
    def nonlinear(self) -> bool:
        """True for the NL forms (they fold the activation into the conversion)."""
        return self.kind in NONLINEAR_KINDS


class AdcCost(NamedTuple):
    """Cost of one ADC instance; arrays broadcast over the inputs of `adc_cost`."""

    area: np.ndarray  # m^2 per ADC, with its share of per-array parts
    energy: np.ndarray  # J per conversion, with its share of per-array parts
    time: np.ndarray  # s per conversion
    comparators: np.ndarray  # comparators per ADC


def sar_energy(bits, sar: SarParams, tech: TechConfig):
    """SAR energy per conversion (J).

    Walden: ``FOM * 2**b``, FOM scaled from ``fom_node_nm`` by the ADC rule.
    Schreier: ``P / fs`` with ``FOM_S = SNDR + 10 log10(BW / P)``, Nyquist
    ``BW = fs / 2`` and ideal ``SNDR = 6.02 b + 1.76`` dB.
    """
    b = np.asarray(bits, dtype=np.float64)
    if sar.energy_model == "walden":
        return tech.adc_energy(sar.walden_fom_fj * FJ, sar.fom_node_nm) * 2.0**b
    return 0.5 * 10.0 ** ((6.02 * b + 1.76 - sar.schreier_fom_db) / 10.0)


def sar_area(bits, sar: SarParams, tech: TechConfig):
    """SAR area (m^2): ``a0 + a1 * b`` at ``area_node_nm``, scaled to the node."""
    b = np.asarray(bits, dtype=np.float64)
    return tech.area((sar.area_offset_um2 + sar.area_per_bit_um2 * b) * UM2, sar.area_node_nm)


def sar_time(bits, sar: SarParams):
    """SAR conversion time (s): ``(b + 1)`` cycles."""
    return (np.asarray(bits, dtype=np.float64) + 1.0) * sar.cycle_ns * NS


def _forms(b, n, rows, p: AdcParams, cell, driver, digital, tech) -> dict:
    """Per form: ``(area parts, energy parts, time, comparators)``; parts are dicts of arrays."""
    levels = 2.0**b
    r = b + p.lut_extra_bits
    d = digital_figures(digital, tech)
    cmp_e = tech.adc_energy(p.comparator_energy_fj * FJ, p.comparator_node_nm)
    cmp_a = tech.area(p.comparator_area_um2 * UM2, p.comparator_node_nm)
    t_cmp, t_step = p.comparator_time_ns * NS, p.ramp_step_ns * NS
    if p.counter == "per_column":
        cnt_e, cnt_a = levels * b * d.counter_bit_e, b * d.counter_bit_a
    else:
        cnt_e = b * d.register_bit_e + levels * b * d.counter_bit_e / n
        cnt_a = b * d.register_bit_a + b * d.counter_bit_a / n
    n_cmp = levels - 1.0
    n_fa = np.maximum(levels - 1.0 - b, 0.0)
    dac1_e, dac1_a = dac_energy(1, driver, tech), dac_area(1, driver, tech)
    cell_e, cell_a = cell_read_energy(cell, tech, density=False), cell_area(cell, tech)
    mem_e, mem_a = cell_read_energy(RRAM_CELL, tech, density=False), cell_area(RRAM_CELL, tech)
    ramp_cells = levels + p.calibration_cells
    ramp_counter = ({"comparator": cmp_a, "counter": cnt_a}, {"comparator": levels * cmp_e, "counter": cnt_e})
    return {
        "sar": ({"sar": sar_area(b, p.sar, tech)}, {"sar": sar_energy(b, p.sar, tech)}, sar_time(b, p.sar), 1.0),
        "flash": (
            {"comparators": n_cmp * cmp_a, "encoder": n_fa * d.adder_bit_a},
            {"comparators": n_cmp * cmp_e, "encoder": n_fa * d.adder_bit_e},
            t_cmp,
            n_cmp,
        ),
        "ramp": (
            {**ramp_counter[0], "ramp generator": dac_area(b, driver, tech) / n},
            {**ramp_counter[1], "ramp generator": levels * dac_energy(b, driver, tech) / n},
            levels * t_step,
            1.0,
        ),
        "nl_inmem": (
            {**ramp_counter[0], "reference column": rows * cell_a / n},
            {**ramp_counter[1], "reference column": (levels * (dac1_e + cell_e) + p.calibration_cells * cell_e) / n},
            levels * t_step,
            1.0,
        ),
        "nl_sar_lut": (
            {"sar": sar_area(r, p.sar, tech), "lut": 2.0**r * b * d.register_bit_a},
            {"sar": sar_energy(r, p.sar, tech), "lut": b * d.register_bit_e},
            sar_time(r, p.sar),
            1.0,
        ),
        "nl_flash": (
            {"comparators": n_cmp * cmp_a, "reference dacs": n_cmp * dac_area(r, driver, tech), "encoder": n_fa * d.adder_bit_a},
            {"comparators": n_cmp * cmp_e, "encoder": n_fa * d.adder_bit_e},
            t_cmp,
            n_cmp,
        ),
        "nl_mem_ramp": (
            {**ramp_counter[0], "ramp column": ramp_cells * (mem_a + dac1_a + d.register_bit_a) / n},
            {
                **ramp_counter[1],
                "ramp column": (levels * (dac1_e + mem_e + d.register_bit_e) + p.calibration_cells * mem_e) / n,
            },
            levels * t_step,
            1.0,
        ),
    }


def adc_cost(
    kind,
    bits,
    *,
    adcs_per_array=1,
    rows=128,
    params: AdcParams = AdcParams(),
    cell: CellConfig = SRAM_CELL,
    driver: DriverConfig = DriverConfig(),
    digital: DigitalConfig = DigitalConfig(),
    tech: TechConfig = TechConfig(),
) -> AdcCost:
    """Area, energy per conversion, conversion time and comparators of ADCs.

    Args:
      kind: an ADC form name, or an int array of `kind_code` values.
      bits: output bits (int or int array, broadcast with ``kind``).
      adcs_per_array: ADCs in one array, sharing its ramp generator,
        reference column or global counter (broadcast).
      rows: array rows; the in-memory reference column is a full column
        of the array's cells (broadcast).
      params, cell, driver, digital, tech: component figures.

    Returns:
      `AdcCost` with arrays of the broadcast shape.
    """
    code = np.asarray(kind_code(kind) if isinstance(kind, str) else kind)
    b = np.asarray(bits, dtype=np.float64)
    n = np.asarray(adcs_per_array, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.float64)
    forms = _forms(b, n, rows, params, cell, driver, digital, tech)
    one = np.ones(np.broadcast_shapes(code.shape, b.shape, n.shape, rows.shape))
    totals = {k: (sum(a.values()), sum(e.values()), t, c) for k, (a, e, t, c) in forms.items()}
    conds = [code == i for i in range(len(ADC_KINDS))]
    out = [np.select(conds, [totals[k][j] * one for k in ADC_KINDS], np.nan) for j in range(4)]
    return AdcCost(*out)


def adc_breakdown(kind: str, bits: int, *, adcs_per_array=1, rows=128, params: AdcParams = AdcParams(),
                  cell: CellConfig = SRAM_CELL, driver: DriverConfig = DriverConfig(),
                  digital: DigitalConfig = DigitalConfig(), tech: TechConfig = TechConfig()) -> dict:
    """Named area (m^2) and energy (J) parts of one ADC form, e.g. SAR vs LUT in ``nl_sar_lut``."""
    check_kind(kind)
    check_bits(bits)
    a, e, t, c = _forms(np.float64(bits), np.float64(adcs_per_array), np.float64(rows), params, cell, driver, digital, tech)[kind]
    return {"area": {k: float(v) for k, v in a.items()}, "energy": {k: float(v) for k, v in e.items()},
            "time": float(t), "comparators": float(c)}


def required_linear_bits(levels, lo: float, hi: float) -> int:
    """Linear resolution a SAR+LUT or NL-flash needs to realise a level set.

    The thresholds (midpoints of adjacent levels) must land on distinct
    codes of a uniform grid over ``[lo, hi]``: the grid step must not
    exceed the smallest gap between ``lo``, the thresholds and ``hi``.

    Returns:
      ``ceil(log2((hi - lo) / smallest_gap))``.
    """
    lv = np.sort(np.asarray(levels, dtype=np.float64).ravel())
    if lv.size < 2 or not hi > lo:
        raise ValueError("levels: need at least 2 levels and lo < hi")
    t = 0.5 * (lv[1:] + lv[:-1])
    gaps = np.diff(np.concatenate([[lo], t, [hi]]))
    gaps = gaps[gaps > 0]
    return int(np.ceil(np.log2((hi - lo) / gaps.min())))
