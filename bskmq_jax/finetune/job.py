"""The fine-tuning job behind ``bskmq finetune`` and the main job's fine-tuning stage.

`finetune_job` starts from a PTQ result (``bskmq ptq --out DIR``: model
spec, float weights, fitted levels, dataset and image size) or, on digits
without one, from the cached digits baseline plus a fresh PTQ calibration;
evaluates float and PTQ accuracy; fine-tunes in ``QUANTIZED`` mode with a
level strategy (`bskmq_jax.finetune.strategies`), checkpoints and exact
resume; evaluates again and writes the output folder.

Data (`SPLITS`): digits is embedded; cifar10, imagenet2012 and glue/sst2
are tensorflow-datasets sources prepared by the user (``data_dir``), read a
batch at a time (`bskmq_jax.streams.SourceBatches`) with PTQ's preprocessing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax

from bskmq_jax.finetune.strategies import LevelConfig, LevelStrategy
from bskmq_jax.imc.control import load_levels, set_mode
from bskmq_jax.imc.layers import QuantMode
from bskmq_jax.train import TrainConfig

__all__ = ["FinetuneConfig", "finetune_job", "SPLITS"]

#: dataset -> (training split, evaluation split). Refits calibrate on the
#: training batches (the running statistics of `LevelStrategy`), so there is
#: no separate calibration split.
SPLITS = {
    "digits": ("train", "test"),
    "cifar10": ("train", "test"),
    "imagenet2012": ("train", "validation"),
    "glue/sst2": ("train", "validation"),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    """One fine-tuning run (what ``bskmq finetune`` takes)."""

    out: str  # output folder: finetune.json, metrics.jsonl, loss.png, accuracy.png, checkpoints/, weights and levels
    model: str | None = None  # model name (None: the PTQ result's, or "resnet18", the digits baseline)
    dataset: str | None = None  # a key of SPLITS (None: the PTQ result's, else digits); all but digits need from_ptq
    data_dir: str | None = None  # tensorflow-datasets data_dir of cifar10/imagenet2012/glue/sst2 (None: the PTQ result's)
    from_ptq: str | None = None  # a `bskmq ptq` result folder: model spec, float weights, levels, dataset, image size
    method: str = "bs_kmq"  # level-fitting method of the starting levels and of refits
    adc_bits: int = 3  # NL-ADC bits
    in_bits: int | None = None  # DAC input bits without from_ptq (None: 8, the digits recipe's)
    w_bits: int | None = None  # weight bits without from_ptq (None: 8)
    levels: LevelConfig = LevelConfig()  # level strategy
    train: TrainConfig = TrainConfig(steps=150, batch_size=64, lr=1e-3, warmup_steps=10, weight_decay=5e-4,
                                     log_every=10)  # optimization
    checkpoint_every: int = 50  # steps between checkpoints (one is also saved after the last step)
    keep: int = 3  # checkpoints kept (the newest)
    resume: bool = False  # continue from the newest checkpoint in out/checkpoints
    eval_every: int = 50  # steps between test-accuracy evaluations during training (0: only before and after)
    eval_examples: int | None = None  # evaluate on the first N examples of the evaluation split (None: all of it)
    augment: bool = True  # random crops and flips of training images (cifar10, imagenet2012; digits and text: none)
    data_parallel: bool = False  # split every batch over all devices (jax.sharding mesh, axis "data")
    calib_batch_size: int = 99  # calibration batch size (PTQ without from_ptq, refits)
    cache_dir: str = "checkpoints"  # cache folder of the digits float baseline
    plots: bool = True  # write loss.png and accuracy.png

    def __post_init__(self):
        from bskmq_jax.imc.config import IMCConfig
        from bskmq_jax.quantizers import METHODS

        if not isinstance(self.out, str) or not self.out:
            raise ValueError(f"out: {self.out!r} must be a folder path")
        if self.dataset is not None and self.dataset not in SPLITS:
            raise ValueError(f"dataset: {self.dataset!r} cannot be fine-tuned on (no labelled training split); "
                             f"choose one of {list(SPLITS)}")
        if self.dataset not in (None, "digits") and self.from_ptq is None:
            raise ValueError(f"from_ptq: fine-tuning on {self.dataset} starts from a PTQ result of it; run `bskmq ptq "
                             f"--dataset {self.dataset} --checkpoint W.safetensors --data-dir DATA --out DIR`, then pass "
                             "--from-ptq DIR")
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or not self.data_dir):
            raise ValueError(f"data_dir: {self.data_dir!r} must be a folder path or None")
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment: {self.augment!r} must be True or False")
        if self.method not in METHODS:
            raise ValueError(f"method: unknown method {self.method!r}; choose one of {list(METHODS)}")
        if isinstance(self.adc_bits, bool) or not isinstance(self.adc_bits, int) or not 1 <= self.adc_bits <= 8:
            raise ValueError(f"adc_bits: {self.adc_bits!r} must be an int in 1..8")
        if self.from_ptq is not None:
            for name in ("in_bits", "w_bits"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: comes from the PTQ result with from_ptq (its levels were fitted for it); drop it")
        else:
            if self.model not in (None, "resnet18"):
                raise ValueError(f"model: {self.model!r} needs a PTQ result (from_ptq); without one the digits baseline is resnet18")
            IMCConfig(in_bits=8 if self.in_bits is None else self.in_bits, w_bits=8 if self.w_bits is None else self.w_bits,
                      adc_bits=self.adc_bits)  # validates, naming a bad field
        for name in ("checkpoint_every", "keep", "calib_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: {v!r} must be an int >= 1")
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"eval_every: {self.eval_every!r} must be an int >= 0")
        if self.eval_examples is not None and (isinstance(self.eval_examples, bool) or not isinstance(self.eval_examples, int)
                                               or self.eval_examples < 1):
            raise ValueError(f"eval_examples: {self.eval_examples!r} must be an int >= 1 or None")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _compat(cfg: FinetuneConfig, spec, dataset: str) -> dict:
    """What a resumed run must share with the checkpoint's run."""
    from bskmq_jax.data import IMAGE_DATASETS

    t = dataclasses.asdict(cfg.train)
    t.pop("log_every")
    extra = {"augment": cfg.augment} if dataset in IMAGE_DATASETS else {}  # digits checkpoints keep their compat
    return {"model": spec.to_dict(), "dataset": dataset, "method": cfg.method, "adc_bits": cfg.adc_bits,
            "levels": dataclasses.asdict(cfg.levels), "data_parallel": cfg.data_parallel, **t, **extra}


@dataclasses.dataclass
class _Run:
    """What `_setup` resolves: the model and everything the run feeds it."""

    model: object  # the model, float mode, float weights loaded
    spec: object  # its zoo.ModelSpec (adc_bits of this run)
    levels: dict  # PTQ levels to start from
    batches: dict  # "train" (and "calib" on digits), "test"
    source: dict  # where weights, levels and data came from (finetune.json)
    dataset: str  # the resolved dataset
    inputs: tuple  # batch fields the model takes, in order


def _setup(cfg: FinetuneConfig, progress: bool) -> _Run:
    """Resolves model, levels and data; a dataset that cannot be opened fails here, before any output is written."""
    from bskmq_jax import zoo
    from bskmq_jax.models import load_checkpoint
    from bskmq_jax.ptq_job import image_size
    from bskmq_jax.results import levels_path, load_levels as read_levels, load_ptq

    if cfg.from_ptq is not None:
        res = load_ptq(cfg.from_ptq)
        dataset = res.get("dataset", "digits")
        if cfg.dataset is not None and cfg.dataset != dataset:
            raise ValueError(f"dataset: {cfg.dataset!r} differs from the PTQ result's dataset {dataset!r}; drop --dataset "
                             f"(the result's is used) or start from a PTQ result on {cfg.dataset}")
        if dataset not in SPLITS:
            raise ValueError(f"dataset: the PTQ result {cfg.from_ptq} is on {dataset!r}, which has no labelled training "
                             f"split; fine-tuning runs on {list(SPLITS)}")
        spec = dataclasses.replace(zoo.ModelSpec.from_dict(res["model"]), adc_bits=cfg.adc_bits)
        if cfg.model is not None and cfg.model != spec.name:
            raise ValueError(f"model: {cfg.model!r} differs from the PTQ result's model {spec.name!r}")
        if spec.num_classes is None:
            raise ValueError(f"model: the PTQ result's {spec.name} has no classifier head (num_classes None) to fine-tune")
        levels = read_levels(levels_path(cfg.from_ptq, cfg.method, cfg.adc_bits))
        ptq_cfg = res.get("config") or {}
        size = image_size(dataset, spec.name, ptq_cfg.get("size"))
        data_dir = cfg.data_dir if cfg.data_dir is not None else ptq_cfg.get("data_dir")
        batches, described = _data(cfg, dataset, size=size, data_dir=data_dir, checkpoint=res["checkpoint"])
        model = zoo.build(spec)
        load_checkpoint(model, res["checkpoint"])
        source = {"from_ptq": str(cfg.from_ptq), "checkpoint": res["checkpoint"],
                  "ptq_reported": (res.get("accuracy", {}).get(cfg.method) or {}).get(str(cfg.adc_bits))}
    else:
        dataset = "digits"
        recipe = zoo.DigitsRecipe()
        spec = dataclasses.replace(recipe.model, adc_bits=cfg.adc_bits,
                                   in_bits=recipe.model.in_bits if cfg.in_bits is None else cfg.in_bits,
                                   w_bits=recipe.model.w_bits if cfg.w_bits is None else cfg.w_bits)
        size = recipe.size
        model, info = zoo.digits_baseline(dataclasses.replace(recipe, model=spec), cache_dir=cfg.cache_dir, progress=progress)
        levels = None
        source = {"from_ptq": None, "checkpoint": info["checkpoint"], "ptq_reported": None}
        batches, described = _data(cfg, dataset, size=size, data_dir=None, checkpoint=None)
    if levels is None:
        from bskmq_jax.ptq import adc_ranges, calibrate, fit_all

        stats = calibrate(model, batches["calib"], lambda m, b: m(b["image"]), progress=progress)
        fits = fit_all(stats, [cfg.method], [cfg.adc_bits], ranges=adc_ranges(stats), key=jax.random.key(cfg.train.seed),
                       progress=False)
        levels = fits[cfg.method][cfg.adc_bits]
    source["data"] = described
    return _Run(model=model, spec=spec, levels=levels, batches=batches, source=source, dataset=dataset,
                inputs=_model_inputs(model, dataset))


def _data(cfg: FinetuneConfig, dataset: str, *, size: int, data_dir: str | None, checkpoint: str | None):
    """(batches, description) of ``dataset``: training stream, evaluation split (and digits' calibration split)."""
    from bskmq_jax import data, streams

    train_split, eval_split = SPLITS[dataset]
    bs, seed = cfg.train.batch_size, cfg.train.seed
    if dataset == "digits":
        batches = {
            "train": data.digits(train_split, batch_size=bs, size=size, shuffle=True, seed=seed, drop_last=True),
            "calib": data.digits("calib", batch_size=cfg.calib_batch_size, size=size),
            "test": data.digits(eval_split, batch_size=250, size=size),
        }
        if cfg.eval_examples is not None:
            batches["test"] = batches["test"].take(cfg.eval_examples)
        return batches, {"train": f"digits:train ({size}x{size})", "calibration": "digits:calib",
                         "evaluation": f"digits:test ({batches['test'].num_examples} images)"}
    # Evaluation batches have the training batch size: it fits the device
    # memory and splits over the devices of a data-parallel run.
    if dataset in data.IMAGE_DATASETS:
        train = streams.tfds_image_stream(dataset, train_split, data_dir=data_dir, batch_size=bs, size=size, train=True,
                                       augment=cfg.augment, seed=seed)
        test = streams.tfds_image_stream(dataset, eval_split, data_dir=data_dir, batch_size=bs, size=size,
                                      limit=cfg.eval_examples)
        how = f"{size}x{size}" + (", random crop and flip" if cfg.augment else ", centre crop")
    else:
        from bskmq_jax.models.minilm import minilm_tokenizer

        tok = minilm_tokenizer(Path(checkpoint).parent)  # as `bskmq ptq` tokenizes for this checkpoint
        train = streams.tfds_text_stream(dataset, train_split, tok, data_dir=data_dir, batch_size=bs, train=True, seed=seed)
        test = streams.tfds_text_stream(dataset, eval_split, tok, data_dir=data_dir, batch_size=bs, limit=cfg.eval_examples)
        how = f"{data.TEXT_MAX_LENGTH} tokens"
    return {"train": train, "test": test}, {
        "train": f"{dataset}:{train_split} ({train.num_examples} examples, {how}, reshuffled every pass)",
        "calibration": "the PTQ result's levels (refits: running statistics of the training batches)",
        "evaluation": f"{dataset}:{eval_split} ({test.num_examples} examples)", "data_dir": data_dir}


def _model_inputs(model, dataset: str) -> tuple:
    """Batch fields the model takes positionally: the image, or the text fields its ``__call__`` names."""
    import inspect

    if dataset != "glue/sst2":
        return ("image",)
    names = inspect.signature(model.__call__).parameters
    return tuple(k for k in ("input_ids", "attention_mask", "token_type_ids") if k in names)


def finetune_job(cfg: FinetuneConfig, *, progress: bool = True) -> dict:
    """Runs one fine-tuning job and writes ``cfg.out`` (see `FinetuneConfig`).

    Returns:
      the ``finetune.json`` content: ``float_accuracy``, ``ptq_accuracy``,
      ``finetuned_accuracy`` (test top-1), ``steps_per_s``, ``train`` (loop
      summary), ``resumed_from``, config, versions, seed, files, timing.

    Raises:
      ValueError: bad settings, missing PTQ levels, a dataset that cannot be
        opened (tensorflow-datasets missing, or the dataset not prepared in
        ``data_dir``: the message names it and the preparation steps; raised
        before anything is written), or a resume that does not fit the
        checkpoint (one line naming the field).
    """
    from bskmq_jax import parallel
    from bskmq_jax.checkpoint import CheckpointConfig, Checkpoints
    from bskmq_jax.cli.levels import versions
    from bskmq_jax.imc.control import get_levels
    from bskmq_jax.io import write_json
    from bskmq_jax.models import export_checkpoint
    from bskmq_jax.results import levels_path, save_levels
    from bskmq_jax.train import evaluate_accuracy, train

    t0 = time.perf_counter()
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    if not cfg.resume and ckpt_dir.is_dir() and any(p.name.isdigit() for p in ckpt_dir.iterdir()):
        raise ValueError(f"out: {ckpt_dir} already holds checkpoints; resume them (--resume) or choose another --out")
    if cfg.resume and not (ckpt_dir.is_dir() and any(p.name.isdigit() for p in ckpt_dir.iterdir())):
        raise ValueError(f"resume: no checkpoint to resume in {ckpt_dir}")
    run = _setup(cfg, progress)
    model, spec, batches, inputs = run.model, run.spec, run.batches, run.inputs
    checkpoints = Checkpoints(CheckpointConfig(directory=str(ckpt_dir), every=cfg.checkpoint_every, keep=cfg.keep),
                              compat=_compat(cfg, spec, run.dataset))
    resumed_from = checkpoints.latest_step() if cfg.resume else None
    if resumed_from is not None:  # refuse an incompatible checkpoint before any work
        checkpoints.check_compatible(checkpoints.meta(resumed_from))
    mesh = parallel.make_mesh() if cfg.data_parallel else None
    if mesh is not None:
        parallel.replicate(model, mesh)  # the evaluations then share the training's shardings
    test = batches["test"]
    set_mode(model, QuantMode.FLOAT)
    float_acc = evaluate_accuracy(model, test, mesh=mesh, inputs=inputs)
    load_levels(model, run.levels)
    set_mode(model, QuantMode.QUANTIZED)
    ptq_acc = evaluate_accuracy(model, test, mesh=mesh, inputs=inputs)
    t_setup = time.perf_counter() - t0
    strategy = LevelStrategy(cfg.levels, model, method=cfg.method, bits=cfg.adc_bits, key=jax.random.key(cfg.train.seed))

    def on_step(step, m):
        rec = strategy.on_step(step, m) or {}
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.train.steps:
            with strategy.evaluating(m):
                rec["test_accuracy"] = evaluate_accuracy(m, test, mesh=mesh, inputs=inputs)
            m.train()
        return rec

    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    summary = train(model, batches["train"], cfg.train, loss_fn=strategy.loss_fn(_classification_loss(inputs)), progress=progress,
                    log_path=str(metrics), on_step=on_step, groups=strategy.groups(cfg.train),
                    post_update=strategy.post_update, checkpoints=checkpoints, resume=cfg.resume, mesh=mesh)
    checkpoints.close()
    with strategy.evaluating(model):  # the program the evaluations during training compiled
        ft_acc = evaluate_accuracy(model, test, mesh=mesh, inputs=inputs)
    strategy.finish(model)
    final_levels = {n: nl.replace(method=cfg.method) for n, nl in get_levels(model).items()}
    files = {"metrics": str(metrics), "checkpoints": str(ckpt_dir),
             "weights": str(out / "model.safetensors"), "levels": str(levels_path(out, cfg.method, cfg.adc_bits))}
    primary = jax.process_index() == 0  # one process writes the shared output folder (checkpoints: all, via orbax)
    if primary:
        export_checkpoint(model, files["weights"])
        save_levels(files["levels"], final_levels)
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if primary else []
    if cfg.plots and primary:
        files.update(_plots(records, out, float_acc, ptq_acc, f"{spec.name} {spec.in_bits}/{spec.w_bits}/{cfg.adc_bits}b "
                            f"{cfg.method}, levels {cfg.levels.strategy}"))
    import optax as _optax
    import orbax.checkpoint as _ocp

    res = {
        "schema": "bskmq.finetune/1",
        "config": cfg.to_dict(),
        "versions": {**versions(), "optax": _optax.__version__, "orbax_checkpoint": getattr(_ocp, "__version__", "?")},
        "seed": cfg.train.seed,
        "model": spec.to_dict(),
        **run.source,
        "dataset": run.dataset,
        "method": cfg.method,
        "adc_bits": cfg.adc_bits,
        "levels_strategy": cfg.levels.strategy,
        "float_accuracy": float_acc,
        "ptq_accuracy": ptq_acc,
        "finetuned_accuracy": ft_acc,
        "gap_to_float": float_acc - ft_acc,
        "steps_per_s": summary.get("steady_steps_per_s"),
        "train": summary,
        "resumed_from": resumed_from,
        "parallel": parallel.describe(mesh),
        "refits": sum(1 for r in records if r.get("refit")),
        "files": files,
        "timing": {"setup_s": t_setup, "train_s": summary["seconds"], "total_s": time.perf_counter() - t0},
    }
    if primary:
        write_json(out / "finetune.json", res)
    return res


def _classification_loss(inputs: tuple):
    """Cross-entropy of ``model(*batch[inputs])`` logits against ``batch["label"]``."""
    from bskmq_jax.train import cross_entropy

    def loss(model, batch, label_smoothing):
        logits = model(*[batch[k] for k in inputs if k in batch])
        return cross_entropy(logits, batch["label"], label_smoothing), logits

    return loss


def _plots(records: list[dict], out: Path, float_acc: float, ptq_acc: float, title: str) -> dict:
    """loss.png (per-step loss, moving average) and accuracy.png (train accuracy, test accuracy, float and PTQ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from bskmq_jax.io import save_figure

    steps = np.array([r["step"] for r in records if "loss" in r])
    loss = np.array([r["loss"] for r in records if "loss" in r])
    acc = np.array([r["accuracy"] for r in records if "loss" in r])
    w = max(1, min(20, len(steps) // 10))
    smooth = (lambda v: np.convolve(v, np.ones(w) / w, mode="valid")) if len(steps) >= w else (lambda v: v)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(steps, loss, lw=0.6, alpha=0.4, label="per step")
    ax.plot(steps[w - 1:] if len(steps) >= w else steps, smooth(loss), lw=1.6, label=f"mean of {w}")
    ax.set(xlabel="step", ylabel="training loss", title=title)
    ax.legend()
    save_figure(fig, out / "loss.png", dpi=120, bbox_inches="tight")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(steps[w - 1:] if len(steps) >= w else steps, smooth(acc), lw=1.2, label=f"train (batch, mean of {w})")
    test = [(0, ptq_acc)] + [(r["step"], r["test_accuracy"]) for r in records if "test_accuracy" in r]
    ax.plot(*zip(*test), "o-", label="test (quantized)")
    ax.axhline(float_acc, color="k", ls="--", lw=1, label=f"float {float_acc:.3f}")
    ax.axhline(ptq_acc, color="r", ls=":", lw=1, label=f"PTQ {ptq_acc:.3f}")
    ax.set(xlabel="step", ylabel="top-1 accuracy", title=title)
    ax.legend(loc="lower right")
    save_figure(fig, out / "accuracy.png", dpi=120, bbox_inches="tight")
    return {"loss_plot": str(out / "loss.png"), "accuracy_plot": str(out / "accuracy.png")}
