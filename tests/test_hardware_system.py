"""System model: counts, a hand-computed network, units, monotonicity, baselines, ResNet-18 shapes."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bskmq_jax.hardware.adc import ADC_KINDS, AdcConfig, AdcParams, SarParams, kind_code
from bskmq_jax.hardware.baselines import build_chips, compare_chips, isaac_like, neurosim_like, parse_config, same_chip_linear
from bskmq_jax.hardware.crossbar import RRAM_CELL, CellConfig, DriverConfig
from bskmq_jax.hardware.digital import DigitalConfig
from bskmq_jax.hardware.networks import network_shapes, resnet18_imagenet_shapes
from bskmq_jax.hardware.system import AREA_PARTS, ENERGY_PARTS, ChipConfig, LayerShape, evaluate, evaluate_grid
from bskmq_jax.hardware.technology import TechConfig

# Component figures with round numbers, all at 22 nm = the design node, so no scaling applies.
UNIT_CELL = CellConfig(area_um2=1.0, area_node_nm=22, read_energy_fj=2.0, energy_node_nm=22, read_time_ns=10, input_bit_density=0.5)
UNIT_DRIVER = DriverConfig(dac1_energy_pj=0.1, dac1_area_um2=2.0, node_nm=22)
UNIT_DIGITAL = DigitalConfig(cell_node_nm=22, tile_node_nm=22, shift_add_energy_fj=10, shift_add_area_um2=50, shift_add_per_adc=1,
                             buffer_energy_pj_per_bit=0.01, bus_energy_pj_per_bit=0.02, router_energy_pj_per_bit=0.03,
                             buffer_area_mm2_per_tile=0.01, bus_area_mm2_per_tile=0.02, router_area_mm2_per_tile=0.005, arrays_per_tile=4)
UNIT_SAR = AdcParams(sar=SarParams(walden_fom_fj=1.0, fom_node_nm=22, area_offset_um2=10, area_per_bit_um2=5, area_node_nm=22, cycle_ns=1))
SMALL_NET = [LayerShape(name="c", kind="conv", rows=6, cols=3, positions=2), LayerShape(name="fc", kind="dense", rows=3, cols=2, positions=1)]


def small_chip(**kw):
    base = dict(rows=4, cols=4, input_bits=2, weight_bits=2, dac_bits=1, accumulation="partial_sum", pipelined=False,
                adc=AdcConfig(kind="sar", bits=4, sharing=2, params=UNIT_SAR), cell=UNIT_CELL, driver=UNIT_DRIVER, digital=UNIT_DIGITAL)
    base.update(kw)
    return ChipConfig(**base)


def test_hand_computed_small_network():
    r = evaluate(small_chip(), SMALL_NET)
    c, fc = r.per_layer
    # Layer c: S_w=2, C_in=2, T_row=ceil(6/4)=2, T_col=ceil(3*2/4)=2.
    assert (c["arrays"], c["activations"], c["conversions"], c["cycles"]) == (4, 16, 48, 4)
    # Layer fc: T_row=1, T_col=ceil(2*2/4)=1.
    assert (fc["arrays"], fc["activations"], fc["conversions"], fc["cycles"]) == (1, 2, 8, 2)
    pj = 1e-12
    # array: cell reads x 2 fJ x 0.5; drivers: row drives x 0.1 pJ x 0.5; ADC: conversions x 1 fJ x 2**4;
    # shift-add: conversions x 10 fJ; buffer: bits x 0.01 pJ; interconnect: bits x 0.02 + output bits x 0.03 pJ.
    want_c = {"array": 0.144, "drivers": 2.4, "adc": 0.768, "shift_add": 0.48, "buffer": 0.36, "interconnect": 1.08}
    want_fc = {"array": 0.024, "drivers": 0.3, "adc": 0.128, "shift_add": 0.08, "buffer": 0.1, "interconnect": 0.32}
    for k in ENERGY_PARTS:
        assert math.isclose(c[f"energy_{k}_j"], want_c[k] * pj, rel_tol=1e-9), k
        assert math.isclose(fc[f"energy_{k}_j"], want_fc[k] * pj, rel_tol=1e-9), k
    assert math.isclose(r.totals["energy_j"], 6.184 * pj, rel_tol=1e-9)
    # Not pipelined: per position C_in x (10 ns read + 2 columns x 5 ns SAR).
    assert math.isclose(c["latency_s"], 80e-9) and math.isclose(fc["latency_s"], 40e-9)
    assert math.isclose(r.totals["latency_s"], 120e-9)
    # Per array: cells 16 + drivers 8 + 2 ADCs x 30 + 2 shift-add x 50 = 184 um^2; 5 arrays in 2 tiles of 4.
    assert math.isclose(r.area_breakdown["adc"], 5 * 60e-12)
    assert r.totals["tiles"] == 2
    assert math.isclose(r.totals["area_m2"], 5 * 184e-12 + 2 * (0.01 + 0.025) * 1e-6, rel_tol=1e-12)
    assert r.totals["macs"] == 42


def test_hand_computed_fused_and_pipelined():
    r = evaluate(small_chip(accumulation="fused", pipelined=True), SMALL_NET)
    c, fc = r.per_layer
    assert (c["conversions"], fc["conversions"]) == (6, 2)
    assert r.energy_breakdown["shift_add"] == 0 and r.area_breakdown["shift_add"] == 0
    # max(C_in x 10 ns, 2 x 5 ns) = 20 ns per position.
    assert math.isclose(r.totals["latency_s"], 3 * 20e-9)


@given(rows=st.integers(1, 3000), cols=st.integers(1, 1100), pos=st.integers(1, 500), R=st.sampled_from([64, 128, 256]),
       C=st.sampled_from([64, 128, 256]))
def test_conversions_identity(rows, cols, pos, R, C):
    # weight_bits = bits_per_cell and dac_bits = input_bits: one slice, one input cycle.
    lay = [LayerShape(name="x", kind="conv", rows=rows, cols=cols, positions=pos)]
    kw = dict(rows=R, cols=C, input_bits=4, dac_bits=4, weight_bits=1, adc=AdcConfig(kind="sar", bits=4, sharing=1))
    tiles = math.ceil(rows / R)
    ps = evaluate(ChipConfig(accumulation="partial_sum", **kw), lay).per_layer[0]
    fu = evaluate(ChipConfig(accumulation="fused", **kw), lay).per_layer[0]
    assert ps["conversions"] == pos * cols * tiles
    assert fu["conversions"] == pos * cols
    # General form: x weight slices x input cycles.
    g = evaluate(ChipConfig(rows=R, cols=C, input_bits=6, dac_bits=2, weight_bits=3, accumulation="partial_sum",
                            adc=AdcConfig(kind="sar", bits=4)), lay).per_layer[0]
    assert g["conversions"] == pos * cols * tiles * 3 * 3


def test_unit_consistency_on_resnet18():
    r = evaluate(ChipConfig(), resnet18_imagenet_shapes())
    t = r.totals
    assert math.isclose(t["tops_per_w"], 2 * t["macs"] / t["energy_j"] / 1e12)
    assert math.isclose(t["tops"], 2 * t["macs"] / t["latency_s"] / 1e12)
    assert math.isclose(t["tops_per_mm2"], t["tops"] / t["area_mm2"])
    assert math.isclose(t["area_mm2"], t["area_m2"] * 1e6)
    assert math.isclose(sum(r.energy_breakdown.values()), t["energy_j"])
    assert set(r.area_breakdown) == set(AREA_PARTS) and set(r.energy_breakdown) == set(ENERGY_PARTS)
    assert math.isclose(sum(r.area_breakdown.values()), t["area_m2"])
    assert math.isclose(sum(p["energy_j"] for p in r.per_layer), t["energy_j"])
    assert math.isclose(sum(p["latency_s"] for p in r.per_layer), t["latency_s"])
    assert sum(p["conversions"] for p in r.per_layer) == t["conversions"]
    # Plausible magnitudes for SI units: uJ per inference, ms latency, mm^2 area.
    assert 1e-6 < t["energy_j"] < 1e-2 and 1e-5 < t["latency_s"] < 1 and 0.1 < t["area_mm2"] < 1e3


def test_grid_matches_scalar_evaluation():
    layers = resnet18_imagenet_shapes()
    rng = np.random.default_rng(0)
    base = ChipConfig()
    for _ in range(12):
        kind = ADC_KINDS[rng.integers(len(ADC_KINDS))]
        bits = int(rng.integers(1, 6))
        R, C = (int(v) for v in rng.choice([64, 128, 256], 2))
        s = int(rng.choice([1, 2, 8]))
        dac = int(rng.choice([1, 6]))
        acc = "fused" if kind.startswith("nl") else str(rng.choice(["fused", "partial_sum"]))
        chip = dataclasses.replace(base, rows=R, cols=C, dac_bits=dac, accumulation=acc, adc=AdcConfig(kind=kind, bits=bits, sharing=s))
        grid = {"adc_kind": np.array([kind_code(kind)]), "adc_bits": np.array([bits]), "rows": np.array([R]), "cols": np.array([C]),
                "sharing": np.array([s]), "dac_bits": np.array([dac]), "fused": np.array([acc == "fused"])}
        g = evaluate_grid(grid, layers, base)
        one = evaluate(chip, layers).totals
        assert g["valid"][0]
        assert math.isclose(g["energy_j"][0], one["energy_j"]) and math.isclose(g["latency_s_total"][0], one["latency_s"])
        assert math.isclose(g["area_m2"][0], one["area_m2"])


# ---- monotonicity --------------------------------------------------------

KINDS_FUSED = st.sampled_from(ADC_KINDS)


@given(kind=KINDS_FUSED, b=st.integers(1, 3), rows=st.integers(1, 2000), cols=st.integers(1, 600), pos=st.integers(1, 300))
def test_system_energy_and_latency_grow_with_adc_bits(kind, b, rows, cols, pos):
    lay = [LayerShape(name="x", kind="conv", rows=rows, cols=cols, positions=pos)]
    lo = evaluate(ChipConfig(adc=AdcConfig(kind=kind, bits=b)), lay).totals
    hi = evaluate(ChipConfig(adc=AdcConfig(kind=kind, bits=b + 1)), lay).totals
    assert hi["energy_j"] >= lo["energy_j"] and hi["latency_s"] >= lo["latency_s"] and hi["area_m2"] >= lo["area_m2"]


@given(rows=st.integers(1, 2000), cols=st.integers(1, 600), pos=st.integers(1, 300), extra=st.integers(1, 500))
def test_more_work_costs_more(rows, cols, pos, extra):
    chip = ChipConfig(accumulation="partial_sum", adc=AdcConfig(kind="sar", bits=5))
    a = evaluate(chip, [LayerShape(name="x", kind="conv", rows=rows, cols=cols, positions=pos)]).totals
    for bigger in (dict(rows=rows + extra, cols=cols, positions=pos), dict(rows=rows, cols=cols + extra, positions=pos),
                   dict(rows=rows, cols=cols, positions=pos + extra)):
        b = evaluate(chip, [LayerShape(name="x", kind="conv", **bigger)]).totals
        assert b["energy_j"] >= a["energy_j"] and b["latency_s"] >= a["latency_s"] and b["conversions"] >= a["conversions"]


@given(kind=st.sampled_from(["sar", "flash", "ramp"]), s=st.sampled_from([1, 2, 4, 8, 16, 32, 64]))
def test_sharing_trades_adc_area_for_time(kind, s):
    layers = resnet18_imagenet_shapes()[:4]
    lo = evaluate(ChipConfig(accumulation="partial_sum", adc=AdcConfig(kind=kind, bits=4, sharing=s)), layers)
    hi = evaluate(ChipConfig(accumulation="partial_sum", adc=AdcConfig(kind=kind, bits=4, sharing=2 * s)), layers)
    assert hi.area_breakdown["adc"] <= lo.area_breakdown["adc"]
    assert hi.totals["latency_s"] >= lo.totals["latency_s"]


def test_fused_never_converts_more_than_partial_sum():
    layers = resnet18_imagenet_shapes()
    ps = evaluate(ChipConfig(accumulation="partial_sum", adc=AdcConfig(kind="sar", bits=3)), layers).totals
    fu = evaluate(ChipConfig(accumulation="fused", adc=AdcConfig(kind="sar", bits=3)), layers).totals
    assert fu["conversions"] < ps["conversions"] and fu["energy_j"] < ps["energy_j"]


# ---- ResNet-18 shapes ---------------------------------------------------


def test_resnet18_macs_match_torchvision():
    layers = resnet18_imagenet_shapes()
    macs = sum(lay.macs for lay in layers)
    assert abs(macs - 1.814e9) / 1.814e9 < 0.01
    assert len(layers) == 21 and layers[0].positions == 112 * 112 and layers[-1].rows == 512 and layers[-1].cols == 1000


def test_resnet18_parameter_count_matches_torchvision():
    layers = resnet18_imagenet_shapes()
    weights = sum(lay.rows * lay.cols for lay in layers)
    bn = sum(2 * lay.cols for lay in layers if lay.kind == "conv")  # BatchNorm scale and shift after every conv
    assert weights + bn + 1000 == 11_689_512  # + fc bias


def test_unknown_network_lists_known_models():
    with pytest.raises(ValueError, match="known models are"):
        network_shapes("alexnet")


def test_shapes_read_off_the_real_models():
    # The real NNX ResNet-18 and the independent architecture table agree layer by layer.
    real = {(s.name, s.kind, s.rows, s.cols, s.positions) for s in network_shapes("resnet18")}
    table = {(s.name, s.kind, s.rows, s.cols, s.positions) for s in resnet18_imagenet_shapes()}
    assert real == table
    bert = network_shapes("distilbert", size=32)
    names = [s.name for s in bert]
    assert names[:2] == ["transformer.layer.0.attention.q_lin", "transformer.layer.0.attention.k_lin"]
    score = next(s for s in bert if s.name == "transformer.layer.0.attention.score")
    assert (score.kind, score.rows, score.cols, score.positions) == ("matmul", 64, 32, 12 * 32)
    lin1 = next(s for s in bert if s.name == "transformer.layer.0.ffn.lin1")
    assert (lin1.rows, lin1.cols, lin1.positions) == (768, 3072, 32)


# ---- baselines ------------------------------------------------------------


def test_baselines_and_ratios():
    chip = ChipConfig()
    chips = build_chips(chip, ["isaac", "neurosim", "same_chip"], linear_bits=6)
    assert chips["isaac"].adc.bits == 8 and chips["isaac"].adc.sharing == 128 and chips["isaac"].accumulation == "partial_sum"
    assert chips["neurosim"].adc.bits == 6 and chips["neurosim"].adc.sharing == 8
    assert chips["same_chip"].adc.kind == "sar" and chips["same_chip"].adc.bits == chip.adc.bits
    res, base, ratios = compare_chips(chip, chips, resnet18_imagenet_shapes()[:5])
    for r in ratios:
        b = base[r["baseline"]].totals
        assert math.isclose(r["speedup"], b["latency_s"] / res.totals["latency_s"])
        assert math.isclose(r["energy_efficiency"], b["energy_j"] / res.totals["energy_j"])
        assert r["seed_speedup"] == 4.0 and r["seed_energy_efficiency"] == 24.0 and r["baseline_name"]
    # All chips share cells and node.
    assert all(c.cell == chip.cell and c.tech == chip.tech for c in chips.values())
    assert isaac_like(dataclasses.replace(chip, cell=RRAM_CELL)).cell is RRAM_CELL


def test_parse_config():
    assert parse_config("6/2/3") == (6, 2, 3)
    for bad, match in (("6/2", "input/weight/ADC"), ("a/b/c", "input/weight/ADC"), ("6/2/9", "outside 1..8"), ("0/2/3", "input bits")):
        with pytest.raises(ValueError, match=match):
            parse_config(bad)


# ---- bad configs ---------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ChipConfig(rows=0), "rows: 0"),
        (lambda: ChipConfig(cols=-4), "cols: -4"),
        (lambda: ChipConfig(input_bits=0), "input_bits"),
        (lambda: ChipConfig(weight_bits=17), "weight_bits"),
        (lambda: ChipConfig(dac_bits=8, input_bits=6), "dac_bits"),
        (lambda: ChipConfig(accumulation="analog"), "accumulation"),
        (lambda: ChipConfig(accumulation="partial_sum"), "accumulation: the nl_inmem ADC"),
        (lambda: ChipConfig(rows=8), "rows: 8 < 13"),
        (lambda: ChipConfig(cols=8, adc=AdcConfig(sharing=16)), "sharing: 16"),
        (lambda: ChipConfig(max_tiles=0), "max_tiles"),
        (lambda: LayerShape(name="x", kind="conv", rows=0, cols=1, positions=1), "rows"),
        (lambda: LayerShape(name="x", kind="conv", rows=1, cols=-1, positions=1), "cols"),
        (lambda: LayerShape(name="x", kind="lstm", rows=1, cols=1, positions=1), "kind"),
        (lambda: LayerShape(name="x", kind="dense", rows=1, cols=1, positions=0), "positions"),
        (lambda: neurosim_like(ChipConfig(), 0), "--linear-bits"),
        (lambda: same_chip_linear(ChipConfig(), "nl_flash"), "not a linear ADC"),
        (lambda: build_chips(ChipConfig(), ["eyeriss"]), "unknown baseline"),
        (lambda: evaluate(ChipConfig(max_tiles=1), resnet18_imagenet_shapes()), "max_tiles"),
        (lambda: evaluate(ChipConfig(), []), "no layers"),
    ],
)
def test_bad_system_configs(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_tech_node_changes_costs():
    layers = resnet18_imagenet_shapes()[:3]
    a = evaluate(ChipConfig(tech=TechConfig(node_nm=22)), layers).totals
    b = evaluate(ChipConfig(tech=TechConfig(node_nm=65)), layers).totals
    assert b["area_m2"] > a["area_m2"] and b["energy_j"] > a["energy_j"]
    assert math.isclose(b["latency_s"], a["latency_s"])  # times are not scaled with the node
