"""Layer-by-layer mapping of a network onto crossbar arrays: counts, latency, energy, area.

A layer is a matrix product ``[positions, rows] x [rows, cols]`` per sample
(`LayerShape`). Weight-stationary mapping, every layer on its own arrays:

- ``S_w = ceil(weight_bits / bits_per_cell)`` columns per weight;
- ``T_row = ceil(rows / R)`` row tiles, ``T_col = ceil(cols * S_w / C)``
  column tiles (``nl_inmem`` adds its reference column beside the ``C``
  data columns; its area is part of the ADC's);
- ``C_in = ceil(input_bits / dac_bits)`` input cycles per position;
- array activations ``P * C_in * T_row * T_col``;
- conversions ``P * cols * S_w * C_in * T_row`` with ``partial_sum``
  accumulation (every partial result is converted, then shift-added) and
  ``P * cols`` with ``fused`` (partial results are summed in the analog
  domain, so each output element is converted once; modelled as free).

Time per position: ``partial_sum``: ``C_in * max(t_read, s * t_conv)``
(pipelined) or ``C_in * (t_read + s * t_conv)``; ``fused``:
``max(C_in * t_read, s * t_conv)`` or the sum, with ``s`` columns per ADC.
Positions run one after another, layers one after another.

The arithmetic is numpy broadcasting over design points ``[G, 1]`` and
layers ``[1, L]``, so one call evaluates a whole design grid (`evaluate_grid`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bskmq_jax.hardware.adc import ADC_KINDS, NONLINEAR_KINDS, AdcConfig, adc_cost, kind_code
from bskmq_jax.hardware.crossbar import SRAM_CELL, CellConfig, DriverConfig, cell_area, cell_read_energy, dac_area, dac_energy
from bskmq_jax.hardware.digital import DigitalConfig, digital_figures
from bskmq_jax.hardware.technology import NS, TechConfig

LAYER_KINDS = ("conv", "dense", "matmul")
ACCUMULATIONS = ("partial_sum", "fused")
ENERGY_PARTS = ("array", "drivers", "adc", "shift_add", "buffer", "interconnect")
AREA_PARTS = ("array", "drivers", "adc", "shift_add", "buffer", "interconnect")
_NL_CODES = [ADC_KINDS.index(k) for k in NONLINEAR_KINDS]
_INMEM = ADC_KINDS.index("nl_inmem")


def _positive_int(name: str, v, lo: int = 1) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name}: {v!r} must be an int >= {lo}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerShape:
    """One layer as the arrays see it: a ``[positions, rows] x [rows, cols]`` product per sample."""

    name: str  # layer name, e.g. "layer1.0.conv1"
    kind: str  # "conv", "dense" or "matmul"
    rows: int  # fan-in K = in_channels * kh * kw (array rows the weights need)
    cols: int  # output channels or features N (columns per weight slice)
    positions: int  # output positions per sample: H_out * W_out (conv), tokens (matmul), 1 (dense)
    macs: int | None = None  # multiply-accumulates per sample; None: rows * cols * positions

    def __post_init__(self):
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"kind: {self.kind!r} (layer {self.name}) must be one of {', '.join(LAYER_KINDS)}")
        for f in ("rows", "cols", "positions"):
            _positive_int(f"{f} (layer {self.name})", getattr(self, f))
        if self.macs is None:
            object.__setattr__(self, "macs", self.rows * self.cols * self.positions)
        _positive_int(f"macs (layer {self.name})", self.macs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChipConfig:
    """An IMC accelerator: array geometry, precisions, dataflow and component figures."""

    name: str = "nl_inmem chip"  # label in reports
    rows: int = 128  # rows per array; NeuroSim and ISAAC use 128
    cols: int = 128  # columns per array; NeuroSim and ISAAC use 128
    input_bits: int = 6  # activation bits; the seed's 6/2/3b
    weight_bits: int = 2  # weight bits; the seed's 6/2/3b
    dac_bits: int = 1  # input bits applied per array read; 1 = bit-serial (ISAAC), input_bits = bit-parallel
    accumulation: str = "fused"  # "partial_sum" (convert every partial result) or "fused" (one conversion per output)
    pipelined: bool = True  # the next read overlaps the conversions (sample-and-hold), as in ISAAC
    max_tiles: int | None = None  # chip capacity in tiles; None: as many as the network needs
    adc: AdcConfig = AdcConfig()  # ADC form, bits, sharing
    cell: CellConfig = SRAM_CELL  # memory cell
    driver: DriverConfig = DriverConfig()  # row DACs
    digital: DigitalConfig = DigitalConfig()  # digital blocks
    tech: TechConfig = TechConfig()  # node and scaling

    def __post_init__(self):
        for f in ("rows", "cols"):
            _positive_int(f, getattr(self, f), 2)
        for f in ("input_bits", "weight_bits"):
            _positive_int(f, getattr(self, f))
            if getattr(self, f) > 16:
                raise ValueError(f"{f}: {getattr(self, f)} is outside 1..16")
        _positive_int("dac_bits", self.dac_bits)
        if self.dac_bits > self.input_bits:
            raise ValueError(f"dac_bits: {self.dac_bits} exceeds input_bits={self.input_bits}")
        if self.accumulation not in ACCUMULATIONS:
            raise ValueError(f"accumulation: {self.accumulation!r} must be one of {', '.join(ACCUMULATIONS)}")
        if self.max_tiles is not None:
            _positive_int("max_tiles", self.max_tiles)
        if self.adc.sharing > self.cols:
            raise ValueError(f"sharing: {self.adc.sharing} columns per ADC exceeds cols={self.cols}")
        if self.adc.nonlinear and self.accumulation != "fused":
            raise ValueError(
                f"accumulation: the {self.adc.kind} ADC folds the activation into the conversion, so the whole dot "
                "product must reach it at once; use accumulation='fused'"
            )
        need = 2**self.adc.bits + self.adc.params.calibration_cells
        if self.adc.kind == "nl_inmem" and self.rows < need:
            raise ValueError(f"rows: {self.rows} < {need} (2**{self.adc.bits} ramp + calibration reference cells in one column)")

    def grid(self) -> dict[str, np.ndarray]:
        """This design as a one-point grid for `evaluate_grid`."""
        return design_point(self)


def design_point(chip: ChipConfig) -> dict[str, np.ndarray]:
    """The grid axes of one chip, each an array of shape ``[1]``."""
    return {
        "adc_kind": np.array([kind_code(chip.adc.kind)]),
        "adc_bits": np.array([chip.adc.bits]),
        "rows": np.array([chip.rows]),
        "cols": np.array([chip.cols]),
        "sharing": np.array([chip.adc.sharing]),
        "dac_bits": np.array([chip.dac_bits]),
        "fused": np.array([chip.accumulation == "fused"]),
    }


def layer_table(layers) -> dict[str, np.ndarray]:
    """Stacks `LayerShape` s into float64 arrays of shape ``[L]``."""
    layers = list(layers)
    if not layers:
        raise ValueError("layers: the network has no layers")
    for lay in layers:
        if not isinstance(lay, LayerShape):
            raise ValueError(f"layers: expected LayerShape, got {type(lay).__name__}")
    return {k: np.array([getattr(lay, k) for lay in layers], dtype=np.float64) for k in ("rows", "cols", "positions", "macs")}


def evaluate_grid(grid: dict, layers, base: ChipConfig) -> dict[str, np.ndarray]:
    """Evaluates every design point of ``grid`` on ``layers`` in one vectorised pass.

    Args:
      grid: arrays of equal shape ``[G]``: ``adc_kind`` (codes), ``adc_bits``,
        ``rows``, ``cols``, ``sharing``, ``dac_bits``, ``fused`` (bool).
      layers: `LayerShape` s, or a `layer_table`.
      base: supplies everything not on the grid (precisions, cell, figures).

    Returns:
      ``[G, L]`` per-layer arrays (``arrays``, ``macs``, ``activations``,
      ``cycles``, ``conversions``, ``latency_s``, ``energy_<part>_j``,
      ``energy_j_layer``, ``area_m2_layer``), ``[G]`` totals (``energy_j``, ``latency_s``, ``area_m2``,
      ``area_<part>_m2``, ``tops``, ``tops_per_w``, ``tops_per_mm2``,
      ``tiles``) and ``valid`` (``[G]`` bool; invalid points hold NaN).
    """
    lt = layers if isinstance(layers, dict) else layer_table(layers)
    col = lambda k: np.asarray(grid[k])[:, None]  # noqa: E731
    kind, bits, R, C, share, dac, fused = (col(k) for k in ("adc_kind", "adc_bits", "rows", "cols", "sharing", "dac_bits", "fused"))
    bits, R, C, share, dac = (a.astype(np.float64) for a in (bits, R, C, share, dac))
    fused = fused.astype(bool)
    K, N, P, M = (lt[k][None, :] for k in ("rows", "cols", "positions", "macs"))
    is_nl = np.isin(kind, _NL_CODES)
    inmem = kind == _INMEM
    p = base.adc.params
    valid = (
        (share <= C) & (~is_nl | fused) & (~inmem | (R >= 2.0**bits + p.calibration_cells))
        & (dac <= base.input_bits) & (bits >= 1) & (bits <= 8) & (R >= 2) & (C >= 2)
    )[:, 0]

    s_w = np.ceil(base.weight_bits / base.cell.bits_per_cell)
    t_row, t_col = np.ceil(K / R), np.ceil(N * s_w / C)
    arrays = t_row * t_col
    c_in = np.ceil(base.input_bits / dac)
    n_adc = np.ceil(C / share)
    out = {"arrays": arrays * np.ones_like(kind, dtype=np.float64), "macs": M * np.ones_like(R)}
    out["activations"] = P * c_in * arrays
    out["cycles"] = P * c_in * np.ones_like(R)
    out["conversions"] = np.where(fused, P * N, P * N * s_w * c_in * t_row)
    cell_reads = P * c_in * K * N * s_w
    # A row is driven only when its input slice is non-zero: 1 - (1 - density)**dac_bits.
    drive_activity = 1.0 - (1.0 - base.cell.input_bit_density) ** dac
    row_drives = P * c_in * K * t_col
    store_bits = np.where(is_nl, bits, base.input_bits)
    moved_in, moved_out = P * K * store_bits, P * N * store_bits

    tech, cost = base.tech, adc_cost(kind, bits, adcs_per_array=n_adc, rows=R, params=p, cell=base.cell,
                                     driver=base.driver, digital=base.digital, tech=base.tech)
    d = digital_figures(base.digital, tech)
    t_read = base.cell.read_time_ns * NS
    t_convs = share * cost.time
    if base.pipelined:
        t_pos = np.where(fused, np.maximum(c_in * t_read, t_convs), c_in * np.maximum(t_read, t_convs))
    else:
        t_pos = np.where(fused, c_in * t_read + t_convs, c_in * (t_read + t_convs))
    out["latency_s"] = P * t_pos
    e = {
        "array": cell_reads * cell_read_energy(base.cell, tech),
        "drivers": row_drives * dac_energy(dac, base.driver, tech) * drive_activity,
        "adc": out["conversions"] * cost.energy,
        "shift_add": np.where(fused, 0.0, out["conversions"]) * d.shift_add_e,
        "buffer": (moved_in + moved_out) * d.buffer_e,
        "interconnect": (moved_in + moved_out) * d.bus_e + moved_out * d.router_e,
    }
    for k, v in e.items():
        out[f"energy_{k}_j"] = v * np.ones_like(out["latency_s"])
    out["energy_j_layer"] = sum(out[f"energy_{k}_j"] for k in ENERGY_PARTS)
    per_array = {
        "array": R * C * cell_area(base.cell, tech),
        "drivers": R * dac_area(dac, base.driver, tech),
        "adc": n_adc * cost.area,
        "shift_add": np.where(fused, 0.0, n_adc * base.digital.shift_add_per_adc * d.shift_add_a),
    }
    out["area_m2_layer"] = arrays * sum(per_array.values())
    total_arrays = out["arrays"].sum(axis=1)
    tiles = np.ceil(total_arrays / base.digital.arrays_per_tile)
    if base.max_tiles is not None:
        valid &= tiles <= base.max_tiles
    tot = {"tiles": tiles, "arrays_total": total_arrays}
    for k, v in per_array.items():
        tot[f"area_{k}_m2"] = (arrays * v).sum(axis=1)
    tot["area_buffer_m2"] = tiles * d.buffer_a
    tot["area_interconnect_m2"] = tiles * d.interconnect_a
    tot["area_m2"] = sum(tot[f"area_{k}_m2"] for k in AREA_PARTS)
    for k in ENERGY_PARTS:
        tot[f"energy_{k}_j_total"] = out[f"energy_{k}_j"].sum(axis=1)
    tot["energy_j"] = out["energy_j_layer"].sum(axis=1)
    tot["latency_s_total"] = out["latency_s"].sum(axis=1)
    tot["macs_total"] = out["macs"].sum(axis=1)
    for k in ("conversions", "activations", "cycles"):
        tot[f"{k}_total"] = out[k].sum(axis=1)
    ops = 2.0 * tot["macs_total"]
    tot["tops"] = ops / tot["latency_s_total"] / 1e12
    tot["tops_per_w"] = ops / tot["energy_j"] / 1e12
    tot["tops_per_mm2"] = tot["tops"] / (tot["area_m2"] / 1e-6)
    out.update(tot)
    for k, v in out.items():
        if v.dtype.kind == "f":
            out[k] = np.where(valid if v.ndim == 1 else valid[:, None], v, np.nan)
    out["valid"] = valid
    return out


@dataclasses.dataclass(frozen=True)
class SystemResult:
    """One chip on one network: per-layer rows, totals and breakdowns (SI units)."""

    chip: ChipConfig
    per_layer: list  # one dict per layer: shape, counts, latency_s, energy_j, energy_<part>_j, area_m2
    totals: dict  # energy_j, latency_s, area_m2, tops, tops_per_w, tops_per_mm2, macs, counts, arrays, tiles
    energy_breakdown: dict  # J per part (ENERGY_PARTS)
    area_breakdown: dict  # m^2 per part (AREA_PARTS)

    def as_dict(self) -> dict:
        """JSON-ready form (the chip config flattened by `dataclasses.asdict`)."""
        return {
            "chip": dataclasses.asdict(self.chip),
            "totals": self.totals,
            "energy_breakdown_j": self.energy_breakdown,
            "area_breakdown_m2": self.area_breakdown,
            "per_layer": self.per_layer,
        }


def evaluate(chip: ChipConfig, layers) -> SystemResult:
    """Maps ``layers`` onto ``chip`` and returns every count and cost.

    Raises:
      ValueError: the network needs more tiles than ``chip.max_tiles``.
    """
    layers = list(layers)
    r = evaluate_grid(design_point(chip), layers, chip)
    if not r["valid"][0]:
        raise ValueError(
            f"max_tiles: the network needs {int(np.ceil(layer_arrays(chip, layers) / chip.digital.arrays_per_tile))} "
            f"tiles of {chip.digital.arrays_per_tile} arrays but the chip has {chip.max_tiles}; raise it or leave it unset"
        )
    per_layer = []
    for i, lay in enumerate(layers):
        row = {"name": lay.name, "kind": lay.kind, "rows": lay.rows, "cols": lay.cols, "positions": lay.positions, "macs": lay.macs}
        for k in ("arrays", "activations", "conversions", "cycles"):
            row[k] = int(r[k][0, i])
        row["latency_s"] = float(r["latency_s"][0, i])
        row["energy_j"] = float(r["energy_j_layer"][0, i])
        for k in ENERGY_PARTS:
            row[f"energy_{k}_j"] = float(r[f"energy_{k}_j"][0, i])
        row["area_m2"] = float(r["area_m2_layer"][0, i])
        per_layer.append(row)
    totals = {
        "energy_j": float(r["energy_j"][0]),
        "latency_s": float(r["latency_s_total"][0]),
        "area_m2": float(r["area_m2"][0]),
        "area_mm2": float(r["area_m2"][0]) / 1e-6,
        "tops": float(r["tops"][0]),
        "tops_per_w": float(r["tops_per_w"][0]),
        "tops_per_mm2": float(r["tops_per_mm2"][0]),
        "macs": int(r["macs_total"][0]),
        "conversions": int(r["conversions_total"][0]),
        "activations": int(r["activations_total"][0]),
        "cycles": int(r["cycles_total"][0]),
        "arrays": int(r["arrays_total"][0]),
        "tiles": int(r["tiles"][0]),
    }
    return SystemResult(
        chip=chip,
        per_layer=per_layer,
        totals=totals,
        energy_breakdown={k: float(r[f"energy_{k}_j_total"][0]) for k in ENERGY_PARTS},
        area_breakdown={k: float(r[f"area_{k}_m2"][0]) for k in AREA_PARTS},
    )


def layer_arrays(chip: ChipConfig, layers) -> int:
    """Arrays the network needs on ``chip`` (before any tile limit)."""
    s_w = -(-chip.weight_bits // chip.cell.bits_per_cell)
    return int(sum(-(-lay.rows // chip.rows) * -(-(lay.cols * s_w) // chip.cols) for lay in layers))
