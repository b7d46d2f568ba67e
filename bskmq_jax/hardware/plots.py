"""Figures of the hardware model (matplotlib, Agg backend; imported only when plotting)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bskmq_jax.hardware.adc import ADC_KINDS, NONLINEAR_KINDS  # noqa: E402
from bskmq_jax.hardware.system import AREA_PARTS, ENERGY_PARTS  # noqa: E402
from bskmq_jax.io import save_figure  # noqa: E402

_COLORS = dict(zip(ADC_KINDS, plt.get_cmap("tab10").colors))


def adc_figure(rows: list[dict], path, sharing: int = 1, title: str = "ADC forms"):
    """Area per column, energy per conversion and conversion time vs bits, one line per form.

    Args:
      rows: `adc_table.adc_rows` output; only rows with ``sharing`` are drawn.
      path: output PNG (written atomically).
    """
    panels = (("area_per_column_um2", "area per column (um$^2$)"), ("energy_fj", "energy / conversion (fJ)"),
              ("time_ns", "conversion time (ns)"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for kind in dict.fromkeys(r["adc"] for r in rows):
        sel = sorted((r for r in rows if r["adc"] == kind and r["sharing"] == sharing), key=lambda r: r["bits"])
        if not sel:
            continue
        style = "-" if kind in NONLINEAR_KINDS else "--"
        lw = 2.5 if kind == "nl_inmem" else 1.2
        for ax, (key, label) in zip(axes, panels):
            ax.plot([r["bits"] for r in sel], [r[key] for r in sel], style, marker="o", lw=lw, color=_COLORS[kind], label=kind)
            ax.set_yscale("log")
            ax.set_xlabel("ADC bits")
            ax.set_ylabel(label)
    bits = sorted({r["bits"] for r in rows})
    for ax in axes:
        ax.set_xticks(bits)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{title} ({sharing} column{'s' if sharing > 1 else ''} per ADC; dashed: linear forms)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def breakdown_figure(results: dict, path, title: str = "Energy and area breakdown"):
    """Stacked bars of energy (uJ) and area (mm^2) per part, one bar per chip.

    Args:
      results: ``{label: SystemResult}``.
    """
    labels = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    cmap = plt.get_cmap("tab10").colors
    for ax, parts, attr, scale, unit in (
        (axes[0], ENERGY_PARTS, "energy_breakdown", 1e6, "energy per inference (uJ)"),
        (axes[1], AREA_PARTS, "area_breakdown", 1e6, "area (mm$^2$)"),
    ):
        bottom = np.zeros(len(labels))
        for i, part in enumerate(parts):
            vals = np.array([getattr(results[k], attr)[part] * scale for k in labels])
            ax.bar(range(len(labels)), vals, bottom=bottom, color=cmap[i % 10], label=part)
            bottom += vals
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels([results[k].chip.name for k in labels], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(unit)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def sweep_figure(sweep: dict, path, front=None, mark=None, title: str = "Design sweep"):
    """Energy vs latency of every valid design point, coloured by ADC form.

    Args:
      sweep: `sweep.run_sweep` output.
      front: optional boolean mask of Pareto points to connect.
      mark: optional ``(energy_j, latency_s, label)`` to highlight.
    """
    g, r = sweep["grid"], sweep["results"]
    v = r["valid"]
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for code, kind in enumerate(ADC_KINDS):
        sel = v & (g["adc_kind"] == code)
        if sel.any():
            ax.scatter(r["latency_s_total"][sel] * 1e3, r["energy_j"][sel] * 1e6, s=4, alpha=0.35, color=_COLORS[kind], label=kind)
    if front is not None and front.any():
        idx = np.flatnonzero(front)
        idx = idx[np.argsort(r["latency_s_total"][idx])]
        ax.plot(r["latency_s_total"][idx] * 1e3, r["energy_j"][idx] * 1e6, "k-", lw=1.5, label="Pareto front")
    if mark is not None:
        ax.scatter([mark[1] * 1e3], [mark[0] * 1e6], marker="*", s=250, color="k", zorder=5, label=mark[2])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("latency per inference (ms)")
    ax.set_ylabel("energy per inference (uJ)")
    ax.legend(fontsize=7, markerscale=3)
    ax.set_title(f"{title}: {sweep['valid']} valid of {sweep['points']} points")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def pareto_accuracy_figure(points: dict, path, seed=None, metric: str = "accuracy", title: str = "Accuracy vs energy"):
    """Accuracy vs energy per quantization method, with each method's Pareto front.

    Args:
      points: `sweep.accuracy_energy_points` output.
      seed: optional ``(energy_j, accuracy or None, label)`` of the seed's operating point.
    """
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    cmap = plt.get_cmap("tab10").colors
    for i, (method, pts) in enumerate(points.items()):
        e = np.array([p["energy_j"] for p in pts]) * 1e6
        a = np.array([p["accuracy"] for p in pts])
        ax.scatter(e, a, color=cmap[i % 10], label=method, zorder=3)
        for p, x, y in zip(pts, e, a):
            ax.annotate(f"{p['bits']}b", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        on = np.array([p["on_front"] for p in pts])
        if on.any():
            order = np.argsort(e[on])
            ax.plot(e[on][order], a[on][order], "-", color=cmap[i % 10], lw=1.2)
    if seed is not None:
        if seed[1] is None:
            ax.axvline(seed[0] * 1e6, color="k", ls=":", label=seed[2])
        else:
            ax.scatter([seed[0] * 1e6], [seed[1]], marker="*", s=250, color="k", zorder=5, label=seed[2])
    ax.set_xscale("log")
    ax.set_xlabel("energy per inference (uJ, best design on the sweep grid)")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
