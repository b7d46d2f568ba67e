"""Training with Optax: the loop, its config and its pieces.

One jitted step (`nnx.jit`) updates the `nnx.Param` s of a model in whatever
`QuantMode` it is in: in ``FLOAT`` mode this is ordinary training; in
``QUANTIZED`` mode the forward runs on the crossbar with NL-ADC conversions
and the straight-through gradients of `bskmq_jax.adc.ste` (low-bit
fine-tuning). The step compiles once: batches keep their shapes
(``drop_last``) and nothing static changes between steps.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

__all__ = ["TrainConfig", "make_optimizer", "cross_entropy", "train", "evaluate_accuracy", "infinite"]

OPTIMIZERS = ("sgd", "adamw")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimization settings."""

    steps: int = 1000  # optimizer steps
    batch_size: int = 64  # examples per step
    optimizer: str = "adamw"  # "sgd" (with momentum) | "adamw"
    lr: float = 1e-3  # peak learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 1e-4  # decoupled (AdamW) or L2-style (SGD, added to gradients) weight decay
    warmup_steps: int = 0  # linear warm-up steps before the cosine decay
    final_lr_fraction: float = 0.0  # cosine decays to lr * final_lr_fraction
    grad_clip: float | None = 1.0  # global-norm gradient clipping (None: off)
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    seed: int = 0  # data-order and dropout seed
    log_every: int = 50  # steps between progress-bar/metric updates

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: {v!r} must be an int >= 1")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown optimizer {self.optimizer!r}; choose one of {list(OPTIMIZERS)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: {self.lr} must be > 0")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps: {self.warmup_steps} must be in [0, steps)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing: {self.label_smoothing} must be in [0, 1)")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip: {self.grad_clip} must be > 0 or None")
        if not 0.0 <= self.final_lr_fraction <= 1.0:
            raise ValueError(f"final_lr_fraction: {self.final_lr_fraction} must be in [0, 1]")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: {self.weight_decay} must be >= 0")


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Warm-up + cosine schedule, clipping, weight decay and SGD-momentum or AdamW."""
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0 if cfg.warmup_steps else cfg.lr,
        peak_value=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.steps,
        end_value=cfg.lr * cfg.final_lr_fraction,
    )
    parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip else []
    if cfg.optimizer == "adamw":
        parts.append(optax.adamw(schedule, weight_decay=cfg.weight_decay))
    else:
        if cfg.weight_decay:
            parts.append(optax.add_decayed_weights(cfg.weight_decay))
        parts.append(optax.sgd(schedule, momentum=cfg.momentum, nesterov=True))
    return optax.chain(*parts)


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Mean softmax cross-entropy with optional label smoothing."""
    n = logits.shape[-1]
    onehot = jax.nn.one_hot(labels, n)
    if label_smoothing:
        onehot = onehot * (1.0 - label_smoothing) + label_smoothing / n
    return jnp.mean(optax.softmax_cross_entropy(logits, onehot))


def infinite(batches: Iterable[dict]) -> Iterator[dict]:
    """Cycles a re-iterable batch stream forever (reshuffled per pass if it shuffles)."""
    while True:
        yielded = False
        for b in batches:
            yielded = True
            yield b
        if not yielded:
            raise ValueError("batches: the training stream is empty")


def _default_loss(model, batch, label_smoothing):
    logits = model(batch["image"])
    return cross_entropy(logits, batch["label"], label_smoothing), logits


def train(model: nnx.Module, batches: Iterable[dict], cfg: TrainConfig, *,
          loss_fn: Callable | None = None, progress: bool = True, log_path: str | None = None,
          on_step: Callable | None = None) -> dict:
    """Trains ``model`` in place for ``cfg.steps`` steps.

    Args:
      model: an NNX model (its current `QuantMode` decides float or
        quantized-aware training).
      batches: a re-iterable batch stream (cycled); ``drop_last`` keeps the
        step compiled once.
      cfg: optimization settings.
      loss_fn: ``loss_fn(model, batch, label_smoothing) -> (loss, logits)``;
        default: cross-entropy of ``model(batch["image"])`` vs ``batch["label"]``.
      progress: progress bar with loss, accuracy and steps/s.
      log_path: append one JSON line of metrics per logging interval.
      on_step: ``on_step(step, model)`` called after every step (e.g. level refits).

    Returns:
      summary: final loss and accuracy (running mean over the last interval),
      steps/s, and the number of traces of the step function.
    """
    loss_fn = loss_fn or _default_loss
    model.train()
    opt = nnx.Optimizer(model, make_optimizer(cfg), wrt=nnx.Param)
    traces = []

    @nnx.jit
    def step(model, opt, batch):
        traces.append(1)

        def f(m):
            loss, logits = loss_fn(m, batch, cfg.label_smoothing)
            return loss, logits

        (loss, logits), grads = nnx.value_and_grad(f, has_aux=True)(model)
        opt.update(model, grads)
        acc = jnp.mean(jnp.argmax(logits, -1) == batch["label"]) if "label" in batch else jnp.float32(0.0)
        return loss, acc

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="train", leave=False, disable=None)
    it = infinite(batches)
    window = []
    t0 = time.perf_counter()
    last = {}
    for i in range(1, cfg.steps + 1):
        loss, acc = step(model, opt, next(it))
        if on_step is not None:
            on_step(i, model)
        window.append((loss, acc))
        if i % cfg.log_every == 0 or i == cfg.steps:
            vals = np.asarray(jax.device_get(window))
            elapsed = time.perf_counter() - t0
            last = {"step": i, "loss": float(vals[:, 0].mean()), "accuracy": float(vals[:, 1].mean()), "steps_per_s": i / elapsed}
            window = []
            if bar is not None:
                bar.set_postfix(loss=f"{last['loss']:.3f}", acc=f"{last['accuracy']:.3f}", sps=f"{last['steps_per_s']:.1f}")
            if log_path:
                with open(log_path, "a") as fh:
                    fh.write(json.dumps(last) + "\n")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.eval()
    return {**last, "traces": len(traces), "seconds": time.perf_counter() - t0}


def evaluate_accuracy(model: nnx.Module, batches: Iterable[dict]) -> float:
    """Top-1 accuracy of ``model(batch["image"])`` over ``batches`` (eval mode)."""
    model.eval()
    step = nnx.jit(lambda m, b: jnp.sum(jnp.argmax(m(b["image"]), -1) == b["label"]))
    correct = sum(int(step(model, b)) for b in batches)
    total = sum(len(b["label"]) for b in batches)
    return correct / total
