"""Flax NNX IMC layers: modes, calibration seam, levels, chips, tracing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import bskmq_jax as bq
from bskmq_jax import imc
from bskmq_jax.adc import ADCConfig, STEConfig, nl_adc

Q = imc.IMCConfig(in_bits=6, w_bits=4, adc_bits=3)
DN = ("NHWC", "HWIO", "NHWC")


class Net(nnx.Module):
    def __init__(self, quant, rngs, head_quant="same"):
        self.conv1 = imc.IMCConv(1, 8, (3, 3), quant=quant, rngs=rngs)
        self.blocks = nnx.List([imc.IMCConv(8, 8, (3, 3), quant=quant, rngs=rngs) for _ in range(2)])
        self.fc = imc.IMCDense(8 * 8 * 8, 10, quant=quant if head_quant == "same" else head_quant, activation="identity", rngs=rngs)

    def __call__(self, x):
        h = self.conv1(x)
        for b in self.blocks:
            h = b(h)
        return self.fc(h.reshape(h.shape[0], -1))


@pytest.fixture()
def x():
    return jnp.asarray(np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype(np.float32))


def _float_forward(m, x):
    h = x
    for layer in (m.conv1, *m.blocks):
        h = jax.nn.relu(jax.lax.conv_general_dilated(h, layer.kernel[...], (1, 1), "SAME", dimension_numbers=DN) + layer.bias[...])
    return h.reshape(h.shape[0], -1) @ m.fc.kernel[...] + m.fc.bias[...]


def _calibrate_and_fit(m, x, method="kmeans_exact"):
    f = nnx.jit(lambda m, v: m(v))
    imc.set_mode(m, "calibrate")
    for i in range(3):
        f(m, x + 0.1 * i)
    st = imc.collect_stats(m)
    imc.load_levels(m, {n: bq.fit_levels_from_stats(s, method=method, bits=3) for n, s in st.items()})
    return st


def test_float_mode_is_exactly_the_float_model(x):
    m = Net(Q, nnx.Rngs(0))
    assert imc.get_mode(m) is imc.QuantMode.FLOAT
    np.testing.assert_array_equal(m(x), _float_forward(m, x))


def test_calibration_fills_stats_by_dotted_name(x):
    m = Net(Q, nnx.Rngs(0))
    st = _calibrate_and_fit(m, x)
    assert sorted(st) == ["blocks.0", "blocks.1", "conv1", "fc"]
    assert float(st["conv1"].count[0]) == 3 * 16 * 8 * 8 * 8
    assert float(st["fc"].count[0]) == 3 * 16 * 10
    assert float(st["conv1"].lo[0]) == 0.0  # ReLU layer: range starts at 0
    assert float(st["fc"].lo[0]) < 0.0  # identity layer: range from the data
    # Calibration outputs are float activations of the crossbar pre-activation.
    imc.set_mode(m, "calibrate")
    want = jax.nn.relu(imc.imc_conv(x, m.conv1.kernel[...], m.conv1.bias[...], cfg=Q))
    np.testing.assert_array_equal(m.conv1(x), want)
    imc.reset_stats(m)
    assert imc.collect_stats(m) == {}


def test_quantized_mode_matches_functional_path(x):
    m = Net(Q, nnx.Rngs(0))
    _calibrate_and_fit(m, x)
    imc.set_mode(m, imc.QuantMode.QUANTIZED)
    h = m.conv1(x)
    want = nl_adc(imc.imc_conv(x, m.conv1.kernel[...], m.conv1.bias[...], cfg=Q), m.conv1.adc.nl_levels())
    np.testing.assert_array_equal(h, want)
    levels = np.asarray(m.conv1.adc.nl_levels().levels)
    assert set(np.unique(np.asarray(h))) <= set(levels.tolist())  # outputs are levels
    y_q, y_f = m(x), _float_forward(m, x)
    assert 0 < float(jnp.linalg.norm(y_q - y_f) / jnp.linalg.norm(y_f)) < 1.0
    assert set(imc.get_levels(m)) == {"blocks.0", "blocks.1", "conv1", "fc"}


def test_mode_and_level_errors(x):
    m = Net(Q, nnx.Rngs(0))
    with pytest.raises(ValueError, match="no fitted NL-ADC levels"):
        imc.set_mode(m, "quantized")
    with pytest.raises(ValueError, match="mode"):
        imc.set_mode(m, "int8")
    with pytest.raises(ValueError, match=r"unknown layer name\(s\) \['conv9'\]"):
        imc.load_levels(m, {"conv9": bq.NLLevels.from_levels(jnp.linspace(0, 1, 8))})
    with pytest.raises(ValueError, match="conv1: levels: expected one layer"):
        imc.load_levels(m, {"conv1": bq.NLLevels.from_levels(jnp.linspace(0, 1, 8)[None].repeat(2, 0))})
    imc.load_levels(m, {"conv1": bq.NLLevels.from_levels(jnp.linspace(0, 1, 4))})  # reconfigurable: 3 -> 2 bits
    assert m.conv1.adc.bits == 2 and m.conv1.adc.levels[...].shape == (4,)
    with pytest.raises(ValueError, match="no IMC layers"):
        imc.set_mode(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), "float")
    with pytest.raises(ValueError, match="activation"):
        imc.IMCDense(2, 2, activation="swish", rngs=nnx.Rngs(0))


def test_digital_layers_and_partial_sum_layers(x):
    psum = imc.IMCConfig(in_bits=6, w_bits=4, adc_bits=10, mode="partial_sum", bit_serial=True)
    m = Net(psum, nnx.Rngs(0), head_quant=None)
    imc.set_mode(m, "calibrate")
    m(x)
    imc.set_mode(m, "quantized")  # partial_sum layers need no NL levels; the fc stays digital
    h = m.conv1(x)
    np.testing.assert_allclose(h, jax.nn.relu(imc.imc_conv(x, m.conv1.kernel[...], m.conv1.bias[...], cfg=psum)), rtol=1e-6)
    flat = m.blocks[1](m.blocks[0](h)).reshape(16, -1)
    np.testing.assert_array_equal(m.fc(flat), flat @ m.fc.kernel[...] + m.fc.bias[...])


def test_learned_levels_are_params_with_gradients(x):
    q = imc.IMCConfig(in_bits=6, w_bits=4, adc_bits=3, ste=STEConfig(learn_levels=True))
    layer = imc.IMCDense(4, 6, quant=q, learn_levels=True, rngs=nnx.Rngs(1))
    assert isinstance(layer.adc.levels, nnx.Param)
    layer.adc.set_levels(bq.NLLevels.from_levels(jnp.linspace(0.0, 2.0, 8)))
    imc.set_mode(layer, "quantized")
    v = jnp.asarray(np.random.default_rng(3).normal(size=(32, 4)).astype(np.float32))
    grads = nnx.grad(lambda mod: jnp.sum(mod(v) ** 2))(layer)
    assert float(jnp.sum(jnp.abs(grads.adc.levels[...]))) > 0
    frozen = imc.IMCDense(4, 6, quant=Q, rngs=nnx.Rngs(1))
    assert not isinstance(frozen.adc.levels, nnx.Param)
    assert "adc" not in nnx.state(frozen, nnx.Param)


def test_chips_and_noise(x):
    noisy = imc.IMCConfig(in_bits=6, w_bits=4, adc_bits=3, adc=ADCConfig(offset_sigma=0.05, noise_sigma=0.02))
    m = Net(noisy, nnx.Rngs(0))
    _calibrate_and_fit(m, x)
    imc.set_mode(m, "quantized")
    imc.set_chip(m, jax.random.key(1))
    a = m.conv1.adc.chip_key[...]
    imc.set_chip(m, jax.random.key(1))
    np.testing.assert_array_equal(m.conv1.adc.chip_key[...], a)
    y1, y2 = m(x), m(x)
    assert not np.array_equal(y1, y2)  # per-conversion noise differs call to call
    imc.set_chip(m, jax.random.key(2))
    assert not np.array_equal(m.conv1.adc.chip_key[...], a)


def test_quantized_forward_traces_once(x):
    m = Net(Q, nnx.Rngs(0))
    _calibrate_and_fit(m, x)
    imc.set_mode(m, "quantized")
    traces = []

    @nnx.jit
    def fwd(m, v):
        traces.append(1)
        return m(v)

    for i in range(4):
        fwd(m, x * (1 + 0.1 * i))
    assert len(traces) == 1
