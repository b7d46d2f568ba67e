"""Model infrastructure: quantization spec and factory, weight rules, fixture formulas."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bskmq_jax import imc
from bskmq_jax.imc import IMCConfig
from bskmq_jax.models import QuantSpec, create, export_checkpoint, load_checkpoint, param_count
from bskmq_jax.models.fixtures import image_input, state_dict_from_spec, tensor_values, token_input
from bskmq_jax.models.quant import LayerFactory
from bskmq_jax.models.weights import conv_rules, dense_rules, read_safetensors, write_safetensors

LOW = IMCConfig(in_bits=6, w_bits=2, adc_bits=3)
HIGH = IMCConfig(in_bits=8, w_bits=8, adc_bits=8)


class Toy(nnx.Module):
    """conv1 (+bn) -> block.0 -> fc, torch names conv1/bn1, block.0.conv/.bn, fc."""

    def __init__(self, quant=None, rngs=None, misname=False):
        f = LayerFactory(quant, rngs or nnx.Rngs(0))
        self.conv1 = f.conv("conv1", 3, 4, (3, 3), use_bn=True, use_bias=False)
        self.block = nnx.List([f.conv("block.0" if not misname else "block.zero", 4, 4, (1, 1), input_signed=False)])
        self.fc = f.dense("fc", 4, 2, input_signed=False)
        f.finish(self)

    def __call__(self, x):
        h = self.block[0](self.conv1(x))
        return self.fc(h.mean(axis=(1, 2)))

    def reference_rules(self):
        return (conv_rules(("conv1",), "conv1", "bn1") + conv_rules(("block", 0), "block.0.conv", bias=True)
                + dense_rules(("fc",), "fc"))


def test_spec_resolution_first_match_wins_and_none_is_digital():
    spec = QuantSpec(LOW, overrides=(("conv1", HIGH), ("block.*", None), ("*", HIGH)))
    m = Toy(spec)
    assert m.conv1.quant.adc_bits == 8 and m.block[0].quant is None and m.fc.quant.adc_bits == 8
    assert m.block[0].quant is None
    assert QuantSpec.coerce(LOW).default == LOW and QuantSpec.coerce(None) is None
    assert QuantSpec(LOW, overrides={"fc": HIGH}).resolve("fc") == (HIGH, "fc")


def test_structural_input_sign_is_applied():
    m = Toy(LOW)
    assert m.conv1.quant.input_signed and not m.block[0].quant.input_signed and not m.fc.quant.input_signed
    with pytest.raises(ValueError, match="conv1: in_bits"):
        Toy(IMCConfig(in_bits=1, input_signed=False))


def test_unmatched_pattern_and_wrong_names_raise():
    with pytest.raises(ValueError, match=r"override pattern\(s\) \['layer9\.\*'\] match no layer"):
        Toy(QuantSpec(LOW, overrides=(("layer9.*", HIGH),)))
    with pytest.raises(ValueError, match="not attribute paths"):
        Toy(LOW, misname=True)
    with pytest.raises(ValueError, match="quant"):
        Toy(quant="6/2/3")
    with pytest.raises(ValueError, match="overrides"):
        QuantSpec(LOW, overrides=(("fc", "8/8/8"),))


def test_float_model_with_bn_equals_reference_math():
    m = Toy(LOW)
    m.eval()
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype(np.float32))
    y = m(x)  # float mode
    bn = m.conv1.bn
    z = nnx.Conv(3, 4, (3, 3), use_bias=False, rngs=nnx.Rngs(0))
    z.kernel[...] = m.conv1.kernel[...]
    h = (z(x) - bn.mean[...]) / jnp.sqrt(bn.var[...] + bn.epsilon) * bn.scale[...] + bn.bias[...]
    h = nnx.relu(h)
    h = nnx.relu(h @ m.block[0].kernel[...][0, 0] + m.block[0].bias[...])
    np.testing.assert_allclose(y, h.mean(axis=(1, 2)) @ m.fc.kernel[...] + m.fc.bias[...], rtol=1e-5, atol=1e-6)


def test_bn_folding_on_the_crossbar_matches_float_at_high_precision():
    m = Toy(IMCConfig(in_bits=16, w_bits=16, adc_bits=12))
    m.eval()
    rng = np.random.default_rng(1)
    m.conv1.bn.mean[...] = jnp.asarray(rng.normal(size=4).astype(np.float32))
    m.conv1.bn.var[...] = jnp.asarray(rng.uniform(0.5, 2, 4).astype(np.float32))
    x = jnp.asarray(rng.normal(size=(2, 5, 5, 3)).astype(np.float32))
    float_out = m.conv1(x)
    imc.set_mode(m, "calibrate")  # crossbar pre-activation, float activation
    np.testing.assert_allclose(m.conv1(x), float_out, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(float_out))))


def test_checkpoint_round_trip_and_errors(tmp_path):
    m = Toy(LOW)
    state = export_checkpoint(m)
    assert sorted(state) == sorted(r.key for r in m.reference_rules())
    assert state["conv1.weight"].shape == (4, 3, 3, 3)  # torch OIHW
    assert state["fc.weight"].shape == (2, 4)  # torch [out, in]
    new = {k: (v + 1.0).astype(np.float32) for k, v in state.items()}
    load_checkpoint(m, new)
    np.testing.assert_array_equal(export_checkpoint(m)["bn1.running_var"], new["bn1.running_var"])
    write_safetensors(tmp_path / "toy.safetensors", new)
    m2 = load_checkpoint(Toy(LOW), tmp_path / "toy.safetensors")
    for k, v in export_checkpoint(m2).items():
        np.testing.assert_array_equal(v, new[k])
    before = export_checkpoint(m2)
    bad = dict(new)
    del bad["fc.bias"]
    bad["extra.weight"] = np.zeros(3, np.float32)
    bad["fc.weight"] = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError) as e:
        load_checkpoint(m2, bad)
    msg = str(e.value)
    assert "missing key(s): ['fc.bias']" in msg and "unexpected key(s): ['extra.weight']" in msg and "fc.weight" in msg
    for k, v in export_checkpoint(m2).items():  # nothing was written
        np.testing.assert_array_equal(v, before[k])
    ok = dict(new, **{"bn1.num_batches_tracked": np.zeros((), np.int64)})
    load_checkpoint(m2, ok)  # ignored by default
    with pytest.raises(ValueError, match="does not exist"):
        read_safetensors(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        read_safetensors(tmp_path / "junk.safetensors")
    assert param_count(m) == 4 * 27 + 8 + 16 + 4 + 8 + 2


def test_fixture_formulas_are_deterministic_and_well_scaled():
    spec = [["layer.weight", [64, 32, 3, 3]], ["layer.bias", [64]], ["bn.running_var", [64]], ["bn.weight", [64]]]
    a, b = state_dict_from_spec(spec), state_dict_from_spec(list(reversed(spec)))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])  # order of the spec does not matter
    assert np.all(a["bn.running_var"] >= 1.0)
    w = a["layer.weight"]
    assert 0.1 < w.std() * np.sqrt(32 * 9) < 1.5
    assert tensor_values("x.num_batches_tracked", (), 0).dtype == np.int64
    assert image_input((1, 3, 4, 4)).shape == (1, 3, 4, 4)
    ids = token_input(2, 8, 30522)
    assert ids.shape == (2, 8) and ids[0, 0] == 101 and ids.max() < 30522


def test_create_unknown_model_lists_known():
    with pytest.raises(ValueError, match="known models are .*resnet18"):
        create("alexnet", num_classes=10)
