"""BS-KMQ's suppression readings (drop, equalize, clip) in PTQ on the quick models.

Command (about 8 minutes on 2 CPU cores; models cached under checkpoints/)::

    .venv/bin/python experiments/bs_kmq_modes_ptq.py --out results/modes

Revisits the default chosen on a digits MLP (docs/bs_kmq.md) on deeper
trained networks: the quick ResNet-18 and VGG-16-BN on digits (top-1, mean ±
std over 3 calibration sets) and MiniLM on the sentences (cosine to float),
at 2 and 3 NL-ADC bits. Each (model, mode) is one ``bskmq ptq --methods bs_kmq
--bs-kmq-mode MODE`` run in ``OUT/<model>-<mode>/`` (reused when its
results.json exists); compare with the kmeans_exact rows of
experiments/ptq_accuracy.py. Writes ``OUT/table.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MODES = ("drop", "equalize", "clip")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/modes")
    args = ap.parse_args(argv)

    from bskmq_jax.cli import enable_compilation_cache
    from bskmq_jax.io import markdown_table, write_text
    from bskmq_jax.ptq_job import run_ptq_job
    from bskmq_jax.results import load_ptq
    from paper_models import MODELS

    enable_compilation_cache()
    rows = []
    for name, short in (("resnet18", "resnet18"), ("vgg16", "vgg"), ("distilbert", "minilm")):
        base = MODELS[name][1]
        for mode in MODES:
            cfg = dataclasses.replace(base, methods=("bs_kmq",), bs_kmq_mode=mode, adc_bits=(2, 3))
            d = Path(args.out) / f"{short}-{mode}"
            r = load_ptq(d) if (d / "results.json").is_file() else run_ptq_job(cfg, d, plots=False)
            s = 100.0 if r["metric"] == "top1" else 1.0
            per = r["results"]["bs_kmq"]
            rows.append([f"{cfg.model} ({r['metric']})", mode,
                         *[f"{s * per[b]['mean'][r['metric']]:.2f} ± {s * per[b]['std'][r['metric']]:.2f}" for b in ("2", "3")]])
    text = "# BS-KMQ modes in PTQ\n\n" + markdown_table(["model", "mode", "2-bit", "3-bit"], rows)
    write_text(Path(args.out) / "table.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
