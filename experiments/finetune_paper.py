"""Seed setting: low-bit fine-tuning after PTQ (ResNet-18 and VGG-16 at 3 bits, Inception-V3 and DistilBERT at 4 bits).

Quick, on digits (about 4 minutes on 2 CPU cores when the PTQ results of
``experiments/ptq_accuracy.py --quick`` exist; otherwise they are made first)::

    .venv/bin/python experiments/finetune_paper.py --quick --out results/finetune_paper

Each quick run is ``bskmq finetune --from-ptq results/ptq_accuracy/<model>
--method bs_kmq --adc-bits B --levels frozen``, and the same with linear levels,
with the quick PTQ result's model (ResNet-18 width 0.25 at 16x16, VGG-16-BN width
0.125 at 32x32; 8/8-bit inputs/weights). Writes ``OUT/table.md`` (PTQ vs fine-tuned).

Full scale (GPU/TPU), the commands are::

    bskmq ptq --model resnet18 --dataset imagenet2012 --checkpoint resnet18.safetensors --data-dir DATA --out results/ptq/r18
    bskmq finetune --from-ptq results/ptq/r18 --method bs_kmq --adc-bits 3 --levels learned --steps 20000 --batch-size 256 --data-parallel --out results/ft/r18

(VGG-16 likewise at 3 bits; Inception-V3 and DistilBERT at 4 bits.) They are
not runnable yet: `bskmq finetune` trains on the embedded digits only, and
refuses other datasets with an error; ImageNet / SST-2 training input
pipelines are the missing piece. Inception-V3 and DistilBERT have no quick
fine-tuning run here (no small Inception-V3; no training objective for the
MiniLM sentence stand-in), and the table says so.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: model -> (seed bits, note)
SETTINGS = {
    "resnet18": (3, ""),
    "vgg16": (3, ""),
    "inception_v3": (4, "no quick run: no small Inception-V3 variant (experiments/paper_models.py)"),
    "distilbert": (4, "no quick run: the MiniLM stand-in has no task to fine-tune on; full scale needs SST-2 training input"),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="digits, small variants")
    ap.add_argument("--ptq-out", default="results/ptq_accuracy", help="where the quick PTQ results are (or are made)")
    ap.add_argument("--out", default="results/finetune_paper")
    args = ap.parse_args(argv)
    if not args.quick:
        raise SystemExit("full-scale fine-tuning needs ImageNet/SST-2 training input, which bskmq finetune does not have yet; "
                         "the commands are in this script's docstring; run with --quick here")

    import ptq_accuracy

    from bskmq_jax.finetune import FinetuneConfig, LevelConfig, finetune_job
    from bskmq_jax.io import markdown_table, write_text

    ptq_accuracy.run_models(ptq_accuracy.parse(["--quick", "--models", "resnet18,vgg16", "--out", args.ptq_out]))
    rows = []
    for name, (bits, note) in SETTINGS.items():
        if note:
            rows.append([name, bits, "-", "-", "-", "-", note])
            continue
        for method in ("bs_kmq", "linear"):
            out = Path(args.out) / f"{name}-{method}-{bits}b"
            cfg = FinetuneConfig(out=str(out), from_ptq=str(Path(args.ptq_out) / name), method=method, adc_bits=bits,
                                 levels=LevelConfig(strategy="frozen"))
            if (out / "finetune.json").is_file():
                import json

                res = json.loads((out / "finetune.json").read_text())
            else:
                res = finetune_job(cfg)
            rows.append([name, bits, method, f"{100 * res['float_accuracy']:.1f}", f"{100 * res['ptq_accuracy']:.1f}",
                         f"{100 * res['finetuned_accuracy']:.1f}", "digits, 8/8-bit inputs/weights, 150 steps, levels frozen"])
    text = "# Fine-tuning after PTQ (quick)\n\n" + markdown_table(
        ["model", "ADC bits", "levels", "float top-1 (%)", "PTQ", "fine-tuned", "note"], rows)
    write_text(Path(args.out) / "table.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
