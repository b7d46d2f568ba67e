"""Training with Optax: the loop, its config and its pieces.

One jitted step (`nnx.jit`) updates the trainable variables of a model in
whatever `QuantMode` it is in: in ``FLOAT`` mode this is ordinary training;
in ``QUANTIZED`` mode the forward runs on the crossbar with NL-ADC
conversions and the straight-through gradients of `bskmq_jax.adc.ste`
(low-bit fine-tuning). The step compiles once: batches keep their shapes
(``drop_last``), levels are state rather than constants, and nothing static
changes between steps (the returned summary counts the traces).

The loop also

- trains several variable groups with their own optimizers (``groups``,
  e.g. weights with AdamW and NL-ADC level logits with Adam);
- saves checkpoints (`bskmq_jax.checkpoint`) holding everything a run
  depends on: model state (weights, levels, statistics, RNG streams),
  optimizer states, the step and the data position (`DataCursor`), and
  resumes from them exactly;
- runs data-parallel over a device mesh (`bskmq_jax.parallel`);
- writes one JSON line per step (loss, accuracy, anything ``on_step``
  returns) to ``log_path``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

__all__ = ["TrainConfig", "make_optimizer", "cross_entropy", "train", "evaluate_accuracy", "infinite", "DataCursor"]

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
    log_every: int = 50  # steps between progress-bar updates and log flushes

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


def make_schedule(cfg: TrainConfig, lr: float | None = None) -> optax.Schedule:
    """Linear warm-up to ``lr`` (default ``cfg.lr``), then cosine decay over ``cfg.steps``."""
    lr = cfg.lr if lr is None else lr
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if cfg.warmup_steps else lr,
        peak_value=lr,
        warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.steps,
        end_value=lr * cfg.final_lr_fraction,
    )


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Warm-up + cosine schedule, clipping, weight decay and SGD-momentum or AdamW."""
    schedule = make_schedule(cfg)
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
    cursor = DataCursor(batches)
    while True:
        yield next(cursor)


class DataCursor:
    """Cycles a re-iterable batch stream and knows where it is.

    The position is ``(epoch, offset)``: the pass number and the batches
    already taken from it. A `bskmq_jax.data.Batches` stream shuffles pass
    ``e`` with ``(seed, e)``, so setting its pass counter and skipping
    ``offset`` batches reproduces the stream exactly from any position;
    other re-iterables must yield the same batches on every pass.

    Args:
      batches: the stream.
      epoch: pass to start in (default: the stream's own pass counter, or 0).
      offset: batches of that pass to skip.
    """

    def __init__(self, batches: Iterable[dict], epoch: int | None = None, offset: int = 0):
        self.batches = batches
        self.epoch = int(getattr(batches, "_epoch", 0) if epoch is None else epoch)
        self.offset = int(offset)
        self._it = None

    def position(self) -> dict:
        """``{"epoch": e, "offset": n}``; `DataCursor(batches, **position)` resumes there."""
        return {"epoch": self.epoch, "offset": self.offset}

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._it is None:
            if hasattr(self.batches, "_epoch"):
                self.batches._epoch = self.epoch
            self._it = iter(self.batches)
            for _ in range(self.offset):
                next(self._it, None)
        try:
            batch = next(self._it)
        except StopIteration:
            if self.offset == 0:
                raise ValueError("batches: the training stream is empty") from None
            self.epoch, self.offset, self._it = self.epoch + 1, 0, None
            return next(self)
        self.offset += 1
        return batch


def _cursor(batches, position: dict | None = None):
    """The stream's own cursor when it has one, else a `DataCursor`, at ``position`` (None: the start).

    A random-access stream (`bskmq_jax.streams.SourceBatches`) resumes at a
    batch index without reading the batches before it; a `DataCursor`
    replays the current pass up to its offset.
    """
    position = position or {}
    if hasattr(batches, "cursor"):
        try:
            return batches.cursor(**position)
        except TypeError:
            raise ValueError(f"resume: data position {position} was not saved by a random-access stream; "
                             "resume with the data the checkpoint was made with") from None
    return DataCursor(batches, **position)


def _default_loss(model, batch, label_smoothing):
    logits = model(batch["image"])
    return cross_entropy(logits, batch["label"], label_smoothing), logits


def _truncate_log(path: str, step: int) -> None:
    """Keeps the log's records up to ``step`` (a resumed run rewrites the rest)."""
    if not os.path.exists(path):
        return
    keep = []
    with open(path) as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a killed process
                continue
            if rec.get("step", 0) <= step:
                keep.append(line if line.endswith("\n") else line + "\n")
    with open(path, "w") as fh:
        fh.writelines(keep)


def train(model: nnx.Module, batches: Iterable[dict], cfg: TrainConfig, *,
          loss_fn: Callable | None = None, progress: bool = True, log_path: str | None = None,
          on_step: Callable | None = None, groups: dict | None = None, post_update: Callable | None = None,
          checkpoints=None, resume: bool = False, mesh=None) -> dict:
    """Trains ``model`` in place for ``cfg.steps`` steps.

    Args:
      model: an NNX model (its current `QuantMode` decides float or
        quantized-aware training).
      batches: a re-iterable batch stream (cycled by a `DataCursor`), or
        a random-access stream with a ``cursor(**position)`` method
        (`bskmq_jax.streams.SourceBatches`, position ``{"batch": n}``);
        ``drop_last`` keeps the step compiled once.
      cfg: optimization settings.
      loss_fn: ``loss_fn(model, batch, label_smoothing) -> (loss, logits)``;
        default: cross-entropy of ``model(batch["image"])`` vs ``batch["label"]``.
      progress: progress bar with loss, accuracy and steps/s.
      log_path: one JSON line per step (``step``, ``loss``, ``accuracy`` and
        what ``on_step`` returned), written at every ``log_every`` steps and
        before every checkpoint (by process 0 of a multi-host run).
      on_step: ``on_step(step, model) -> dict | None`` after every step
        (e.g. level refits, evaluations); a returned dict joins the step's
        log line.
      groups: ``{name: (variable filter, optax transform)}``, each group
        updated by its own optimizer (default: every `nnx.Param` with
        `make_optimizer`); gradients are taken for `nnx.Param`.
      post_update: ``post_update(model)`` inside the jitted step after the
        updates (e.g. keeping state derived from parameters in sync).
      checkpoints: a `bskmq_jax.checkpoint.Checkpoints`; saves every
        ``every`` steps and at the end.
      resume: continue from the latest checkpoint in ``checkpoints``.
      mesh: a device mesh (`bskmq_jax.parallel.make_mesh`): state
        replicated, batches split along ``"data"``.

    Returns:
      summary: loss and accuracy (mean over the last logging interval),
      steps/s of this process (``steps_per_s`` with the first step's
      compilation, ``steady_steps_per_s`` without it), traces of the step
      function, the first step run here (``start_step``) and the seconds
      spent.
    """
    from bskmq_jax import parallel

    loss_fn = loss_fn or _default_loss
    groups = groups or {"params": (nnx.Param, make_optimizer(cfg))}
    model.train()
    if mesh is not None:
        parallel.replicate(model, mesh)
    opts = {name: nnx.Optimizer(model, tx, wrt=wrt) for name, (wrt, tx) in groups.items()}
    if mesh is not None:
        for opt in opts.values():
            parallel.replicate(opt, mesh)
    position, start = None, 0
    if resume:
        if checkpoints is None:
            raise ValueError("resume: needs checkpoints to resume from")
        start, extra = checkpoints.restore(model, opts)
        position = extra["data"]
    cursor = _cursor(batches, position)
    if log_path and jax.process_index() != 0:
        log_path = None  # one process writes the log
    if log_path:
        _truncate_log(log_path, start)  # a fresh run starts a fresh log
    traces = []

    @nnx.jit
    def step(model, opts, batch):
        traces.append(1)
        (loss, logits), grads = nnx.value_and_grad(lambda m: loss_fn(m, batch, cfg.label_smoothing), has_aux=True)(model)
        for opt in opts.values():
            opt.update(model, grads)
        if post_update is not None:
            post_update(model)
        acc = jnp.mean(jnp.argmax(logits, -1) == batch["label"]) if "label" in batch else jnp.float32(0.0)
        return loss, acc

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc="train", leave=False, disable=None)
    pending, window, last = [], [], {}
    t0 = t_first = time.perf_counter()

    def flush():
        if not pending:
            return
        vals = jax.device_get([(loss, acc) for _, loss, acc, _ in pending])
        lines = [{"step": i, "loss": float(l), "accuracy": float(a), **extra} for (i, _, _, extra), (l, a) in zip(pending, vals)]
        window.extend(lines)
        if log_path:
            with open(log_path, "a") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in lines)
        pending.clear()

    for i in range(start + 1, cfg.steps + 1):
        batch = next(cursor)
        if mesh is not None:
            batch = parallel.shard_batch(batch, mesh)
        loss, acc = step(model, opts, batch)
        if i == start + 1:
            t_first = time.perf_counter()  # the call returns after compiling, before the step finishes
        extra = (on_step(i, model) if on_step is not None else None) or {}
        pending.append((i, loss, acc, extra))
        save = checkpoints is not None and (i % checkpoints.every == 0 or i == cfg.steps)
        if i % cfg.log_every == 0 or i == cfg.steps or save:
            flush()
            elapsed = time.perf_counter() - t0
            last = {"step": i, "loss": float(np.mean([r["loss"] for r in window])),
                    "accuracy": float(np.mean([r["accuracy"] for r in window])), "steps_per_s": (i - start) / elapsed}
            window = []
            if bar is not None:
                bar.set_postfix(loss=f"{last['loss']:.3f}", acc=f"{last['accuracy']:.3f}", sps=f"{last['steps_per_s']:.1f}")
        if save:
            checkpoints.save(i, model, opts, data=cursor.position(), config=dataclasses.asdict(cfg))
        if bar is not None:
            bar.update(1)
    if hasattr(cursor, "close"):
        cursor.close()  # stops reading ahead
    if checkpoints is not None:
        checkpoints.wait()
    if bar is not None:
        bar.close()
    model.eval()
    t_end = time.perf_counter()
    n = cfg.steps - start
    steady = (n - 1) / (t_end - t_first) if n > 1 else float("nan")
    return {**last, "steady_steps_per_s": steady, "traces": len(traces), "start_step": start + 1, "seconds": t_end - t0}


def evaluate_accuracy(model: nnx.Module, batches: Iterable[dict], *, mesh=None, inputs: tuple[str, ...] = ("image",)) -> float:
    """Top-1 accuracy of the model's logits against ``batch["label"]`` over ``batches`` (eval mode).

    Args:
      inputs: batch fields passed to the model positionally, those present
        (text classifiers: ``("input_ids", "attention_mask")``).
    """
    from bskmq_jax import parallel

    model.eval()
    step = _eval_step(tuple(inputs))
    correct = total = 0
    for b in batches:
        n = len(b["label"])
        if mesh is not None and n % mesh.size == 0:
            b = parallel.shard_batch(b, mesh)
        correct += int(step(model, b))
        total += n
    return correct / total


_EVAL = {}


def _eval_step(inputs: tuple[str, ...]):
    # One jitted function per input list for every call, so repeated
    # evaluations (e.g. during fine-tuning) reuse its compiled program.
    if inputs not in _EVAL:
        _EVAL[inputs] = nnx.jit(lambda m, b: jnp.sum(jnp.argmax(m(*[b[k] for k in inputs if k in b]), -1) == b["label"]))
    return _EVAL[inputs]
