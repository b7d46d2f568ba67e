"""Digital logic around the arrays: counters, registers, adders, shift-add,
buffers and interconnect.

Standard-cell figures (counter, register, adder) are Aladdin's 40-nm
characterisations as tabulated in the Accelergy hwcomponents-library
(``aladdin.py``), divided per bit (the library scales them linearly in
width):

- 32-bit counter: 0.25074 pJ per count, 495.5 um^2 -> 7.836 fJ and 15.48 um^2 per bit;
- 1-bit register: 0.009 pJ per access, 5.98 um^2;
- 32-bit adder: 0.21 pJ per add, 278 um^2 -> 6.5625 fJ and 8.6875 um^2 per bit.

Tile-level figures come from ISAAC (ISCA 2016) Table I, 32 nm, with the
per-access energies the Accelergy hwcomponents-library derives from it
(``isaac.py``):

- shift-and-add: 4 units per IMA, 0.2 mW, 60 um^2 each; per accumulated
  conversion ``0.2 mW / (8 ADCs * 1.28 GS/s) = 19.5 fJ`` (derived);
- eDRAM buffer: 64 KB, 0.083 mm^2 per tile, 20.45 pJ per 256-bit access
  (0.0799 pJ/bit);
- eDRAM-to-IMA bus: 0.090 mm^2 per tile, 0.054 pJ/bit;
- router: 0.150 mm^2 shared by 4 tiles, 20.74 pJ per 256 bits (0.081 pJ/bit);
- a tile holds 12 IMAs of 8 crossbars: 96 arrays.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from bskmq_jax.hardware.technology import FJ, MM2, PJ, UM2, TechConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class DigitalConfig:
    """Per-operation energies and areas of the digital blocks, at their source nodes."""

    counter_bit_energy_fj: float = 7.836  # fJ per count per bit, 40 nm; Aladdin 32-b counter 0.25074 pJ / 32
    counter_bit_area_um2: float = 15.48  # um^2 per bit, 40 nm; Aladdin 32-b counter 495.5 um^2 / 32
    register_bit_energy_fj: float = 9.0  # fJ per bit read or write, 40 nm; Aladdin register
    register_bit_area_um2: float = 5.98  # um^2 per bit, 40 nm; Aladdin register
    adder_bit_energy_fj: float = 6.5625  # fJ per bit per add, 40 nm; Aladdin 32-b adder 0.21 pJ / 32
    adder_bit_area_um2: float = 8.6875  # um^2 per bit, 40 nm; Aladdin 32-b adder 278 um^2 / 32
    cell_node_nm: float = 40.0  # node of the Aladdin standard-cell figures (nm)
    shift_add_energy_fj: float = 19.5  # fJ per accumulated conversion, 32 nm; derived: ISAAC 0.2 mW / (8 x 1.28 GS/s)
    shift_add_area_um2: float = 60.0  # um^2 per shift-add unit, 32 nm; ISAAC Table I
    shift_add_per_adc: float = 0.5  # shift-add units per ADC; ISAAC Table I: 4 per IMA of 8 ADCs
    buffer_energy_pj_per_bit: float = 0.0799  # pJ per bit read or written, 32 nm; ISAAC eDRAM 20.45 pJ / 256 b (Accelergy)
    buffer_area_mm2_per_tile: float = 0.083  # mm^2 per tile, 32 nm; ISAAC Table I, 64 KB eDRAM
    bus_energy_pj_per_bit: float = 0.054  # pJ per bit moved buffer<->arrays, 32 nm; ISAAC bus (Accelergy)
    bus_area_mm2_per_tile: float = 0.090  # mm^2 per tile, 32 nm; ISAAC Table I eDRAM-to-IMA bus
    router_energy_pj_per_bit: float = 0.081  # pJ per bit sent to the next layer's tile, 32 nm; ISAAC 20.74 pJ / 256 b
    router_area_mm2_per_tile: float = 0.0375  # mm^2 per tile, 32 nm; ISAAC router 0.150 mm^2 shared by 4 tiles
    tile_node_nm: float = 32.0  # node of the ISAAC figures (nm)
    arrays_per_tile: int = 96  # crossbars per tile; ISAAC: 12 IMAs x 8 crossbars

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{f.name}: {v!r} must be > 0")
        if int(self.arrays_per_tile) != self.arrays_per_tile:
            raise ValueError(f"arrays_per_tile: {self.arrays_per_tile!r} must be an integer")


class DigitalFigures(NamedTuple):
    """`DigitalConfig` scaled to a node, in SI units (J, m^2)."""

    counter_bit_e: float  # J per count per bit
    counter_bit_a: float  # m^2 per bit
    register_bit_e: float  # J per bit access
    register_bit_a: float  # m^2 per bit
    adder_bit_e: float  # J per bit per add
    adder_bit_a: float  # m^2 per bit
    shift_add_e: float  # J per accumulated conversion
    shift_add_a: float  # m^2 per unit
    buffer_e: float  # J per bit
    bus_e: float  # J per bit
    router_e: float  # J per bit
    buffer_a: float  # m^2 per tile
    interconnect_a: float  # m^2 per tile (bus + router share)


def digital_figures(cfg: DigitalConfig, tech: TechConfig) -> DigitalFigures:
    """Scales every digital figure to ``tech``'s node (energies C V^2, areas node^2)."""
    e = lambda v, unit, node: tech.logic_energy(v * unit, node)  # noqa: E731
    a = lambda v, unit, node: tech.area(v * unit, node)  # noqa: E731
    n, t = cfg.cell_node_nm, cfg.tile_node_nm
    return DigitalFigures(
        counter_bit_e=e(cfg.counter_bit_energy_fj, FJ, n),
        counter_bit_a=a(cfg.counter_bit_area_um2, UM2, n),
        register_bit_e=e(cfg.register_bit_energy_fj, FJ, n),
        register_bit_a=a(cfg.register_bit_area_um2, UM2, n),
        adder_bit_e=e(cfg.adder_bit_energy_fj, FJ, n),
        adder_bit_a=a(cfg.adder_bit_area_um2, UM2, n),
        shift_add_e=e(cfg.shift_add_energy_fj, FJ, t),
        shift_add_a=a(cfg.shift_add_area_um2, UM2, t),
        buffer_e=e(cfg.buffer_energy_pj_per_bit, PJ, t),
        bus_e=e(cfg.bus_energy_pj_per_bit, PJ, t),
        router_e=e(cfg.router_energy_pj_per_bit, PJ, t),
        buffer_a=a(cfg.buffer_area_mm2_per_tile, MM2, t),
        interconnect_a=a(cfg.bus_area_mm2_per_tile + cfg.router_area_mm2_per_tile, MM2, t),
    )
