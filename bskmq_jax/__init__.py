"""bskmq-jax: nonlinear-ADC activation quantization (BS-KMQ) for analog in-memory computing.

The public API: fit NL-ADC reference levels (`fit_levels`,
`fit_levels_from_stats`), apply them (`quantize`, `encode`, `decode`),
collect streaming calibration statistics (`CalibrationStats`, `init_stats`,
`init_stats_from_batch`, `update`, `merge`, `allreduce`) and measure error
(`quant_error`, `quant_error_from_stats`).
"""

from bskmq_jax.levels import NLLevels, decode, encode, quantize, thresholds_from_levels
from bskmq_jax.metrics import QuantError, quant_error, quant_error_from_stats
from bskmq_jax.quantizers import (
    METHODS,
    BSKMQConfig,
    CDFConfig,
    FitConfig,
    KMeansConfig,
    KMeansExactConfig,
    LinearConfig,
    LloydMaxConfig,
    fit_levels,
)
from bskmq_jax.stats import (
    CalibrationStats,
    allreduce,
    fit_levels_from_stats,
    init_stats,
    init_stats_from_batch,
    merge,
    update,
)

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "BSKMQConfig",
    "CDFConfig",
    "CalibrationStats",
    "FitConfig",
    "KMeansConfig",
    "KMeansExactConfig",
    "LinearConfig",
    "LloydMaxConfig",
    "NLLevels",
    "QuantError",
    "allreduce",
    "decode",
    "encode",
    "fit_levels",
    "fit_levels_from_stats",
    "init_stats",
    "init_stats_from_batch",
    "merge",
    "quant_error",
    "quant_error_from_stats",
    "quantize",
    "thresholds_from_levels",
    "update",
]
