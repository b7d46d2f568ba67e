"""torchvision references of the CNNs, for tools/make_reference_fixtures.py (needs torch).

Each function builds the torchvision model without pretrained weights, fills
its state dict with the fixture values, runs the fixed NCHW image and returns
the fixture payload (tensor names and shapes, input description, logits).
"""

from __future__ import annotations


def _run(model, fx, fill_state_dict, side: int) -> dict:
    import torch

    model.eval()
    keys = fill_state_dict(model, fx)
    shape = [1, 3, side, side]
    with torch.no_grad():
        logits = model(torch.from_numpy(fx.image_input(tuple(shape))))
    assert tuple(logits.shape) == (1, 1000), logits.shape
    return {"keys": keys, "input": {"shape": shape, "layout": "NCHW"}, "output": logits.double().tolist()}


def resnet18(fx, fill_state_dict) -> dict:
    from torchvision.models import resnet18 as build

    return _run(build(weights=None), fx, fill_state_dict, 224)


def vgg16(fx, fill_state_dict) -> dict:
    from torchvision.models import vgg16 as build

    return _run(build(weights=None), fx, fill_state_dict, 224)


def vgg16_bn(fx, fill_state_dict) -> dict:
    from torchvision.models import vgg16_bn as build

    return _run(build(weights=None), fx, fill_state_dict, 224)


def inception_v3(fx, fill_state_dict) -> dict:
    from torchvision.models import inception_v3 as build

    # init_weights=False skips scipy's truncated-normal init (the values are
    # overwritten anyway); transform_input=False feeds the image unchanged.
    model = build(weights=None, aux_logits=True, init_weights=False, transform_input=False)
    return _run(model, fx, fill_state_dict, 299)


REFERENCES = {"resnet18": resnet18, "vgg16": vgg16, "vgg16_bn": vgg16_bn, "inception_v3": inception_v3}
