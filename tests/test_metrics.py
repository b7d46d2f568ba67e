"""quant_error metrics with closed-form expected values."""

import jax.numpy as jnp
import numpy as np
import pytest

import bskmq_jax as bq
from bskmq_jax.metrics import quant_error


@pytest.fixture(scope="module")
def uniform():
    return np.random.default_rng(3).uniform(0.0, 1.0, 2_000_000).astype(np.float32)


def test_uniform_source_linear_quantizer(uniform):
    nl = bq.fit_levels(uniform, method="linear", bits=3, lo=0.0, hi=1.0)
    step = 1.0 / 7
    e = quant_error(uniform, nl)
    np.testing.assert_allclose(e.mse, step**2 / 12, rtol=0.01)  # uniform-source MSE
    np.testing.assert_allclose(e.max_abs, step / 2, rtol=1e-3)
    np.testing.assert_allclose(e.sqnr_db, 10 * np.log10((1 / 3) / (step**2 / 12)), atol=0.05)
    np.testing.assert_allclose(e.interior_mse, e.mse, rtol=1e-3)  # no boundary masses here
    assert int(e.used_levels) == 8


def test_cdf_on_continuous_data_uses_codes_evenly(uniform):
    e = quant_error(uniform, bq.fit_levels(uniform, method="cdf", bits=3))
    np.testing.assert_allclose(e.entropy_bits, 3.0, atol=1e-3)


def test_interior_mse_excludes_boundary_masses():
    x = np.concatenate([np.zeros(500), np.full(100, 2.0), np.linspace(0.01, 1.99, 400)]).astype(np.float32)
    nl = bq.fit_levels(x, method="linear", bits=2, lo=0.0, hi=2.0)  # ends exact at 0 and 2
    e = quant_error(x, nl)
    err = np.asarray(bq.quantize(x, nl)) - x
    np.testing.assert_allclose(e.mse, np.mean(err**2), rtol=1e-5)
    np.testing.assert_allclose(e.interior_mse, np.mean(err[600:] ** 2), rtol=1e-5)
    np.testing.assert_allclose(e.mse, e.interior_mse * 0.4, rtol=1e-5)


def test_clamp_reference_and_weights():
    x = np.array([-1.0, 0.25, 0.5, 3.0], np.float32)
    nl = bq.NLLevels.from_levels(jnp.array([0.0, 1.0]), lo=0.0, hi=1.0)
    clamped = quant_error(x, nl)  # reference clip(x, 0, 1) = [0, .25, .5, 1] -> quantized [0, 0, 1, 1]
    np.testing.assert_allclose(clamped.mse, (0.25**2 + 0.5**2) / 4)
    raw = quant_error(x, nl, clamp=False)  # reference x itself
    np.testing.assert_allclose(raw.mse, (1 + 0.25**2 + 0.5**2 + 4) / 4)
    w = np.array([1.0, 2.0, 0.0, 1.0], np.float32)
    rep = np.array([-1.0, 0.25, 0.25, 3.0], np.float32)
    np.testing.assert_allclose(quant_error(x, nl, weights=w).mse, quant_error(rep, nl).mse)
    np.testing.assert_allclose(quant_error(x, nl).entropy_bits, 1.0)  # codes 0,0,1,1


def test_per_layer_fields_and_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 50)).astype(np.float32)
    nl = bq.fit_levels(x.reshape(3, -1), method="kmeans_exact", bits=2)
    e = quant_error(x, nl)
    assert e.mse.shape == (3,) and e.entropy_bits.shape == (3,)
    for i in range(3):
        np.testing.assert_allclose(e.mse[i], quant_error(x[i], nl[i]).mse, rtol=1e-6)
    d = e.as_dict()
    assert set(d) == {"mse", "interior_mse", "sqnr_db", "max_abs", "entropy_bits", "used_levels"}
    with pytest.raises(ValueError, match="batch shape"):
        quant_error(x[:2], nl)
