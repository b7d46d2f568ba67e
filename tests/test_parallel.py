"""Data parallelism: 4 virtual CPU devices (tests/conftest.py) give the 1-device results."""

import jax
import numpy as np
import pytest
from flax import nnx

from bskmq_jax import imc, parallel, ptq
from bskmq_jax.data import digits
from bskmq_jax.models import create
from bskmq_jax.train import TrainConfig, evaluate_accuracy, train

Q = imc.IMCConfig(in_bits=6, w_bits=4, adc_bits=3)


def tiny_resnet():
    return create("resnet18", num_classes=10, quant=Q, stem="cifar", width=0.125, in_channels=1, seed=0)


@pytest.fixture(scope="module")
def batch():
    return next(iter(digits("train", batch_size=32, size=8)))


@pytest.fixture(scope="module")
def one_device_stats(batch):
    return ptq.calibrate(tiny_resnet(), [batch], lambda m, b: m(b["image"]), progress=False)


@pytest.fixture(scope="module")
def levels(one_device_stats):
    return ptq.fit_all(one_device_stats, ["linear"], [3], progress=False)["linear"][3]


def test_four_virtual_devices():
    mesh = parallel.make_mesh()
    assert jax.device_count() == 4 and mesh.axis_names == ("data",) and mesh.size == 4


def test_calibration_statistics_merge_across_devices(batch, one_device_stats):
    sharded = parallel.shard_batch(batch, parallel.make_mesh())
    assert len(sharded["image"].sharding.device_set) == 4
    four = ptq.calibrate(tiny_resnet(), [sharded], lambda m, b: m(b["image"]), progress=False)
    one = one_device_stats
    assert set(one) == set(four) and len(one) > 10
    for layer in one:
        a, b = one[layer], four[layer]
        np.testing.assert_array_equal(a.count, b.count)
        for field in ("lo", "hi", "min", "max", "mean", "var"):
            np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-5, atol=1e-5, err_msg=f"{layer}.{field}")
        np.testing.assert_allclose(a.slot_counts / a.count, b.slot_counts / b.count, atol=1e-5, err_msg=layer)


def test_one_train_step_on_four_devices_equals_one_device(batch, levels):
    params = {}
    for name, mesh in (("one", None), ("four", parallel.make_mesh())):
        m = tiny_resnet()
        imc.load_levels(m, levels)
        imc.set_mode(m, "quantized")
        # SGD: the update is linear in the gradient, so summation-order
        # differences stay at float round-off (Adam's first step is sign(g)).
        s = train(m, [batch], TrainConfig(steps=1, optimizer="sgd", lr=0.1), progress=False, mesh=mesh)
        assert s["traces"] == 1
        params[name] = jax.tree_util.tree_leaves(nnx.state(m, nnx.Param))
        if mesh is not None:
            leaf = params[name][0]
            assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4
            assert evaluate_accuracy(m, [batch], mesh=mesh) == evaluate_accuracy(m, [batch])
    moved = max(float(np.max(np.abs(np.asarray(a)))) for a in params["one"])
    assert moved > 0
    for a, b in zip(params["one"], params["four"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_shard_batch_needs_a_multiple_of_the_devices(batch):
    with pytest.raises(ValueError, match="multiple of the 4 devices"):
        parallel.shard_batch({k: v[:30] for k, v in batch.items()}, parallel.make_mesh())


def test_initialize_reads_flags_and_environment(monkeypatch):
    for var in parallel.ENV.values():
        monkeypatch.delenv(var, raising=False)
    assert parallel.initialize() is False  # one process: nothing to connect
    with pytest.raises(ValueError, match="coordinator"):
        parallel.initialize(num_processes=2, process_id=0)
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    with pytest.raises(ValueError, match="process_id"):
        parallel.initialize(process_id=2)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="integers"):
        parallel.initialize()
