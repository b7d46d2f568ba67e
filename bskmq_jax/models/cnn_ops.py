"""Pieces shared by the CNNs: torch-exact pooling, variant options, rules by layer.

Pooling follows PyTorch's semantics exactly (images are NHWC here):

- `max_pool`: padding cells are ``-inf`` (never the maximum), as
  ``nn.MaxPool2d``; windows that start past the input are dropped (floor
  mode; none of ResNet-18, VGG-16 or Inception-V3 uses ``ceil_mode``).
- `avg_pool`: zero padding counted in the divisor (``count_include_pad=True``,
  the default of ``F.avg_pool2d`` that Inception uses).
- `adaptive_avg_pool`: output bin ``i`` averages input rows
  ``floor(i H / out)`` to ``ceil((i + 1) H / out)``, as
  ``nn.AdaptiveAvgPool2d`` (bins may overlap or repeat rows).

`cnn_rules` generates a model's checkpoint mapping from its IMC layers, so no
model lists tensors by hand.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bskmq_jax.imc.layers import IMCConv, IMCDense
from bskmq_jax.models.weights import Rule, conv_rules, dense_rules

__all__ = [
    "max_pool",
    "avg_pool",
    "adaptive_avg_pool",
    "global_avg_pool",
    "pad2",
    "check_variant",
    "check_num_classes",
    "check_positive_int",
    "check_rate",
    "scaled_channels",
    "cnn_rules",
]


def _pairs(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, numbers.Integral) else (int(v[0]), int(v[1]))


def pad2(p) -> tuple[tuple[int, int], tuple[int, int]]:
    """PyTorch's symmetric ``padding=p`` (int or ``(ph, pw)``) as lax conv padding.

    Explicit pairs are needed: lax's ``"SAME"`` pads a strided conv
    asymmetrically (e.g. ``(2, 3)`` for 7x7 stride 2 on 224), torch never does.
    """
    ph, pw = _pairs(p)
    return ((ph, ph), (pw, pw))


def max_pool(x: jax.Array, window, stride, padding=0) -> jax.Array:
    """``nn.MaxPool2d(window, stride, padding)`` on ``x: [N, H, W, C]``."""
    (kh, kw), (sh, sw), (ph, pw) = _pairs(window), _pairs(stride), _pairs(padding)
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, kh, kw, 1), (1, sh, sw, 1), ((0, 0), (ph, ph), (pw, pw), (0, 0))
    )


def avg_pool(x: jax.Array, window, stride, padding=0) -> jax.Array:
    """``F.avg_pool2d(x, window, stride, padding)`` (``count_include_pad=True``) on NHWC."""
    (kh, kw), (sh, sw), (ph, pw) = _pairs(window), _pairs(stride), _pairs(padding)
    s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, kh, kw, 1), (1, sh, sw, 1), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    return s / (kh * kw)


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    """``[out, size]`` averaging weights of torch's adaptive pooling bins."""
    m = np.zeros((out, size), np.float32)
    for i in range(out):
        a, b = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, a:b] = 1.0 / (b - a)
    return m


def adaptive_avg_pool(x: jax.Array, out) -> jax.Array:
    """``nn.AdaptiveAvgPool2d(out)`` on ``x: [N, H, W, C]``."""
    oh, ow = _pairs(out)
    _, h, w, _ = x.shape
    if (h, w) == (oh, ow):  # torch returns the input unchanged then (VGG at 224x224)
        return x
    if (oh, ow) == (1, 1):
        return global_avg_pool(x, keepdims=True)
    # Bins are static (shapes are known at trace time): a weighted sum over
    # each axis with the bins' averaging matrices.
    x = jnp.einsum("oh,nhwc->nowc", _adaptive_matrix(h, oh), x)
    return jnp.einsum("pw,nowc->nopc", _adaptive_matrix(w, ow), x)


def global_avg_pool(x: jax.Array, keepdims: bool = False) -> jax.Array:
    """``AdaptiveAvgPool2d((1, 1))`` then ``flatten(1)``: ``[N, H, W, C] -> [N, C]``."""
    return jnp.mean(x, axis=(1, 2), keepdims=keepdims)


def check_variant(model: str, variant: dict, allowed: dict) -> dict:
    """Fills a model's variant options with defaults.

    Raises:
      ValueError: naming an unknown option and listing the allowed ones.
    """
    unknown = sorted(set(variant) - set(allowed))
    if unknown:
        raise ValueError(f"{unknown[0]}: not an option of {model}; its options are {sorted(allowed)}")
    return {**allowed, **variant}


def check_num_classes(num_classes) -> int:
    """A classifier size (CNNs always have a head)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes: {num_classes!r} must be an int >= 1 (the CNNs always have a classifier)")
    return int(num_classes)


def check_positive_int(name: str, v) -> int:
    """An int option ``>= 1`` (sizes, channels)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{name}: {v!r} must be an int >= 1")
    return int(v)


def check_rate(name: str, v) -> float:
    """A dropout rate in ``[0, 1)``."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0.0 <= v < 1.0:
        raise ValueError(f"{name}: {v!r} must be a rate in [0, 1)")
    return float(v)


def scaled_channels(channels: int, width, name: str = "width") -> int:
    """``round(channels * width)``; the multiplier must leave at least one channel."""
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not (width > 0 and math.isfinite(width)):
        raise ValueError(f"{name}: {width!r} must be a positive number")
    c = int(round(channels * width))
    if c < 1:
        raise ValueError(f"{name}: {width} leaves {channels} channels with none")
    return c


def cnn_rules(model: nnx.Module, keys: Callable[[str, nnx.Module], tuple[str, str | None]]) -> list[Rule]:
    """The checkpoint mapping of every IMC layer of ``model``.

    Args:
      model: a CNN built from `IMCConv` / `IMCDense` layers.
      keys: ``(dotted layer name, layer) -> (weight key prefix, BatchNorm key
        prefix or None)`` in the reference checkpoint; the BatchNorm prefix is
        only used for layers that carry one.

    Returns:
      One `Rule` per reference tensor (kernel, bias if any, BatchNorm scale,
      bias and running statistics if any), in graph order.
    """
    rules: list[Rule] = []
    for path, layer in nnx.iter_modules(model):
        if not isinstance(layer, (IMCConv, IMCDense)):
            continue
        path = tuple(path)
        name = ".".join(str(p) for p in path)
        key, bn_key = keys(name, layer)
        if isinstance(layer, IMCConv):
            bn = bn_key if layer.bn is not None else None
            rules += conv_rules(path, key, bn, bias=layer.bias is not None)
        else:
            if layer.bn is not None:  # no CNN here has a BatchNorm after a linear layer
                raise ValueError(f"{name}: a dense layer with a BatchNorm has no reference mapping")
            rules += dense_rules(path, key, bias=layer.bias is not None)
    return rules
