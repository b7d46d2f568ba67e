"""Quantization-aware fine-tuning on the NL-ADC.

- `bskmq_jax.finetune.strategies`: what the levels do while the weights
  train (``frozen``, ``learned``, ``refit``), the learned-level
  parametrization and `LevelStrategy`;
- `bskmq_jax.finetune.job`: `FinetuneConfig` and `finetune_job`, the job
  behind ``bskmq finetune`` (docs/finetune.md).
"""

from bskmq_jax.finetune.job import FinetuneConfig, finetune_job
from bskmq_jax.finetune.strategies import (
    STRATEGIES,
    LevelConfig,
    LevelLogits,
    LevelStrategy,
    levels_from_logits,
    logits_from_levels,
)

__all__ = ["STRATEGIES", "LevelConfig", "LevelLogits", "LevelStrategy", "levels_from_logits", "logits_from_levels",
           "FinetuneConfig", "finetune_job"]
