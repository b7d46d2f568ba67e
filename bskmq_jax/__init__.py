"""bskmq-jax: nonlinear-ADC activation quantization (BS-KMQ) for analog in-memory computing.

The public API: fit NL-ADC reference levels (`fit_levels`,
`fit_levels_from_stats`), apply them (`quantize`, `encode`, `decode`),
collect streaming calibration statistics (`CalibrationStats`, `init_stats`,
`update`, `merge`) and measure error (`quant_error`).
"""

from bskmq_jax.levels import NLLevels, decode, encode, quantize, thresholds_from_levels
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

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "BSKMQConfig",
    "CDFConfig",
    "FitConfig",
    "KMeansConfig",
    "KMeansExactConfig",
    "LinearConfig",
    "LloydMaxConfig",
    "NLLevels",
    "decode",
    "encode",
    "fit_levels",
    "quantize",
    "thresholds_from_levels",
]
