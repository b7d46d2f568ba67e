"""Checkpoints: contents, keep-last-K, compatibility, atomicity, exact resume after SIGKILL."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from bskmq_jax import imc
from bskmq_jax.adc import ADCConfig
from bskmq_jax.checkpoint import CheckpointConfig, Checkpoints
from bskmq_jax.data import digits
from bskmq_jax.finetune import LevelConfig, LevelStrategy
from bskmq_jax.levels import NLLevels
from bskmq_jax.train import TrainConfig, cross_entropy, train

STEPS = 40
# ADC noise makes every step draw from the model's RNG stream, so resuming
# exactly needs the RNG state as well as weights, levels, optimizer and data.
Q = imc.IMCConfig(in_bits=6, w_bits=4, adc_bits=3, adc=ADCConfig(noise_sigma=0.02))


class MLP(nnx.Module):
    def __init__(self, rngs, hidden=32):
        self.fc1 = imc.IMCDense(64, hidden, quant=Q, rngs=rngs)
        self.fc2 = imc.IMCDense(hidden, 10, quant=Q, activation="identity", rngs=rngs)

    def __call__(self, x):
        return self.fc2(self.fc1(x.reshape(x.shape[0], -1)))


def _loss(model, batch, label_smoothing):
    logits = model(batch["image"])
    return cross_entropy(logits, batch["label"], label_smoothing), logits


def quantized_mlp(hidden=32):
    m = MLP(nnx.Rngs(0), hidden)
    imc.load_levels(m, {"fc1": NLLevels.from_levels(np.linspace(0.0, 4.0, 8) ** 1.5 / 2),
                        "fc2": NLLevels.from_levels(np.linspace(-8.0, 8.0, 8))})
    imc.set_mode(m, "quantized")
    return m


def tiny_run(ckdir, log, *, resume=False, sleep=0.0):
    """40 steps of a learned-levels fine-tune with a checkpoint every 10 steps (two passes over the data)."""
    m = quantized_mlp()
    strategy = LevelStrategy(LevelConfig(strategy="learned"), m)
    cfg = TrainConfig(steps=STEPS, batch_size=50, lr=3e-3, log_every=5)
    ckpts = Checkpoints(CheckpointConfig(directory=str(ckdir), every=10, keep=2), compat={"run": "tiny"})
    data = digits("train", batch_size=50, size=8, shuffle=True, drop_last=True)
    summary = train(m, data, cfg, loss_fn=strategy.loss_fn(_loss), groups=strategy.groups(cfg),
                    post_update=strategy.post_update, on_step=(lambda i, m: time.sleep(sleep)) if sleep else None,
                    checkpoints=ckpts, resume=resume, log_path=str(log), progress=False)
    ckpts.close()
    return m, summary


def _records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run_bitwise(tmp_path):
    ck, log = tmp_path / "ck", tmp_path / "log.jsonl"
    child = subprocess.Popen([sys.executable, __file__, "child", str(ck), str(log)], env=os.environ.copy(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not (ck / "10").is_dir():  # orbax renames a checkpoint into place only when it is complete
        if child.poll() is not None:
            pytest.fail(f"child ended before its first checkpoint: {child.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, "no checkpoint after 180 s"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert max(r["step"] for r in _records(log)) < STEPS  # it really died mid-run

    resumed, summary = tiny_run(ck, log, resume=True)
    assert summary["start_step"] > 10 and summary["traces"] == 1
    reference, _ = tiny_run(tmp_path / "ref", tmp_path / "ref.jsonl")
    got, want = _records(log), _records(tmp_path / "ref.jsonl")
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in got] == [r["loss"] for r in want]  # bitwise, JSON floats round-trip exactly
    for a, b in zip(jax.tree_util.tree_leaves(nnx.state(resumed)), jax.tree_util.tree_leaves(nnx.state(reference))):
        np.testing.assert_array_equal(jax.random.key_data(a) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else a,
                                      jax.random.key_data(b) if jax.dtypes.issubdtype(b.dtype, jax.dtypes.prng_key) else b)


def _save_steps(ckpts, model, opts, steps):
    for s in steps:
        model.fc1.kernel.set_value(model.fc1.kernel[...] + 1.0)
        ckpts.save(s, model, opts, data={"epoch": 0, "offset": s})
    ckpts.wait()


def test_contents_keep_last_k_and_restore(tmp_path):
    import optax

    m = quantized_mlp()
    opts = {"params": nnx.Optimizer(m, optax.adam(1e-3), wrt=nnx.Param)}
    ckpts = Checkpoints(CheckpointConfig(directory=str(tmp_path), every=1, keep=2, async_save=False), compat={"adc_bits": 3})
    _save_steps(ckpts, m, opts, [1, 2, 3])
    assert ckpts.steps() == [2, 3] and ckpts.latest_step() == 3
    meta = ckpts.meta()
    assert meta["step"] == 3 and meta["data"] == {"epoch": 0, "offset": 3} and meta["compat"] == {"adc_bits": 3}
    assert meta["levels"]["fc1"]["bits"] == 3 and len(meta["levels"]["fc1"]["levels"]) == 8
    saved = m.fc1.kernel[...]
    m.fc1.kernel.set_value(saved * 0)
    step, _ = ckpts.restore(m, opts)
    assert step == 3
    np.testing.assert_array_equal(m.fc1.kernel[...], saved)
    ckpts.close()


def test_an_unfinished_save_is_never_listed_or_restored(tmp_path):
    import optax

    m = quantized_mlp()
    opts = {"params": nnx.Optimizer(m, optax.adam(1e-3), wrt=nnx.Param)}
    cfg = CheckpointConfig(directory=str(tmp_path), every=1, keep=3, async_save=False)
    ckpts = Checkpoints(cfg)
    _save_steps(ckpts, m, opts, [1, 2])
    at_two = m.fc1.kernel[...]
    ckpts.close()
    # What a save killed midway leaves: orbax's temporary folder, part written.
    partial = tmp_path / "3.orbax-checkpoint-tmp-1700000000"
    shutil.copytree(tmp_path / "2", partial)
    shutil.rmtree(partial / "state")
    reopened = Checkpoints(cfg)
    assert reopened.steps() == [1, 2]
    for _ in range(200):  # deleted in the background when the folder is opened again
        if not partial.exists():
            break
        time.sleep(0.01)
    assert not partial.exists()
    m.fc1.kernel.set_value(at_two * 0)
    assert reopened.restore(m, opts)[0] == 2
    np.testing.assert_array_equal(m.fc1.kernel[...], at_two)
    reopened.close()


def test_incompatible_checkpoints_are_refused_with_one_line(tmp_path):
    import optax

    m = quantized_mlp()
    opts = {"params": nnx.Optimizer(m, optax.adam(1e-3), wrt=nnx.Param)}
    cfg = CheckpointConfig(directory=str(tmp_path), every=1, async_save=False)
    ckpts = Checkpoints(cfg, compat={"adc_bits": 3, "strategy": "learned"})
    _save_steps(ckpts, m, opts, [5])
    ckpts.close()
    with pytest.raises(ValueError, match=r"adc_bits=3, this run has adc_bits=2") as e:
        Checkpoints(cfg, compat={"adc_bits": 2, "strategy": "learned"}).restore(m, opts)
    assert "\n" not in str(e.value)
    other = quantized_mlp(hidden=16)
    other_opts = {"params": nnx.Optimizer(other, optax.adam(1e-3), wrt=nnx.Param)}
    with pytest.raises(ValueError, match="does not fit this model"):
        Checkpoints(cfg, compat={"adc_bits": 3, "strategy": "learned"}).restore(other, other_opts)
    with pytest.raises(ValueError, match="no complete checkpoint"):
        Checkpoints(CheckpointConfig(directory=str(tmp_path / "empty"))).restore(m, opts)


@pytest.mark.parametrize("field, value", [("every", 0), ("keep", -1), ("directory", "")])
def test_config_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=field):
        CheckpointConfig(**{"directory": "x", field: value})


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "child":
    tiny_run(sys.argv[2], sys.argv[3], sleep=0.05)
