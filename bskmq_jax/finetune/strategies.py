"""NL-ADC level strategies while the weights fine-tune: frozen, learned, refit.

The model runs in ``QUANTIZED`` mode: crossbar products with quantized
inputs and weights, then the NL-ADC conversion, all with the straight-through
gradients of `bskmq_jax.adc.ste`. The weights always train; the levels
follow one of three strategies (`LevelConfig.strategy`):

- ``frozen``: the PTQ levels stay as programmed (they are `ADCLevels` state,
  not parameters).
- ``learned``: the levels of each layer become parameters, kept ascending and
  inside the layer's ADC range ``[lo, hi]`` *by construction*: ``K`` levels
  are ``lo + (hi - lo) * cumsum(softmax(u))[:K]`` for ``K + 1`` free logits
  ``u`` (the softmax gives ``K + 1`` positive gaps that sum to the range), so
  no update can unsort them or push them out. The logits start at the log of
  the PTQ gaps (floored at ``gap_floor``), which reproduces the PTQ levels;
  thresholds stay the midpoints of adjacent levels (``STEConfig(thresholds=
  "midpoint")``). Gradients reach the levels through the STE's level rule
  (``d out / d l_j`` = the upstream gradient summed over the values that
  converted to code ``j``, ``STEConfig(learn_levels=True)``) and then the
  softmax-cumsum map; the logits train with their own Adam (no weight decay).
- ``refit``: the NL-ADCs keep running statistics of the values they convert
  during the training forward passes (the quantized network's own
  pre-ADC distributions, recorded inside the jitted step); every
  ``refit_every`` steps the ADC ranges (the ``refit_percentile`` percentile,
  `bskmq_jax.ptq.adc_ranges`) and levels are re-fitted from them with the
  same method and the statistics restart. Levels are state, so
  the jitted step never retraces.

Every strategy sets the STE's input rule to ``pass_range="levels"`` by
default: the input gradient passes only between the outermost levels, where
the conversion can follow its input (see `bskmq_jax.adc.ste`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from bskmq_jax.adc.config import PASS_RANGES
from bskmq_jax.imc.control import _adcs, collect_stats, load_levels, reset_stats
from bskmq_jax.levels import thresholds_from_levels
from bskmq_jax.train import TrainConfig, make_optimizer, make_schedule

__all__ = ["STRATEGIES", "LevelConfig", "LevelLogits", "LevelStrategy", "levels_from_logits", "logits_from_levels"]

STRATEGIES = ("frozen", "learned", "refit")


class LevelLogits(nnx.Param):
    """Free parameters of learned levels (``K + 1`` log-gaps per layer, see `levels_from_logits`)."""


def levels_from_logits(logits, lo, hi):
    """``lo + (hi - lo) * cumsum(softmax(logits))[:K]``: ascending and inside ``[lo, hi]`` for any logits.

    Args:
      logits: ``[*batch, K + 1]``.
      lo, hi: ``[*batch]`` the ADC range.

    Returns:
      ``[*batch, K]`` levels.
    """
    w = jax.nn.softmax(logits, axis=-1)
    lv = lo[..., None] + (hi - lo)[..., None] * jnp.cumsum(w, axis=-1)[..., :-1]
    # Every step is monotone in float arithmetic, so the order is exact and
    # lv >= lo; the minimum only absorbs the last float32 ulp by which a
    # rounded cumulative sum near 1 can overshoot hi.
    return jnp.minimum(lv, hi[..., None])


def logits_from_levels(levels, lo, hi, *, gap_floor: float = 1e-6):
    """The logits whose `levels_from_logits` are ``levels`` (gaps below ``gap_floor * (hi - lo)`` are raised to it)."""
    edges = jnp.concatenate([lo[..., None], levels, hi[..., None]], axis=-1)
    gaps = jnp.diff(edges, axis=-1) / (hi - lo)[..., None]
    return jnp.log(jnp.maximum(gaps, gap_floor))


@dataclasses.dataclass(frozen=True, kw_only=True)
class LevelConfig:
    """How the NL-ADC levels behave while the weights fine-tune."""

    strategy: str = "frozen"  # "frozen" | "learned" | "refit" (see the module docstring)
    refit_every: int = 50  # steps between level refits ("refit")
    level_lr: float = 1e-2  # peak Adam learning rate of the level logits ("learned"; the weights' schedule shape)
    gap_floor: float = 1e-6  # smallest initial gap between levels, fraction of hi - lo ("learned")
    refit_percentile: float = 99.9  # ADC range of refits: this percentile of the running statistics (100: the max)
    pass_range: str = "levels"  # STE input gradient: "levels" (between the outermost levels) | "range" (lo..hi)

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy: unknown level strategy {self.strategy!r}; choose one of {list(STRATEGIES)}")
        if isinstance(self.refit_every, bool) or not isinstance(self.refit_every, int) or self.refit_every < 1:
            raise ValueError(f"refit_every: {self.refit_every!r} must be an int >= 1")
        if not (isinstance(self.level_lr, (int, float)) and math.isfinite(self.level_lr) and self.level_lr > 0):
            raise ValueError(f"level_lr: {self.level_lr!r} must be > 0")
        if not 0 < self.gap_floor < 0.01:
            raise ValueError(f"gap_floor: {self.gap_floor!r} must be in (0, 0.01)")
        if not 50.0 < self.refit_percentile <= 100.0:
            raise ValueError(f"refit_percentile: {self.refit_percentile!r} must be in (50, 100]")
        if self.pass_range not in PASS_RANGES:
            raise ValueError(f"pass_range: unknown rule {self.pass_range!r}; choose one of {list(PASS_RANGES)}")


class LevelStrategy:
    """One level strategy applied to a model (in ``QUANTIZED`` mode with fitted levels).

    Pass `groups`, `loss_fn`, `post_update` and `on_step` to
    `bskmq_jax.train.train`, and call `finish` afterwards. Every strategy
    sets the STE input rule ``pass_range``; ``learned`` adds a `LevelLogits`
    parameter to every fitted NL-ADC; ``refit`` makes the NL-ADCs record
    running statistics of the values they convert in ``QUANTIZED`` mode
    (``record_quantized``), fits new levels from them every ``refit_every``
    steps (ADC ranges by `bskmq_jax.ptq.adc_ranges`) and starts new
    statistics. `finish` undoes all three.

    Args:
      cfg: the strategy.
      model: the model, levels programmed.
      method, bits: how refits fit (``"refit"``).
      key: PRNG key of refit fits (k-means seeding).
    """

    def __init__(self, cfg: LevelConfig, model: nnx.Module, *, method: str = "bs_kmq", bits: int = 3, key=None):
        self.cfg, self.method, self.bits = cfg, method, bits
        self.key = jax.random.key(0) if key is None else key
        self._ste = {}
        fitted = self._fitted(model)
        if not fitted:
            raise ValueError("model: no NL-ADC has fitted levels; program them (imc.load_levels) before fine-tuning")
        for name, a in fitted.items():
            self._ste[name] = a.ste
            a.ste = dataclasses.replace(a.ste, pass_range=cfg.pass_range)
            if cfg.strategy == "learned":
                a.level_logits = LevelLogits(logits_from_levels(a.levels[...], a.lo[...], a.hi[...], gap_floor=cfg.gap_floor))
                a.ste = dataclasses.replace(a.ste, learn_levels=True, thresholds="midpoint")
            if cfg.strategy == "refit":
                a.record_quantized = True
        if cfg.strategy == "refit":
            reset_stats(model)
        self.sync(model)

    @staticmethod
    def _fitted(model):
        return {n: a for n, a in _adcs(model).items() if a.fitted}

    def groups(self, train_cfg: TrainConfig) -> dict:
        """Variable groups and their optimizers for `train`."""
        weights = make_optimizer(train_cfg)
        if self.cfg.strategy != "learned":
            return {"params": (nnx.Param, weights)}
        levels = optax.adam(make_schedule(train_cfg, self.cfg.level_lr))
        return {"params": (nnx.All(nnx.Param, nnx.Not(LevelLogits)), weights), "levels": (LevelLogits, levels)}

    def sync(self, model) -> None:
        """Programs the levels (and midpoint thresholds) given by the logits ("learned"; jittable)."""
        for a in _adcs(model).values():
            if hasattr(a, "level_logits"):
                lv = levels_from_logits(a.level_logits[...], a.lo[...], a.hi[...])
                a.levels.set_value(lv)
                a.thresholds.set_value(thresholds_from_levels(lv))

    def loss_fn(self, base):
        """``base`` with the levels computed from the logits inside the differentiated function."""
        if self.cfg.strategy != "learned":
            return base

        def loss(model, batch, label_smoothing):
            self.sync(model)
            return base(model, batch, label_smoothing)

        return loss

    @property
    def post_update(self):
        return self.sync if self.cfg.strategy == "learned" else None

    def on_step(self, step: int, model) -> dict | None:
        """Refits every ``refit_every`` steps ("refit")."""
        if self.cfg.strategy == "refit" and step % self.cfg.refit_every == 0:
            self.refit(model)
            return {"refit": True}
        return None

    def refit(self, model) -> None:
        """Fits every layer's levels to its running statistics, then starts new statistics."""
        from bskmq_jax.ptq import adc_ranges, fit_all

        stats = collect_stats(model)
        ranges = adc_ranges(stats, clip_percentile=self.cfg.refit_percentile)
        fits = fit_all(stats, [self.method], [self.bits], ranges=ranges, key=self.key, progress=False)
        load_levels(model, fits[self.method][self.bits])
        reset_stats(model)

    @contextlib.contextmanager
    def evaluating(self, model):
        """Pauses the running statistics (evaluation data must not shape the levels)."""
        recording = [a for a in _adcs(model).values() if a.record_quantized]
        for a in recording:
            a.record_quantized = False
        try:
            yield
        finally:
            for a in recording:
                a.record_quantized = True

    def finish(self, model) -> None:
        """Leaves plain programmed levels (learned ones written, logits removed) and the original rules."""
        self.sync(model)
        for name, a in self._fitted(model).items():
            if hasattr(a, "level_logits"):
                del a.level_logits
            a.ste = self._ste.get(name, a.ste)
            a.record_quantized = False
