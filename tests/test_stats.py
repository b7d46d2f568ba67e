"""Streaming calibration statistics."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

import bskmq_jax as bq
from bskmq_jax import stats as st
from bskmq_jax.distributions import sample
from bskmq_jax.metrics import quant_error, quant_error_from_stats


def _limb_counts(s):
    """Exact Python-int counts per slot."""
    limbs = np.asarray(s.limbs).astype(np.int64)
    return limbs[..., 1] * 2**24 + limbs[..., 0]


@pytest.fixture(scope="module")
def relu_layers():
    rng = np.random.default_rng(0)
    pre = rng.normal(size=(3, 200_000)).astype(np.float32) * np.array([[1.0], [0.5], [2.0]], np.float32)
    return pre  # pre-activations; the ADC range [0, 2] folds ReLU and clamp in


def test_exact_slot_counts_and_moments(relu_layers):
    s = st.update(st.init_stats(0.0, 2.0, num_layers=3, bins=64), relu_layers)
    x = relu_layers.astype(np.float64)
    tol = 1e-6 * 2.0
    counts = _limb_counts(s)
    np.testing.assert_array_equal(counts[:, 0], (x < -tol).sum(1))
    np.testing.assert_array_equal(counts[:, 1], (np.abs(x) <= tol).sum(1))
    np.testing.assert_array_equal(counts[:, -2], (np.abs(x - 2) <= tol).sum(1))
    np.testing.assert_array_equal(counts[:, -1], (x > 2 + tol).sum(1))
    np.testing.assert_array_equal(counts.sum(1), x.shape[1])
    inner = (x > tol) & (x < 2 - tol)
    want_hist = np.stack([np.histogram(x[i][inner[i]], bins=64, range=(0, 2))[0] for i in range(3)])
    np.testing.assert_array_equal(counts[:, 2:-2], want_hist)
    np.testing.assert_allclose(s.mean, x.mean(1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s.var, x.var(1), rtol=1e-4)
    np.testing.assert_allclose(s.min, x.min(1))
    np.testing.assert_allclose(s.max, x.max(1))
    np.testing.assert_allclose(s.outside_fraction(), ((x < -tol) | (x > 2 + tol)).mean(1), rtol=1e-6)


def test_streaming_equals_one_batch_and_merge_is_associative(relu_layers):
    init = st.init_stats(0.0, 2.0, num_layers=3)
    whole = st.update(init, relu_layers)
    parts = [st.update(init, c) for c in np.split(relu_layers, 4, axis=1)]
    streamed = functools.reduce(st.update, np.split(relu_layers, 4, axis=1), init)
    left = st.merge(st.merge(parts[0], parts[1]), st.merge(parts[2], parts[3]))
    right = st.merge(parts[0], st.merge(parts[1], st.merge(parts[2], parts[3])))
    swapped = st.merge(st.merge(parts[3], parts[1]), st.merge(parts[2], parts[0]))
    for other in (streamed, left, right, swapped):
        np.testing.assert_array_equal(other.limbs, whole.limbs)
        np.testing.assert_allclose(other.sums, whole.sums, rtol=1e-4, atol=1e-3)
        np.testing.assert_array_equal(other.min, whole.min)
        np.testing.assert_array_equal(other.max, whole.max)


def test_update_runs_inside_scan_and_memory_is_fixed(relu_layers):
    init = st.init_stats(0.0, 2.0, num_layers=3)
    batches = jnp.asarray(relu_layers.reshape(3, 8, -1).transpose(1, 0, 2))  # [8 batches, L, n]
    out, _ = jax.lax.scan(lambda s, b: (st.update(s, b), None), init, batches)
    np.testing.assert_array_equal(out.limbs, st.update(init, relu_layers).limbs)
    nbytes = lambda s: sum(a.nbytes for a in jax.tree_util.tree_leaves(s))  # noqa: E731
    assert nbytes(out) == nbytes(init) == nbytes(st.update(init, relu_layers[:, :10]))


def test_limbs_carry_and_stay_exact_past_float32():
    s = st.init_stats(0.0, 1.0, bins=16)
    big = (1 << 24) - 3
    s = s.replace(limbs=s.limbs.at[0, 1, 0].set(big))
    s = st.update(s, jnp.zeros((1, 10)))  # 10 more values at lo
    assert int(_limb_counts(s)[0, 1]) == big + 10
    assert int(s.limbs[0, 1, 0]) < (1 << 24)
    # Counts far beyond 2**24 stay exact (float32 would round them).
    many = functools.reduce(st.merge, [s] * 300)
    assert int(_limb_counts(many)[0, 1]) == 300 * (big + 10)


def test_allreduce_across_four_devices_equals_merge(relu_layers):
    devices = np.array(jax.devices()[:4])
    assert devices.size == 4, "conftest sets 4 CPU devices"
    mesh = Mesh(devices, ("data",))
    init = st.init_stats(0.0, 2.0, num_layers=3)
    shards = relu_layers.reshape(3, 4, -1).transpose(1, 0, 2)  # [device, L, n]

    @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(), P("data")), out_specs=P())
    def calibrate(s, x):
        return st.allreduce(st.update(s, x[0]), "data")

    got = jax.jit(calibrate)(init, jnp.asarray(shards))
    want = functools.reduce(st.merge, [st.update(init, shards[d]) for d in range(4)])
    np.testing.assert_array_equal(got.limbs, want.limbs)
    np.testing.assert_allclose(got.sums, want.sums, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(got.min, want.min)


@pytest.mark.parametrize("dist", ["relu_clamp", "gelu", "gaussian"])
def test_fit_from_stats_matches_fit_from_samples(dist):
    x, lo, hi = sample(dist, 1_000_000, seed=5)
    x2 = x[None]
    s = st.init_stats_from_batch(x2[:, :100_000], lo=lo, hi=hi, margin=0.05)
    for chunk in np.split(x2, 10, axis=1):
        s = st.update(s, chunk)
    # Levels are compared on the same ADC range.
    for method in bq.METHODS:
        for bits in (2, 3):
            a = st.fit_levels_from_stats(s, method=method, bits=bits)
            b = bq.fit_levels(x2, method=method, bits=bits, lo=s.lo, hi=s.hi)
            ea, eb = float(quant_error(x2, a).mse[0]), float(quant_error(x2, b).mse[0])
            assert abs(ea / eb - 1) <= 0.005, (dist, method, bits, ea, eb)
    nl = st.fit_levels_from_stats(s, method="kmeans_exact", bits=3)
    np.testing.assert_allclose(quant_error_from_stats(s, nl).mse, quant_error(x2, nl).mse, rtol=0.01)


def test_range_policy_from_first_batch():
    first = np.array([[0.0, 1.0, 3.0], [-2.0, 0.0, 2.0]], np.float32)
    s = st.init_stats_from_batch(first, margin=0.5)
    np.testing.assert_allclose(s.lo, [-1.5, -4.0])
    np.testing.assert_allclose(s.hi, [4.5, 4.0])
    fixed = st.init_stats_from_batch(first, lo=0.0)
    np.testing.assert_allclose(fixed.lo, [0.0, 0.0])
    np.testing.assert_allclose(fixed.hi, [3.0, 2.0])
    later = st.update(fixed, np.array([[5.0, -1.0, 1.0], [9.0, 9.0, 1.0]], np.float32))
    np.testing.assert_allclose(later.outside_fraction(), [2 / 3, 2 / 3])
    np.testing.assert_allclose(later.max, [5.0, 9.0])
    const = st.init_stats_from_batch(np.zeros((1, 4), np.float32))
    assert float(const.lo[0]) == 0.0 and float(const.hi[0]) == 1.0


def test_mask_excludes_entries():
    x = jnp.array([[0.5, 0.7, 100.0]])
    s = st.update(st.init_stats(0.0, 1.0), x, jnp.array([[True, True, False]]))
    assert float(s.count[0]) == 2 and float(s.max[0]) == pytest.approx(0.7)


def test_nan_is_counted_then_refused():
    s = st.update(st.init_stats(0.0, 1.0, num_layers=2), jnp.array([[0.1, jnp.nan], [0.2, 0.3]]))
    assert np.asarray(s.nonfinite).tolist() == [1, 0]
    assert float(s.count[0]) == 1  # the NaN is not in the histogram
    with pytest.raises(ValueError, match=r"layer\(s\) \[0\] saw \[1\] NaN/Inf"):
        st.fit_levels_from_stats(s, method="linear", bits=2)


def test_stats_errors():
    with pytest.raises(ValueError, match="lo >= hi"):
        st.init_stats(1.0, 1.0)
    with pytest.raises(ValueError, match="bins"):
        st.init_stats(0.0, 1.0, bins=8)
    with pytest.raises(ValueError, match="empty"):
        st.fit_levels_from_stats(st.init_stats(0.0, 1.0), method="linear", bits=2)
    s = st.update(st.init_stats(0.0, 1.0), jnp.array([[0.2, 0.4]]))
    with pytest.raises(ValueError, match="boundary_tol"):
        st.fit_levels_from_stats(s, method="bs_kmq", bits=2, boundary_tol=1e-3)
    with pytest.raises(ValueError, match="different lo/hi"):
        st.merge(s, st.init_stats(0.0, 2.0))
    with pytest.raises(ValueError, match="leading axis"):
        st.update(s, jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        st.init_stats_from_batch(np.array([[np.nan, 1.0]], np.float32))


def test_coarsen_equals_statistics_collected_at_the_coarser_resolution(relu_layers):
    fine = st.update(st.init_stats(0.0, 2.0, num_layers=3, bins=256), relu_layers)
    coarse = st.update(st.init_stats(0.0, 2.0, num_layers=3, bins=64), relu_layers)
    merged = bq.coarsen(fine, 4)  # the top-level API
    assert merged.bins == 64 and merged.limbs.shape == coarse.limbs.shape
    # 200k normal samples, bin edges shared by both grids: float32 edge
    # rounding may move a value across one edge, so counts agree to a few.
    assert np.abs(_limb_counts(merged) - _limb_counts(coarse)).max() <= 2
    np.testing.assert_array_equal(_limb_counts(merged).sum(1), _limb_counts(fine).sum(1))
    np.testing.assert_allclose(np.asarray(merged.centroids()), np.asarray(coarse.centroids()), atol=2e-3)
    np.testing.assert_allclose(np.asarray(merged.mean), np.asarray(fine.mean), atol=1e-6)  # means ~1e-4
    assert st.coarsen(fine, 1) is fine


def test_coarsen_keeps_counts_exact_past_float32():
    s = st.init_stats(0.0, 1.0, bins=2048)
    big = np.asarray(s.limbs).copy()
    big[0, 2:-2, 0] = (1 << 24) - 1  # every interior slot full in limb 0
    big[0, 2:-2, 1] = 3
    s = s.replace(limbs=jnp.asarray(big))
    merged = st.coarsen(s, 128)  # 128 full limb-0 values sum past 2**31
    want = 128 * (3 * 2**24 + (1 << 24) - 1)
    np.testing.assert_array_equal(_limb_counts(merged)[0, 2:-2], np.full(16, want))


@pytest.mark.parametrize("factor, match", [(3, "divide"), (0, ">= 1"), (True, ">= 1"), (8, "at least 16")])
def test_coarsen_names_a_bad_factor(factor, match):
    with pytest.raises(ValueError, match=f"factor: .*{match}"):
        st.coarsen(st.init_stats(0.0, 1.0, bins=64), factor)
