"""Makes the reference fixtures in tests/fixtures/ from torchvision and Hugging Face models.

Runs once, in a throwaway environment with torch (never a project dependency)::

    python3.11 -m venv /tmp/torchref
    /tmp/torchref/bin/pip install torch==2.14.1 torchvision==0.29.1 transformers safetensors numpy
    /tmp/torchref/bin/python tools/make_reference_fixtures.py [--only resnet18,bert]

For each architecture it builds the reference model with random-free
construction, fills every state-dict tensor with
`bskmq_jax.models.fixtures.tensor_values` (keys in sorted order), runs a fixed
input and writes ``tests/fixtures/<name>.json``: the fixture version, the
tensor names and shapes, the input description and the outputs. Kilobytes,
not weights: the tests rebuild the same weights in numpy.

Architectures register in ``REFERENCES`` from ``tools/reference_*.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_fixture_formulas():
    """Imports bskmq_jax/models/fixtures.py by path (numpy only, no jax needed)."""
    spec = importlib.util.spec_from_file_location("bskmq_fixtures", ROOT / "bskmq_jax" / "models" / "fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fill_state_dict(model, fx):
    """Replaces every tensor of a torch model's state dict with the fixture values."""
    import torch

    sd = model.state_dict()
    keys = sorted(sd)
    new = {}
    for i, k in enumerate(keys):
        v = fx.tensor_values(k, tuple(sd[k].shape), i)
        new[k] = torch.from_numpy(v).to(sd[k].dtype)
    model.load_state_dict(new, strict=True)
    return [[k, list(sd[k].shape)] for k in keys]


def write_fixture(name: str, payload: dict) -> Path:
    out = ROOT / "tests" / "fixtures" / f"{name}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=0, separators=(",", ":")) + "\n")
    os.replace(tmp, out)
    return out


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT / "tools"))
    from reference_cnn import REFERENCES as CNN  # noqa: E402
    from reference_transformers import REFERENCES as TRANSFORMERS  # noqa: E402

    refs = {**CNN, **TRANSFORMERS}
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="comma-separated subset of " + ",".join(refs))
    args = ap.parse_args(argv)
    fx = load_fixture_formulas()
    names = args.only.split(",") if args.only else list(refs)
    for name in names:
        payload = refs[name](fx, fill_state_dict)
        payload = {"name": name, "fixture_version": fx.FIXTURE_VERSION, **payload}
        print(name, "->", write_fixture(name, payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
