"""Flax NNX models with NL-ADC conversion at every point an IMC chip converts.

``create(name, num_classes=..., quant=...)`` builds any model by name:

| name | reference | variants (keyword arguments) |
|---|---|---|
| ``resnet18`` | torchvision ``resnet18`` | ``stem="imagenet"|"cifar"``, ``width`` multiplier, ``in_channels`` |
| ``vgg16`` / ``vgg16_bn`` | torchvision ``vgg16`` / ``vgg16_bn`` | ``width``, ``classifier_width``, ``pool_size``, ``in_channels``, ``dropout`` |
| ``inception_v3`` | torchvision ``inception_v3`` (aux logits) | ``aux_logits``, ``transform_input``, ``dropout`` |
| ``distilbert`` | Hugging Face ``DistilBertModel`` | ``size="base"|"small"``, layer/width sizes; a classifier head when ``num_classes`` |
| ``bert`` | Hugging Face ``BertModel`` (token types, pooler) | ``size="base"|"small"``, layer/width sizes, ``pooler``; a classifier head when ``num_classes`` |

Every model follows one contract:

- ``quant``: None (float), an `IMCConfig`, or a `QuantSpec` with per-layer
  overrides by name pattern; layers are built through a `LayerFactory` and
  named by their NNX attribute path (e.g. ``"layer1.0.conv2"``,
  ``"transformer.layer.3.ffn.lin1"``).
- ``model.reference_rules()`` maps the reference checkpoint's keys to the
  model's variables (`load_checkpoint` / `export_checkpoint`).
- Images are NHWC float32; token inputs are int32 ids ``[batch, length]``.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
from flax import nnx

from bskmq_jax.models.quant import LayerFactory, QuantSpec
from bskmq_jax.models.weights import (
    export_state_dict,
    load_state_dict,
    param_count,
    read_safetensors,
    write_safetensors,
)

__all__ = [
    "MODELS",
    "create",
    "load_checkpoint",
    "export_checkpoint",
    "param_count",
    "QuantSpec",
    "LayerFactory",
]

#: name -> (module, builder); modules are imported on first use.
MODELS: dict[str, tuple[str, str]] = {
    "resnet18": ("bskmq_jax.models.resnet", "resnet18"),
    "vgg16": ("bskmq_jax.models.vgg", "vgg16"),
    "vgg16_bn": ("bskmq_jax.models.vgg", "vgg16_bn"),
    "inception_v3": ("bskmq_jax.models.inception", "inception_v3"),
    "distilbert": ("bskmq_jax.models.distilbert", "distilbert"),
    "bert": ("bskmq_jax.models.bert", "bert"),
}


def create(name: str, *, num_classes: int | None, quant=None, seed: int = 0, rngs: nnx.Rngs | None = None, **variant) -> nnx.Module:
    """Builds a model by name.

    Args:
      name: one of `MODELS`.
      num_classes: classifier outputs (None: no head, for the transformers).
      quant: None, an `IMCConfig` or a `QuantSpec`.
      seed: initialization seed when ``rngs`` is not given.
      rngs: explicit `nnx.Rngs` (streams ``params``, ``adc``, ``chip``, ``dropout``).
      **variant: architecture options of that model (see the module table).

    Raises:
      ValueError: for an unknown name (listing the known ones) or bad options.
    """
    if name not in MODELS:
        raise ValueError(f"model: unknown model {name!r}; known models are {list(MODELS)}")
    module, builder = MODELS[name]
    fn = getattr(importlib.import_module(module), builder)
    return fn(num_classes=num_classes, quant=quant, rngs=rngs if rngs is not None else nnx.Rngs(seed), **variant)


def load_checkpoint(model: nnx.Module, checkpoint, *, strict: bool = True) -> nnx.Module:
    """Loads a reference checkpoint (safetensors path or ``{key: array}``) into ``model``.

    Raises:
      ValueError: for a missing/unreadable file, or keys and shapes that do
        not fit (all listed at once; nothing is written then).
    """
    state = read_safetensors(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else dict(checkpoint)
    # A model may adapt its rules to the file (e.g. Hugging Face keys saved
    # with or without a "bert." prefix); otherwise its fixed reference rules.
    rules = model.checkpoint_rules(state) if hasattr(model, "checkpoint_rules") else model.reference_rules()
    load_state_dict(model, {k: np.asarray(v) for k, v in state.items()}, rules, strict=strict)
    return model


def export_checkpoint(model: nnx.Module, path=None) -> dict[str, np.ndarray]:
    """The model's weights under the reference names; also written to ``path`` if given."""
    state = export_state_dict(model, model.reference_rules())
    if path is not None:
        write_safetensors(path, state)
    return state
