"""``bskmq main``: the main job that ``make run`` runs, on the embedded data.

Stages (each writes a `bskmq_jax.results` directory under ``--out``):

1. ``digits``: a CIFAR-stem ResNet-18 (width 0.25) on scikit-learn digits,
   trained on first use and cached under ``checkpoints/``; PTQ with every
   method at 2, 3 and 4 NL-ADC bits, mean ± std over 3 calibration sets.
2. ``minilm``: the shipped all-MiniLM-L6-v2 on the embedded sentences;
   every method at 2, 3 and 4 bits; cosine and Spearman fidelity to float.
3. ``finetune``: 3-bit BS-KMQ and 3-bit linear levels fine-tuned on digits
   at 4/4-bit inputs/weights (``bskmq finetune``), PTQ vs fine-tuned.

Then it prints the tables and writes ``summary.md`` and ``summary.json``.

    bskmq main --out results            # what `make run` does
    bskmq main --stages digits          # one stage
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

STAGES = ("digits", "minilm", "finetune")


def add_parser(sub) -> None:
    p = sub.add_parser("main", help="the main job: PTQ on digits and MiniLM, then fine-tuning (make run)",
                       description="Reproduces the PTQ comparison and fine-tuning on the embedded data.")
    p.add_argument("--out", default="results", help="output folder (default results)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)} (default all)")
    p.add_argument("--checkpoints", default="checkpoints", help="cache folder of trained models (default checkpoints)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNGs")
    p.set_defaults(run=run)


def digits_config():
    """Stage 1: ResNet-18 on digits, every method at 2/3/4 bits, 3 calibration sets of 125 images."""
    from bskmq_jax.ptq_job import PTQJobConfig

    return PTQJobConfig(model="resnet18", dataset="digits", adc_bits=(2, 3, 4), in_bits=8, w_bits=8, calib_seeds=3)


def minilm_config():
    """Stage 2: MiniLM on the sentences; one calibration set (all 120 calibration sentences)."""
    from bskmq_jax.ptq_job import PTQJobConfig

    return PTQJobConfig(model="minilm", dataset="sentences", adc_bits=(2, 3, 4), in_bits=8, w_bits=8,
                        batch_size=60, calib_batches=2, calib_seeds=1)


def run(args) -> int:
    from bskmq_jax.io import write_json, write_text
    from bskmq_jax.ptq_job import run_ptq_job
    from bskmq_jax.ptq_report import tables

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise ValueError(f"--stages: unknown stage(s) {unknown}; choose from {list(STAGES)}")
    out = Path(args.out)
    t0 = time.perf_counter()
    summary: dict = {"stages": {}, "seconds": {}}
    md = ["# bskmq main job", ""]
    if "digits" in stages:
        t = time.perf_counter()
        res = run_ptq_job(dataclasses.replace(digits_config(), cache_dir=args.checkpoints), out / "digits", plots=args.plots)
        summary["stages"]["digits"] = {"dir": str(out / "digits"), "float": res["float"], "accuracy": res["accuracy"],
                                       "baseline": res["baseline"]}
        summary["seconds"]["digits"] = time.perf_counter() - t
        md += [tables(res), "", "![accuracy vs bits](digits/accuracy_vs_bits.png)", ""]
        print(tables(res))
    if "minilm" in stages:
        t = time.perf_counter()
        res = run_ptq_job(minilm_config(), out / "minilm", plots=args.plots)
        summary["stages"]["minilm"] = {"dir": str(out / "minilm"), "float": res["float"], "accuracy": res["accuracy"]}
        summary["seconds"]["minilm"] = time.perf_counter() - t
        md += [tables(res), "", "![fidelity vs bits](minilm/accuracy_vs_bits.png)", ""]
        print(tables(res))
    if "finetune" in stages:
        t = time.perf_counter()
        ft_md, ft = _finetune(out, args)
        summary["stages"]["finetune"] = ft
        summary["seconds"]["finetune"] = time.perf_counter() - t
        md += [ft_md, ""]
        print(ft_md)
    summary["seconds"]["total"] = time.perf_counter() - t0
    md += [f"Total time: {summary['seconds']['total']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in summary['seconds'].items() if k != 'total')})."]
    write_text(out / "summary.md", "\n".join(md) + "\n")
    write_json(out / "summary.json", summary)
    print(f"wrote {out}/summary.md and {out}/summary.json in {summary['seconds']['total']:.0f} s")
    return 0


def finetune_configs(out: Path, checkpoints: str = "checkpoints") -> dict:
    """Stage 3: 3-bit BS-KMQ and 3-bit linear levels fine-tuned on digits at 4/4-bit inputs/weights (levels frozen).

    At 8/8-bit inputs/weights, 3-bit PTQ is already within a point of float, so
    there is nothing to recover; 4/4 bits opens the gap that fine-tuning
    closes (docs/finetune.md, measured matrix). PTQ levels come from
    ``digits:calib`` inside the job.
    """
    from bskmq_jax.finetune import FinetuneConfig, LevelConfig

    return {m: FinetuneConfig(out=str(out / "finetune" / f"{m}-4-4-3b"), method=m, adc_bits=3, in_bits=4, w_bits=4,
                              levels=LevelConfig(strategy="frozen"), cache_dir=checkpoints)
            for m in ("bs_kmq", "linear")}


def _finetune(out: Path, args):
    """Runs (or reuses, when its config is unchanged) each fine-tuning job; returns (Markdown, summary)."""
    import json
    import shutil

    from bskmq_jax.finetune import finetune_job
    from bskmq_jax.io import markdown_table, write_text
    from bskmq_jax.zoo import config_hash

    rows, summary = [], {}
    for m, cfg in finetune_configs(out, args.checkpoints).items():
        d = Path(cfg.out)
        key = config_hash(dataclasses.asdict(cfg))
        done = d / "finetune.json"
        if done.is_file() and (d / "config.key").is_file() and (d / "config.key").read_text().strip() == key:
            res, cached = json.loads(done.read_text()), True
        else:
            if d.exists():
                shutil.rmtree(d)  # a stale or interrupted run of another config
            res, cached = finetune_job(cfg), False
            write_text(d / "config.key", key + "\n")
        summary[m] = {k: res.get(k) for k in ("float_accuracy", "ptq_accuracy", "finetuned_accuracy", "steps_per_s")}
        summary[m]["cached"] = cached
        rows.append([m, *(f"{100 * res[k]:.1f}" for k in ("float_accuracy", "ptq_accuracy", "finetuned_accuracy")),
                     cfg.train.steps, f"{res['steps_per_s']:.1f}", "cached" if cached else "run"])
    md = ("## Fine-tuning on digits: 4/4-bit inputs/weights, 3-bit NL-ADC, levels frozen (PTQ vs fine-tuned)\n\n"
          + markdown_table(["method", "float top-1 (%)", "PTQ top-1 (%)", "fine-tuned top-1 (%)", "steps", "steps/s", ""], rows))
    return md, summary
