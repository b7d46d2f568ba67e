"""Level-fitting methods: reference values, optimality, generic properties, errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bskmq_jax as bq
from bskmq_jax.distributions import DISTRIBUTIONS, sample
from bskmq_jax.metrics import quant_error
from bskmq_jax.quantizers.kmeans_exact import optimal_partition

METHODS = list(bq.METHODS)
# Optimal (Lloyd-Max) MSE of unit-variance sources, shared/reference.md.
TEXTBOOK = {1: (0.3634, 0.5000), 2: (0.1175, 0.1762), 3: (0.03455, 0.05448), 4: (0.009501, 0.01537)}


def mse(x, nl):
    return np.asarray(jnp.mean((bq.quantize(jnp.asarray(x), nl) - x) ** 2, axis=-1))


@pytest.fixture(scope="module")
def gauss_laplace():
    rng = np.random.default_rng(0)
    n = 1_000_000
    return np.stack([rng.standard_normal(n), rng.laplace(0.0, 1.0 / np.sqrt(2.0), n)]).astype(np.float32)


@pytest.mark.parametrize("method", ["lloyd_max", "kmeans_exact"])
@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_textbook_optimal_mse(gauss_laplace, method, bits):
    nl = bq.fit_levels(gauss_laplace, method=method, bits=bits)
    got = mse(gauss_laplace, nl)
    np.testing.assert_allclose(got, TEXTBOOK[bits], rtol=0.01)


def test_textbook_gaussian_levels_and_thresholds(gauss_laplace):
    g = gauss_laplace[0]
    nl2 = bq.fit_levels(g, method="kmeans_exact", bits=2)
    np.testing.assert_allclose(nl2.thresholds, [-0.9816, 0.0, 0.9816], atol=0.02)
    np.testing.assert_allclose(nl2.levels, [-1.5104, -0.4528, 0.4528, 1.5104], atol=0.02)
    nl3 = bq.fit_levels(g, method="lloyd_max", bits=3)
    np.testing.assert_allclose(nl3.thresholds, [-1.7479, -1.05, -0.5005, 0.0, 0.5005, 1.05, 1.7479], atol=0.02)
    np.testing.assert_allclose(
        nl3.levels, [-2.1519, -1.3439, -0.756, -0.2451, 0.2451, 0.756, 1.3439, 2.1519], atol=0.03
    )


def test_relu_clamp_reference_values():
    # shared/reference.md, toy check: x = clip(relu(N(0,1)), 0, 2), 3 bits, full MSE.
    x, lo, hi = sample("relu_clamp", 1_000_000, seed=0)
    got = {
        "kmeans_exact": mse(x, bq.fit_levels(x, method="kmeans_exact", bits=3, lo=lo, hi=hi)),
        "linear": mse(x, bq.fit_levels(x, method="linear", bits=3, lo=lo, hi=hi)),
        "drop": mse(x, bq.fit_levels(x, method="bs_kmq", mode="drop", bits=3, lo=lo, hi=hi)),
    }
    np.testing.assert_allclose(got["kmeans_exact"], 0.00286, rtol=0.02)
    np.testing.assert_allclose(got["linear"], 0.00325, rtol=0.02)
    np.testing.assert_allclose(got["drop"], 0.00347, rtol=0.02)


def _brute_force(x, w, k):
    """Least weighted SSE over all contiguous k-partitions of sorted x (float64)."""
    order = np.argsort(x, kind="stable")
    x, w = np.asarray(x, np.float64)[order], np.asarray(w, np.float64)[order]
    n, best = len(x), np.inf
    for cuts in itertools.combinations(range(1, n), k - 1):
        b = (0, *cuts, n)
        c = 0.0
        for s, e in zip(b[:-1], b[1:]):
            ws = w[s:e].sum()
            if ws > 0:
                m = (w[s:e] * x[s:e]).sum() / ws
                c += (w[s:e] * (x[s:e] - m) ** 2).sum()
        best = min(best, c)
    return best


def test_kmeans_exact_equals_brute_force():
    rng = np.random.default_rng(7)
    for trial in range(40):
        x = rng.normal(size=9).astype(np.float32) * rng.uniform(0.1, 10)
        if trial % 3 == 0:
            x = np.round(x)  # ties and repeated values
        w = rng.uniform(0.0, 2.0, size=9).astype(np.float32)
        w[rng.uniform(size=9) < 0.2] = 0.0
        w[0] = 1.0
        for bits in (1, 2):
            nl = bq.fit_levels(x, method="kmeans_exact", bits=bits, weights=w)
            got = float(jnp.sum(w * (bq.quantize(x, nl) - x) ** 2))
            want = _brute_force(x, w, 2**bits)
            assert got <= want * (1 + 1e-4) + 1e-5, (trial, bits, got, want)


@pytest.mark.parametrize("k", [3, 5])
def test_optimal_partition_any_k_equals_brute_force(k):
    rng = np.random.default_rng(k)
    for _ in range(15):
        x = np.sort(rng.exponential(size=10)).astype(np.float32)
        w = rng.uniform(0.2, 3.0, size=10).astype(np.float32)
        cid = np.asarray(optimal_partition(jnp.asarray(x), jnp.asarray(w), k))
        assert np.all(np.diff(cid) >= 0) and cid.max() < k
        c = 0.0
        for j in range(k):
            m = cid == j
            if m.any():
                mu = np.average(x[m], weights=w[m])
                c += float((w[m] * (x[m] - mu) ** 2).sum())
        assert c <= _brute_force(x, w, k) * (1 + 1e-4) + 1e-6


@pytest.mark.parametrize("dist", list(DISTRIBUTIONS))
@pytest.mark.parametrize("clamp", [True, False])
def test_kmeans_exact_has_lowest_full_mse(dist, clamp):
    x, lo, hi = sample(dist, 200_000, seed=3)
    if lo is None:  # a range narrower than the data, so clamp matters
        lo, hi = float(np.quantile(x, 0.01)), float(np.quantile(x, 0.99))
    for bits in (2, 3):
        errs = {
            m: float(quant_error(x, bq.fit_levels(x, method=m, bits=bits, lo=lo, hi=hi, clamp=clamp), clamp=clamp).mse)
            for m in METHODS
        }
        for m, e in errs.items():
            # The DP is exact on the 1024-bin summary; sub-bin threshold
            # placement comes from Lloyd refinement, which crawls in heavy
            # tails (measured excess up to 2.6e-5 relative, Laplacian,
            # clamp=False). 1e-4 is 10x below the sampling noise of the MSE.
            assert errs["kmeans_exact"] <= e * (1 + 1e-4), (dist, clamp, bits, m, errs)


# ---------------------------------------------------------------- generic tests

_finite = st.floats(-1e3, 1e3, width=32, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("method", METHODS)
@given(
    data=st.lists(_finite, min_size=64, max_size=64),
    bits=st.sampled_from([1, 2, 3]),
    probe=st.lists(st.floats(-2e3, 2e3, width=32), min_size=8, max_size=8),
)
def test_generic_properties(method, data, bits, probe):
    x = np.asarray(data, np.float32)
    nl = bq.fit_levels(x, method=method, bits=bits)
    lv, th = np.asarray(nl.levels), np.asarray(nl.thresholds)
    lo, hi = float(nl.lo), float(nl.hi)
    assert lv.shape == (2**bits,) and th.shape == (2**bits - 1,)
    assert nl.bits == bits and nl.method == method
    assert np.all(np.diff(lv) >= 0), lv
    assert lo <= lv[0] and lv[-1] <= hi, (lo, lv, hi)
    assert np.all(lv[:-1] <= th) and np.all(th <= lv[1:]), (lv, th)
    inside = np.clip(np.concatenate([x, np.asarray(probe, np.float32)]), lo, hi)
    q = bq.quantize(inside, nl)
    np.testing.assert_array_equal(bq.quantize(q, nl), q)  # idempotent on the ADC range
    np.testing.assert_array_equal(bq.decode(bq.encode(q, nl), nl), q)
    if method != "cdf":  # midpoint thresholds: idempotent on every real input
        p = jnp.asarray(probe, jnp.float32)
        np.testing.assert_array_equal(bq.quantize(bq.quantize(p, nl), nl), bq.quantize(p, nl))
    # Same key, bitwise-identical result.
    again = bq.fit_levels(x, method=method, bits=bits)
    np.testing.assert_array_equal(again.levels, lv)


@pytest.mark.parametrize("method", METHODS)
def test_batch_jit_vmap_agree_with_loop(method):
    rng = np.random.default_rng(11)
    x = np.stack([rng.normal(size=64), rng.exponential(size=64), np.maximum(rng.normal(size=64), 0)]).astype(np.float32)
    key = jax.random.key(5)
    batched = bq.fit_levels(x, method=method, bits=2, key=key)
    loop = [bq.fit_levels(x[i], method=method, bits=2, key=jax.random.fold_in(key, i)) for i in range(3)]
    for i, nl in enumerate(loop):
        np.testing.assert_allclose(batched.levels[i], nl.levels, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(batched.thresholds[i], nl.thresholds, rtol=1e-6, atol=1e-6)
    jitted = jax.jit(lambda s: bq.fit_levels(s, method=method, bits=2, key=key))(jnp.asarray(x))
    np.testing.assert_allclose(jitted.levels, batched.levels, rtol=1e-6, atol=1e-6)
    vm = jax.vmap(lambda s, i: bq.fit_levels(s, method=method, bits=2, key=jax.random.fold_in(key, i)))(
        jnp.asarray(x), jnp.arange(3)
    )
    np.testing.assert_allclose(vm.levels, batched.levels, rtol=1e-6, atol=1e-6)


def test_ragged_layers_by_zero_weights():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=40).astype(np.float32), rng.exponential(size=25).astype(np.float32)
    x = np.zeros((2, 40), np.float32)
    w = np.zeros((2, 40), np.float32)
    x[0], w[0] = a, 1
    x[1, :25], w[1, :25] = b, 1
    x[1, 25:] = 1e6  # padding values must not matter
    for method in METHODS:
        got = bq.fit_levels(x, method=method, bits=2, weights=w)
        want = bq.fit_levels(b, method=method, bits=2, key=jax.random.fold_in(jax.random.key(0), 1))
        np.testing.assert_allclose(got.levels[1], want.levels, rtol=1e-5, atol=1e-6, err_msg=method)


def test_kmeans_key_changes_seeding_but_not_validity():
    x, _, _ = sample("laplace", 5000, seed=1)
    fits = [bq.fit_levels(x, method="kmeans", bits=3, key=jax.random.key(s)) for s in range(4)]
    assert len({tuple(np.asarray(f.levels).round(5)) for f in fits}) > 1  # local optima differ by seed
    assert all(np.all(np.diff(f.levels) >= 0) for f in fits)


@pytest.mark.parametrize("method", METHODS)
def test_fewer_distinct_values_than_levels(method):
    x = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 5.0] * 4, np.float32)
    nl = bq.fit_levels(x, method=method, bits=3)  # 8 levels, 3 distinct values
    lv = np.asarray(nl.levels)
    assert np.all(np.isfinite(lv)) and np.all(np.diff(lv) >= 0) and lv[0] >= 1.0 and lv[-1] <= 5.0
    err = quant_error(x, nl)
    assert int(err.used_levels) <= 3
    if method == "kmeans_exact":  # optimal: every value is a level
        np.testing.assert_array_equal(bq.quantize(x, nl), x)
        drop = bq.fit_levels(x, method="bs_kmq", mode="drop", bits=3)  # ends pinned, interior exact
        np.testing.assert_array_equal(bq.quantize(x, drop), x)
    const = bq.fit_levels(np.full(10, 3.0, np.float32), method=method, bits=2)
    np.testing.assert_array_equal(const.levels, [3.0] * 4)


# ---------------------------------------------------------------- BS-KMQ modes


def _relu_clamp_small(n=3000, seed=0):
    x, lo, hi = sample("relu_clamp", n, seed=seed)
    return x, lo, hi


def test_bs_kmq_drop_pins_ends_and_ignores_boundary_mass():
    x, lo, hi = _relu_clamp_small(1500)  # with the extra masses still <= max_points: exact samples
    nl = bq.fit_levels(x, method="bs_kmq", mode="drop", bits=3, lo=lo, hi=hi)
    assert float(nl.levels[0]) == lo and float(nl.levels[-1]) == hi
    assert np.all((np.asarray(nl.levels[1:-1]) > lo) & (np.asarray(nl.levels[1:-1]) < hi))
    # Doubling the boundary masses changes nothing: they are excluded.
    more = np.concatenate([x, x[(x == lo) | (x == hi)]])
    nl2 = bq.fit_levels(more, method="bs_kmq", mode="drop", bits=3, lo=lo, hi=hi)
    np.testing.assert_allclose(nl2.levels, nl.levels, rtol=1e-6)


def test_bs_kmq_equalize_caps_boundary_mass_at_adjacent_density():
    from bskmq_jax.quantizers import BSKMQConfig, Points
    from bskmq_jax.quantizers.bs_kmq import suppressed_weights

    px = jnp.array([0.0, 0.005, 0.01, 0.5, 0.99, 1.0])
    pw = jnp.array([100.0, 2.0, 3.0, 7.0, 1.0, 50.0])
    pts = Points(px, pw, jnp.zeros_like(px))
    w = suppressed_weights(pts, 0.0, 1.0, BSKMQConfig(mode="equalize", window=1 / 64), 1e-6)
    # window 1/64 = 0.0156: interior mass next to 0 is 2 + 3, next to 1 is 1.
    np.testing.assert_allclose(w, [5.0, 2.0, 3.0, 7.0, 1.0, 1.0])


def test_bs_kmq_clip_removes_exact_mass_share():
    from bskmq_jax.quantizers import BSKMQConfig, Points
    from bskmq_jax.quantizers.bs_kmq import suppressed_weights

    px = jnp.arange(10.0)
    pw = jnp.array([50.0] + [1.0] * 8 + [42.0])  # total 100, atoms at both ends
    pts = Points(px, pw, jnp.zeros_like(px))
    w = suppressed_weights(pts, 0.0, 9.0, BSKMQConfig(mode="clip", lower_pct=5.0, upper_pct=90.0), 1e-6)
    np.testing.assert_allclose(float(w.sum()), 85.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(w)[[0, -1]], [45.0, 32.0])


@pytest.mark.parametrize("mode", ["drop", "equalize", "clip"])
@pytest.mark.parametrize("inner", ["kmeans_exact", "kmeans", "lloyd_max"])
def test_bs_kmq_modes_and_inner_choices_run(mode, inner):
    x, lo, hi = _relu_clamp_small(2000)
    nl = bq.fit_levels(x, method="bs_kmq", mode=mode, inner=inner, bits=2, lo=lo, hi=hi)
    assert np.all(np.diff(nl.levels) >= 0) and float(nl.levels[0]) >= lo and float(nl.levels[-1]) <= hi


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(samples=np.array([1.0, np.nan], np.float32)), "NaN or Inf"),
        (dict(samples=np.array([1.0, np.inf], np.float32)), "NaN or Inf"),
        (dict(samples=np.zeros((0,), np.float32)), "empty layer"),
        (dict(samples=np.zeros((2, 0), np.float32)), "empty layer"),
        (dict(samples=np.ones((2, 3), np.float32), weights=np.array([[1, 1, 1], [0, 0, 0]], np.float32)), "all-zero weights"),
        (dict(samples=np.ones(3, np.float32), weights=-np.ones(3, np.float32)), "negative"),
        (dict(samples=np.ones(3, np.float32), weights=np.ones(4, np.float32)), "does not match"),
        (dict(samples=np.arange(5)), "not a floating type"),
        (dict(samples=np.ones((2, 2, 2), np.float32)), "1-D or 2-D"),
        (dict(bits=0), "outside 1..8"),
        (dict(bits=9), "outside 1..8"),
        (dict(bits=2.5), "expected an int"),
        (dict(bits=True), "expected an int"),
        (dict(lo=1.0, hi=1.0), "lo >= hi"),
        (dict(lo=2.0, hi=1.0), "lo >= hi"),
        (dict(lo=np.zeros(3)), "scalar or shape"),
        (dict(method="nope"), "unknown method"),
        (dict(method="bs_kmq", mode="shrink"), "mode"),
        (dict(method="bs_kmq", window=0.0), "window"),
        (dict(method="lloyd_max", max_iter=0), "max_iter"),
        (dict(method="linear", mode="drop"), "unknown option"),
        (dict(clamp="yes"), "clamp"),
        (dict(bins=4), "bins"),
    ],
)
def test_bad_input_raises_value_error(kwargs, match):
    args = dict(samples=np.linspace(0, 1, 50, dtype=np.float32), method="kmeans_exact", bits=2)
    args.update(kwargs)
    samples = args.pop("samples")
    with pytest.raises(ValueError, match=match):
        bq.fit_levels(samples, **args)


# ---------------------------------------------------------------- cell sums


def test_prefix_sums_are_exact_to_float32_of_each_segment():
    from bskmq_jax.quantizers._common import prefix_sums

    rng = np.random.default_rng(3)
    v = (rng.exponential(size=3000) * 1e3).astype(np.float32)
    v[17] = 3e7  # a heavy atom early on: a plain float32 cumsum loses the small cells after it
    hi, lo = jax.jit(prefix_sums)(jnp.asarray(v))
    ref = np.concatenate([[0.0], np.cumsum(v.astype(np.float64))])
    a, b = np.arange(100, 2900, 97), np.arange(103, 2903, 97)
    seg = (np.asarray(hi)[b] - np.asarray(hi)[a]).astype(np.float64) + (np.asarray(lo)[b] - np.asarray(lo)[a])
    np.testing.assert_allclose(seg, ref[b] - ref[a], rtol=1e-6)
    plain = np.cumsum(v)
    assert np.max(np.abs((plain[b - 1] - plain[a - 1]) - (ref[b] - ref[a])) / (ref[b] - ref[a])) > 1e-4


def test_cell_moments_equal_direct_sums_over_spread_bins():
    from bskmq_jax.quantizers._common import Points, cell_moments

    rng = np.random.default_rng(4)
    edges = np.linspace(0.0, 1.0, 65)
    w = rng.integers(0, 50, size=64).astype(np.float64)
    x = 0.5 * (edges[:-1] + edges[1:])  # centroids at bin centres: uniform mass per bin
    pts = Points(jnp.asarray(np.concatenate([[0.0], x, [1.0]]), jnp.float32),
                 jnp.asarray(np.concatenate([[400.0], w, [30.0]]), jnp.float32),
                 jnp.asarray(np.concatenate([[0.0], np.full(64, 0.5 / 64), [0.0]]), jnp.float32))
    t = np.array([0.1, 0.37, 0.371, 0.8])
    wsum, mean = cell_moments(pts, jnp.asarray(t, jnp.float32), 5)
    # Direct: integrate each uniform bin over every cell; atoms go whole (ties up).
    fine = np.linspace(0, 1, 64 * 4096 + 1)
    mid = 0.5 * (fine[:-1] + fine[1:])
    dens = np.repeat(w / 4096, 4096)
    cell = np.searchsorted(t, mid, side="right")
    want_w = np.bincount(cell, dens, 5) + np.bincount([0, 4], [400.0, 30.0], 5)
    want_x = np.bincount(cell, dens * mid, 5) + np.bincount([0, 4], [0.0, 30.0], 5)
    np.testing.assert_allclose(np.asarray(wsum), want_w, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.asarray(mean), want_x / want_w, rtol=1e-4)
