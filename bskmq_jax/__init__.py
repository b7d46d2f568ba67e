"""bskmq-jax: nonlinear-ADC activation quantization (BS-KMQ) for analog in-memory computing.

The public API: fit NL-ADC reference levels (`fit_levels`,
`fit_levels_from_stats`), apply them (`quantize`, `encode`, `decode`),
collect streaming calibration statistics (`CalibrationStats`, `init_stats`,
`init_stats_from_batch`, `update`, `merge`, `allreduce`, `coarsen`) and measure error
(`quant_error`, `quant_error_from_stats`). Simulate the hardware: the
in-memory NL-ADC (`nl_adc`, `ADCConfig`, `STEConfig`), crossbar products
(`imc_dense`, `imc_conv`, `IMCConfig`) and Flax NNX layers (`IMCDense`,
`IMCConv`, `NLADCActivation`, `QuantMode`; model-wide helpers in
`bskmq_jax.imc`).
"""

from bskmq_jax.adc import ADCConfig, STEConfig, linear_adc, nl_adc
from bskmq_jax.imc import IMCConfig, IMCConv, IMCDense, NLADCActivation, QuantMode, imc_conv, imc_dense
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
    coarsen,
    fit_levels_from_stats,
    init_stats,
    init_stats_from_batch,
    merge,
    update,
)

__version__ = "0.1.0"

__all__ = [
    "ADCConfig",
    "IMCConfig",
    "IMCConv",
    "IMCDense",
    "NLADCActivation",
    "QuantMode",
    "STEConfig",
    "imc_conv",
    "imc_dense",
    "linear_adc",
    "nl_adc",
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
    "coarsen",
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
