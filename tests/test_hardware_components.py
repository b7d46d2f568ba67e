"""Component models: technology scaling, cells, DACs and every ADC form."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bskmq_jax.hardware import adc as A
from bskmq_jax.hardware.adc import ADC_KINDS, ISAAC_SAR, AdcConfig, AdcParams, SarParams, adc_breakdown, adc_cost, required_linear_bits
from bskmq_jax.hardware.crossbar import RRAM_CELL, SRAM_CELL, CellConfig, DriverConfig, cell_preset, dac_area, dac_energy, rram_read_energy_fj
from bskmq_jax.hardware.technology import TechConfig, supply_v

BITS = st.integers(1, 7)  # b and b + 1 both valid


# ---- analytic identities -------------------------------------------------


@pytest.mark.parametrize("kind", ["flash", "nl_flash"])
def test_flash_comparator_count_is_2b_minus_1(kind):
    b = np.arange(1, 9)
    assert np.array_equal(adc_cost(kind, b).comparators, 2.0**b - 1)


@pytest.mark.parametrize("kind", ["sar", "ramp", "nl_inmem", "nl_sar_lut", "nl_mem_ramp"])
def test_single_comparator_forms(kind):
    assert np.all(adc_cost(kind, np.arange(1, 9)).comparators == 1)


@pytest.mark.parametrize("kind", ["ramp", "nl_inmem", "nl_mem_ramp"])
def test_ramp_time_proportional_to_2b(kind):
    b = np.arange(1, 9)
    t = adc_cost(kind, b).time
    ratio = t / 2.0**b
    assert np.allclose(ratio, ratio[0], rtol=1e-12)
    assert math.isclose(ratio[0], AdcParams().ramp_step_ns * 1e-9)


def test_sar_time_is_b_plus_1_cycles():
    b = np.arange(1, 9)
    assert np.allclose(adc_cost("sar", b).time, (b + 1) * 1e-9)


def test_sar_energy_follows_walden_fom():
    tech = TechConfig()
    b = np.arange(1, 9)
    e = adc_cost("sar", b, tech=tech).energy
    fom = SarParams().walden_fom_fj * 1e-15  # defined at 22 nm = the default node
    assert np.allclose(e, fom * 2.0**b, rtol=1e-12)
    assert np.allclose(e[1:] / e[:-1], 2.0)  # each bit doubles the energy
    # NeuroSim's 5-bit SAR at 22 nm (42 fJ) is the calibration point.
    assert math.isclose(float(adc_cost("sar", 5).energy), 42e-15, rel_tol=1e-9)


def test_sar_energy_schreier():
    p = AdcParams(sar=SarParams(energy_model="schreier"))
    b = np.arange(1, 9)
    want = 0.5 * 10 ** ((6.02 * b + 1.76 - 186.7) / 10)
    assert np.allclose(adc_cost("sar", b, params=p).energy, want, rtol=1e-12)


def test_sar_area_fit_reproduces_neurosim_table():
    got = adc_cost("sar", np.array([3, 5, 8])).area / 1e-12
    assert np.allclose(got, [87, 124, 180], atol=0.3)


def test_isaac_sar_reproduces_isaac_table():
    p = AdcParams(sar=ISAAC_SAR)
    c = adc_cost("sar", 8, params=p, tech=TechConfig(node_nm=32))
    assert math.isclose(float(c.energy), 2e-3 / 1.28e9, rel_tol=1e-9)  # 2 mW at 1.28 GS/s
    assert math.isclose(float(c.area), 1200e-12, rel_tol=1e-9)
    assert math.isclose(float(c.time), 1 / 1.28e9, rel_tol=1e-9)


def test_parts_sum_to_cost():
    for kind in ADC_KINDS:
        for b in (1, 3, 5, 8):
            br = adc_breakdown(kind, b, adcs_per_array=64)
            c = adc_cost(kind, b, adcs_per_array=64)
            assert math.isclose(sum(br["area"].values()), float(c.area), rel_tol=1e-12)
            assert math.isclose(sum(br["energy"].values()), float(c.energy), rel_tol=1e-12)


def test_sar_lut_size():
    p = AdcParams(lut_extra_bits=2)
    br = adc_breakdown("nl_sar_lut", 3, params=p)
    reg = TechConfig().area(5.98e-12, 40.0)
    assert math.isclose(br["area"]["lut"], 2**5 * 3 * reg, rel_tol=1e-12)


def test_vectorised_kinds_match_scalar():
    codes = np.repeat(np.arange(len(ADC_KINDS)), 8)
    bits = np.tile(np.arange(1, 9), len(ADC_KINDS))
    v = adc_cost(codes, bits, adcs_per_array=16)
    for i, (c, b) in enumerate(zip(codes, bits)):
        s = adc_cost(ADC_KINDS[c], int(b), adcs_per_array=16)
        assert math.isclose(float(v.energy[i]), float(s.energy)) and math.isclose(float(v.area[i]), float(s.area))


def test_required_linear_bits():
    assert required_linear_bits([0.0, 1 / 3, 2 / 3, 1.0], 0.0, 1.0) == 3  # gaps 1/6, 1/3, 1/3, 1/6
    assert required_linear_bits(np.linspace(0, 1, 8), 0, 1) == 4
    with pytest.raises(ValueError, match="levels"):
        required_linear_bits([0.5], 0, 1)


# ---- technology, cells, drivers -----------------------------------------


def test_supply_voltage_table_and_interpolation():
    assert supply_v(22) == 0.85 and supply_v(32) == 0.9 and supply_v(65) == 1.1
    assert 0.9 < supply_v(40) < 1.1


def test_scaling_rules():
    t = TechConfig(node_nm=44)
    assert math.isclose(t.area(1.0, 22), 4.0)
    assert math.isclose(t.adc_energy(1.0, 22), 2.0**1.88)
    assert math.isclose(TechConfig().logic_energy(3.0, 22), 3.0)
    v = supply_v(44) / supply_v(22)
    assert math.isclose(t.logic_energy(1.0, 22), 2.0 * v * v)


def test_rram_energy_from_device_defaults():
    assert math.isclose(rram_read_energy_fj(), 0.25 * 0.5 * (1 / 100e3 + 1 / 1.7e6) * 10e-9 / 1e-15)
    assert math.isclose(RRAM_CELL.read_energy_fj, 13.235, rel_tol=1e-3)
    assert cell_preset("rram") is RRAM_CELL and cell_preset("sram") is SRAM_CELL


def test_dac_resolution_rule():
    d, t = DriverConfig(), TechConfig(node_nm=32)
    assert math.isclose(float(dac_energy(1, d, t)), 4e-3 * 100e-9 / 1024)
    assert math.isclose(float(dac_energy(4, d, t)), 8 * float(dac_energy(1, d, t)))
    assert math.isclose(float(dac_area(3, d, t)), 4 * 0.166e-12)


# ---- monotonicity --------------------------------------------------------


@given(kind=st.sampled_from(ADC_KINDS), b=BITS, n=st.sampled_from([1, 4, 16, 128]), rows=st.sampled_from([64, 128, 512]),
       counter=st.sampled_from(["per_column", "shared"]))
def test_adc_cost_grows_with_bits(kind, b, n, rows, counter):
    p = AdcParams(counter=counter)
    lo = adc_cost(kind, b, adcs_per_array=n, rows=rows, params=p)
    hi = adc_cost(kind, b + 1, adcs_per_array=n, rows=rows, params=p)
    assert hi.area >= lo.area and hi.energy >= lo.energy and hi.time >= lo.time


@given(kind=st.sampled_from(["ramp", "nl_inmem", "nl_mem_ramp"]), b=BITS, n=st.sampled_from([1, 2, 8, 32]))
def test_shared_ramp_parts_shrink_with_more_adcs(kind, b, n):
    few, many = adc_cost(kind, b, adcs_per_array=n), adc_cost(kind, b, adcs_per_array=2 * n)
    assert many.area <= few.area and many.energy <= few.energy


@given(node=st.floats(22, 64), b=BITS)
def test_adc_cost_grows_with_node(node, b):
    small, big = TechConfig(node_nm=node), TechConfig(node_nm=min(65.0, node + 1))
    for kind in ADC_KINDS:
        assert adc_cost(kind, b, tech=big).area >= adc_cost(kind, b, tech=small).area
        assert adc_cost(kind, b, tech=big).energy >= adc_cost(kind, b, tech=small).energy


# ---- bad configs ---------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: AdcConfig(bits=0), "bits: 0 is outside 1..8"),
        (lambda: AdcConfig(bits=9), "bits: 9 is outside 1..8"),
        (lambda: AdcConfig(kind="pipelined"), "unknown ADC type 'pipelined'"),
        (lambda: AdcConfig(sharing=0), "sharing"),
        (lambda: AdcConfig(sharing=-2), "sharing"),
        (lambda: adc_cost("sigma_delta", 3), "unknown ADC type"),
        (lambda: AdcParams(counter="ripple"), "counter"),
        (lambda: AdcParams(comparator_energy_fj=0.0), "comparator_energy_fj"),
        (lambda: AdcParams(lut_extra_bits=-1), "lut_extra_bits"),
        (lambda: SarParams(energy_model="murmann"), "energy_model"),
        (lambda: SarParams(walden_fom_fj=-1.0), "walden_fom_fj"),
        (lambda: TechConfig(node_nm=7), "node_nm"),
        (lambda: TechConfig(node_nm=0), "node_nm"),
        (lambda: TechConfig(area_exponent=0), "area_exponent"),
        (lambda: CellConfig(kind="pcm"), "unknown cell kind"),
        (lambda: CellConfig(bits_per_cell=0), "bits_per_cell"),
        (lambda: CellConfig(area_um2=-1.0), "area_um2"),
        (lambda: CellConfig(input_bit_density=0.0), "input_bit_density"),
        (lambda: cell_preset("flash"), "unknown cell kind"),
        (lambda: DriverConfig(dac1_energy_pj=0), "dac1_energy_pj"),
    ],
)
def test_bad_configs_raise_naming_the_field(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_check_bits_rejects_non_ints():
    for bad in (3.0, True, "3"):
        with pytest.raises(ValueError, match="bits"):
            A.check_bits(bad)
