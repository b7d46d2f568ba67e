"""``bskmq finetune``: quantization-aware fine-tuning on the NL-ADC, from a PTQ result.

Example::

    bskmq ptq --dataset digits --out results/ptq
    bskmq finetune --from-ptq results/ptq --method bs_kmq --adc-bits 3 --levels learned --out results/ft

Full scale (cifar10, imagenet2012, glue/sst2 prepared with tensorflow-datasets)::

    bskmq ptq --model resnet18 --dataset imagenet2012 --checkpoint r18.safetensors --data-dir DATA --out results/ptq/r18
    bskmq finetune --from-ptq results/ptq/r18 --adc-bits 3 --levels learned --data-parallel --out results/ft/r18

The dataset, model and image size come from the PTQ result. Without
``--from-ptq`` (digits only) it starts from the cached digits baseline and
calibrates PTQ levels itself. Writes ``finetune.json``,
``metrics.jsonl`` (one line per step), ``loss.png``, ``accuracy.png``,
``checkpoints/`` and the fine-tuned weights and levels; ``--resume``
continues the newest checkpoint exactly.
"""

from __future__ import annotations

import json
import sys

# Literal copies keep `bskmq --help` free of JAX imports (tests check they match).
STRATEGIES = ("frozen", "learned", "refit")  # bskmq_jax.finetune.STRATEGIES
OPTIMIZERS = ("sgd", "adamw")  # bskmq_jax.train.OPTIMIZERS


def _one_line_error(prog: str):
    def error(message: str):
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(2)

    return error


def add_parser(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a quantized model with frozen, learned or refitted NL-ADC levels",
        description="Quantization-aware fine-tuning (QUANTIZED mode, STE gradients) with checkpoints and exact resume.",
    )
    p.error = _one_line_error("bskmq finetune")
    p.add_argument("--model", default=None, help="model name (default: the PTQ result's; resnet18 without --from-ptq)")
    p.add_argument("--dataset", default=None,
                   help="digits, cifar10, imagenet2012 or glue/sst2 (default: the PTQ result's; digits without --from-ptq)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="tensorflow-datasets data_dir of the full-scale datasets (default: the PTQ result's)")
    p.add_argument("--from-ptq", default=None, metavar="DIR", help="a `bskmq ptq --out DIR` result to start from")
    p.add_argument("--method", default="bs_kmq", help="levels to start from (and refit with), e.g. bs_kmq, linear (default bs_kmq)")
    p.add_argument("--adc-bits", type=int, default=3, help="NL-ADC bits (default 3)")
    p.add_argument("--in-bits", type=int, default=None, help="DAC input bits without --from-ptq (default 8)")
    p.add_argument("--w-bits", type=int, default=None, help="weight bits without --from-ptq (default 8)")
    p.add_argument("--levels", default="frozen", choices=STRATEGIES, help="level strategy (default frozen)")
    p.add_argument("--refit-every", type=int, default=50, help="steps between refits with --levels refit (default 50)")
    p.add_argument("--refit-percentile", type=float, default=99.9,
                   help="ADC range of refits: this percentile of the running statistics (default 99.9; 100: the max)")
    p.add_argument("--level-lr", type=float, default=1e-2, help="Adam learning rate of learned levels (default 1e-2)")
    p.add_argument("--steps", type=int, default=150, help="optimizer steps (default 150)")
    p.add_argument("--batch-size", type=int, default=64, help="examples per step, split over devices (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the weights (default 1e-3)")
    p.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS, help="adamw or sgd (momentum) (default adamw)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (default 5e-4)")
    p.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (default min(10, steps - 1))")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing (default 0)")
    p.add_argument("--seed", type=int, default=0, help="data order and fitting seed (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/checkpoints")
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (default 50)")
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept (default 3)")
    p.add_argument("--eval-every", type=int, default=50, help="steps between test evaluations, 0: only at the end (default 50)")
    p.add_argument("--eval-examples", type=int, default=None, help="evaluate on the first N examples of the evaluation split (default all)")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no random crops and flips of training images (cifar10, imagenet2012)")
    p.add_argument("--data-parallel", action="store_true", help="split batches over every device (all hosts)")
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="multi-host: coordinator address (or JAX_COORDINATOR_ADDRESS)")
    p.add_argument("--num-processes", type=int, default=None, help="multi-host: number of processes (or JAX_NUM_PROCESSES)")
    p.add_argument("--process-id", type=int, default=None, help="multi-host: this process's index (or JAX_PROCESS_ID)")
    p.add_argument("--out", default="results/finetune", help="output folder (default results/finetune)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip loss.png and accuracy.png")
    p.add_argument("--json", action="store_true", help="print finetune.json to stdout instead of a summary")
    p.set_defaults(run=run)


def config_from_args(args):
    """The `FinetuneConfig` of parsed flags (ValueError names the flag's field)."""
    from bskmq_jax.finetune import FinetuneConfig, LevelConfig
    from bskmq_jax.train import TrainConfig

    warmup = args.warmup_steps if args.warmup_steps is not None else min(10, max(0, args.steps - 1))
    train = TrainConfig(steps=args.steps, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                        weight_decay=args.weight_decay, warmup_steps=warmup,
                        label_smoothing=args.label_smoothing, seed=args.seed, log_every=10)
    levels = LevelConfig(strategy=args.levels, refit_every=args.refit_every, level_lr=args.level_lr,
                         refit_percentile=args.refit_percentile)
    return FinetuneConfig(out=args.out, model=args.model, dataset=args.dataset, data_dir=args.data_dir, from_ptq=args.from_ptq,
                          method=args.method, adc_bits=args.adc_bits, in_bits=args.in_bits, w_bits=args.w_bits,
                          levels=levels, train=train, checkpoint_every=args.checkpoint_every, keep=args.keep,
                          resume=args.resume, eval_every=args.eval_every, eval_examples=args.eval_examples,
                          augment=args.augment, data_parallel=args.data_parallel,
                          plots=args.plots)


def run(args) -> int:
    from bskmq_jax import parallel

    cfg = config_from_args(args)  # validates every flag before any work
    if parallel.initialize(args.coordinator, args.num_processes, args.process_id) and not args.data_parallel:
        raise ValueError("--coordinator: a multi-host run needs --data-parallel")
    from bskmq_jax.finetune import finetune_job

    res = finetune_job(cfg, progress=not args.json)
    if args.json:
        print(json.dumps(res, indent=2, default=str))
        return 0
    print(f"{res['model']['name']} {res['model']['in_bits']}/{res['model']['w_bits']}/{cfg.adc_bits}b {cfg.method}, "
          f"levels {cfg.levels.strategy}: float {res['float_accuracy']:.4f}, PTQ {res['ptq_accuracy']:.4f}, "
          f"fine-tuned {res['finetuned_accuracy']:.4f} ({res['steps_per_s']:.2f} steps/s"
          + (f", resumed from step {res['resumed_from']}" if res["resumed_from"] is not None else "") + ")")
    import jax

    if jax.process_index() == 0:  # the one process that writes the output folder
        print(f"wrote {cfg.out}/finetune.json, metrics.jsonl" + (", loss.png, accuracy.png" if cfg.plots else "")
              + ", checkpoints/")
    return 0
