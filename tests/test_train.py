"""The training loop: optimizers, schedules, the data cursor, per-step logs, groups, one trace."""

import json

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bskmq_jax import imc, ptq
from bskmq_jax.data import Batches, digits
from bskmq_jax.train import DataCursor, TrainConfig, cross_entropy, evaluate_accuracy, make_schedule, train

Q = imc.IMCConfig(in_bits=6, w_bits=4, adc_bits=3)


class MLP(nnx.Module):
    def __init__(self, quant, rngs):
        self.fc1 = imc.IMCDense(64, 32, quant=quant, rngs=rngs)
        self.fc2 = imc.IMCDense(32, 10, quant=quant, activation="identity", rngs=rngs)

    def __call__(self, x):
        return self.fc2(self.fc1(x.reshape(x.shape[0], -1)))


@pytest.fixture(scope="module")
def data():
    return {"train": digits("train", batch_size=50, size=8, shuffle=True, drop_last=True),
            "calib": digits("calib", batch_size=99, size=8), "test": digits("test", batch_size=250, size=8)}


def quantized_mlp(data, seed=0):
    m = MLP(Q, nnx.Rngs(seed))
    stats = ptq.calibrate(m, data["calib"], lambda m, b: m(b["image"]), progress=False)
    imc.load_levels(m, ptq.fit_all(stats, ["linear"], [3], progress=False)["linear"][3])
    imc.set_mode(m, "quantized")
    return m


@pytest.mark.parametrize("field, value, match", [
    ("steps", 0, "steps"), ("optimizer", "lion", "optimizer"), ("lr", -1.0, "lr"), ("warmup_steps", 10, "warmup_steps"),
    ("label_smoothing", 1.0, "label_smoothing"), ("grad_clip", 0.0, "grad_clip"), ("weight_decay", -1.0, "weight_decay"),
])
def test_config_names_the_bad_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{"steps": 10, field: value})


def test_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, lr=0.1, warmup_steps=10, final_lr_fraction=0.1)
    s = make_schedule(cfg)
    assert float(s(0)) == 0.0 and float(s(10)) == pytest.approx(0.1)
    assert float(s(100)) == pytest.approx(0.01)
    assert float(make_schedule(cfg, 1.0)(10)) == pytest.approx(1.0)


def test_cross_entropy_label_smoothing():
    logits = jnp.array([[10.0, 0.0, 0.0]])
    assert float(cross_entropy(logits, jnp.array([0]))) < float(cross_entropy(logits, jnp.array([0]), 0.3))


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_float_training_learns_digits(data, optimizer):
    m = MLP(Q, nnx.Rngs(0))
    before = evaluate_accuracy(m, data["test"])
    lr = 3e-3 if optimizer == "adamw" else 3e-2
    summary = train(m, data["train"], TrainConfig(steps=60, lr=lr, optimizer=optimizer, log_every=20), progress=False)
    assert summary["traces"] == 1 and summary["step"] == 60
    assert evaluate_accuracy(m, data["test"]) > max(0.8, before + 0.3)


def test_quantized_step_traces_once_and_logs_every_step(data, tmp_path):
    m = quantized_mlp(data)
    log = tmp_path / "m.jsonl"
    seen = []

    def on_step(step, model):
        seen.append(step)
        if step % 4 == 0:  # an evaluation between steps toggles eval/train mode
            acc = evaluate_accuracy(model, data["test"])
            model.train()
            return {"test_accuracy": acc}
        return None

    s = train(m, data["train"], TrainConfig(steps=10, lr=1e-3, log_every=3), progress=False, log_path=str(log), on_step=on_step)
    assert s["traces"] == 1 and seen == list(range(1, 11))
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in recs] == list(range(1, 11))
    assert all(np.isfinite(r["loss"]) for r in recs)
    assert [r["step"] for r in recs if "test_accuracy" in r] == [4, 8]


def test_groups_train_only_their_variables(data):
    m = quantized_mlp(data)
    k1, k2 = m.fc1.kernel[...], m.fc2.kernel[...]
    groups = {"first": (nnx.All(nnx.Param, nnx.PathContains("fc1")), optax.adam(1e-2)),
              "second": (nnx.All(nnx.Param, nnx.PathContains("fc2")), optax.set_to_zero())}
    train(m, data["train"], TrainConfig(steps=3), progress=False, groups=groups)
    assert not np.array_equal(m.fc1.kernel[...], k1)
    np.testing.assert_array_equal(m.fc2.kernel[...], k2)


def test_cursor_position_reproduces_the_stream():
    def stream():
        return Batches({"x": np.arange(10)}, 3, shuffle=True, seed=7, drop_last=True)

    first = DataCursor(stream())
    ref = [next(first)["x"].tolist() for _ in range(8)]
    c = DataCursor(stream())
    for _ in range(4):  # into the second pass (3 batches per pass)
        next(c)
    assert c.position() == {"epoch": 1, "offset": 1}
    resumed = DataCursor(stream(), **c.position())
    assert [next(resumed)["x"].tolist() for _ in range(4)] == ref[4:8]
    assert ref[0:3] != ref[3:6]  # passes are reshuffled
    with pytest.raises(ValueError, match="empty"):
        next(DataCursor([]))


def test_a_resumed_log_drops_later_and_cut_short_lines(tmp_path):
    from bskmq_jax.train import _truncate_log

    log = tmp_path / "m.jsonl"
    log.write_text("".join(json.dumps({"step": i, "loss": 1.0}) + "\n" for i in range(1, 6)) + '{"step": 6, "lo')
    _truncate_log(str(log), 3)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3]
