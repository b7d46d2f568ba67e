"""Level-fitting methods and `fit_levels`, the one entry point to them.

A method is a pure per-layer function
``fit(pts, lo, hi, key, *, k, cfg, common) -> (levels [k], thresholds [k-1])``
on a sorted weighted point set (`Points`), plus a frozen config of its options.
`fit_levels` validates the input once, turns each layer into a point set and
runs the method for all layers in one jitted, vmapped call.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from bskmq_jax import _validate
from bskmq_jax.levels import NLLevels
from bskmq_jax.quantizers._common import FitConfig, Points, data_range, points_from_samples
from bskmq_jax.quantizers.bs_kmq import BSKMQConfig, fit_bs_kmq
from bskmq_jax.quantizers.cdf import CDFConfig, fit_cdf
from bskmq_jax.quantizers.kmeans import KMeansConfig, fit_kmeans
from bskmq_jax.quantizers.kmeans_exact import KMeansExactConfig, fit_kmeans_exact
from bskmq_jax.quantizers.linear import LinearConfig, fit_linear
from bskmq_jax.quantizers.lloyd_max import LloydMaxConfig, fit_lloyd_max

__all__ = [
    "METHODS",
    "Method",
    "FitConfig",
    "Points",
    "fit_levels",
    "make_configs",
    "fit_points",
    "BSKMQConfig",
    "CDFConfig",
    "KMeansConfig",
    "KMeansExactConfig",
    "LinearConfig",
    "LloydMaxConfig",
]


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered level-fitting method.

    ``fit(pts, lo, hi, key, *, k, cfg, common)`` fits one layer: ``pts`` is a
    sorted `Points` set, ``lo``/``hi`` scalars, ``key`` a PRNG key, ``k`` the
    number of levels (static), ``cfg`` the method's config and ``common`` the
    `FitConfig`. It returns ``(levels [k], thresholds [k - 1])``, ascending.
    """

    name: str  # the `method=` string
    fit: Callable  # per-layer fit on a sorted weighted point set
    config: type  # frozen dataclass of the method's own options
    uses_key: bool  # True if the result depends on the PRNG key


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("linear", fit_linear, LinearConfig, False),
        Method("lloyd_max", fit_lloyd_max, LloydMaxConfig, False),
        Method("cdf", fit_cdf, CDFConfig, False),
        Method("kmeans", fit_kmeans, KMeansConfig, True),
        Method("kmeans_exact", fit_kmeans_exact, KMeansExactConfig, False),
        Method("bs_kmq", fit_bs_kmq, BSKMQConfig, True),
    )
}

_COMMON = {f.name for f in dataclasses.fields(FitConfig)}


def get_method(method: str) -> Method:
    """Looks a method up by name, with an error that lists the known ones."""
    if method not in METHODS:
        raise ValueError(f"method: unknown method {method!r}; known methods are {list(METHODS)}")
    return METHODS[method]


def make_configs(method: str, options: dict) -> tuple[Method, FitConfig, object]:
    """Splits ``options`` into common and method options and builds both configs.

    Raises:
      ValueError: on an unknown method, an unknown option, or a bad value.
    """
    m = get_method(method)
    own = {f.name for f in dataclasses.fields(m.config)}
    _validate.check_options(method, {**dict.fromkeys(own), **dict.fromkeys(_COMMON)}, options)
    common = FitConfig(**{k: v for k, v in options.items() if k in _COMMON})
    cfg = m.config(**{k: v for k, v in options.items() if k in own})
    return m, common, cfg


def layer_keys(key, num_layers: int, squeeze: bool):
    """Per-layer PRNG keys: ``key`` itself for one layer, ``fold_in(key, l)`` for layer ``l``."""
    if key is None:
        key = jax.random.key(0)
    elif not jax.dtypes.issubdtype(getattr(key, "dtype", None) or jnp.uint32, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))  # legacy uint32[2] key
    if squeeze:
        return key[None]
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_layers))


@functools.partial(jax.jit, static_argnames=("method", "bits", "common", "cfg"))
def fit_points(pts: Points, lo, hi, keys, *, method: str, bits: int, common: FitConfig, cfg):
    """Fits all layers from prepared point sets in one vmapped call.

    Args:
      pts: `Points` with ``[L, P]`` leaves, sorted per layer.
      lo, hi: ``[L]`` ADC ranges.
      keys: ``[L]`` PRNG keys.
      method, bits, common, cfg: static method choice and options.

    Returns:
      ``(levels [L, 2**bits], thresholds [L, 2**bits - 1])``.
    """
    fit = functools.partial(METHODS[method].fit, k=2**bits, cfg=cfg, common=common)
    return jax.vmap(fit)(pts, lo, hi, keys)


@functools.partial(jax.jit, static_argnames=("common",))
def prepare_points(x, w, lo, hi, *, common: FitConfig):
    """Turns ``[L, N]`` samples into per-layer sorted point sets in one pass.

    Layers run through `lax.map`, not `vmap`: on CPU the batched reductions
    and scatter-adds of a vmapped pass are 2-5x slower (measured here).

    Returns:
      ``(points [L, P], lo [L], hi [L], finite [L])``; ``finite`` is
      False for a layer holding NaN/Inf (its min or max is then not finite).
    """

    def one(args):
        x, w, lo, hi = args
        # NaN propagates through min/max and Inf shows in them: no extra pass.
        finite = jnp.isfinite(jnp.min(x)) & jnp.isfinite(jnp.max(x))
        if lo is None or hi is None:
            dlo, dhi = data_range(x, w)
            lo = dlo if lo is None else lo
            hi = dhi if hi is None else hi
        return points_from_samples(x, w, lo, hi, common), lo, hi, finite

    return lax.map(one, (x, w, lo, hi))


def fit_levels(
    samples,
    *,
    method: str,
    bits: int,
    lo=None,
    hi=None,
    weights=None,
    key=None,
    clamp: bool = True,
    **options,
) -> NLLevels:
    """Fits NL-ADC reference levels to calibration samples.

    Args:
      samples: ``[N]`` (one layer) or ``[L, N]`` (L layers, fitted in one
        jitted vmapped call) floating activations.
      method: ``"linear" | "lloyd_max" | "cdf" | "kmeans" | "kmeans_exact" | "bs_kmq"``.
      bits: ADC resolution, 1..8; the fit has ``2**bits`` levels.
      lo, hi: ADC input range, scalars or ``[L]``; default: each layer's
        min/max (over samples with non-zero weight).
      weights: optional ``[N]``/``[L, N]`` non-negative sample weights; zero
        weights mark padding of ragged layers.
      key: PRNG key for ``kmeans`` (and ``bs_kmq`` with ``inner="kmeans"``);
        default ``jax.random.key(0)``. Layer ``l`` of a batch uses
        ``jax.random.fold_in(key, l)``; a single layer uses ``key``.
      clamp: True fits on samples clamped to ``[lo, hi]`` (what the NL-ADC
        sees); False fits on the raw samples (e.g. pre-ReLU values).
      **options: common options (`FitConfig`: ``boundary_tol``,
        ``max_points``, ``bins``) and the method's own (e.g. ``mode=`` for
        ``bs_kmq``, see its config class).

    Returns:
      `NLLevels` with batch shape ``()`` for ``[N]`` input or ``(L,)``.

    Raises:
      ValueError: on NaN/Inf, empty layers, all-zero weights, integer dtypes,
        bits outside 1..8, lo >= hi, or unknown methods/options.
    """
    bits = _validate.check_bits(bits)
    m, common, cfg = make_configs(method, {"clamp": clamp, **options})
    x, w, squeeze = _validate.check_samples(samples, weights)
    lo_a, hi_a = _validate.check_range(lo, hi, x.shape[0])
    keys = layer_keys(key, x.shape[0], squeeze)
    pts, lo_o, hi_o, finite = prepare_points(x, w, lo_a, hi_a, common=common)
    # Finiteness comes out of the same pass as the binning, so valid input
    # costs no extra sweep; the count for the message is only taken on failure.
    if _validate.is_concrete(finite) and not bool(jnp.all(finite)):
        _validate.check_finite("samples", x)
    levels, thresholds = fit_points(pts, lo_o, hi_o, keys, method=m.name, bits=bits, common=common, cfg=cfg)
    nl = NLLevels(levels, thresholds, lo_o, hi_o, method=m.name, bits=bits)
    return nl[0] if squeeze else nl
