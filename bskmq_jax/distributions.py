"""Built-in activation distributions for `bskmq levels` and the tests.

Each is a stand-in for a kind of layer output an NL-ADC converts:

- ``gaussian``: N(0, 1), an un-clamped pre-activation;
- ``laplace``: unit-variance Laplacian, a heavy-tailed pre-activation;
- ``relu_clamp``: ``clip(relu(N(0, 1)), 0, 2)`` on ADC range [0, 2]: half the
  mass at 0 and 2.3% at 2, the boundary masses BS-KMQ is about;
- ``gelu``: GELU of N(0, 1), a transformer FFN activation (no point mass,
  a sharp peak just below 0).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A named synthetic activation source."""

    name: str
    sample: Callable[[np.random.Generator, int], np.ndarray]  # (rng, n) -> float32 [n]
    lo: float | None  # ADC range start; None: the sample min
    hi: float | None  # ADC range end; None: the sample max
    about: str  # one-line description


def _gelu(z):
    import jax
    import jax.numpy as jnp

    return np.asarray(jax.nn.gelu(jnp.asarray(z, jnp.float32), approximate=False))


DISTRIBUTIONS: dict[str, Distribution] = {
    d.name: d
    for d in (
        Distribution("gaussian", lambda r, n: r.standard_normal(n), None, None, "N(0,1)"),
        Distribution("laplace", lambda r, n: r.laplace(0.0, 1.0 / np.sqrt(2.0), n), None, None, "unit-variance Laplacian"),
        Distribution(
            "relu_clamp",
            lambda r, n: np.clip(np.maximum(r.standard_normal(n), 0.0), 0.0, 2.0),
            0.0,
            2.0,
            "clip(relu(N(0,1)), 0, 2); P(0)=0.5, P(2)=0.023",
        ),
        Distribution("gelu", lambda r, n: _gelu(r.standard_normal(n)), None, None, "GELU(N(0,1))"),
    )
}


def sample(name: str, n: int, seed: int = 0) -> tuple[np.ndarray, float | None, float | None]:
    """Draws ``n`` float32 samples of a built-in distribution.

    Returns:
      ``(x [n], lo, hi)``; ``lo``/``hi`` are None where the range is the data's.

    Raises:
      ValueError: for an unknown name or ``n < 1``.
    """
    if name not in DISTRIBUTIONS:
        raise ValueError(f"dist: unknown distribution {name!r}; built-ins are {list(DISTRIBUTIONS)} or a .npy file")
    if n < 1:
        raise ValueError(f"samples: {n} must be >= 1")
    d = DISTRIBUTIONS[name]
    x = d.sample(np.random.default_rng(seed), int(n)).astype(np.float32)
    return x, d.lo, d.hi
