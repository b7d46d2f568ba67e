"""The crossbar model: exactness, partial sums, quantization pieces, config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import bskmq_jax as bq
from bskmq_jax.adc import nl_adc
from bskmq_jax.imc import IMCConfig, bit_planes, conv_channels_per_tile, imc_conv, imc_dense, psum_adc_range
from bskmq_jax.imc.quant import quantize_inputs, quantize_weights, weight_slices

DN = ("NHWC", "HWIO", "NHWC")


@pytest.fixture(scope="module")
def operands():
    rng = np.random.default_rng(0)
    return {
        "x": jnp.asarray(rng.normal(size=(8, 600)).astype(np.float32)),
        "w": jnp.asarray(rng.normal(size=(600, 24)).astype(np.float32)),
        "xc": jnp.asarray(rng.normal(size=(2, 9, 9, 70)).astype(np.float32)),
        "wc": jnp.asarray(rng.normal(size=(3, 3, 70, 16)).astype(np.float32)),
    }


def _linear_levels(ref, bits=12):
    m = float(jnp.max(jnp.abs(ref))) * 1.05
    return bq.NLLevels.from_levels(jnp.linspace(-m, m, 2**bits), lo=-m, hi=m)


def test_high_precision_crossbar_matches_float(operands):
    cfg = IMCConfig(in_bits=16, w_bits=16, adc_bits=12)
    ref = operands["x"] @ operands["w"]
    out = nl_adc(imc_dense(operands["x"], operands["w"], cfg=cfg), _linear_levels(ref))
    assert float(jnp.max(jnp.abs(out - ref)) / jnp.max(jnp.abs(ref))) < 1e-3
    refc = lax.conv_general_dilated(operands["xc"], operands["wc"], (1, 1), "SAME", dimension_numbers=DN)
    outc = nl_adc(imc_conv(operands["xc"], operands["wc"], cfg=cfg), _linear_levels(refc))
    assert float(jnp.max(jnp.abs(outc - refc)) / jnp.max(jnp.abs(refc))) < 1e-3


@pytest.mark.parametrize("bit_serial, cell_bits", [(False, None), (True, None), (True, 2), (False, 3)])
def test_partial_sum_linear_adc_at_high_bits_equals_fused(operands, bit_serial, cell_bits):
    # 4/4 bits keep every partial sum within a 16-bit ADC's lossless range.
    kw = dict(in_bits=4, w_bits=4, adc_bits=16, bit_serial=bit_serial, cell_bits=cell_bits)
    fused, psum = IMCConfig(**kw), IMCConfig(mode="partial_sum", **kw)
    a = imc_dense(operands["x"], operands["w"], cfg=psum)
    b = imc_dense(operands["x"], operands["w"], cfg=fused)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))))
    ac = imc_conv(operands["xc"], operands["wc"], cfg=psum)
    bc = imc_conv(operands["xc"], operands["wc"], cfg=fused)
    np.testing.assert_allclose(ac, bc, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(bc))))


def test_partial_sum_error_vs_adc_bits(operands):
    exact = imc_conv(operands["xc"], operands["wc"], cfg=IMCConfig(in_bits=6, w_bits=2, adc_bits=3))
    errs = []
    for bits in (4, 6, 8, 10):
        cfg = IMCConfig(in_bits=6, w_bits=2, adc_bits=bits, mode="partial_sum", bit_serial=True)
        errs.append(float(jnp.linalg.norm(imc_conv(operands["xc"], operands["wc"], cfg=cfg) - exact)))
    assert errs[-1] == 0.0  # 2**9 >= FS = 3*3*28 rows: lossless
    # Not monotone at the low end: at 4 bits nearly every sum rounds to 0,
    # while at 6 bits LSB errors of the top input-bit plane are multiplied by
    # 32 and the result can be further off than an all-zero output.
    assert errs[2] < errs[1] and errs[2] > 0, errs


def test_psum_adc_is_mid_tread_with_integer_lsb():
    lo, hi = psum_adc_range(252.0, 8)
    assert (lo, hi) == (-252.0, 250.03125)
    assert psum_adc_range(100.0, 10) == (-512.0, 511.0)  # enough bits: one level per integer


def test_bit_planes_and_weight_slices_reconstruct():
    x = jnp.arange(-31.0, 32.0)
    planes, w = bit_planes(x, 6, signed=True)
    np.testing.assert_array_equal(jnp.tensordot(w, planes, axes=1), x)
    u = jnp.arange(0.0, 64.0)
    planes, w = bit_planes(u, 6, signed=False)
    np.testing.assert_array_equal(jnp.tensordot(w, planes, axes=1), u)
    wi = jnp.arange(-127.0, 128.0)
    for cb in (1, 2, 3, 7):
        s, sw = weight_slices(wi, 8, cb)
        assert s.shape[0] == -(-7 // cb) and float(jnp.max(jnp.abs(s))) <= 2**cb - 1
        np.testing.assert_array_equal(jnp.tensordot(sw, s, axes=1), wi)


def test_weight_and_input_quantization():
    w = jnp.array([[1.0, -0.5], [-3.0, 0.25], [0.5, 0.1]])
    wi, s = quantize_weights(w, 3)  # qmax 3, per column
    np.testing.assert_allclose(s, [1.0, 0.5 / 3])
    np.testing.assert_array_equal(wi, [[1, -3], [-3, 2], [0, 1]])
    wb, sb = quantize_weights(w, 1)
    np.testing.assert_array_equal(wb, [[1, -1], [-1, 1], [1, 1]])
    np.testing.assert_allclose(sb, [1.5, 0.85 / 3], rtol=1e-6)
    xi, sx = quantize_inputs(jnp.array([-1.0, 0.0, 1.5, 3.0]), 3, signed=False)  # 0..7
    np.testing.assert_array_equal(xi, [0, 0, 4, 7])
    assert float(sx) == pytest.approx(3 / 7)
    g = jax.grad(lambda v: jnp.sum(quantize_weights(v, 4)[0]))(w)  # straight-through rounding
    assert bool(jnp.all(g != 0))


def test_kernel_wise_mapping():
    assert conv_channels_per_tile((3, 3), 256) == 28
    assert conv_channels_per_tile((1, 1), 256) == 256
    with pytest.raises(ValueError, match="rows_per_array"):
        conv_channels_per_tile((7, 7), 32)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(in_bits=0), "in_bits"),
        (dict(w_bits=17), "w_bits"),
        (dict(adc_bits=0), "adc_bits"),
        (dict(rows_per_array=0), "rows_per_array"),
        (dict(cell_bits=0), "cell_bits"),
        (dict(mode="analog"), "mode"),
        (dict(adc="ideal"), "adc"),
        (dict(in_bits=1, input_signed=True), "in_bits"),
        (dict(in_bits=True), "in_bits"),
    ],
)
def test_bad_imc_config(kwargs, field):
    with pytest.raises(ValueError, match=field):
        IMCConfig(**kwargs)


def test_jit_vmap_grad_compose(operands):
    cfg = IMCConfig(in_bits=6, w_bits=4, adc_bits=4, mode="partial_sum", cell_bits=2, bit_serial=True)
    x, w = operands["x"], operands["w"]
    loss = lambda w, xb: jnp.sum(jax.nn.relu(imc_dense(xb, w, cfg=cfg)) ** 2)  # noqa: E731
    g = jax.jit(jax.grad(loss))(w, x)
    assert g.shape == w.shape and bool(jnp.all(jnp.isfinite(g)))
    per = jax.vmap(lambda xb: imc_dense(xb[None], w, cfg=IMCConfig(in_bits=16, w_bits=16)))(x)
    ref = x @ w
    np.testing.assert_allclose(per[:, 0], ref, rtol=0, atol=1e-3 * float(jnp.max(jnp.abs(ref))))
