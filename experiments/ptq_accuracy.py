"""Seed table: PTQ accuracy per model (ResNet-18, VGG-16, Inception-V3, DistilBERT) across NL-ADC bits.

Quick, on the embedded data (about 10 minutes on 2 CPU cores the first time;
models train once and are cached under checkpoints/)::

    .venv/bin/python experiments/ptq_accuracy.py --quick --out results/ptq_accuracy

Full scale (GPU/TPU; ImageNet and SST-2 prepared with tensorflow-datasets as in
docs/data.md; checkpoints converted to safetensors as in the README)::

    python experiments/ptq_accuracy.py --data-dir ~/tensorflow_datasets \\
        --checkpoint resnet18=ck/resnet18.safetensors --checkpoint vgg16=ck/vgg16.safetensors \\
        --checkpoint inception_v3=ck/inception_v3.safetensors \\
        --checkpoint distilbert=ck/distilbert-sst2/model.safetensors --out results/ptq_accuracy

Each model is one ``bskmq ptq`` run (every method at 2/3/4 bits, mean ± std
over 3 calibration sets) in ``OUT/<model>/``; this script then collects the
headline metric of each into ``OUT/table.md`` and ``OUT/table.json``. A model
whose ``results.json`` exists is not run again (delete it to rerun).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small variants on the embedded data")
    ap.add_argument("--models", default="resnet18,vgg16,inception_v3,distilbert")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--checkpoint", action="append", default=[], help="MODEL=FILE.safetensors (full scale)")
    ap.add_argument("--out", default="results/ptq_accuracy")
    return ap.parse_args(argv)


def run_models(args) -> dict:
    """Runs (or reuses) the PTQ job of every model; returns ``{model: results or note}``."""
    from bskmq_jax.cli import enable_compilation_cache
    from bskmq_jax.ptq_job import run_ptq_job
    from bskmq_jax.results import load_ptq
    from paper_models import MODELS

    enable_compilation_cache()
    checkpoints = dict(c.split("=", 1) for c in args.checkpoint)
    out, done = Path(args.out), {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in MODELS:
            raise SystemExit(f"--models: unknown model {name!r}; choose from {list(MODELS)}")
        full, quick, note = MODELS[name]
        if args.quick and quick is None:
            done[name] = {"note": note}
            print(f"{name}: skipped in --quick ({note})")
            continue
        if not args.quick and name not in checkpoints:
            raise SystemExit(f"{name}: full scale needs --checkpoint {name}=FILE.safetensors")
        cfg = quick if args.quick else full(args.data_dir, checkpoints[name])
        d = out / name
        res = load_ptq(d) if (d / "results.json").is_file() else run_ptq_job(cfg, d)
        done[name] = {"results": res, "note": note if args.quick else "full scale"}
    return done


def main(argv=None) -> int:
    from bskmq_jax.io import markdown_table, write_json, write_text

    args = parse(argv)
    done = run_models(args)
    rows, js = [], {}
    for name, d in done.items():
        if "results" not in d:
            rows.append([name, "-", "-", "-", "-", d["note"]])
            continue
        r = d["results"]
        s = 100.0 if r["metric"] == "top1" else 1.0
        for m, per in r["results"].items():
            cells = [f"{s * per[b]['mean'][r['metric']]:.2f} ± {s * per[b]['std'][r['metric']]:.2f}" for b in sorted(per, key=int)]
            rows.append([f"{name} ({r['config']['model']}, {r['metric']})", m, *cells, f"float {s * r['float'][r['metric']]:.2f}"])
        js[name] = {"metric": r["metric"], "float": r["float"], "accuracy": r["accuracy"], "note": d["note"]}
    md = markdown_table(["model", "method", "2-bit", "3-bit", "4-bit", "note"], rows)
    notes = "\n".join(f"- {k}: {d['note']}" for k, d in done.items())
    text = f"# PTQ accuracy per model ({'quick' if args.quick else 'full scale'})\n\n{md}\n{notes}\n"
    write_text(Path(args.out) / "table.md", text)
    write_json(Path(args.out) / "table.json", js)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
