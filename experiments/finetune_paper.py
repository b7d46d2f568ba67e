"""Seed setting: low-bit fine-tuning after PTQ (ResNet-18 and VGG-16 at 3 bits, Inception-V3 and DistilBERT at 4 bits).

Quick, on digits (about 4 minutes on 2 CPU cores when the PTQ results of
``experiments/ptq_accuracy.py --quick`` exist; otherwise they are made first)::

    .venv/bin/python experiments/finetune_paper.py --quick --out results/finetune_paper

Each quick run is ``bskmq finetune --from-ptq results/ptq_accuracy/<model>
--method bs_kmq --adc-bits B --levels frozen``, and the same with linear levels,
with the quick PTQ result's model (ResNet-18 width 0.25 at 16x16, VGG-16-BN width
0.125 at 32x32; 8/8-bit inputs/weights). Writes ``OUT/table.md`` (PTQ vs fine-tuned).
Inception-V3 and DistilBERT have no quick run (no small Inception-V3; no training
objective for the MiniLM sentence stand-in), and the table says so.

Full scale (GPU/TPU; ImageNet and SST-2 prepared with tensorflow-datasets in
``DATA``, docs/data.md; trained float weights). First one PTQ result per model::

    bskmq ptq --model resnet18 --dataset imagenet2012 --checkpoint resnet18.safetensors --data-dir DATA --out PTQ/resnet18
    bskmq ptq --model vgg16 --dataset imagenet2012 --checkpoint vgg16.safetensors --data-dir DATA --out PTQ/vgg16
    bskmq ptq --model inception_v3 --dataset imagenet2012 --checkpoint inception_v3.safetensors --data-dir DATA --out PTQ/inception_v3
    bskmq ptq --model distilbert --dataset glue/sst2 --checkpoint distilbert-sst2/model.safetensors --data-dir DATA --out PTQ/distilbert

then::

    .venv/bin/python experiments/finetune_paper.py --ptq-root PTQ --data-dir DATA --out results/finetune_paper_full

which runs, for each model and for BS-KMQ and linear starting levels, the equivalent of::

    bskmq finetune --from-ptq PTQ/resnet18 --method bs_kmq --adc-bits 3 --levels learned --steps 20000 --batch-size 256 --data-parallel --out OUT/resnet18-bs_kmq-3b

(`FULL` below: 3 bits for ResNet-18 and VGG-16, 4 bits for Inception-V3 and
DistilBERT; the image models 20,000 steps of 256 at AdamW lr 1e-3 and weight
decay 5e-4, DistilBERT 6,000 steps of 32, about 3 passes over SST-2's 67,349
sentences, at lr 2e-5 and weight decay 0.01; warm-up a tenth of the steps, at
most 500. These settings are this project's choices, not the seed paper's;
``--steps``, ``--batch-size`` and ``--lr`` override them.) A run
whose ``finetune.json`` exists is reused; one with checkpoints but no
``finetune.json`` is resumed. ``--models`` picks a subset. This path has not
been run here (no GPU, tensorflow-datasets or ImageNet/SST-2 on this
machine); its pieces are tested on in-memory stand-ins (tests/test_finetune.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: model -> (seed bits, note)
SETTINGS = {
    "resnet18": (3, ""),
    "vgg16": (3, ""),
    "inception_v3": (4, "no quick run: no small Inception-V3 variant (experiments/paper_models.py)"),
    "distilbert": (4, "no quick run: the MiniLM stand-in has no task to fine-tune on; full scale: glue/sst2"),
}

#: model -> full-scale fine-tuning settings (this project's choices, see the module docstring)
FULL = {
    "resnet18": {"dataset": "imagenet2012", "steps": 20000, "batch_size": 256, "lr": 1e-3, "weight_decay": 5e-4},
    "vgg16": {"dataset": "imagenet2012", "steps": 20000, "batch_size": 256, "lr": 1e-3, "weight_decay": 5e-4},
    "inception_v3": {"dataset": "imagenet2012", "steps": 20000, "batch_size": 256, "lr": 1e-3, "weight_decay": 5e-4},
    "distilbert": {"dataset": "glue/sst2", "steps": 6000, "batch_size": 32, "lr": 2e-5, "weight_decay": 0.01},
}


def _load_or_run(cfg, finetune_job) -> dict:
    """The run's finetune.json when it exists, else the job (resumed when it left checkpoints)."""
    import dataclasses

    out = Path(cfg.out)
    if (out / "finetune.json").is_file():
        return json.loads((out / "finetune.json").read_text())
    ckpts = out / "checkpoints"
    resume = ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())
    return finetune_job(dataclasses.replace(cfg, resume=resume))


def full_scale(args) -> list[list]:
    """Fine-tunes every model of ``args.models`` from its PTQ result under ``args.ptq_root``; the table rows."""
    from bskmq_jax.finetune import FinetuneConfig, LevelConfig, finetune_job
    from bskmq_jax.train import TrainConfig

    missing = [m for m in args.models if not (Path(args.ptq_root) / m / "results.json").is_file()]
    if missing:  # all checked before the first (long) run starts
        raise SystemExit(f"--ptq-root: no PTQ result for {missing} in {args.ptq_root}; make each with `bskmq ptq --model M "
                         f"--dataset D --checkpoint W.safetensors --data-dir DATA --out {args.ptq_root}/M` "
                         "(the commands are in this script's docstring)")
    rows = []
    for name in args.models:
        bits, full = SETTINGS[name][0], FULL[name]
        steps = args.steps or full["steps"]
        batch = args.batch_size or full["batch_size"]
        lr = args.lr or full["lr"]
        train = TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup_steps=min(500, steps // 10),
                            weight_decay=full["weight_decay"], log_every=50)
        for method in ("bs_kmq", "linear"):
            cfg = FinetuneConfig(out=str(Path(args.out) / f"{name}-{method}-{bits}b"), from_ptq=str(Path(args.ptq_root) / name),
                                 dataset=full["dataset"], data_dir=args.data_dir, method=method, adc_bits=bits,
                                 levels=LevelConfig(strategy="learned"), train=train, data_parallel=True,
                                 checkpoint_every=1000, eval_every=args.eval_every, eval_examples=args.eval_examples)
            res = _load_or_run(cfg, finetune_job)
            rows.append([name, bits, method, f"{100 * res['float_accuracy']:.1f}", f"{100 * res['ptq_accuracy']:.1f}",
                         f"{100 * res['finetuned_accuracy']:.1f}",
                         f"{full['dataset']}, {res['model']['in_bits']}/{res['model']['w_bits']}-bit inputs/weights, "
                         f"{steps} steps of {batch}, levels learned"])
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="digits, small variants")
    ap.add_argument("--ptq-out", default="results/ptq_accuracy", help="where the quick PTQ results are (or are made)")
    ap.add_argument("--ptq-root", default="results/ptq", help="full scale: PTQ results, one folder per model (PTQ/<model>)")
    ap.add_argument("--data-dir", default=None, help="full scale: tensorflow-datasets data_dir (default: each PTQ result's)")
    ap.add_argument("--models", default=",".join(SETTINGS), help="full scale: comma-separated subset of the models")
    ap.add_argument("--steps", type=int, default=None, help="full scale: optimizer steps (default: per model, FULL)")
    ap.add_argument("--batch-size", type=int, default=None, help="full scale: examples per step (default: per model)")
    ap.add_argument("--lr", type=float, default=None, help="full scale: peak learning rate (default: per model)")
    ap.add_argument("--eval-every", type=int, default=2000, help="full scale: steps between evaluations (default 2000)")
    ap.add_argument("--eval-examples", type=int, default=None, help="full scale: evaluation examples (default all)")
    ap.add_argument("--out", default=None, help="default results/finetune_paper (--quick), results/finetune_paper_full")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = "results/finetune_paper" if args.quick else "results/finetune_paper_full"

    from bskmq_jax.io import markdown_table, write_text

    if not args.quick:
        args.models = [m for m in args.models.split(",") if m]
        unknown = sorted(set(args.models) - set(SETTINGS))
        if unknown:
            raise SystemExit(f"--models: unknown model(s) {unknown}; choose from {list(SETTINGS)}")
        try:
            rows = full_scale(args)
        except ValueError as e:  # a dataset that is not prepared, a bad setting: one line, the fix in it
            raise SystemExit(f"error: {e}") from None
        title = "Fine-tuning after PTQ (full scale)"
    else:
        rows, title = quick(args), "Fine-tuning after PTQ (quick)"
    text = f"# {title}\n\n" + markdown_table(
        ["model", "ADC bits", "levels", "float top-1 (%)", "PTQ", "fine-tuned", "note"], rows)
    write_text(Path(args.out) / "table.md", text)
    print(text)
    return 0


def quick(args) -> list[list]:
    """The digits runs (small variants of ResNet-18 and VGG-16, frozen levels); the table rows."""
    import ptq_accuracy

    from bskmq_jax.finetune import FinetuneConfig, LevelConfig, finetune_job

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
                res = json.loads((out / "finetune.json").read_text())
            else:
                res = finetune_job(cfg)
            rows.append([name, bits, method, f"{100 * res['float_accuracy']:.1f}", f"{100 * res['ptq_accuracy']:.1f}",
                         f"{100 * res['finetuned_accuracy']:.1f}", "digits, 8/8-bit inputs/weights, 150 steps, levels frozen"])
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
