"""Layer shape tables of networks, generated from their architectures.

The system model needs only each layer's matrix-product shape
(`LayerShape`). `network_shapes` reads them off the real NNX models; this
module also keeps torchvision's ResNet-18 at 224 x 224 generated from the
architecture below, as an independent check of the model-derived shapes.

torchvision ResNet-18: conv1 7x7/2 (3 -> 64), BN, ReLU, maxpool 3x3/2;
layer1..layer4 of two BasicBlocks each (3x3 convs; the first block of
layer2..4 has stride 2 and a 1x1/2 downsample conv); global average pool;
fc 512 -> 1000. torchvision reports 1.81 GFLOPs for it, counting MACs.
"""

from __future__ import annotations

from bskmq_jax.hardware.system import LayerShape


def conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length of a convolution or pooling along one axis."""
    return (size + 2 * pad - kernel) // stride + 1


def conv_layer(name: str, cin: int, cout: int, kernel: int, stride: int, pad: int, size: int) -> tuple[LayerShape, int]:
    """A square convolution on a ``size x size`` input; returns the layer and its output size."""
    out = conv_out(size, kernel, stride, pad)
    return LayerShape(name=name, kind="conv", rows=cin * kernel * kernel, cols=cout, positions=out * out), out


def resnet18_imagenet_shapes(image_size: int = 224, num_classes: int = 1000) -> list[LayerShape]:
    """Every conv and fc layer of torchvision's ResNet-18 at ``image_size`` (batch 1).

    Returns:
      21 `LayerShape` s in execution order (conv1, 16 block convs, 3
      downsample convs, fc); about 1.814e9 MACs at 224 x 224.
    """
    layers = []
    conv1, size = conv_layer("conv1", 3, 64, 7, 2, 3, image_size)
    layers.append(conv1)
    size = conv_out(size, 3, 2, 1)  # maxpool 3x3/2, padding 1
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if (block == 0 and stage > 1) else 1
            prefix = f"layer{stage}.{block}"
            a, mid = conv_layer(f"{prefix}.conv1", cin, cout, 3, stride, 1, size)
            b, _ = conv_layer(f"{prefix}.conv2", cout, cout, 3, 1, 1, mid)
            layers += [a, b]
            if stride != 1 or cin != cout:
                ds, _ = conv_layer(f"{prefix}.downsample", cin, cout, 1, stride, 0, size)
                layers.append(ds)
            cin, size = cout, mid
    layers.append(LayerShape(name="fc", kind="dense", rows=cin, cols=num_classes, positions=1))
    return layers


def network_shapes(name: str, *, size: int | None = None) -> list[LayerShape]:
    """The layer shapes of a network, read off the real model (`from_model.model_shapes`).

    ``resnet18_imagenet_shapes`` above is kept as an independent derivation
    from the architecture; the tests check that both agree.

    Raises:
      ValueError: for a model that bskmq_jax.models does not have.
    """
    from bskmq_jax.hardware.from_model import model_shapes

    return model_shapes(name, size=size)
