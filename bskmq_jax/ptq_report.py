"""Reports of a PTQ result: Markdown tables, plots and ``results.json``.

Plots (matplotlib, Agg):

- ``accuracy_vs_bits.png``: the task metric against NL-ADC bits per method
  (mean with the standard deviation over calibration sets as error bars),
  with the float model as a line;
- ``layer_error.png``: per-layer relative MSE (held-out data) per method,
  one panel per bit width;
- ``levels_<layer>.png``: the held-out histogram of the three most-quantized
  layers (largest mean relative MSE over methods at the middle bit width)
  with each method's levels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bskmq_jax.io import markdown_table, write_json, write_text

__all__ = ["tables", "write_report", "most_quantized_layers"]


def _pm(mean: float, std: float, scale: float) -> str:
    return f"{scale * mean:.2f} ± {scale * std:.2f}"


def tables(res: dict) -> str:
    """The Markdown report of a result: task metrics per method and bits, and mean layer errors."""
    bits = sorted({int(b) for per in res["results"].values() for b in per})
    keys = list(res["float"])
    cfg = res["config"]
    lines = [f"## PTQ: {cfg['model']} on {res['dataset']} ({cfg['in_bits']}/{cfg['w_bits']}-bit inputs/weights, {cfg['mode']})",
             "",
             f"Calibration: {res['data']['calibration']} ({res['data']['calibration_examples_per_set']} examples per set, "
             f"{res['calibration_sets']} sets); evaluation: {res['data']['evaluation']} "
             f"({res['data']['evaluation_examples']} examples); disjoint. Mean ± std over calibration sets.",
             ""]
    for k in keys:
        s = 100.0 if k in ("top1", "top5") else 1.0
        header = ["method"] + [f"{b}-bit {k}{' (%)' if s == 100.0 else ''}" for b in bits]
        rows = [["float"] + [f"{s * res['float'][k]:.2f}" if s == 100.0 else f"{res['float'][k]:.4f}"] * len(bits)]
        for m, per in res["results"].items():
            rows.append([m] + [(_pm(per[str(b)]["mean"][k], per[str(b)]["std"][k], s) if s == 100.0 else
                                f"{per[str(b)]['mean'][k]:.4f} ± {per[str(b)]['std'][k]:.4f}") if str(b) in per else "-"
                               for b in bits])
        lines += [markdown_table(header, rows)]
    header = ["method"] + [f"{b}-bit rel. MSE" for b in bits] + [f"{b}-bit interior rel. MSE" for b in bits]
    rows = []
    for m, per in res["results"].items():
        row = [m]
        for key in ("rel_mse", "interior_rel_mse"):
            for b in bits:
                layers = per.get(str(b), {}).get("layers", {})
                vals = [v[key] for v in layers.values() if key in v]
                row.append(float(np.mean(vals)) if vals else "-")
        rows.append(row)
    lines += ["Mean over layers of the per-layer quantization error on held-out data (docs/metrics.md):", "",
              markdown_table(header, rows)]
    return "\n".join(lines)


def most_quantized_layers(res: dict, bits: int, n: int = 3) -> list[str]:
    """The ``n`` layers with the largest mean relative MSE over methods at ``bits``."""
    errs: dict[str, list[float]] = {}
    for per in res["results"].values():
        for layer, e in per.get(str(bits), {}).get("layers", {}).items():
            errs.setdefault(layer, []).append(e["rel_mse"])
    return sorted(errs, key=lambda k: -float(np.mean(errs[k])))[:n]


def _accuracy_figure(res: dict, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bskmq_jax.io import save_figure

    metric = res["metric"]
    s = 100.0 if metric == "top1" else 1.0
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, per in res["results"].items():
        bits = sorted(int(b) for b in per)
        mean = [s * per[str(b)]["mean"][metric] for b in bits]
        std = [s * per[str(b)]["std"][metric] for b in bits]
        ax.errorbar(bits, mean, yerr=std, marker="o", capsize=3, label=m)
    ax.axhline(s * res["float"][metric], color="k", ls="--", lw=1, label="float")
    ax.set_xlabel("NL-ADC bits")
    ax.set_ylabel(f"{metric}{' (%)' if s == 100.0 else ''}")
    ax.set_xticks(sorted({int(b) for per in res["results"].values() for b in per}))
    ax.set_title(f"{res['config']['model']} on {res['dataset']}: PTQ")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def _layer_error_figure(res: dict, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bskmq_jax.io import save_figure

    bits = sorted({int(b) for per in res["results"].values() for b in per})
    first = next(iter(res["results"].values()))
    layers = list(first[str(bits[0])]["layers"])
    fig, axes = plt.subplots(len(bits), 1, figsize=(max(6, 0.28 * len(layers) + 2), 2.4 * len(bits) + 0.8),
                             sharex=True, squeeze=False)
    x = np.arange(len(layers))
    for ax, b in zip(axes[:, 0], bits):
        for m, per in res["results"].items():
            ls = per.get(str(b), {}).get("layers", {})
            ax.plot(x, [ls.get(n, {}).get("rel_mse", np.nan) for n in layers], marker=".", label=m)
        ax.set_yscale("log")
        ax.set_ylabel(f"{b}-bit rel. MSE")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=3)
    axes[-1, 0].set_xticks(x, layers, rotation=90, fontsize=6)
    fig.suptitle(f"{res['config']['model']}: per-layer error on held-out data")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def _levels_figures(res: dict, extras: dict, out: Path) -> list[str]:
    import jax

    from bskmq_jax.plots import levels_figure
    from bskmq_jax.stats import points_from_stats

    bits = sorted({int(b) for per in res["results"].values() for b in per})
    b = bits[len(bits) // 2]
    held = extras["held_out"]
    written = []
    for layer in most_quantized_layers(res, b):
        s = held[layer]
        pts = jax.tree_util.tree_map(lambda a: np.asarray(a[0]), points_from_stats(s, s.lo, s.hi, clamp=False))
        # Expand the histogram slots back into samples for the plot: a few
        # thousand representative points per layer, weighted by count.
        w = pts.w / max(pts.w.sum(), 1)
        x = np.repeat(pts.x, np.round(w * 20000).astype(int))
        fits = {}
        for m, per in extras["fits"].items():
            nl = per[b][layer]
            fits[m] = {"levels": np.asarray(nl.levels).ravel(), "thresholds": np.asarray(nl.thresholds).ravel(),
                       "mse": res["results"][m][str(b)]["layers"][layer]["mse"]}
        lo, hi = res["ranges"][layer]
        name = layer.replace(".", "_")
        levels_figure(x, fits, f"{layer}: held-out activations and {b}-bit levels", out / f"levels_{name}.png",
                      lo=lo, hi=hi)
        written.append(f"levels_{name}.png")
    return written


def write_report(res: dict, extras: dict, out_dir, *, plots: bool = True) -> dict:
    """Writes ``results.md``, the plots and (last) ``results.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = ["results.json", "results.md"]
    if plots:
        _accuracy_figure(res, out / "accuracy_vs_bits.png")
        _layer_error_figure(res, out / "layer_error.png")
        files += ["accuracy_vs_bits.png", "layer_error.png", *_levels_figures(res, extras, out)]
    res["files"] = files
    write_text(out / "results.md", tables(res) + "\n")
    # results.json last: a directory with it is complete
    write_json(out / "results.json", res)
    return res
