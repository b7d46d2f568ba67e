"""DistilBERT and BERT: parameter counts, Hugging Face equivalence, weight import, MiniLM, quantization.

The full-size models are built and loaded once per module (module-scoped
fixtures), and each forward compiles once; everything else uses the small
variant. The reference fixtures come from tools/reference_transformers.py.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import bskmq_jax as bq
from bskmq_jax import imc, models
from bskmq_jax.models import minilm
from bskmq_jax.models.fixtures import FIXTURE_VERSION, state_dict_from_spec
from bskmq_jax.models.transformer import load_hf_checkpoint
from bskmq_jax.models.weights import param_count

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
CALIBRATION = [
    "A man is playing a guitar.", "The new movie is awesome.", "The cat sits outside.", "A woman is slicing an onion.",
    "Stocks rallied after the announcement.", "Two dogs run through a field.", "He drove the car to work.",
    "It is raining in the city.",
]


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def load_fixture(name):
    fx = json.loads((FIXTURES / f"{name}.json").read_text())
    assert fx["fixture_version"] == FIXTURE_VERSION, "fixture formulas changed: rerun tools/make_reference_fixtures.py"
    inputs = {k: jnp.asarray(np.array(v, np.int32)) for k, v in fx["input"].items()}
    return fx, inputs


def fit_and_quantize(model, run, batches, bits=4):
    """Calibrates on ``batches``, fits BS-KMQ levels for every layer (one call) and switches to QUANTIZED."""
    imc.set_mode(model, "calibrate")
    for b in batches:
        run(model, b)
    stats = imc.collect_stats(model)
    names = list(stats)
    stacked = jax.tree.map(lambda *a: jnp.concatenate(a), *(stats[n] for n in names))
    levels = bq.fit_levels_from_stats(stacked, method="bs_kmq", bits=bits)
    imc.load_levels(model, {n: levels[i] for i, n in enumerate(names)})
    imc.set_mode(model, "quantized")
    return names


@nnx.jit
def _forward(model, inputs):
    return model(**inputs)


@pytest.fixture(scope="module")
def full():
    """name -> (full-size model loaded from the fixture weights, its float output, fixture, state dict)."""
    out = {}
    for name in ("distilbert", "bert"):
        fx, inputs = load_fixture(name)
        model = models.create(name, num_classes=None)
        state = state_dict_from_spec(fx["keys"])
        models.load_checkpoint(model, state)
        out[name] = (model, jax.device_get(_forward(model, inputs)), fx, state)
    return out


# --- Architecture --------------------------------------------------------------------------


@pytest.mark.parametrize("name, count", [("distilbert", 66_362_880), ("bert", 109_482_240)])
def test_param_counts_match_hugging_face(full, name, count):
    assert param_count(full[name][0]) == count


@pytest.mark.parametrize("name", ["distilbert", "bert"])
def test_forward_matches_hugging_face(full, name):
    _, out, fx, _ = full[name]
    hidden = out if name == "distilbert" else out.last_hidden_state
    o = fx["output"]
    assert list(hidden.shape) == o["shape"]
    assert rel_err(hidden[:, o["positions"], :: o["stride"]], np.reshape(o["hidden"], (2, len(o["positions"]), -1))) < 1e-4
    assert rel_err(np.linalg.norm(hidden.astype(np.float64), axis=-1), np.reshape(o["row_norms"], hidden.shape[:2])) < 1e-4
    if name == "bert":
        assert rel_err(out.pooler_output, np.reshape(o["pooled"], out.pooler_output.shape)) < 1e-4


@pytest.mark.parametrize("name", ["distilbert", "bert"])
def test_small_classifier_matches_hugging_face(name):
    """The sequence-classification head on the small variant (prefixed checkpoint keys)."""
    fx, inputs = load_fixture(name)
    c = fx["classifier"]
    model = models.create(name, num_classes=c["num_labels"], size="small")
    assert model.key_prefix == f"{name}."
    models.load_checkpoint(model, state_dict_from_spec(c["keys"]))
    logits = _forward(model, inputs)
    assert logits.shape == (2, c["num_labels"])
    assert rel_err(logits, np.reshape(c["logits"], logits.shape)) < 1e-4


def test_layer_names_mirror_hugging_face():
    d = models.create("distilbert", num_classes=2, size="small", quant=bq.IMCConfig())
    b = models.create("bert", num_classes=2, size="small", quant=bq.IMCConfig())
    want_d = [f"transformer.layer.0.{n}" for n in
              ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.score", "attention.context",
               "attention.out_lin", "ffn.lin1", "ffn.lin2")]
    want_b = [f"encoder.layer.0.{n}" for n in
              ("attention.self.query", "attention.self.key", "attention.self.value", "attention.self.score",
               "attention.self.context", "attention.output.dense", "intermediate.dense", "output.dense")]
    names_d, names_b = list(imc.imc_layers(d)), list(imc.imc_layers(b))
    assert set(want_d) <= set(names_d) and {"pre_classifier", "classifier"} <= set(names_d)
    assert set(want_b) <= set(names_b) and {"pooler.dense", "classifier"} <= set(names_b)
    assert len(names_d) == 2 * 8 + 2 and len(names_b) == 2 * 8 + 2
    layers = imc.imc_layers(b)
    assert layers["encoder.layer.1.intermediate.dense"].adc.activation == "gelu"
    assert layers["pooler.dense"].adc.activation == "tanh"
    assert layers["encoder.layer.1.attention.self.context"].quant.input_signed is False
    assert imc.imc_layers(d)["classifier"].quant.input_signed is False  # after the ReLU of pre_classifier


def test_bad_options_raise():
    with pytest.raises(ValueError, match="heads"):
        models.create("bert", num_classes=None, size="small", heads=3)
    with pytest.raises(ValueError, match="size"):
        models.create("bert", num_classes=None, size="tiny")
    with pytest.raises(ValueError, match="hidden_size"):
        models.create("distilbert", num_classes=None, hidden_size=64)
    with pytest.raises(ValueError, match="num_classes"):
        models.create("distilbert", num_classes=0, size="small")
    with pytest.raises(ValueError, match="type_vocab"):
        models.create("distilbert", num_classes=None, size="small", type_vocab=2)
    m = models.create("bert", num_classes=None, size="small", max_positions=8)
    with pytest.raises(ValueError, match="input_ids"):
        m(jnp.zeros((1, 4), jnp.float32))
    with pytest.raises(ValueError, match="max_positions"):
        m(jnp.zeros((1, 9), jnp.int32))
    with pytest.raises(ValueError, match="attention_mask"):
        m(jnp.zeros((1, 4), jnp.int32), jnp.ones((1, 5), jnp.int32))


def test_attention_mask_hides_padding():
    """Padded positions do not change the unpadded tokens' outputs (additive large-negative mask)."""
    m = models.create("bert", num_classes=None, size="small")
    ids = jnp.asarray(np.arange(101, 113, dtype=np.int32)[None])
    mask = jnp.asarray((np.arange(12) < 8).astype(np.int32)[None])
    a = m(ids, mask).last_hidden_state[:, :8]
    b = m(ids.at[:, 8:].set(7), mask).last_hidden_state[:, :8]
    c = m(ids[:, :8]).last_hidden_state
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a, c, rtol=0, atol=1e-5)


# --- Weight import and export -------------------------------------------------------------


@pytest.mark.parametrize("name", ["distilbert", "bert"])
def test_export_round_trip(full, name, tmp_path):
    model, _, _, state = full[name]
    exported = models.export_checkpoint(model)
    assert sorted(exported) == sorted(state)
    assert all(np.array_equal(exported[k], state[k]) for k in state)
    # Through a file, into a fresh small model (written, read back, identical).
    small = models.create(name, num_classes=2, size="small", seed=1)
    models.export_checkpoint(small, tmp_path / "small.safetensors")
    fresh = models.create(name, num_classes=2, size="small", seed=2)
    models.load_checkpoint(fresh, tmp_path / "small.safetensors")
    again = models.export_checkpoint(fresh)
    ref = models.export_checkpoint(small)
    assert all(np.array_equal(again[k], ref[k]) for k in ref)


@pytest.mark.parametrize("name", ["distilbert", "bert"])
def test_prefix_is_detected(name):
    """Checkpoints of task models carry "distilbert."/"bert."; base checkpoints do not. Both load."""
    src = models.create(name, num_classes=None, size="small", seed=1)
    state = models.export_checkpoint(src)
    assert not any(k.startswith(f"{name}.") for k in state)
    prefixed = {f"{name}.{k}": v for k, v in state.items()}
    for ckpt in (state, prefixed):
        dst = models.create(name, num_classes=None, size="small", seed=2)
        load_hf_checkpoint(dst, ckpt)
        got = models.export_checkpoint(dst)
        assert all(np.array_equal(got[k], state[k]) for k in state)
    plain = models.load_checkpoint(models.create(name, num_classes=None, size="small"), prefixed)  # same hook
    got = models.export_checkpoint(plain)
    assert all(np.array_equal(got[k], state[k]) for k in state)


@pytest.mark.parametrize("name", ["distilbert", "bert"])
def test_load_errors_name_keys_and_write_nothing(name):
    src = models.export_checkpoint(models.create(name, num_classes=None, size="small", seed=1))
    enc = "transformer" if name == "distilbert" else "encoder"
    drop = next(k for k in src if k.startswith(f"{enc}.layer.1.") and k.endswith("weight"))
    bad_shape = "embeddings.position_embeddings.weight"
    broken = {k: v for k, v in src.items() if k != drop}
    broken["extra.head.weight"] = np.zeros((2, 2), np.float32)
    broken[bad_shape] = np.zeros((7, 64), np.float32)
    model = models.create(name, num_classes=None, size="small", seed=2)
    before = models.export_checkpoint(model)
    with pytest.raises(ValueError) as e:
        models.load_checkpoint(model, broken)
    msg = str(e.value)
    assert drop in msg and "missing" in msg
    assert "extra.head.weight" in msg and "unexpected" in msg
    assert bad_shape in msg and "shape" in msg
    after = models.export_checkpoint(model)
    assert all(np.array_equal(after[k], before[k]) for k in before)


# --- The real checkpoint: all-MiniLM-L6-v2 --------------------------------------------------


@pytest.fixture(scope="module")
def minilm_results():
    """Float and 4-bit quantized sentence embeddings of the real MiniLM (one model, three modes)."""
    try:
        minilm.minilm_dir()
    except FileNotFoundError as e:
        pytest.fail(str(e))
    model = minilm.load_minilm(quant=bq.IMCConfig(in_bits=8, w_bits=8, adc_bits=4))
    tok = minilm.minilm_tokenizer()
    batch = minilm.tokenize(tok, SENTENCES)
    embed = nnx.jit(minilm.sentence_embeddings)
    floats = np.asarray(embed(model, batch))
    calib = minilm.tokenize(tok, CALIBRATION + SENTENCES, length=batch["input_ids"].shape[1])
    fit_and_quantize(model, embed, [calib], bits=4)
    quantized = np.asarray(embed(model, batch))
    return floats, quantized


def test_minilm_sentence_similarity(minilm_results):
    e, _ = minilm_results
    np.testing.assert_allclose(np.linalg.norm(e, axis=-1), 1.0, atol=1e-5)
    assert 0.70 <= float(e[0] @ e[1]) <= 0.80  # reference: 0.755
    assert float(e[0] @ e[2]) < 0.10  # reference: 0.004
    assert float(e[1] @ e[2]) < 0.10


def test_minilm_quantized_keeps_embeddings(minilm_results):
    e, q = minilm_results
    assert np.all(np.isfinite(q)) and not np.allclose(q, e)
    assert np.min(np.sum(q * e, axis=-1)) > 0.8  # measured 0.92-0.93 at 8/8/4b, BS-KMQ levels
    assert float(q[0] @ q[1]) > float(q[0] @ q[2]) + 0.3  # still ranks the paraphrase first


# --- Quantization seams -----------------------------------------------------------------------


def _small_batches(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        mask = np.ones((4, 16), np.int32)
        mask[1, 10:] = 0
        out.append({"input_ids": jnp.asarray(rng.integers(999, 30000, (4, 16)).astype(np.int32)),
                    "attention_mask": jnp.asarray(mask)})
    return out


@pytest.mark.parametrize("name, num_classes", [("distilbert", None), ("bert", 3)])
def test_small_quantized_forward_runs(name, num_classes):
    model = models.create(name, num_classes=num_classes, size="small", quant=bq.IMCConfig(in_bits=8, w_bits=8, adc_bits=4))
    batches = _small_batches(3)
    float_out = jax.tree.leaves(_forward(model, batches[0]))[0]
    names = fit_and_quantize(model, _forward, batches[1:], bits=4)
    assert len(names) == len(imc.imc_layers(model))
    q = jax.tree.leaves(_forward(model, batches[0]))[0]
    assert np.all(np.isfinite(q)) and not np.allclose(q, float_out)
    assert rel_err(q, float_out) < 0.5  # a 4-bit model, not noise


@pytest.mark.parametrize("name", ["distilbert", "bert"])
def test_quant_off_is_exactly_float(name):
    """A model built with quant, in FLOAT mode, equals the float model bit for bit."""
    plain = models.create(name, num_classes=None, size="small", seed=3)
    quant = models.create(name, num_classes=None, size="small", seed=4, quant=bq.IMCConfig(adc_bits=3))
    models.load_checkpoint(quant, models.export_checkpoint(plain))
    batch = _small_batches(1)[0]
    a, b = jax.tree.leaves(plain(**batch)), jax.tree.leaves(quant(**batch))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_per_layer_overrides():
    cfg8, cfg4 = bq.IMCConfig(adc_bits=8), bq.IMCConfig(adc_bits=4)
    spec = models.QuantSpec(default=cfg4, overrides=(("*.attention.score", None), ("*.attention.context", None),
                                                     ("transformer.layer.0.*", cfg8), ("classifier", cfg8)))
    m = models.create("distilbert", num_classes=2, size="small", quant=spec)
    layers = imc.imc_layers(m)
    assert all(layers[f"transformer.layer.{i}.attention.{p}"].quant is None for i in (0, 1) for p in ("score", "context"))
    assert layers["transformer.layer.0.ffn.lin1"].quant.adc_bits == 8
    assert layers["transformer.layer.1.ffn.lin1"].quant.adc_bits == 4
    assert layers["classifier"].quant.adc_bits == 8
    b = models.create("bert", num_classes=None, size="small",
                      quant=models.QuantSpec(default=cfg4, overrides=(("*.attention.self.score", None), ("pooler.*", cfg8))))
    assert imc.imc_layers(b)["encoder.layer.1.attention.self.score"].quant is None
    assert imc.imc_layers(b)["pooler.dense"].quant.adc_bits == 8
    with pytest.raises(ValueError, match="match no layer"):
        models.create("bert", num_classes=None, size="small",
                      quant=models.QuantSpec(default=cfg4, overrides=(("*.attention.q_lin", None),)))


def test_compiles_once_across_batches():
    model = models.create("bert", num_classes=None, size="small", quant=bq.IMCConfig(adc_bits=4))
    traces = []

    @nnx.jit
    def run(m, inputs):
        traces.append(1)
        return minilm.mean_pool(m(**inputs).last_hidden_state, inputs["attention_mask"])

    batches = _small_batches(4, seed=1)
    for b in batches:
        run(model, b)
    assert len(traces) == 1
    fit_and_quantize(model, run, batches[:2])  # CALIBRATE: one more trace
    for b in batches:
        run(model, b)
    assert len(traces) == 3  # and one for QUANTIZED, whatever the batch
