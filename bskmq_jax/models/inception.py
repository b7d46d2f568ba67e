"""Inception-V3 (torchvision ``inception_v3``, with aux logits) with an NL-ADC at every conversion point.

The architecture is torchvision's, module for module. Every convolution is a
``BasicConv2d``: conv without bias, BatchNorm with eps 0.001 (momentum 0.1 in
torch's convention), ReLU; here one `IMCConv` with its BatchNorm inside,
named as torchvision's ``BasicConv2d`` module (``Mixed_5b.branch1x1``), whose
checkpoint keys are ``<name>.conv.weight`` and ``<name>.bn.*``. Pools match
torch: ``max_pool2d(3, stride 2)`` without padding, branch pools
``avg_pool2d(3, stride 1, padding 1)`` counting the padding, the aux head's
``avg_pool2d(5, stride 3)``. Blocks concatenate their branches along channels
in torchvision's order. 27,161,264 parameters with aux logits at 1000
classes.

Conversion points: every ``BasicConv2d`` (``Conv2d_1a_3x3`` ... ``Mixed_7c.branch_pool``,
``AuxLogits.conv0``, ``AuxLogits.conv1``; ReLU in the conversion), the aux
classifier ``AuxLogits.fc`` and the classifier ``fc`` (identity).

Modes, as torchvision's ``self.training``: after ``model.train()`` (also the
state after construction, as in torch) the forward returns ``(logits,
aux_logits)`` when the aux head exists; after ``model.eval()`` it returns the
logits. Options: ``aux_logits`` (True), ``transform_input`` (False; True
re-normalizes ImageNet-normalized inputs as torchvision does for its
pretrained weights), ``dropout`` (0.5). The input side must be at least 75
(and 299 for the aux head, as in torchvision).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from bskmq_jax.models.cnn_ops import (
    avg_pool,
    check_num_classes,
    check_rate,
    check_variant,
    cnn_rules,
    global_avg_pool,
    max_pool,
    pad2,
)
from bskmq_jax.models.quant import LayerFactory
from bskmq_jax.models.weights import Rule

__all__ = ["InceptionV3", "inception_v3", "BN_EPS"]

#: BatchNorm eps of torchvision's BasicConv2d.
BN_EPS = 1e-3


def _basic(f: LayerFactory, name: str, cin: int, cout: int, kernel, stride=1, padding=0, *, signed: bool = False):
    """torchvision's ``BasicConv2d``: conv (no bias) + BatchNorm(eps 0.001) + ReLU, as one IMC layer.

    ``signed``: the input can be negative (only the image, for ``Conv2d_1a_3x3``).
    """
    k = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    return f.conv(name, cin, cout, k, strides=(stride, stride), padding=pad2(padding), activation="relu",
                  input_signed=signed, use_bias=False, use_bn=True, bn_eps=BN_EPS)


def _branch_pool(x):
    """The blocks' ``avg_pool2d(kernel_size=3, stride=1, padding=1)`` (padding counted)."""
    return avg_pool(x, 3, 1, 1)


class InceptionA(nnx.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pooled 1x1 branches (``64 + 64 + 96 + pool_features``)."""

    def __init__(self, f: LayerFactory, name: str, cin: int, pool_features: int):
        self.branch1x1 = _basic(f, f"{name}.branch1x1", cin, 64, 1)
        self.branch5x5_1 = _basic(f, f"{name}.branch5x5_1", cin, 48, 1)
        self.branch5x5_2 = _basic(f, f"{name}.branch5x5_2", 48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _basic(f, f"{name}.branch3x3dbl_1", cin, 64, 1)
        self.branch3x3dbl_2 = _basic(f, f"{name}.branch3x3dbl_2", 64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _basic(f, f"{name}.branch3x3dbl_3", 96, 96, 3, padding=1)
        self.branch_pool = _basic(f, f"{name}.branch_pool", cin, pool_features, 1)

    def __call__(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_branch_pool(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nnx.Module):
    """Grid reduction 35 -> 17: strided 3x3, double 3x3 and max-pool branches (``384 + 96 + cin``)."""

    def __init__(self, f: LayerFactory, name: str, cin: int):
        self.branch3x3 = _basic(f, f"{name}.branch3x3", cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _basic(f, f"{name}.branch3x3dbl_1", cin, 64, 1)
        self.branch3x3dbl_2 = _basic(f, f"{name}.branch3x3dbl_2", 64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _basic(f, f"{name}.branch3x3dbl_3", 96, 96, 3, stride=2)

    def __call__(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return jnp.concatenate([b3, bd, max_pool(x, 3, 2)], axis=-1)


class InceptionC(nnx.Module):
    """17x17 block with factorized 7x7 convs (``c7`` channels inside; ``4 x 192`` out)."""

    def __init__(self, f: LayerFactory, name: str, cin: int, c7: int):
        h, v = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, padding) of the 1x7 and 7x1 convs
        self.branch1x1 = _basic(f, f"{name}.branch1x1", cin, 192, 1)
        self.branch7x7_1 = _basic(f, f"{name}.branch7x7_1", cin, c7, 1)
        self.branch7x7_2 = _basic(f, f"{name}.branch7x7_2", c7, c7, h[0], padding=h[1])
        self.branch7x7_3 = _basic(f, f"{name}.branch7x7_3", c7, 192, v[0], padding=v[1])
        self.branch7x7dbl_1 = _basic(f, f"{name}.branch7x7dbl_1", cin, c7, 1)
        self.branch7x7dbl_2 = _basic(f, f"{name}.branch7x7dbl_2", c7, c7, v[0], padding=v[1])
        self.branch7x7dbl_3 = _basic(f, f"{name}.branch7x7dbl_3", c7, c7, h[0], padding=h[1])
        self.branch7x7dbl_4 = _basic(f, f"{name}.branch7x7dbl_4", c7, c7, v[0], padding=v[1])
        self.branch7x7dbl_5 = _basic(f, f"{name}.branch7x7dbl_5", c7, 192, h[0], padding=h[1])
        self.branch_pool = _basic(f, f"{name}.branch_pool", cin, 192, 1)

    def __call__(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            bd = conv(bd)
        bp = self.branch_pool(_branch_pool(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nnx.Module):
    """Grid reduction 17 -> 8: 1x1 + strided 3x3, 1x1 + 1x7 + 7x1 + strided 3x3, max pool (``320 + 192 + cin``)."""

    def __init__(self, f: LayerFactory, name: str, cin: int):
        self.branch3x3_1 = _basic(f, f"{name}.branch3x3_1", cin, 192, 1)
        self.branch3x3_2 = _basic(f, f"{name}.branch3x3_2", 192, 320, 3, stride=2)
        self.branch7x7x3_1 = _basic(f, f"{name}.branch7x7x3_1", cin, 192, 1)
        self.branch7x7x3_2 = _basic(f, f"{name}.branch7x7x3_2", 192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _basic(f, f"{name}.branch7x7x3_3", 192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _basic(f, f"{name}.branch7x7x3_4", 192, 192, 3, stride=2)

    def __call__(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return jnp.concatenate([b3, b7, max_pool(x, 3, 2)], axis=-1)


class InceptionE(nnx.Module):
    """8x8 block with split 1x3 / 3x1 branches (``320 + 768 + 768 + 192 = 2048`` out)."""

    def __init__(self, f: LayerFactory, name: str, cin: int):
        h, v = ((1, 3), (0, 1)), ((3, 1), (1, 0))
        self.branch1x1 = _basic(f, f"{name}.branch1x1", cin, 320, 1)
        self.branch3x3_1 = _basic(f, f"{name}.branch3x3_1", cin, 384, 1)
        self.branch3x3_2a = _basic(f, f"{name}.branch3x3_2a", 384, 384, h[0], padding=h[1])
        self.branch3x3_2b = _basic(f, f"{name}.branch3x3_2b", 384, 384, v[0], padding=v[1])
        self.branch3x3dbl_1 = _basic(f, f"{name}.branch3x3dbl_1", cin, 448, 1)
        self.branch3x3dbl_2 = _basic(f, f"{name}.branch3x3dbl_2", 448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _basic(f, f"{name}.branch3x3dbl_3a", 384, 384, h[0], padding=h[1])
        self.branch3x3dbl_3b = _basic(f, f"{name}.branch3x3dbl_3b", 384, 384, v[0], padding=v[1])
        self.branch_pool = _basic(f, f"{name}.branch_pool", cin, 192, 1)

    def __call__(self, x):
        b1 = self.branch1x1(x)
        t = self.branch3x3_1(x)
        b3 = jnp.concatenate([self.branch3x3_2a(t), self.branch3x3_2b(t)], axis=-1)
        t = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = jnp.concatenate([self.branch3x3dbl_3a(t), self.branch3x3dbl_3b(t)], axis=-1)
        bp = self.branch_pool(_branch_pool(x))
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionAux(nnx.Module):
    """Aux classifier on the 17x17 map: avg pool 5/3, 1x1 conv (128), 5x5 conv (768), global pool, linear."""

    def __init__(self, f: LayerFactory, name: str, cin: int, num_classes: int):
        self.conv0 = _basic(f, f"{name}.conv0", cin, 128, 1)
        self.conv1 = _basic(f, f"{name}.conv1", 128, 768, 5)
        self.fc = f.dense(f"{name}.fc", 768, num_classes, activation="identity", input_signed=False)

    def __call__(self, x):
        x = self.conv1(self.conv0(avg_pool(x, 5, 3)))
        return self.fc(global_avg_pool(x))


class InceptionV3(nnx.Module):
    """torchvision's Inception-V3 on NHWC images (see the module docstring).

    Args:
      num_classes: classifier outputs.
      quant: None, an `IMCConfig` or a `QuantSpec`.
      rngs: `nnx.Rngs`.
      aux_logits: build the aux classifier (``AuxLogits``).
      transform_input: re-normalize inputs from ImageNet to [-1, 1] statistics first.
      dropout: rate of the dropout before ``fc``.
    """

    def __init__(self, *, num_classes: int, quant=None, rngs: nnx.Rngs, aux_logits: bool = True,
                 transform_input: bool = False, dropout: float = 0.5):
        num_classes = check_num_classes(num_classes)
        for opt, v in (("aux_logits", aux_logits), ("transform_input", transform_input)):
            if not isinstance(v, bool):
                raise ValueError(f"{opt}: expected True or False, got {v!r}")
        dropout = check_rate("dropout", dropout)
        f = LayerFactory(quant, rngs)
        self.transform_input = transform_input
        self.Conv2d_1a_3x3 = _basic(f, "Conv2d_1a_3x3", 3, 32, 3, stride=2, signed=True)
        self.Conv2d_2a_3x3 = _basic(f, "Conv2d_2a_3x3", 32, 32, 3)
        self.Conv2d_2b_3x3 = _basic(f, "Conv2d_2b_3x3", 32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _basic(f, "Conv2d_3b_1x1", 64, 80, 1)
        self.Conv2d_4a_3x3 = _basic(f, "Conv2d_4a_3x3", 80, 192, 3)
        self.Mixed_5b = InceptionA(f, "Mixed_5b", 192, pool_features=32)
        self.Mixed_5c = InceptionA(f, "Mixed_5c", 256, pool_features=64)
        self.Mixed_5d = InceptionA(f, "Mixed_5d", 288, pool_features=64)
        self.Mixed_6a = InceptionB(f, "Mixed_6a", 288)
        self.Mixed_6b = InceptionC(f, "Mixed_6b", 768, c7=128)
        self.Mixed_6c = InceptionC(f, "Mixed_6c", 768, c7=160)
        self.Mixed_6d = InceptionC(f, "Mixed_6d", 768, c7=160)
        self.Mixed_6e = InceptionC(f, "Mixed_6e", 768, c7=192)
        self.AuxLogits = InceptionAux(f, "AuxLogits", 768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(f, "Mixed_7a", 768)
        self.Mixed_7b = InceptionE(f, "Mixed_7b", 1280)
        self.Mixed_7c = InceptionE(f, "Mixed_7c", 2048)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.fc = f.dense("fc", 2048, num_classes, activation="identity", input_signed=False)
        # torchvision's self.training: set by model.train() / model.eval()
        # (nnx's set_attributes), like the Dropout's flag.
        self.deterministic = False
        f.finish(self)

    def _transform(self, x):
        # torchvision: x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5, per RGB channel.
        mean = jnp.asarray([0.485, 0.456, 0.406], x.dtype)
        std = jnp.asarray([0.229, 0.224, 0.225], x.dtype)
        return x * (std / 0.5) + (mean - 0.5) / 0.5

    def __call__(self, x: jax.Array):
        """``[N, H, W, 3]`` images (H, W >= 75; 299 in train mode with aux logits).

        Returns:
          ``[N, num_classes]`` logits; in train mode with aux logits, ``(logits, aux_logits)``.
        """
        if self.transform_input:
            x = self._transform(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = max_pool(x, 3, 2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = max_pool(x, 3, 2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e):
            x = block(x)
        aux = self.AuxLogits(x) if (self.AuxLogits is not None and not self.deterministic) else None
        for block in (self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        logits = self.fc(self.dropout(global_avg_pool(x)))
        return logits if aux is None else (logits, aux)

    def reference_rules(self) -> list[Rule]:
        """torchvision key mapping: a ``BasicConv2d`` named ``n`` has ``n.conv.weight`` and ``n.bn.*``;
        ``fc`` and ``AuxLogits.fc`` are linears."""

        def keys(name: str, layer) -> tuple[str, str | None]:
            if layer.bn is None:  # the two linears
                return name, None
            return f"{name}.conv", f"{name}.bn"

        return cnn_rules(self, keys)


def inception_v3(*, num_classes: int, quant=None, rngs: nnx.Rngs, **variant) -> InceptionV3:
    """Builds `InceptionV3`; ``variant``: ``aux_logits``, ``transform_input``, ``dropout``.

    Raises:
      ValueError: for an unknown or invalid option (named).
    """
    opts = check_variant("inception_v3", variant, {"aux_logits": True, "transform_input": False, "dropout": 0.5})
    return InceptionV3(num_classes=num_classes, quant=quant, rngs=rngs, **opts)
