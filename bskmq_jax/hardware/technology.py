"""Technology node, supply voltage, units and the scaling rules between nodes.

Every component figure in this package is stored at the node where its
source measured or modelled it (``*_node_nm`` fields) and is moved to the
node of the design under study (`TechConfig.node_nm`) by one of three rules:

- **Area** scales as ``(node / from_node) ** area_exponent`` with exponent 2
  (classical scaling). Derived check: NeuroSim's SAR ADC areas at 65 nm vs
  22 nm differ by 8.70-8.75x for 3/5/8 bits; ``(65/22)**2 = 8.73``.
- **ADC (analog) energy** scales as ``(node / from_node) ** 1.88``: the
  Accelergy ADC plug-in's regression on the Murmann ADC survey.
- **Digital and CMOS array energy** scales as dynamic ``C * V**2`` energy with
  the capacitance proportional to the node:
  ``(node / from_node) * (V(node) / V(from_node)) ** 2``. The supply voltage
  ``V`` comes from NeuroSim's Technology.cpp (1.1 V at 65 nm, 0.9 V at 32 nm,
  0.85 V at 22 nm), interpolated linearly in ``log(node)`` in between.

Times (array read, comparator decision, ramp step) are not scaled: each
keeps the value its source states (see docs/hardware_model.md).

Units: every model function returns SI base units (J, s, m^2). Config
fields use the unit named in their suffix (``_fj``, ``_pj``, ``_ns``,
``_um2``, ``_mm2``) and are converted with the constants below.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

FJ = 1e-15  # J per fJ
PJ = 1e-12  # J per pJ
NS = 1e-9  # s per ns
UM2 = 1e-12  # m^2 per um^2
MM2 = 1e-6  # m^2 per mm^2

# Supply voltage (V) per node (nm): NeuroSim V1.4 Technology.cpp.
SUPPLY_V = {22.0: 0.85, 32.0: 0.9, 65.0: 1.1}
# Nodes with a sourced supply voltage bound the nodes the model accepts.
NODE_RANGE_NM = (min(SUPPLY_V), max(SUPPLY_V))


def supply_v(node_nm: float) -> float:
    """Supply voltage (V) at ``node_nm``, interpolated in log(node) in the NeuroSim table.

    Raises:
      ValueError: the node is outside the sourced range (22-65 nm).
    """
    lo, hi = NODE_RANGE_NM
    if not lo <= node_nm <= hi:
        raise ValueError(f"node_nm: {node_nm} is outside {lo:g}..{hi:g} nm, the range with sourced supply voltages")
    nodes = sorted(SUPPLY_V)
    x = np.log(nodes)
    return float(np.interp(math.log(node_nm), x, [SUPPLY_V[n] for n in nodes]))


@dataclasses.dataclass(frozen=True, kw_only=True)
class TechConfig:
    """The technology node of a design and the rules that scale figures to it."""

    node_nm: float = 22.0  # technology node (nm); NeuroSim V1.4 default (Param.cpp, tech=5 -> 22 nm)
    adc_energy_exponent: float = 1.88  # ADC energy ~ node**x; Accelergy ADC plug-in regression on the Murmann survey
    area_exponent: float = 2.0  # area ~ node**x; derived: NeuroSim SAR area ratio 65/22 nm = 8.70-8.75 ~ (65/22)**2

    def __post_init__(self):
        lo, hi = NODE_RANGE_NM
        if not isinstance(self.node_nm, (int, float)) or not lo <= self.node_nm <= hi:
            raise ValueError(f"node_nm: {self.node_nm!r} is outside {lo:g}..{hi:g} nm (sourced supply voltages)")
        for name in ("adc_energy_exponent", "area_exponent"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 < v <= 4:
                raise ValueError(f"{name}: {v!r} must be in (0, 4]")

    @property
    def vdd(self) -> float:
        """Supply voltage (V) at this node."""
        return supply_v(self.node_nm)

    def area(self, value, from_nm: float):
        """Scales an area measured at ``from_nm`` to this node (same unit in and out)."""
        return value * (self.node_nm / from_nm) ** self.area_exponent

    def adc_energy(self, value, from_nm: float):
        """Scales an ADC/comparator energy measured at ``from_nm`` to this node."""
        return value * (self.node_nm / from_nm) ** self.adc_energy_exponent

    def logic_energy(self, value, from_nm: float):
        """Scales a digital or CMOS-array energy (C V^2) from ``from_nm`` to this node.

        ``from_nm`` may lie anywhere in 22-65 nm (its supply is interpolated).
        """
        return value * (self.node_nm / from_nm) * (self.vdd / supply_v(from_nm)) ** 2
