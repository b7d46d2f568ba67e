"""The NL-ADC: ideal equivalence, non-idealities, chips, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

import bskmq_jax as bq
from bskmq_jax.adc import ADCConfig, STEConfig, chip_thresholds, hash_normal, nl_adc
from bskmq_jax.adc.nl_adc import _analog_input


def fine_linear(bits=12, lo=0.0, hi=2.0):
    return bq.NLLevels.from_levels(jnp.linspace(lo, hi, 2**bits), lo=lo, hi=hi)


@given(
    levels=st.lists(st.floats(-50, 50, width=32), min_size=8, max_size=8),
    x=st.lists(st.floats(-100, 100, width=32), min_size=32, max_size=32),
)
def test_ideal_conversion_equals_quantize(levels, x):
    nl = bq.NLLevels.from_levels(np.sort(np.asarray(levels, np.float32)))
    x = jnp.asarray(x, jnp.float32).reshape(4, 8)
    out, codes = nl_adc(x, nl, return_codes=True)
    np.testing.assert_array_equal(out, bq.quantize(x, nl))
    np.testing.assert_array_equal(codes, bq.encode(x, nl))


def test_per_layer_levels_broadcast():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5, 7)).astype(np.float32))
    nl = bq.fit_levels(x.reshape(3, -1), method="kmeans_exact", bits=2)
    np.testing.assert_array_equal(nl_adc(x, nl), bq.quantize(x, nl))


@pytest.mark.parametrize("rng", ["hash", "normal"])
def test_noise_sigma_matches_config(rng):
    nl = fine_linear()
    cfg = ADCConfig(noise_sigma=0.02, noise_rng=rng)
    out = nl_adc(jnp.full((1_000_000,), 1.0), nl, cfg=cfg, key=jax.random.key(3))
    step = 2.0 / 4095
    want = np.sqrt((0.02 * 2.0) ** 2 + step**2 / 12)  # noise plus the fine ADC's own rounding
    assert abs(float(jnp.std(out)) / want - 1) < 0.05
    assert abs(float(jnp.mean(out)) - 1.0) < 1e-3


def test_offset_sigma_is_static_per_column():
    nl = fine_linear()
    cfg = ADCConfig(offset_sigma=0.01)
    x = jnp.full((4, 200_000), 1.0)  # 4 conversions on each of 200k columns
    out = nl_adc(x, nl, cfg=cfg, chip_key=jax.random.key(7))
    np.testing.assert_array_equal(out[0], out[3])  # same column, same offset: no per-conversion change
    err = np.asarray(out[0]) - 1.0
    want = np.sqrt((0.01 * 2.0) ** 2 + (2.0 / 4095) ** 2 / 12)
    assert abs(err.std() / want - 1) < 0.05


def test_chip_key_fixes_the_chip_and_vmap_runs_monte_carlo():
    nl = bq.fit_levels(jnp.linspace(0, 2, 1000), method="kmeans_exact", bits=3)
    cfg = ADCConfig(ref_sigma=0.1, offset_sigma=0.02)
    x = jnp.asarray(np.random.default_rng(1).uniform(0, 2, (64, 32)).astype(np.float32))
    a = nl_adc(x, nl, cfg=cfg, chip_key=jax.random.key(5))
    b = nl_adc(x, nl, cfg=cfg, chip_key=jax.random.key(5))
    c = nl_adc(x, nl, cfg=cfg, chip_key=jax.random.key(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    keys = jax.random.split(jax.random.key(9), 4)
    mc = jax.jit(jax.vmap(lambda k: nl_adc(x, nl, cfg=cfg, chip_key=k)))(keys)
    for i in range(4):
        np.testing.assert_array_equal(mc[i], nl_adc(x, nl, cfg=cfg, chip_key=keys[i]))


def test_reference_variation_scales_each_ramp_step():
    lv = jnp.tile(jnp.linspace(0.0, 2.0, 16), (4000, 1))  # 4000 layers' references on one chip
    nl = bq.NLLevels.from_levels(lv, lo=jnp.zeros(4000), hi=jnp.full(4000, 2.0))
    t = chip_thresholds(nl, nl.thresholds, ADCConfig(ref_sigma=0.05), jax.random.key(2))
    inc = np.diff(np.asarray(t), axis=-1, prepend=0.0)
    nominal = np.diff(np.asarray(nl.thresholds), axis=-1, prepend=0.0)
    rel = inc / nominal - 1
    assert abs(rel.std() / 0.05 - 1) < 0.05
    assert np.all(np.diff(np.asarray(t), axis=-1) >= 0)  # the ramp stays monotone


def test_inl_bow_and_saturation():
    nl = bq.NLLevels.from_levels(jnp.linspace(0.0, 1.0, 8), lo=0.0, hi=1.0)
    t = chip_thresholds(nl, nl.thresholds, ADCConfig(inl=0.02))
    u = np.asarray(nl.thresholds)
    np.testing.assert_allclose(np.asarray(t) - u, 0.02 * 4 * u * (1 - u), atol=1e-7)
    x = jnp.linspace(0.0, 1.0, 11)
    sat = _analog_input(x, jnp.float32(0.0), jnp.float32(1.0), ADCConfig(saturation=0.5), None, None, 0)
    np.testing.assert_allclose(sat, np.tanh(0.5 * np.asarray(x)) / 0.5, rtol=1e-6)
    assert np.all(np.diff(np.asarray(sat)) > 0)


def test_missing_keys_and_bad_configs():
    nl = fine_linear(3)
    with pytest.raises(ValueError, match="key: noise_sigma"):
        nl_adc(jnp.ones(4), nl, cfg=ADCConfig(noise_sigma=0.1))
    with pytest.raises(ValueError, match="chip_key: ref_sigma"):
        nl_adc(jnp.ones(4), nl, cfg=ADCConfig(ref_sigma=0.1))
    with pytest.raises(ValueError, match="chip_key: offset_sigma"):
        nl_adc(jnp.ones(4), nl, cfg=ADCConfig(offset_sigma=0.1))
    for kwargs, field in [(dict(noise_sigma=-1.0), "noise_sigma"), (dict(ref_sigma=float("nan")), "ref_sigma"),
                          (dict(inl=0.3), "inl"), (dict(offset_sigma="x"), "offset_sigma"), (dict(noise_rng="mt"), "noise_rng")]:
        with pytest.raises(ValueError, match=field):
            ADCConfig(**kwargs)
    with pytest.raises(ValueError, match="thresholds"):
        STEConfig(thresholds="soft")
    with pytest.raises(ValueError, match="learn_levels"):
        STEConfig(learn_levels=1)


# ---------------------------------------------------------------- gradients

NL4 = bq.NLLevels.from_levels(jnp.array([0.0, 1.0, 2.0, 3.0]), lo=0.0, hi=3.0)  # thresholds .5 1.5 2.5


def test_input_gradient_is_clipped_identity():
    x = jnp.array([-1.0, 0.0, 0.2, 1.5, 3.0, 3.1])
    g = jax.grad(lambda v: jnp.sum(nl_adc(v, NL4) * jnp.arange(1.0, 7.0)))(x)
    np.testing.assert_array_equal(g, [0.0, 2.0, 3.0, 4.0, 5.0, 0.0])


def test_level_gradients_count_codes_and_scale():
    x = jnp.array([0.1, 0.2, 0.7, 2.6, 2.9, 9.0])  # codes 0, 0, 1, 3, 3, 3
    f = lambda lv, s: jnp.sum(nl_adc(x, NL4.replace(levels=lv), ste=STEConfig(learn_levels=True, level_grad_scale=s)))  # noqa: E731
    np.testing.assert_array_equal(jax.grad(f)(NL4.levels, 1.0), [2.0, 1.0, 0.0, 3.0])
    np.testing.assert_array_equal(jax.grad(f)(NL4.levels, 0.5), [1.0, 0.5, 0.0, 1.5])
    frozen = jax.grad(lambda lv: jnp.sum(nl_adc(x, NL4.replace(levels=lv))))(NL4.levels)
    np.testing.assert_array_equal(frozen, [0.0, 0.0, 0.0, 0.0])


def test_threshold_gradients_triangular_surrogate():
    x = jnp.array([0.5, 0.75, 1.5, 2.0])
    g = jax.grad(lambda t: jnp.sum(nl_adc(x, NL4.replace(thresholds=t), ste=STEConfig(thresholds="learned"))))(NL4.thresholds)
    # w = 0.5 for every threshold: x=0.5 at t0 (-2); x=0.75 is 0.25 from t0 (-1);
    # x=1.5 at t1 (-2); x=2.0 is 0.5 from t1 and t2 (0).
    np.testing.assert_allclose(g, [-3.0, -2.0, 0.0])


def test_midpoint_rule_recomputes_thresholds():
    odd = NL4.replace(thresholds=jnp.array([0.9, 1.1, 2.9]))
    x = jnp.array([0.7, 1.2])
    np.testing.assert_array_equal(nl_adc(x, odd), [0.0, 2.0])  # as given
    np.testing.assert_array_equal(nl_adc(x, odd, ste=STEConfig(thresholds="midpoint")), [1.0, 1.0])


def test_check_grads_on_smooth_parts():
    cfg = ADCConfig(saturation=0.7, offset_sigma=0.05)
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 2, (3, 5)).astype(np.float32))
    f = lambda v: _analog_input(v, jnp.float32(0.0), jnp.float32(2.0), cfg, None, jax.random.key(1), 0)  # noqa: E731
    check_grads(f, (x,), order=2, modes=["fwd", "rev"], atol=1e-2, rtol=1e-2)
    nl = bq.NLLevels.from_levels(jnp.linspace(0.0, 2.0, 8), lo=0.0, hi=2.0)
    g = lambda t: chip_thresholds(nl, t, ADCConfig(ref_sigma=0.05, inl=0.05), jax.random.key(4))  # noqa: E731
    check_grads(g, (nl.thresholds,), order=1, modes=["fwd", "rev"], atol=1e-2, rtol=1e-2)


def test_jit_vmap_grad_compose():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(5, 16)).astype(np.float32))
    nl = bq.NLLevels.from_levels(jnp.array([-1.0, -0.2, 0.3, 1.5]), lo=-1.5, hi=1.5)
    rule = STEConfig(learn_levels=True)

    def loss(lv, row):
        return jnp.sum(nl_adc(row, nl.replace(levels=lv), ste=rule) ** 2)

    per_row = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(nl.levels, x)
    summed = jax.grad(lambda lv: sum(loss(lv, x[i]) for i in range(5)))(nl.levels)
    np.testing.assert_allclose(per_row.sum(0), summed, rtol=1e-6)


def test_hash_noise_statistics_and_determinism():
    a = hash_normal(jax.random.key(0), (2_000_000,))
    np.testing.assert_array_equal(a, hash_normal(jax.random.key(0), (2_000_000,)))
    b = np.asarray(hash_normal(jax.random.key(1), (2_000_000,)))
    a = np.asarray(a)
    assert abs(a.mean()) < 3e-3 and abs(a.std() - 1) < 3e-3
    assert abs(np.corrcoef(a, b)[0, 1]) < 3e-3 and abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 3e-3
    assert np.abs(a).max() <= 3.47  # Irwin-Hall (n = 4) tails are bounded
