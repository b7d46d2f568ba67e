"""Seed table: quantization error per method and bit width on every model's layers.

Quick (reuses or runs the same PTQ jobs as ptq_accuracy.py)::

    .venv/bin/python experiments/quant_error.py --quick --out results/ptq_accuracy

Full scale: the same flags as experiments/ptq_accuracy.py (``--data-dir``,
``--checkpoint MODEL=FILE``).

The error of each layer is measured on held-out data (a calibration pass
over the evaluation split) with the levels of the first calibration set. The
table reports, per model, method and bit width, the mean over layers of the
relative MSE (MSE / mean square of the layer's values), of the interior
relative MSE (values strictly inside the ADC range only) and the ratio of
each method's relative MSE to BS-KMQ's: the seed claims BS-KMQ has 3x lower
error than K-means; the ratio column shows under which metric that holds
here. Writes ``OUT/quant_error.md`` and ``OUT/quant_error.json``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
    from bskmq_jax.io import markdown_table, write_json, write_text
    from ptq_accuracy import parse, run_models

    args = parse(argv)
    done = run_models(args)
    rows, js = [], {}
    for name, d in done.items():
        if "results" not in d:
            continue
        r = d["results"]
        for b in sorted(next(iter(r["results"].values())), key=int):
            ref = {k: np.mean([e[k] for e in r["results"]["bs_kmq"][b]["layers"].values()]) for k in ("rel_mse", "interior_rel_mse")} \
                if "bs_kmq" in r["results"] else None
            for m, per in r["results"].items():
                layers = per[b]["layers"].values()
                full = float(np.mean([e["rel_mse"] for e in layers]))
                interior = float(np.mean([e["interior_rel_mse"] for e in layers]))
                ratio = [full / ref["rel_mse"], interior / ref["interior_rel_mse"]] if ref else ["-", "-"]
                rows.append([name, b, m, full, interior, *ratio])
                js.setdefault(name, {}).setdefault(b, {})[m] = {"rel_mse": full, "interior_rel_mse": interior}
    md = markdown_table(["model", "bits", "method", "rel. MSE", "interior rel. MSE", "rel. MSE / BS-KMQ's",
                         "interior / BS-KMQ's"], rows)
    text = f"# Quantization error per method and bit width ({'quick' if args.quick else 'full scale'})\n\n{md}"
    write_text(Path(args.out) / "quant_error.md", text)
    write_json(Path(args.out) / "quant_error.json", js)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
