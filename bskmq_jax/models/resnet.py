"""ResNet-18 (torchvision ``resnet18``) with an NL-ADC at every conversion point.

The architecture is torchvision's: a 7x7/2 stem convolution (padding 3) with
BatchNorm and ReLU, a 3x3/2 max pool (padding 1), four stages of two
`BasicBlock` s (64, 128, 256, 512 channels; stages 2-4 start with stride 2 and
a 1x1 conv + BatchNorm shortcut), global average pooling and a linear
classifier. Convolutions have no bias; BatchNorm eps is 1e-5 and momentum
0.1 in torch's convention (0.9 in Flax's). 11,689,512 parameters at 1000
classes.

Conversion points (dotted layer names, as torchvision's module names):

| layer | what the chip converts | activation in the conversion |
|---|---|---|
| ``conv1`` | stem conv + ``bn1`` | ReLU |
| ``layer{i}.{j}.conv1`` | block conv + ``bn1`` | ReLU |
| ``layer{i}.{j}.conv2`` | block conv + ``bn2`` | identity: the residual add and the block's ReLU are digital |
| ``layer{i}.{j}.downsample`` | 1x1 shortcut conv + BatchNorm | identity |
| ``fc`` | classifier | identity |

Small variants (same code, through options): ``stem="cifar"`` (3x3 stride-1
stem conv, no max pool, for 32x32 inputs), ``width`` (channel multiplier;
0.25 gives 16, 32, 64, 128 channels) and ``in_channels`` (1 for digits).
"""

from __future__ import annotations

import jax
from flax import nnx

from bskmq_jax.models.cnn_ops import (
    check_num_classes,
    check_positive_int,
    check_variant,
    cnn_rules,
    global_avg_pool,
    max_pool,
    pad2,
    scaled_channels,
)
from bskmq_jax.models.quant import LayerFactory
from bskmq_jax.models.weights import Rule

__all__ = ["ResNet18", "BasicBlock", "resnet18", "STEMS"]

STEMS = ("imagenet", "cifar")
_STAGES = (64, 128, 256, 512)  # channels of the four stages at width 1
_BLOCKS = 2  # BasicBlocks per stage in ResNet-18


class BasicBlock(nnx.Module):
    """Two 3x3 convs with BatchNorm and a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    Args:
      f: the model's `LayerFactory`.
      name: the block's dotted name (``"layer2.0"``).
      cin, cout: channels.
      stride: of ``conv1`` and the shortcut.
    """

    def __init__(self, f: LayerFactory, name: str, cin: int, cout: int, stride: int):
        s = (stride, stride)
        # Block inputs are post-ReLU (the previous block's output or the stem's
        # pooled ReLU), so every conv here sees non-negative inputs.
        common = dict(use_bias=False, use_bn=True, input_signed=False)
        self.conv1 = f.conv(f"{name}.conv1", cin, cout, (3, 3), strides=s, padding=pad2(1), activation="relu", **common)
        self.conv2 = f.conv(f"{name}.conv2", cout, cout, (3, 3), padding=pad2(1), activation="identity", **common)
        if stride != 1 or cin != cout:
            self.downsample = f.conv(f"{name}.downsample", cin, cout, (1, 1), strides=s, padding=pad2(0),
                                     activation="identity", **common)
        else:
            self.downsample = None

    def __call__(self, x: jax.Array) -> jax.Array:
        """``[N, H, W, cin] -> [N, H / stride, W / stride, cout]``."""
        shortcut = x if self.downsample is None else self.downsample(x)
        return jax.nn.relu(self.conv2(self.conv1(x)) + shortcut)


class ResNet18(nnx.Module):
    """torchvision's ResNet-18 on NHWC images.

    Args:
      num_classes: classifier outputs.
      quant: None, an `IMCConfig` or a `QuantSpec` (see `bskmq_jax.models.quant`).
      rngs: `nnx.Rngs`.
      stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max pool) or ``"cifar"`` (3x3/1 conv, no pool).
      width: channel multiplier of every stage (channels are rounded).
      in_channels: image channels.
    """

    def __init__(self, *, num_classes: int, quant=None, rngs: nnx.Rngs, stem: str = "imagenet", width: float = 1.0,
                 in_channels: int = 3):
        num_classes = check_num_classes(num_classes)
        if stem not in STEMS:
            raise ValueError(f"stem: unknown stem {stem!r}; choose one of {list(STEMS)}")
        in_channels = check_positive_int("in_channels", in_channels)
        chans = [scaled_channels(c, width) for c in _STAGES]
        f = LayerFactory(quant, rngs)
        self.stem = stem
        if stem == "imagenet":
            k, s, p = (7, 7), (2, 2), pad2(3)
        else:
            k, s, p = (3, 3), (1, 1), pad2(1)
        # The stem takes raw (normalized, signed) images.
        self.conv1 = f.conv("conv1", in_channels, chans[0], k, strides=s, padding=p, activation="relu",
                            input_signed=True, use_bias=False, use_bn=True)
        cin = chans[0]
        for i, cout in enumerate(chans):
            blocks = []
            for j in range(_BLOCKS):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(f, f"layer{i + 1}.{j}", cin, cout, stride))
                cin = cout
            setattr(self, f"layer{i + 1}", nnx.List(blocks))
        self.fc = f.dense("fc", cin, num_classes, activation="identity", input_signed=False)
        f.finish(self)

    def stages(self):
        """The four stages (``layer1`` .. ``layer4``)."""
        return (self.layer1, self.layer2, self.layer3, self.layer4)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``[N, H, W, in_channels]`` images -> ``[N, num_classes]`` logits."""
        x = self.conv1(x)
        if self.stem == "imagenet":
            x = max_pool(x, 3, 2, 1)
        for stage in self.stages():
            for block in stage:
                x = block(x)
        return self.fc(global_avg_pool(x))

    def reference_rules(self) -> list[Rule]:
        """torchvision key mapping: BatchNorms are the convs' siblings (``layer1.0.bn1`` for
        ``layer1.0.conv1``, ``bn1`` for the stem), the shortcut is ``downsample.0`` / ``.1``."""

        def keys(name: str, layer) -> tuple[str, str | None]:
            head, _, last = name.rpartition(".")
            if last == "downsample":
                return f"{name}.0", f"{name}.1"
            if last.startswith("conv"):  # convK -> bnK, in the same parent
                return name, (f"{head}." if head else "") + "bn" + last[len("conv"):]
            return name, None  # fc

        return cnn_rules(self, keys)


def resnet18(*, num_classes: int, quant=None, rngs: nnx.Rngs, **variant) -> ResNet18:
    """Builds `ResNet18`; ``variant``: ``stem``, ``width``, ``in_channels``.

    Raises:
      ValueError: for an unknown or invalid option (named).
    """
    opts = check_variant("resnet18", variant, {"stem": "imagenet", "width": 1.0, "in_channels": 3})
    return ResNet18(num_classes=num_classes, quant=quant, rngs=rngs, **opts)
