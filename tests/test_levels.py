"""NLLevels, quantize, encode, decode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bskmq_jax as bq
from bskmq_jax.levels import thresholds_from_levels


def _nl(levels, **kw):
    return bq.NLLevels.from_levels(jnp.asarray(levels, jnp.float32), **kw)


def test_ties_go_up_and_codes_count_thresholds():
    nl = _nl([0.0, 1.0, 2.0, 3.0])  # thresholds 0.5, 1.5, 2.5
    x = jnp.array([-1.0, 0.5, 0.49, 1.5, 2.5, 9.0])
    np.testing.assert_array_equal(bq.encode(x, nl), [0, 1, 0, 2, 3, 3])
    np.testing.assert_array_equal(bq.quantize(x, nl), [0.0, 1.0, 0.0, 2.0, 3.0, 3.0])


def test_pytree_static_fields_and_jit():
    nl = _nl([0.0, 1.0])
    leaves, treedef = jax.tree_util.tree_flatten(nl)
    assert len(leaves) == 4  # levels, thresholds, lo, hi; method/bits are static
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert back.bits == 1 and back.method == "custom"
    out = jax.jit(bq.quantize)(jnp.array([0.2, 0.7]), nl)
    np.testing.assert_array_equal(out, [0.0, 1.0])


def test_per_layer_broadcast_against_leading_axes():
    nl = _nl([[0.0, 1.0], [10.0, 20.0]])  # 2 layers, 1 bit
    x = jnp.array([[[0.4, 0.6]], [[14.0, 16.0]]])  # [L=2, 1, 2]
    np.testing.assert_array_equal(bq.quantize(x, nl), [[[0.0, 1.0]], [[10.0, 20.0]]])
    with pytest.raises(ValueError, match="batch shape"):
        bq.quantize(jnp.zeros((3, 2)), nl)


def test_searchsorted_path_matches_unrolled_path():
    # 6+ bits use searchsorted; compare with an explicit count of thresholds.
    lv = jnp.sort(jax.random.normal(jax.random.key(0), (64,)))
    nl = _nl(lv)
    x = jax.random.normal(jax.random.key(1), (1000,)) * 2
    want = jnp.sum(x[:, None] >= nl.thresholds[None, :], axis=1)
    np.testing.assert_array_equal(bq.encode(x, nl), want)
    np.testing.assert_array_equal(bq.quantize(x, nl), nl.levels[want])


def test_thresholds_never_collapse_onto_lower_level():
    a = np.float32(1.0)
    b = np.nextafter(a, np.float32(2.0))  # adjacent floats: midpoint rounds onto a level
    t = thresholds_from_levels(jnp.array([a, b]))
    assert a < float(t[0]) <= b
    nl = _nl([a, b])
    assert float(bq.quantize(jnp.array(a), nl)) == a


def test_from_levels_validation():
    with pytest.raises(ValueError, match="2\\*\\*bits"):
        _nl([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="ascending"):
        _nl([1.0, 0.0])
    with pytest.raises(ValueError, match="integer"):
        bq.decode(jnp.array([0.0]), _nl([0.0, 1.0]))


@given(
    levels=st.lists(st.floats(-100, 100, width=32), min_size=4, max_size=4),
    x=st.lists(st.floats(-200, 200, width=32), min_size=16, max_size=16),
)
def test_properties_encode_decode_quantize(levels, x):
    nl = _nl(np.sort(np.asarray(levels, np.float32)))
    x = jnp.asarray(x, jnp.float32)
    codes = bq.encode(x, nl)
    assert codes.dtype == jnp.int32 and int(codes.min()) >= 0 and int(codes.max()) <= 3
    q = bq.quantize(x, nl)
    np.testing.assert_array_equal(bq.decode(codes, nl), q)
    # idempotent, and decode(encode(level)) round-trips to the same value
    np.testing.assert_array_equal(bq.quantize(q, nl), q)
    np.testing.assert_array_equal(bq.decode(bq.encode(q, nl), nl), q)
    # thresholds lie between neighbouring levels
    assert bool(jnp.all(nl.levels[:-1] <= nl.thresholds)) and bool(jnp.all(nl.thresholds <= nl.levels[1:]))


def test_indexing_layers():
    nl = _nl([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    assert nl.batch_shape == (3,)
    np.testing.assert_array_equal(nl[1].levels, [2.0, 3.0])
    assert nl[:2].batch_shape == (2,)
    with pytest.raises(IndexError):
        nl[0][0]
