"""Memory cells of the crossbar and the input drivers (DACs) of its rows.

A crossbar read applies one input slice to every row and lets every cell
add its contribution to its column. Two cell technologies are modelled:

- **SRAM** (the seed's in-memory NL-ADC macro is SRAM, arXiv 2512.06362):
  1 bit per cell (NeuroSim forces ``cellBit = 1`` for SRAM). Cell area is
  NeuroSim's 10 F x 28 F, where NeuroSim's feature size F is the wire width,
  40 nm at its 22-nm node: ``280 * 0.04**2 = 0.448 um^2`` (derived). Energy
  per cell per read is an upper bound derived from Jia et al. (JSSC 2020),
  400 TOPS/W for 1-b operations at 65 nm for the whole macro:
  ``2 ops / 400e12 ops/J = 5 fJ`` per 1-b MAC.
- **RRAM** 1T1R: NeuroSim's 4 F x 12 F cell (``48 * 0.04**2 = 0.0768
  um^2`` at 22 nm, derived) with NeuroSim's device defaults (R_on = 100 kOhm,
  R_off = 1.7 MOhm, 0.5 V read, 10 ns pulse). Read energy per cell is
  ``V**2 * G_mean * t`` with ``G_mean = (1/R_on + 1/R_off) / 2`` (a weight
  cell is assumed equally likely at any level): 13.2 fJ (derived).
  Device energy does not scale with the CMOS node.

A cell conducts only while its row's input bit is 1: cell energy is
multiplied by ``input_bit_density``.

Row drivers are ISAAC's 1-bit DACs (Table I: 4 mW for 8 x 128 DACs per
IMA, 100-ns cycles, 170 um^2 in all): ``4 mW * 100 ns / 1024 = 0.39 pJ``
per drive and 0.166 um^2 each (derived, 32 nm). A d-bit DAC costs
``2**(d-1)`` times the 1-bit one in energy and area (the resolution rule of
the Accelergy hwcomponents-library ISAAC DAC model).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bskmq_jax.hardware.technology import FJ, NS, PJ, UM2, TechConfig

CELL_KINDS = ("sram", "rram")


def rram_read_energy_fj(v_read: float = 0.5, r_on: float = 100e3, r_off: float = 1.7e6, t_read_ns: float = 10.0) -> float:
    """Energy (fJ) of one RRAM cell read: ``V**2 * G_mean * t``, defaults from NeuroSim V1.4 Param.cpp."""
    g_mean = 0.5 * (1.0 / r_on + 1.0 / r_off)
    return v_read**2 * g_mean * t_read_ns * NS / FJ


@dataclasses.dataclass(frozen=True, kw_only=True)
class CellConfig:
    """One memory cell of the crossbar (defaults: SRAM, see `RRAM_CELL`)."""

    kind: str = "sram"  # "sram" or "rram"
    bits_per_cell: int = 1  # weight bits per cell; NeuroSim forces 1 for SRAM (Param.cpp)
    area_um2: float = 0.448  # um^2 at area_node_nm; derived: NeuroSim SRAM 10F x 28F, F = 40 nm wire width at 22 nm
    area_node_nm: float = 22.0  # node of area_um2 (nm)
    read_energy_fj: float = 5.0  # fJ per cell per read at input bit 1; derived upper bound: Jia JSSC 2020, 400 TOPS/W at 1 b
    energy_node_nm: float = 65.0  # node of read_energy_fj (nm); Jia JSSC 2020 is 65 nm
    energy_scales: bool = True  # True: read energy scales as CMOS C V^2; False: device energy (RRAM), node-independent
    read_time_ns: float = 10.0  # one array read (one input slice), ns; NeuroSim readPulseWidth = 10 ns
    input_bit_density: float = 0.5  # share of input bits that are 1; assumption: uniform random bits

    def __post_init__(self):
        if self.kind not in CELL_KINDS:
            raise ValueError(f"kind: unknown cell kind {self.kind!r}; known: {', '.join(CELL_KINDS)}")
        if isinstance(self.bits_per_cell, bool) or not isinstance(self.bits_per_cell, (int, np.integer)) or not 1 <= self.bits_per_cell <= 8:
            raise ValueError(f"bits_per_cell: {self.bits_per_cell!r} must be an int in 1..8")
        for name in ("area_um2", "area_node_nm", "read_energy_fj", "energy_node_nm", "read_time_ns"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name}: {v!r} must be > 0")
        if not 0 < self.input_bit_density <= 1:
            raise ValueError(f"input_bit_density: {self.input_bit_density!r} must be in (0, 1]")


SRAM_CELL = CellConfig()
RRAM_CELL = CellConfig(
    kind="rram",
    bits_per_cell=2,  # ISAAC (ISCA 2016) stores 2 bits per memristor
    area_um2=0.0768,  # derived: NeuroSim 1T1R 4F x 12F, F = 40 nm at 22 nm
    area_node_nm=22.0,
    read_energy_fj=rram_read_energy_fj(),  # derived: 13.2 fJ from NeuroSim device defaults
    energy_node_nm=22.0,
    energy_scales=False,
)


def cell_preset(kind: str) -> CellConfig:
    """The default `CellConfig` of a cell technology ("sram" or "rram")."""
    presets = {"sram": SRAM_CELL, "rram": RRAM_CELL}
    if kind not in presets:
        raise ValueError(f"cell: unknown cell kind {kind!r}; known: {', '.join(presets)}")
    return presets[kind]


def cell_area(cell: CellConfig, tech: TechConfig) -> float:
    """Area of one cell at the design's node (m^2)."""
    return tech.area(cell.area_um2, cell.area_node_nm) * UM2


def cell_read_energy(cell: CellConfig, tech: TechConfig, *, density: bool = True) -> float:
    """Energy of one cell read (J), times the input bit density unless ``density=False``.

    ``density=False`` gives the energy of a cell that conducts on every read
    (e.g. a reference cell of the in-memory ADC ramp).
    """
    e = cell.read_energy_fj * FJ
    if cell.energy_scales:
        e = tech.logic_energy(e, cell.energy_node_nm)
    return e * (cell.input_bit_density if density else 1.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DriverConfig:
    """Row input drivers: one DAC per row."""

    dac1_energy_pj: float = 0.390625  # pJ per 1-bit row drive at node_nm; derived: ISAAC Table I 4 mW * 100 ns / 1024 DACs
    dac1_area_um2: float = 0.166  # um^2 per 1-bit DAC; derived: ISAAC Table I 170 um^2 / 1024
    node_nm: float = 32.0  # ISAAC's node (nm)

    def __post_init__(self):
        for name in ("dac1_energy_pj", "dac1_area_um2", "node_nm"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name}: {v!r} must be > 0")


def dac_energy(bits, driver: DriverConfig, tech: TechConfig):
    """Energy of one drive of a ``bits``-bit row DAC (J); ``2**(bits-1)`` x the 1-bit DAC."""
    b = np.asarray(bits, dtype=np.float64)
    return tech.logic_energy(driver.dac1_energy_pj * PJ, driver.node_nm) * 2.0 ** (b - 1)


def dac_area(bits, driver: DriverConfig, tech: TechConfig):
    """Area of one ``bits``-bit row DAC (m^2); ``2**(bits-1)`` x the 1-bit DAC."""
    b = np.asarray(bits, dtype=np.float64)
    return tech.area(driver.dac1_area_um2 * UM2, driver.node_nm) * 2.0 ** (b - 1)
