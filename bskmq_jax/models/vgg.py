"""VGG-16 and VGG-16-BN (torchvision ``vgg16`` / ``vgg16_bn``) with an NL-ADC at every conversion point.

The architecture is torchvision's configuration "D": thirteen 3x3 convs
(padding 1, with bias; in VGG-16-BN each followed by a BatchNorm, eps 1e-5)
with ReLU, in five groups of 64, 128, 256, 512, 512 channels, each group
ending in a 2x2/2 max pool (floor mode); ``AdaptiveAvgPool2d((7, 7))``;
then a classifier ``Linear(25088, 4096) - ReLU - Dropout(0.5) -
Linear(4096, 4096) - ReLU - Dropout(0.5) - Linear(4096, num_classes)``. The
pooled ``[N, 7, 7, 512]`` map is flattened in torch's channel-major order
(NCHW), so ``classifier.0`` keeps torch's column order. 138,357,544
parameters (VGG-16) and 138,365,992 (VGG-16-BN) at 1000 classes.

Conversion points are named by torchvision's module indices:

| layer | VGG-16 | VGG-16-BN | activation in the conversion |
|---|---|---|---|
| convs | ``features.0``, ``features.2``, ``features.5``, ... | ``features.0``, ``features.3``, ``features.7``, ... (BatchNorm ``features.{k+1}`` inside) | ReLU |
| hidden linears | ``classifier.0``, ``classifier.3`` | same | ReLU |
| output | ``classifier.6`` | same | identity |

The dropouts are ``classifier.2`` and ``classifier.5`` (as in torch); the
ReLUs and max pools are digital and have no module.

Small variants (same code, through options): ``width`` (conv channel
multiplier), ``classifier_width`` (hidden linear size, 4096), ``pool_size``
(the adaptive pool's output side, 7; 1 suits 32x32 inputs, whose feature map
is 1x1), ``in_channels`` and ``dropout``.
"""

from __future__ import annotations

import jax
from flax import nnx

from bskmq_jax.models.cnn_ops import (
    adaptive_avg_pool,
    check_num_classes,
    check_positive_int,
    check_rate,
    check_variant,
    cnn_rules,
    max_pool,
    pad2,
    scaled_channels,
)
from bskmq_jax.models.quant import LayerFactory
from bskmq_jax.models.weights import Rule

__all__ = ["VGG", "vgg16", "vgg16_bn", "CFG_D"]

#: torchvision's configuration "D" (VGG-16): conv channels, "M" a 2x2/2 max pool.
CFG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

_DEFAULTS = {"width": 1.0, "classifier_width": 4096, "pool_size": 7, "in_channels": 3, "dropout": 0.5}


class VGG(nnx.Module):
    """torchvision's VGG (configuration "D") on NHWC images.

    Args:
      num_classes: classifier outputs.
      quant: None, an `IMCConfig` or a `QuantSpec`.
      rngs: `nnx.Rngs`.
      batch_norm: a BatchNorm after every conv (VGG-16-BN).
      width: conv channel multiplier (channels are rounded).
      classifier_width: size of the two hidden linear layers.
      pool_size: output side of the adaptive average pool before the classifier.
      in_channels: image channels.
      dropout: rate of the classifier's two dropouts.
    """

    def __init__(self, *, num_classes: int, quant=None, rngs: nnx.Rngs, batch_norm: bool = False, width: float = 1.0,
                 classifier_width: int = 4096, pool_size: int = 7, in_channels: int = 3, dropout: float = 0.5):
        num_classes = check_num_classes(num_classes)
        classifier_width = check_positive_int("classifier_width", classifier_width)
        self.pool_size = check_positive_int("pool_size", pool_size)
        cin = check_positive_int("in_channels", in_channels)
        dropout = check_rate("dropout", dropout)
        f = LayerFactory(quant, rngs)
        convs, plan, index = {}, [], 0
        for v in CFG_D:
            if v == "M":
                plan.append("M")
                index += 1
                continue
            cout = scaled_channels(v, width)
            key = str(index)
            # Only features.0 sees the (signed) image; every later conv's input
            # has passed a ReLU (and maybe a max pool).
            convs[key] = f.conv(f"features.{key}", cin, cout, (3, 3), padding=pad2(1), activation="relu",
                                input_signed=index == 0, use_bias=True, use_bn=batch_norm)
            plan.append(key)
            index += 3 if batch_norm else 2  # conv, [bn,] relu
            cin = cout
        self.features = nnx.Dict(convs)
        self.plan = tuple(plan)  # the order of convs ("0", "2", ...) and pools ("M")
        self.batch_norm = bool(batch_norm)
        common = dict(input_signed=False)  # after ReLU (+ pool / dropout): non-negative
        self.classifier = nnx.Dict({
            "0": f.dense("classifier.0", cin * self.pool_size**2, classifier_width, activation="relu", **common),
            "2": nnx.Dropout(dropout, rngs=rngs),
            "3": f.dense("classifier.3", classifier_width, classifier_width, activation="relu", **common),
            "5": nnx.Dropout(dropout, rngs=rngs),
            "6": f.dense("classifier.6", classifier_width, num_classes, activation="identity", **common),
        })
        f.finish(self)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``[N, H, W, in_channels]`` images (H, W >= 32) -> ``[N, num_classes]`` logits."""
        for step in self.plan:
            x = max_pool(x, 2, 2) if step == "M" else self.features[step](x)
        x = adaptive_avg_pool(x, self.pool_size)
        # torch flattens NCHW: channel-major, so classifier.0's columns keep torch's order.
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)
        c = self.classifier
        x = c["5"](c["3"](c["2"](c["0"](x))))
        return c["6"](x)

    def reference_rules(self) -> list[Rule]:
        """torchvision key mapping: ``features.k`` is the conv, ``features.{k+1}`` its BatchNorm
        (VGG-16-BN), ``classifier.k`` the linears."""

        def keys(name: str, layer) -> tuple[str, str | None]:
            group, _, k = name.rpartition(".")
            return name, f"{group}.{int(k) + 1}"

        return cnn_rules(self, keys)


def _build(model: str, batch_norm: bool, num_classes, quant, rngs, variant) -> VGG:
    opts = check_variant(model, variant, _DEFAULTS)
    return VGG(num_classes=num_classes, quant=quant, rngs=rngs, batch_norm=batch_norm, **opts)


def vgg16(*, num_classes: int, quant=None, rngs: nnx.Rngs, **variant) -> VGG:
    """Builds VGG-16; ``variant``: ``width``, ``classifier_width``, ``pool_size``, ``in_channels``, ``dropout``.

    Raises:
      ValueError: for an unknown or invalid option (named).
    """
    return _build("vgg16", False, num_classes, quant, rngs, variant)


def vgg16_bn(*, num_classes: int, quant=None, rngs: nnx.Rngs, **variant) -> VGG:
    """Builds VGG-16-BN; options as `vgg16`."""
    return _build("vgg16_bn", True, num_classes, quant, rngs, variant)
