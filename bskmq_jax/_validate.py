"""Input checks shared by the public entry points.

Checks run once, eagerly, on concrete arrays, and raise `ValueError` naming the
argument, the problem and the fix. Inside a user's `jit` the values are tracers
and only shapes and dtypes can be checked; value checks are then skipped.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from bskmq_jax.levels import MAX_BITS


def is_concrete(x) -> bool:
    """True if ``x`` holds values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def check_bits(bits) -> int:
    """Returns ``bits`` as an int in ``1..MAX_BITS`` or raises."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
        raise ValueError(f"bits: expected an int in 1..{MAX_BITS}, got {bits!r}")
    if not 1 <= int(bits) <= MAX_BITS:
        raise ValueError(f"bits: {bits} is outside 1..{MAX_BITS} (an NL-ADC has 2**bits levels)")
    return int(bits)


def check_bits_list(name: str, bits, lo: int = 1, hi: int = MAX_BITS) -> tuple[int, ...]:
    """Checks a non-empty list of distinct bit widths in ``lo..hi``; returns it sorted."""
    if not bits:
        raise ValueError(f"{name}: at least one bit width is needed")
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, numbers.Integral) or not lo <= int(b) <= hi:
            raise ValueError(f"{name}: {b!r} is not an int in {lo}..{hi}")
    if len(set(bits)) != len(bits):
        raise ValueError(f"{name}: repeated bit widths in {list(bits)}")
    return tuple(sorted(int(b) for b in bits))


def check_float_array(name: str, x, ndims: tuple[int, ...]) -> jax.Array:
    """Checks dtype (floating) and rank; returns a float32 jax array."""
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if not hasattr(x, "dtype"):
        raise ValueError(f"{name}: expected an array, got {type(x).__name__}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"{name}: dtype {x.dtype} is not a floating type; activations must be float "
            f"(cast with .astype(np.float32) if the integers really are activation values)"
        )
    if x.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name}: expected a {want} array, got shape {tuple(x.shape)}")
    return jnp.asarray(x, jnp.float32)


def check_finite(name: str, x) -> None:
    """Raises if a concrete array holds NaN or Inf, with their count."""
    if not is_concrete(x):
        return
    bad = int(jnp.size(x) - jnp.count_nonzero(jnp.isfinite(x)))
    if bad:
        raise ValueError(
            f"{name}: {bad} of {x.size} values are NaN or Inf; remove them "
            f"(e.g. x[np.isfinite(x)]) before fitting"
        )


def check_samples(samples, weights):
    """Validates samples and weights; returns ``(x [L, N], w [L, N] | None, squeeze)``.

    ``w`` is None for unit weights. ``squeeze`` is True when the input was
    one layer of shape ``[N]``.
    """
    x = check_float_array("samples", samples, (1, 2))
    squeeze = x.ndim == 1
    x = x[None] if squeeze else x
    if x.shape[-1] == 0 or x.shape[0] == 0:
        raise ValueError(f"samples: empty layer (shape {tuple(np.shape(samples))}); each layer needs samples")
    # NaN/Inf in samples are detected inside the fitting pass (see fit_levels).
    if weights is None:
        return x, None, squeeze
    w = check_float_array("weights", weights, (1, 2))
    w = w[None] if w.ndim == 1 else w
    if w.shape != x.shape:
        raise ValueError(f"weights: shape {tuple(np.shape(weights))} does not match samples {tuple(np.shape(samples))}")
    check_finite("weights", w)
    if is_concrete(w):
        if bool(jnp.any(w < 0)):
            raise ValueError("weights: negative values; weights are sample multiplicities (>= 0)")
        dead = np.flatnonzero(np.asarray(jnp.sum(w, axis=-1) <= 0))
        if dead.size:
            raise ValueError(
                f"weights: layer(s) {dead.tolist()} have all-zero weights (empty layer); "
                "drop them or give them samples"
            )
    return x, w, squeeze


def check_range(lo, hi, num_layers: int):
    """Validates optional ADC range ends; returns ``(lo, hi)`` as ``[L]`` or None."""
    out = []
    for name, v in (("lo", lo), ("hi", hi)):
        if v is None:
            out.append(None)
            continue
        a = jnp.asarray(v, jnp.float32)
        if a.ndim > 1 or (a.ndim == 1 and a.shape[0] != num_layers):
            raise ValueError(f"{name}: expected a scalar or shape [{num_layers}], got shape {tuple(a.shape)}")
        check_finite(name, a)
        out.append(jnp.broadcast_to(a, (num_layers,)))
    lo_a, hi_a = out
    if lo_a is not None and hi_a is not None and is_concrete(lo_a) and is_concrete(hi_a):
        bad = np.flatnonzero(np.asarray(lo_a >= hi_a))
        if bad.size:
            raise ValueError(
                f"lo/hi: lo >= hi for layer(s) {bad.tolist()} "
                f"(lo={np.asarray(lo_a)[bad].tolist()}, hi={np.asarray(hi_a)[bad].tolist()}); the ADC range needs lo < hi"
            )
    return lo_a, hi_a


def check_options(method: str, allowed: dict, options: dict) -> None:
    """Raises on option names a method does not know, listing the known ones."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"{method}: unknown option(s) {unknown}; known options are {sorted(allowed)}"
        )
