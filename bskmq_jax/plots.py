"""Plots of level sets (matplotlib, Agg backend; imported only when plotting)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bskmq_jax.io import save_figure  # noqa: E402


def levels_figure(x: np.ndarray, fits: dict[str, dict], title: str, path, bins: int = 200, lo=None, hi=None, tol: float = 1e-6):
    """Histogram of ``x`` with each method's levels and thresholds, one row per method.

    Args:
      x: ``[N]`` samples.
      fits: ``{method: {"levels": [K], "thresholds": [K-1], "mse": float}}``.
      title: figure title.
      path: output PNG path (written atomically).
      bins: histogram bins.
      lo, hi: ADC range; point masses at its ends are drawn as black stems
        (a histogram bar there is one bin wide and hides behind a level).
      tol: boundary tolerance relative to ``hi - lo``.
    """
    n = len(fits)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.6 * n + 0.6), sharex=True, squeeze=False)
    edges = np.linspace(float(np.min(x)), float(np.max(x)), bins + 1)
    counts, _ = np.histogram(x, edges)
    frac = counts / max(counts.sum(), 1)
    lo = float(np.min(x)) if lo is None else lo
    hi = float(np.max(x)) if hi is None else hi
    atoms = [(v, float(np.mean(np.abs(x - v) <= tol * (hi - lo)))) for v in (lo, hi)]
    atoms = [(v, p) for v, p in atoms if p >= 1e-3]
    for ax, (name, fit) in zip(axes[:, 0], fits.items()):
        ax.stairs(frac, edges, fill=True, color="0.8")
        for v, p in atoms:
            ax.vlines(v, 0, p, color="k", lw=3)
            ax.annotate(f"{100 * p:.1f}% at {v:.3g}", (v, p), fontsize=7, ha="center", va="bottom")
        ax.set_yscale("log")
        for t in fit["thresholds"]:
            ax.axvline(t, color="tab:blue", lw=0.6, ls=":")
        for lv in fit["levels"]:
            ax.axvline(lv, color="tab:red", lw=1.2)
        label = f"{name}  (MSE {fit['mse']:.3g})" if "mse" in fit else name
        ax.text(0.01, 0.85, label, transform=ax.transAxes, fontsize=9, va="top")
        ax.set_ylim(top=3.0)
        ax.set_ylabel("share")
    axes[-1, 0].set_xlabel("activation (red: levels, dotted: thresholds)")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
