"""CNNs (ResNet-18, VGG-16, VGG-16-BN, Inception-V3): torchvision equivalence, import, quantization.

The full models are built once each; VGGs are dropped after their fixture
check (0.55 GB each). Quantized forwards use the small variants of ResNet and
VGG at 16-32 pixels, and the full Inception-V3 at its smallest input (75x75).
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import bskmq_jax as bq
from bskmq_jax import imc
from bskmq_jax.models import QuantSpec, create, export_checkpoint, load_checkpoint, param_count
from bskmq_jax.models.cnn_ops import adaptive_avg_pool, avg_pool, max_pool
from bskmq_jax.models.fixtures import FIXTURE_VERSION, image_input, state_dict_from_spec
from bskmq_jax.models.weights import read_safetensors

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
PUBLISHED = {"resnet18": 11_689_512, "vgg16": 138_357_544, "vgg16_bn": 138_365_992, "inception_v3": 27_161_264}
HEAD = {"resnet18": "fc", "vgg16": "classifier.6", "vgg16_bn": "classifier.6", "inception_v3": "fc"}
Q = imc.IMCConfig(in_bits=6, w_bits=4, adc_bits=3)
# Eval-mode calibration never runs the aux head, so it stays digital (it has no levels to load).
INCEPTION_Q = QuantSpec(Q, overrides=(("AuxLogits.*", None),))
SMALL = {
    "resnet18": dict(stem="cifar", width=0.25, in_channels=1),
    "vgg16": dict(width=0.25, classifier_width=64, pool_size=1),
    "vgg16_bn": dict(width=0.25, classifier_width=64, pool_size=1),
}
SMALL_INPUT = {"resnet18": (4, 16, 16, 1), "vgg16": (4, 32, 32, 3), "vgg16_bn": (4, 32, 32, 3), "inception_v3": (2, 75, 75, 3)}


def _fixture(name):
    d = json.loads((FIXTURES / f"{name}.json").read_text())
    assert d["fixture_version"] == FIXTURE_VERSION, "fixture made with other formulas: rerun tools/make_reference_fixtures.py"
    return d


def _nhwc(d):
    assert d["input"]["layout"] == "NCHW"
    return np.transpose(image_input(tuple(d["input"]["shape"])), (0, 2, 3, 1))


def _forward(model, x):
    return np.asarray(nnx.jit(lambda m, v: m(v))(model, jnp.asarray(x)))


def _calibrate_and_fit(model, x):
    f = nnx.jit(lambda m, v: m(v))
    imc.set_mode(model, "calibrate")
    f(model, x)
    f(model, 0.5 * x)
    stats = imc.collect_stats(model)
    bits = {n: layer.adc.bits for n, layer in imc.imc_layers(model).items()}  # 3, or an override's
    imc.load_levels(model, {n: bq.fit_levels_from_stats(s, method="bs_kmq", bits=bits[n]) for n, s in stats.items()})
    return stats


class _Loaded:
    """A full model with its fixture weights loaded, and the fixture."""

    def __init__(self, name, quant):
        self.fixture = _fixture(name)
        self.state = state_dict_from_spec(self.fixture["keys"])
        self.model = create(name, num_classes=1000, quant=quant)
        self.model.eval()
        load_checkpoint(self.model, self.state)


@pytest.fixture(scope="module")
def resnet_full():
    return _Loaded("resnet18", Q)


@pytest.fixture(scope="module")
def inception_full():
    return _Loaded("inception_v3", INCEPTION_Q)


@pytest.fixture(scope="module")
def small_resnet():
    m = create("resnet18", num_classes=10, quant=Q, **SMALL["resnet18"])
    m.eval()
    return m


def _check_against_torchvision(name, loaded):
    m, d, sd = loaded.model, loaded.fixture, loaded.state
    assert param_count(m) == PUBLISHED[name]
    # Every converted layer is named as its torchvision module (ResNet's
    # downsample is torch's Sequential holding the conv and its BatchNorm).
    for layer in imc.imc_layers(m):
        assert any(k.startswith(f"{layer}.") and k.endswith("weight") for k in sd), layer
    imc.set_mode(m, "float")
    got = _forward(m, _nhwc(d))
    want = np.asarray(d["output"], np.float64)
    assert got.shape == want.shape == (1, 1000)
    err = np.abs(got - want).max()
    assert err / np.abs(want).max() < 1e-4
    # The fixture's logits are partly the classifier bias; the network's own
    # part must match too.
    assert err / np.abs(want - sd[f"{HEAD[name]}.bias"]).max() < 1e-4
    return got


def test_resnet18_matches_torchvision(resnet_full):
    got = _check_against_torchvision("resnet18", resnet_full)
    # quant=None is the same float model as a quantized one in FLOAT mode, bit for bit.
    plain = create("resnet18", num_classes=1000)
    plain.eval()
    load_checkpoint(plain, resnet_full.state)
    np.testing.assert_array_equal(_forward(plain, _nhwc(resnet_full.fixture)), got)


def test_inception_v3_matches_torchvision(inception_full):
    _check_against_torchvision("inception_v3", inception_full)


@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn"])
def test_vgg_matches_torchvision(name):
    _check_against_torchvision(name, _Loaded(name, None))


def test_inception_train_mode_returns_aux_logits(inception_full):
    m = inception_full.model
    x = jax.ShapeDtypeStruct((2, 299, 299, 3), jnp.float32)
    try:
        m.train()
        out = nnx.eval_shape(lambda m, v: m(v), m, x)
    finally:
        m.eval()
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 1000), (2, 1000)]
    assert nnx.eval_shape(lambda m, v: m(v), m, x).shape == (2, 1000)


def test_export_returns_the_loaded_tensors(resnet_full):
    out = export_checkpoint(resnet_full.model)
    want = {k: v for k, v in resnet_full.state.items() if not k.endswith("num_batches_tracked")}
    assert sorted(out) == sorted(want)
    for k, v in want.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape, k
        np.testing.assert_array_equal(out[k], v, err_msg=k)


def test_safetensors_round_trip(small_resnet, tmp_path):
    path = tmp_path / "resnet.safetensors"
    state = export_checkpoint(small_resnet, path)
    back = read_safetensors(path)
    assert sorted(back) == sorted(state)
    other = create("resnet18", num_classes=10, seed=1, **SMALL["resnet18"])
    other.eval()
    load_checkpoint(other, path)
    for k, v in export_checkpoint(other).items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)


@pytest.mark.parametrize("problem", ["missing", "unexpected", "shape"])
def test_load_errors_name_the_keys_and_write_nothing(small_resnet, problem):
    state = {k: v + 1.0 for k, v in export_checkpoint(small_resnet).items()}
    if problem == "missing":
        del state["layer2.0.downsample.1.running_var"]
        word = "layer2.0.downsample.1.running_var"
    elif problem == "unexpected":
        state["layer5.0.conv1.weight"] = np.zeros((3, 3), np.float32)
        word = "layer5.0.conv1.weight"
    else:
        state["fc.weight"] = np.zeros((11, 128), np.float32)
        word = "fc.weight"
    before = export_checkpoint(small_resnet)  # every variable a load writes
    with pytest.raises(ValueError, match=problem if problem != "shape" else "shape mismatch") as e:
        load_checkpoint(small_resnet, state)
    assert word in str(e.value)
    after = export_checkpoint(small_resnet)
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v, err_msg=k)


@pytest.mark.parametrize("name", ["resnet18", "vgg16", "vgg16_bn", "inception_v3"])
def test_quantized_forward_runs(name, request):
    if name == "inception_v3":
        m = request.getfixturevalue("inception_full").model
    elif name == "resnet18":
        m = request.getfixturevalue("small_resnet")
    else:
        m = create(name, num_classes=10, quant=Q, **SMALL[name])
        m.eval()
    x = jnp.asarray(np.random.default_rng(0).normal(size=SMALL_INPUT[name]).astype(np.float32))
    imc.set_mode(m, "float")
    y_float = _forward(m, x)
    stats = _calibrate_and_fit(m, x)
    want = [n for n, layer in imc.imc_layers(m).items() if layer.quant is not None]
    assert sorted(stats) == sorted(want)
    imc.set_mode(m, "quantized")
    y_q = _forward(m, x)
    imc.set_mode(m, "float")
    assert y_q.shape == y_float.shape
    assert np.isfinite(y_q).all()
    assert not np.allclose(y_q, y_float)


def test_quantized_forward_compiles_once(small_resnet):
    m = small_resnet
    x = jnp.asarray(np.random.default_rng(1).normal(size=SMALL_INPUT["resnet18"]).astype(np.float32))
    _calibrate_and_fit(m, x)
    imc.set_mode(m, "quantized")
    traces = []

    @nnx.jit
    def fwd(m, v):
        traces.append(1)
        return m(v)

    for i in range(3):
        fwd(m, x * (1 + 0.1 * i))
    imc.set_mode(m, "float")
    assert len(traces) == 1


def test_per_layer_overrides():
    hi = imc.IMCConfig(in_bits=8, w_bits=8, adc_bits=8)
    spec = QuantSpec(Q, overrides=(("conv1", hi), ("fc", None)))
    m = create("resnet18", num_classes=10, quant=spec, **SMALL["resnet18"])
    m.eval()
    assert (m.conv1.quant.adc_bits, m.conv1.quant.input_signed) == (8, True)
    assert m.fc.quant is None
    inner = m.layer1[0].conv1.quant
    assert (inner.adc_bits, inner.in_bits, inner.input_signed) == (3, 6, False)
    # The digital head computes the float product even in quantized mode.
    x = jnp.asarray(np.random.default_rng(2).normal(size=SMALL_INPUT["resnet18"]).astype(np.float32))
    _calibrate_and_fit(m, x)
    imc.set_mode(m, "quantized")
    h = jnp.asarray(np.abs(np.random.default_rng(3).normal(size=(2, 128))).astype(np.float32))
    np.testing.assert_array_equal(m.fc(h), h @ m.fc.kernel[...] + m.fc.bias[...])
    # VGG layers take torchvision's indices as names.
    spec = QuantSpec(Q, overrides=(("features.0", hi), ("classifier.6", None)))
    v = create("vgg16_bn", num_classes=10, quant=spec, **SMALL["vgg16_bn"])
    assert v.features["0"].quant.adc_bits == 8 and v.classifier["6"].quant is None
    assert v.features["3"].quant.adc_bits == 3


def test_override_matching_nothing_is_an_error():
    with pytest.raises(ValueError, match="layer9"):
        create("resnet18", num_classes=10, quant=QuantSpec(Q, overrides=(("layer9.*", None),)), **SMALL["resnet18"])
    with pytest.raises(ValueError, match="features.1'"):  # a BatchNorm index is not a layer
        create("vgg16_bn", num_classes=10, quant=QuantSpec(Q, overrides=(("features.1", None),)), **SMALL["vgg16_bn"])


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="resnet18.*vgg16.*vgg16_bn.*inception_v3"):
        create("resnet19", num_classes=10)


@pytest.mark.parametrize(
    "name, options, word",
    [
        ("resnet18", {"depth": 34}, "depth"),
        ("resnet18", {"stem": "tiny"}, "stem"),
        ("resnet18", {"width": 0.0}, "width"),
        ("resnet18", {"width": 0.001}, "width"),
        ("resnet18", {"in_channels": 0}, "in_channels"),
        ("vgg16", {"pool_size": 0}, "pool_size"),
        ("vgg16", {"classifier_width": 2.5}, "classifier_width"),
        ("vgg16_bn", {"dropout": 1.0}, "dropout"),
        ("vgg16_bn", {"reduced": True}, "reduced"),
        ("inception_v3", {"aux_logits": "yes"}, "aux_logits"),
        ("inception_v3", {"width": 0.5}, "width"),
    ],
)
def test_bad_variant_options_raise(name, options, word):
    with pytest.raises(ValueError, match=word):
        create(name, num_classes=10, **options)


@pytest.mark.parametrize("name", ["resnet18", "vgg16", "inception_v3"])
def test_cnn_needs_num_classes(name):
    with pytest.raises(ValueError, match="num_classes"):
        create(name, num_classes=None)


def _torch_adaptive_avg(x, out):
    """Naive numpy AdaptiveAvgPool2d (NHWC) from torch's bin formula."""
    n, h, w, c = x.shape
    y = np.zeros((n, out, out, c), x.dtype)
    for i in range(out):
        for j in range(out):
            r0, r1 = (i * h) // out, -(-((i + 1) * h) // out)
            c0, c1 = (j * w) // out, -(-((j + 1) * w) // out)
            y[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
    return y


@pytest.mark.parametrize("size, out", [(5, 7), (10, 7), (9, 3), (7, 7), (6, 1)])
def test_adaptive_avg_pool_follows_torch_bins(size, out):
    x = np.random.default_rng(size).normal(size=(2, size, size, 3)).astype(np.float32)
    np.testing.assert_allclose(adaptive_avg_pool(jnp.asarray(x), out), _torch_adaptive_avg(x, out), rtol=1e-6, atol=1e-6)


def test_pools_follow_torch_padding():
    x = -np.abs(np.random.default_rng(0).normal(size=(1, 4, 4, 1))).astype(np.float32)  # all negative
    y = np.asarray(max_pool(jnp.asarray(x), 3, 2, 1))
    assert y.shape == (1, 2, 2, 1)
    # Padding is -inf, never the max: the corner window is the max of its 2x2 real cells.
    assert y[0, 0, 0, 0] == x[0, :2, :2, 0].max()
    a = np.asarray(avg_pool(jnp.ones((1, 3, 3, 1)), 3, 1, 1))
    # count_include_pad=True: a corner sees 4 ones out of 9 cells.
    np.testing.assert_allclose(a[0, :, :, 0], np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9.0, rtol=1e-6)
