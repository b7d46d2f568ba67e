"""``bskmq ptq``: post-training quantization of a model with every NL-ADC method.

Examples::

    # digits (trained on first use, cached under checkpoints/), every method at 2/3/4 bits
    bskmq ptq --model resnet18 --dataset digits --out results/ptq/digits

    # the shipped all-MiniLM-L6-v2 on the embedded sentences
    bskmq ptq --model minilm --dataset sentences --adc-bits 3,4,5 --out results/ptq/minilm

    # full scale: ImageNet with converted torchvision weights
    bskmq ptq --model resnet18 --dataset imagenet2012 --data-dir ~/tensorflow_datasets \\
        --checkpoint resnet18.safetensors --calib-batches 8 --batch-size 64 --out results/ptq/r18

Writes ``results.json``, ``results.md``, ``levels/<method>-<bits>b.safetensors``
and the plots into ``--out`` (see `bskmq_jax.results`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from bskmq_jax.cli.levels import _int_list


def _str_list(s: str) -> list[str]:
    return [v.strip() for v in s.split(",") if v.strip()]


def _options(s: str) -> dict:
    """``key=value,key=value`` with values parsed as JSON when possible (``width=0.5,stem=cifar``)."""
    out = {}
    for item in _str_list(s):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"expected key=value pairs, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v.strip()
    return out


def _fit_bins(s: str) -> int | None:
    """``--fit-bins``: an int, or ``none`` for the statistics' full resolution."""
    if s.strip().lower() == "none":
        return None
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 16 or 'none', got {s!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The PTQ flags (shared with ``bskmq main``)."""
    from bskmq_jax.ptq_job import ALL_METHODS, DATASETS

    p.add_argument("--model", default="resnet18", help="resnet18, vgg16, vgg16_bn, inception_v3, minilm, distilbert or bert (default resnet18)")
    p.add_argument("--model-options", type=_options, default={}, help="architecture options as key=value,... (e.g. width=0.5,stem=cifar)")
    p.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)} (default digits)")
    p.add_argument("--checkpoint", default=None, help="float weights (.safetensors); default: the cached digits model or the shipped MiniLM")
    p.add_argument("--methods", type=_str_list, default=list(ALL_METHODS), help=f"comma-separated (default {','.join(ALL_METHODS)})")
    p.add_argument("--adc-bits", type=_int_list, default=[2, 3, 4], help="comma-separated NL-ADC bits (default 2,3,4)")
    p.add_argument("--in-bits", type=int, default=8, help="input DAC bits (default 8)")
    p.add_argument("--w-bits", type=int, default=8, help="weight bits (default 8)")
    p.add_argument("--mode", default="fused", help="fused (NL-ADC per output) or partial_sum (ADC per crossbar array) (default fused)")
    p.add_argument("--batch-size", type=int, default=None, help="examples per batch (default 125 digits, 60 sentences, else 128)")
    p.add_argument("--calib-batches", type=int, default=1, help="batches per calibration set (default 1)")
    p.add_argument("--calib-seeds", type=int, default=3, help="calibration sets, random subsets of the calibration split (default 3)")
    p.add_argument("--eval-examples", type=int, default=None, help="cap on evaluation examples (default: the whole split)")
    p.add_argument("--clip-percentile", type=float, default=100.0, help="ADC range top as a percentile of calibration values (default 100)")
    p.add_argument("--bs-kmq-mode", default=None, help="BS-KMQ suppression rule: drop, equalize or clip (default: equalize)")
    p.add_argument("--fit-bins", type=_fit_bins, default=1024,
                   help="fit on calibration histograms merged to at most this many bins; none: all 4096 (default 1024)")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default 16 digits, 32 cifar10, 224/299 imagenet2012)")
    p.add_argument("--data-dir", default=None, help="tensorflow-datasets data_dir (full-scale datasets; see docs/data.md)")
    p.add_argument("--seed", type=int, default=0, help="base seed of calibration subsets and k-means seeding (default 0)")
    p.add_argument("--cache-dir", default="checkpoints", help="cache of the digits model trained on first use (default checkpoints)")


def add_parser(sub) -> None:
    p = sub.add_parser("ptq", help="post-training quantization with every NL-ADC method",
                       description="Calibrate, fit every method at every bit width, evaluate and report.")
    add_arguments(p)
    p.add_argument("--out", default="results/ptq", help="output folder (default results/ptq)")
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of the tables")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNGs")
    p.set_defaults(run=run)


def config_from_args(args):
    """A validated `PTQJobConfig` from parsed flags (ValueError names the bad flag)."""
    from bskmq_jax.ptq_job import PTQJobConfig

    try:
        return PTQJobConfig(
            model=args.model, model_options=args.model_options, dataset=args.dataset, checkpoint=args.checkpoint,
            methods=tuple(args.methods), adc_bits=tuple(args.adc_bits), in_bits=args.in_bits, w_bits=args.w_bits,
            mode=args.mode, batch_size=args.batch_size, calib_batches=args.calib_batches, calib_seeds=args.calib_seeds,
            eval_examples=args.eval_examples, clip_percentile=args.clip_percentile, bs_kmq_mode=args.bs_kmq_mode,
            fit_bins=args.fit_bins,
            size=args.size, data_dir=args.data_dir, seed=args.seed, cache_dir=args.cache_dir)
    except ValueError as e:
        # job fields are named like the flags (adc_bits <-> --adc-bits)
        field, sep, rest = str(e).partition(":")
        if sep and field in {f.name for f in dataclasses.fields(PTQJobConfig)}:
            raise ValueError(f"--{field.replace('_', '-')}:{rest}") from None
        raise


def run(args) -> int:
    from bskmq_jax.ptq_job import run_ptq_job
    from bskmq_jax.ptq_report import tables

    cfg = config_from_args(args)
    res = run_ptq_job(cfg, args.out, progress=not args.json, plots=args.plots)
    if args.json:
        json.dump(res, sys.stdout, indent=2, default=str)
        print()
    else:
        print(tables(res))
        print(f"wrote {args.out}/ ({', '.join(res['files'])}, levels/) in {res['timing']['total']:.1f} s")
    return 0
