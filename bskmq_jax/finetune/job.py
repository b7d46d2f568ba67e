"""The fine-tuning job behind ``bskmq finetune`` and the main job's fine-tuning stage.

`finetune_job` starts from a PTQ result (``bskmq ptq --out DIR``: model
spec, float weights, fitted levels) or, on digits without one, from the
cached digits baseline plus a fresh PTQ calibration; evaluates float and PTQ
accuracy; fine-tunes in ``QUANTIZED`` mode with a level strategy
(`bskmq_jax.finetune.strategies`), checkpoints and exact resume; evaluates
again and writes the output folder.
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

__all__ = ["FinetuneConfig", "finetune_job"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    """One fine-tuning run (what ``bskmq finetune`` takes)."""

    out: str  # output folder: finetune.json, metrics.jsonl, loss.png, accuracy.png, checkpoints/, weights and levels
    model: str | None = None  # model name (None: the PTQ result's, or "resnet18", the digits baseline)
    dataset: str = "digits"  # training and evaluation data (digits: embedded, offline)
    from_ptq: str | None = None  # a `bskmq ptq` result folder: model spec, float weights and levels come from it
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
    data_parallel: bool = False  # split every batch over all devices (jax.sharding mesh, axis "data")
    calib_batch_size: int = 99  # calibration batch size (PTQ without from_ptq, refits)
    cache_dir: str = "checkpoints"  # cache folder of the digits float baseline
    plots: bool = True  # write loss.png and accuracy.png

    def __post_init__(self):
        from bskmq_jax.imc.config import IMCConfig
        from bskmq_jax.quantizers import METHODS

        if not isinstance(self.out, str) or not self.out:
            raise ValueError(f"out: {self.out!r} must be a folder path")
        if self.dataset != "digits":
            raise ValueError(f"dataset: {self.dataset!r} cannot be fine-tuned offline; the training source is 'digits'")
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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _compat(cfg: FinetuneConfig, spec) -> dict:
    """What a resumed run must share with the checkpoint's run."""
    t = dataclasses.asdict(cfg.train)
    t.pop("log_every")
    return {"model": spec.to_dict(), "dataset": cfg.dataset, "method": cfg.method, "adc_bits": cfg.adc_bits,
            "levels": dataclasses.asdict(cfg.levels), "data_parallel": cfg.data_parallel, **t}


def _setup(cfg: FinetuneConfig, progress: bool):
    """(model, spec, PTQ levels, data, source description) for the run."""
    from bskmq_jax import data, zoo
    from bskmq_jax.models import load_checkpoint
    from bskmq_jax.results import levels_path, load_levels as read_levels, load_ptq

    if cfg.from_ptq is not None:
        res = load_ptq(cfg.from_ptq)
        spec = dataclasses.replace(zoo.ModelSpec.from_dict(res["model"]), adc_bits=cfg.adc_bits)
        if cfg.model is not None and cfg.model != spec.name:
            raise ValueError(f"model: {cfg.model!r} differs from the PTQ result's model {spec.name!r}")
        if res.get("dataset", "digits") != cfg.dataset:
            raise ValueError(f"dataset: {cfg.dataset!r} differs from the PTQ result's dataset {res.get('dataset')!r}")
        levels = read_levels(levels_path(cfg.from_ptq, cfg.method, cfg.adc_bits))
        size = (res.get("config") or {}).get("size") or 16
        model = zoo.build(spec)
        load_checkpoint(model, res["checkpoint"])
        source = {"from_ptq": str(cfg.from_ptq), "checkpoint": res["checkpoint"],
                  "ptq_reported": (res.get("accuracy", {}).get(cfg.method) or {}).get(str(cfg.adc_bits))}
    else:
        recipe = zoo.DigitsRecipe()
        spec = dataclasses.replace(recipe.model, adc_bits=cfg.adc_bits,
                                   in_bits=recipe.model.in_bits if cfg.in_bits is None else cfg.in_bits,
                                   w_bits=recipe.model.w_bits if cfg.w_bits is None else cfg.w_bits)
        size = recipe.size
        model, info = zoo.digits_baseline(dataclasses.replace(recipe, model=spec), cache_dir=cfg.cache_dir, progress=progress)
        levels = None
        source = {"from_ptq": None, "checkpoint": info["checkpoint"], "ptq_reported": None}
    batches = {
        "train": data.digits("train", batch_size=cfg.train.batch_size, size=size, shuffle=True, seed=cfg.train.seed,
                             drop_last=True),
        "calib": data.digits("calib", batch_size=cfg.calib_batch_size, size=size),
        "test": data.digits("test", batch_size=250, size=size),
    }
    if levels is None:
        from bskmq_jax.ptq import adc_ranges, calibrate, fit_all

        stats = calibrate(model, batches["calib"], lambda m, b: m(b["image"]), progress=progress)
        fits = fit_all(stats, [cfg.method], [cfg.adc_bits], ranges=adc_ranges(stats), key=jax.random.key(cfg.train.seed),
                       progress=False)
        levels = fits[cfg.method][cfg.adc_bits]
    source["data"] = {"train": f"digits:train ({size}x{size})", "calibration": "digits:calib", "evaluation": "digits:test"}
    return model, spec, levels, batches, source


def finetune_job(cfg: FinetuneConfig, *, progress: bool = True) -> dict:
    """Runs one fine-tuning job and writes ``cfg.out`` (see `FinetuneConfig`).

    Returns:
      the ``finetune.json`` content: ``float_accuracy``, ``ptq_accuracy``,
      ``finetuned_accuracy`` (test top-1), ``steps_per_s``, ``train`` (loop
      summary), ``resumed_from``, config, versions, seed, files, timing.

    Raises:
      ValueError: bad settings, missing PTQ levels, or a resume that does not
        fit the checkpoint (one line naming the field).
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
    model, spec, ptq_levels, batches, source = _setup(cfg, progress)
    checkpoints = Checkpoints(CheckpointConfig(directory=str(ckpt_dir), every=cfg.checkpoint_every, keep=cfg.keep),
                              compat=_compat(cfg, spec))
    resumed_from = checkpoints.latest_step() if cfg.resume else None
    if resumed_from is not None:  # refuse an incompatible checkpoint before any work
        checkpoints.check_compatible(checkpoints.meta(resumed_from))
    mesh = parallel.make_mesh() if cfg.data_parallel else None
    if mesh is not None:
        parallel.replicate(model, mesh)  # the evaluations then share the training's shardings
    test = batches["test"]
    set_mode(model, QuantMode.FLOAT)
    float_acc = evaluate_accuracy(model, test, mesh=mesh)
    load_levels(model, ptq_levels)
    set_mode(model, QuantMode.QUANTIZED)
    ptq_acc = evaluate_accuracy(model, test, mesh=mesh)
    t_setup = time.perf_counter() - t0
    strategy = LevelStrategy(cfg.levels, model, method=cfg.method, bits=cfg.adc_bits, key=jax.random.key(cfg.train.seed))

    def on_step(step, m):
        rec = strategy.on_step(step, m) or {}
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.train.steps:
            with strategy.evaluating(m):
                rec["test_accuracy"] = evaluate_accuracy(m, test, mesh=mesh)
            m.train()
        return rec

    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    summary = train(model, batches["train"], cfg.train, loss_fn=strategy.loss_fn(_image_loss), progress=progress,
                    log_path=str(metrics), on_step=on_step, groups=strategy.groups(cfg.train),
                    post_update=strategy.post_update, checkpoints=checkpoints, resume=cfg.resume, mesh=mesh)
    checkpoints.close()
    with strategy.evaluating(model):  # the program the evaluations during training compiled
        ft_acc = evaluate_accuracy(model, test, mesh=mesh)
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
        **source,
        "dataset": cfg.dataset,
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


def _image_loss(model, batch, label_smoothing):
    from bskmq_jax.train import cross_entropy

    logits = model(batch["image"])
    return cross_entropy(logits, batch["label"], label_smoothing), logits


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
