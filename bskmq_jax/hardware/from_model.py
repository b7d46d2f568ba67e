"""Layer shapes read off the real NNX models, for the system model.

`model_shapes` traces a model's forward abstractly (`jax.eval_shape`: no
arithmetic, no memory for activations) with `record_shapes` on, and turns
every IMC layer call into a `LayerShape`: its dotted name, its fan-in (array
rows the weights need), its output features (columns) and the number of
output vectors per sample (positions: ``H_out * W_out`` for a conv, tokens
for a transformer projection, ``heads * tokens`` for an attention product).
"""

from __future__ import annotations

import math

import jax
import numpy as np

from bskmq_jax.hardware.system import LayerShape

#: Inputs the system model traces each model with (batch 1).
DEFAULT_INPUTS = {
    "resnet18": 224,
    "vgg16": 224,
    "vgg16_bn": 224,
    "inception_v3": 299,
    "distilbert": 128,
    "bert": 128,
}


def model_shapes(name: str, *, size: int | None = None, num_classes: int = 1000, **variant) -> list[LayerShape]:
    """Every converted layer of model ``name`` as a `LayerShape`, in call order.

    Args:
      name: a `bskmq_jax.models` name.
      size: image side (CNNs) or sequence length (transformers); default
        `DEFAULT_INPUTS`.
      num_classes: classifier outputs (CNNs; transformers use the base model).
      **variant: model options (e.g. ``stem="cifar", width=0.25``).

    Raises:
      ValueError: for an unknown model name.
    """
    from bskmq_jax import models
    from bskmq_jax.imc.control import imc_layers
    from bskmq_jax.imc.layers import IMCConv, IMCMatmul, record_shapes

    if name not in models.MODELS:
        raise ValueError(f"--model: unknown model {name!r}; known models are {list(models.MODELS)}")
    size = size or DEFAULT_INPUTS[name]
    text = name in ("distilbert", "bert")
    model = models.create(name, num_classes=None if text else num_classes, **variant)
    model.eval()
    if text:
        x = np.full((1, size), 1000, np.int32)
    else:
        x = np.zeros((1, size, size, getattr(model, "in_channels", 3)), np.float32)
    with record_shapes() as log:
        jax.eval_shape(lambda v: model(v), x)
    names = {id(layer): n for n, layer in imc_layers(model).items()}
    out = []
    for layer, fan_in, shape in log:
        cols = int(shape[-1])
        positions = int(math.prod(shape[1:-1])) or 1
        kind = "conv" if isinstance(layer, IMCConv) else "matmul" if isinstance(layer, IMCMatmul) else "dense"
        out.append(LayerShape(name=names[id(layer)], kind=kind, rows=int(fan_in), cols=cols, positions=positions))
    return out
