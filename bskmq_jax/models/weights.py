"""Weight import and export without torch: safetensors files and name-mapping rules.

A reference checkpoint (a torchvision state dict exported to safetensors, or a
Hugging Face ``model.safetensors``) is a flat ``{key: array}``. Each model
gives a list of `Rule` s, one per reference tensor, built by rule (helpers
below) rather than by hand: the reference key, the NNX variable path, and the
layout transforms both ways (e.g. PyTorch conv ``OIHW`` <-> JAX ``HWIO``).
`load_state_dict` checks the whole mapping before writing anything and
reports every missing key, unexpected key and shape mismatch at once.

Exporting a torchvision model once, in an environment that has torch::

    import torch, torchvision
    from safetensors.torch import save_file
    m = torchvision.models.resnet18(weights="IMAGENET1K_V1").eval()
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, "resnet18.safetensors")

then ``bskmq_jax.models.load_checkpoint(model, "resnet18.safetensors")``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import os
from typing import Callable, Iterable, Mapping

import numpy as np
from flax import nnx

from bskmq_jax.io import atomic_path

__all__ = [
    "Rule",
    "read_safetensors",
    "write_safetensors",
    "load_state_dict",
    "export_state_dict",
    "variables_by_path",
    "param_count",
    "conv_rules",
    "dense_rules",
    "norm_rules",
    "embedding_rules",
    "DEFAULT_IGNORE",
]

#: Reference keys with no counterpart that loading skips silently.
DEFAULT_IGNORE = ("*num_batches_tracked", "*position_ids")


def _identity(a):
    return a


@dataclasses.dataclass(frozen=True)
class Rule:
    """One reference tensor and where it goes in the NNX model."""

    key: str  # reference (torch / Hugging Face) state-dict key
    path: tuple  # NNX variable path, e.g. ("layer1", 0, "conv1", "kernel")
    to_nnx: Callable[[np.ndarray], np.ndarray] = _identity  # reference layout -> NNX layout
    to_ref: Callable[[np.ndarray], np.ndarray] = _identity  # NNX layout -> reference layout


def _oihw_to_hwio(a):
    return np.transpose(a, (2, 3, 1, 0))


def _hwio_to_oihw(a):
    return np.transpose(a, (3, 2, 0, 1))


def _t(a):
    return np.ascontiguousarray(a.T)


def conv_rules(prefix: tuple, conv_key: str, bn_key: str | None = None, *, bias: bool = False) -> list[Rule]:
    """Rules for an `IMCConv` at NNX ``prefix`` from a torch ``Conv2d`` (and a ``BatchNorm2d``)."""
    rules = [Rule(f"{conv_key}.weight", (*prefix, "kernel"), _oihw_to_hwio, _hwio_to_oihw)]
    if bias:
        rules.append(Rule(f"{conv_key}.bias", (*prefix, "bias")))
    if bn_key is not None:
        rules += norm_rules((*prefix, "bn"), bn_key, running=True)
    return rules


def dense_rules(prefix: tuple, key: str, *, bias: bool = True, transpose: bool = True) -> list[Rule]:
    """Rules for an `IMCDense` (or `nnx.Linear`) from a torch ``Linear`` (``[out, in]``)."""
    f = (_t, _t) if transpose else (_identity, _identity)
    rules = [Rule(f"{key}.weight", (*prefix, "kernel"), *f)]
    if bias:
        rules.append(Rule(f"{key}.bias", (*prefix, "bias")))
    return rules


def norm_rules(prefix: tuple, key: str, *, running: bool = False) -> list[Rule]:
    """Rules for a BatchNorm/LayerNorm: weight -> scale, bias, and running statistics."""
    rules = [Rule(f"{key}.weight", (*prefix, "scale")), Rule(f"{key}.bias", (*prefix, "bias"))]
    if running:
        rules += [Rule(f"{key}.running_mean", (*prefix, "mean")), Rule(f"{key}.running_var", (*prefix, "var"))]
    return rules


def embedding_rules(prefix: tuple, key: str) -> list[Rule]:
    """Rules for an `nnx.Embed` from a torch ``Embedding``."""
    return [Rule(f"{key}.weight", (*prefix, "embedding"))]


def variables_by_path(model: nnx.Module) -> dict[tuple, nnx.Variable]:
    """Every variable of ``model`` by its NNX path."""
    return {tuple(p): v for p, v in nnx.iter_graph(model) if isinstance(v, nnx.Variable)}


def param_count(model: nnx.Module) -> int:
    """Number of trainable parameters (`nnx.Param`), as torch counts ``parameters()``.

    Works on abstract models from `nnx.eval_shape` too (shapes only).
    """
    return int(sum(math.prod(v.get_value().shape) for v in variables_by_path(model).values() if isinstance(v, nnx.Param)))


def _path_str(path) -> str:
    return ".".join(str(p) for p in path)


def load_state_dict(model: nnx.Module, state: Mapping[str, np.ndarray], rules: Iterable[Rule], *,
                    ignore: Iterable[str] = DEFAULT_IGNORE, strict: bool = True) -> None:
    """Writes a reference state dict into ``model`` (all or nothing).

    Args:
      model: the NNX model.
      state: ``{reference key: array}``.
      rules: the model's mapping.
      ignore: glob patterns of reference keys to skip.
      strict: unexpected keys are an error (else ignored).

    Raises:
      ValueError: listing every missing key, unexpected key, shape mismatch,
        or rule whose NNX path does not exist. Nothing is written then.
    """
    rules = list(rules)
    variables = variables_by_path(model)
    ignore = tuple(ignore)
    missing, bad_path, bad_shape, updates = [], [], [], []
    used = set()
    for r in rules:
        if r.path not in variables:
            bad_path.append(f"{r.key} -> {_path_str(r.path)}")
            continue
        if r.key not in state:
            missing.append(r.key)
            continue
        used.add(r.key)
        value = np.asarray(r.to_nnx(np.asarray(state[r.key])))
        want = tuple(np.shape(variables[r.path][...]))
        if tuple(value.shape) != want:
            bad_shape.append(f"{r.key}: checkpoint {tuple(np.shape(state[r.key]))} -> {tuple(value.shape)}, model {want}")
            continue
        updates.append((variables[r.path], value))
    unexpected = [k for k in state if k not in used and not any(fnmatch.fnmatchcase(k, p) for p in ignore)]
    problems = []
    if bad_path:
        problems.append(f"{len(bad_path)} rule(s) name paths the model does not have: {bad_path[:10]}")
    if missing:
        problems.append(f"{len(missing)} missing key(s): {missing[:20]}")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {unexpected[:20]}")
    if bad_shape:
        problems.append(f"{len(bad_shape)} shape mismatch(es): {bad_shape[:10]}")
    if problems:
        raise ValueError("checkpoint does not fit the model: " + "; ".join(problems))
    for var, value in updates:
        var[...] = value.astype(np.asarray(var[...]).dtype)


def export_state_dict(model: nnx.Module, rules: Iterable[Rule]) -> dict[str, np.ndarray]:
    """The model's weights under the reference keys and layouts (for a round trip)."""
    variables = variables_by_path(model)
    return {r.key: np.ascontiguousarray(r.to_ref(np.asarray(variables[r.path][...]))) for r in rules}


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a safetensors file with numpy.

    Raises:
      ValueError: if the file is missing or not a safetensors file.
    """
    from safetensors.numpy import load_file

    if not os.path.exists(path):
        raise ValueError(f"checkpoint: {path} does not exist; export one as described in bskmq_jax/models/weights.py")
    try:
        return dict(load_file(str(path)))
    except Exception as e:  # safetensors raises several types for bad headers
        raise ValueError(f"checkpoint: {path} is not a readable safetensors file ({type(e).__name__}: {e})") from None


def write_safetensors(path: str | os.PathLike, state: Mapping[str, np.ndarray], metadata: dict | None = None) -> None:
    """Writes ``state`` to a safetensors file atomically."""
    from safetensors.numpy import save_file

    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(tmp), metadata=metadata)
