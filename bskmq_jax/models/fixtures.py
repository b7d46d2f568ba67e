"""Deterministic weights and inputs shared by the reference fixtures and the tests.

`tools/make_reference_fixtures.py` fills every tensor of a reference
(torchvision / Hugging Face) model's state dict with `tensor_values`, runs a
fixed input from `image_input` / `token_input`, and saves the outputs as a
small JSON fixture. The tests rebuild the same state dict in numpy, load it
through the import path and compare. This file imports numpy only, so the
tool can load it by path in a torch-only environment.

Values are closed-form functions of (tensor index, element index), scaled so
that deep networks stay well conditioned: weights ``~ 1/sqrt(fan_in)``,
normalization scales near 1, running variances positive, biases small.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["tensor_values", "state_dict_from_spec", "image_input", "token_input", "FIXTURE_VERSION"]

#: Bump when the formulas change; fixtures record it and tests check it.
FIXTURE_VERSION = 1


def _wave(index: int, n: int) -> np.ndarray:
    """A deterministic, non-periodic-looking sequence in [-1, 1] (float64)."""
    i = np.arange(n, dtype=np.float64)
    return np.sin(0.7548776662 * i + 1.3 * index + 0.1) * np.cos(0.5698402910 * i * (1 + 0.01 * index))


def tensor_values(key: str, shape, index: int) -> np.ndarray:
    """The value of reference tensor ``key`` (``index``-th in sorted key order).

    Args:
      key: state-dict key; its suffix selects the family of values.
      shape: reference (PyTorch) shape.
      index: the key's position in the sorted list of keys.

    Returns:
      float32 array of ``shape`` (int64 zeros for ``num_batches_tracked``).
    """
    shape = tuple(int(s) for s in shape)
    n = math.prod(shape)
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, np.int64)
    w = _wave(index, n)
    name = key.rsplit(".", 1)[-1]
    if name == "running_var":
        v = 1.0 + 0.5 * np.abs(w)
    elif name == "running_mean":
        v = 0.1 * w
    elif name == "bias" or name == "beta":
        v = 0.02 * w
    elif len(shape) == 1:  # normalization scales (BatchNorm/LayerNorm weight)
        v = 1.0 + 0.1 * w
    elif "embeddings" in key or "embed" in key:
        v = 0.05 * w
    else:  # weights: [out, in, ...] in PyTorch layout
        fan_in = max(1, n // shape[0])
        v = w * (1.5 / math.sqrt(fan_in))
    return v.reshape(shape).astype(np.float32)


def state_dict_from_spec(spec) -> dict[str, np.ndarray]:
    """Rebuilds a reference state dict from a fixture's ``[[key, shape], ...]``."""
    keys = sorted(k for k, _ in spec)
    shapes = dict((k, s) for k, s in spec)
    return {k: tensor_values(k, shapes[k], i) for i, k in enumerate(keys)}


def image_input(shape) -> np.ndarray:
    """A fixed NCHW image batch in about [-2, 2] (PyTorch layout)."""
    n = math.prod(shape)
    return (2.0 * _wave(997, n)).reshape(shape).astype(np.float32)


def token_input(batch: int, length: int, vocab: int) -> np.ndarray:
    """Fixed token ids ``[batch, length]`` (first id 101, like [CLS])."""
    i = np.arange(batch * length, dtype=np.int64).reshape(batch, length)
    ids = (i * 7919 + 13) % (vocab - 1000) + 999
    ids[:, 0] = 101
    return ids
