"""Accuracy checks behind docs/metrics.md: binned fitting vs the raw samples.

Command (about 1 minute on 2 CPU cores)::

    .venv/bin/python experiments/fitting_accuracy.py --out results/fitting_accuracy

1. Lloyd-Max on a 1M-sample unit Laplacian at 4 bits (seed 0), MSE relative to the
   textbook optimum 0.01537: on point-mass bins (4096 and 65536 bins), on spread bins
   (the library), after 100 and after 1000 iterations, and a float64 numpy Lloyd-Max
   on the raw samples.
2. kmeans_exact vs the best other method on raw-sample MSE, every built-in
   distribution, clamp on/off, 2 and 3 bits (as in the test suite).
3. Fitting from CalibrationStats vs from raw samples, full-MSE ratio deviation.
"""

from __future__ import annotations

import argparse

import numpy as np


def lloyd_f64(x: np.ndarray, k: int, iters: int) -> np.ndarray:
    """Reference Lloyd-Max in float64 on sorted raw samples (prefix sums)."""
    x = np.sort(x.astype(np.float64))
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    lv = np.linspace(x[0], x[-1], k)
    for _ in range(iters):
        t = (lv[1:] + lv[:-1]) / 2
        idx = np.concatenate([[0], np.searchsorted(x, t, "left"), [len(x)]])
        n = np.diff(idx)
        s = c1[idx[1:]] - c1[idx[:-1]]
        lv = np.where(n > 0, s / np.maximum(n, 1), lv)
    return lv


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/fitting_accuracy")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp

    import bskmq_jax as bq
    from bskmq_jax import io
    from bskmq_jax import stats as st
    from bskmq_jax.distributions import DISTRIBUTIONS, sample
    from bskmq_jax.metrics import quant_error
    from bskmq_jax.quantizers import FitConfig, LloydMaxConfig, fit_points, layer_keys, prepare_points

    out = {}
    rng = np.random.default_rng(0)
    x = rng.laplace(0.0, 1.0 / np.sqrt(2.0), 1_000_000).astype(np.float32)
    rel = lambda nl: float(quant_error(x, nl, clamp=False).mse) / 0.01537 - 1  # noqa: E731
    part1 = {}
    for bins in (4096, 65536):
        common = FitConfig(bins=bins)
        pts, lo, hi, _ = prepare_points(jnp.asarray(x)[None], None, None, None, common=common)
        point_mass = pts.replace(half_width=jnp.zeros_like(pts.half_width))
        lv, th = fit_points(point_mass, lo, hi, layer_keys(None, 1, False), method="lloyd_max", bits=4,
                            common=common, cfg=LloydMaxConfig(max_iter=1000))
        part1[f"point-mass bins, {bins}"] = rel(bq.NLLevels(lv[0], th[0], lo[0], hi[0], bits=4))
    part1["spread bins (library), 100 iterations"] = rel(bq.fit_levels(x, method="lloyd_max", bits=4, max_iter=100))
    part1["spread bins (library), 1000 iterations"] = rel(bq.fit_levels(x, method="lloyd_max", bits=4))
    part1["float64 numpy on raw samples, 1000 iterations"] = rel(bq.NLLevels.from_levels(lloyd_f64(x, 16, 1000)))
    part1["kmeans_exact (library)"] = rel(bq.fit_levels(x, method="kmeans_exact", bits=4))
    out["lloyd_max_laplace_4bit_excess_over_textbook"] = part1

    part2 = {}
    for dist in DISTRIBUTIONS:
        xs, lo, hi = sample(dist, 200_000, seed=3)
        if lo is None:
            lo, hi = float(np.quantile(xs, 0.01)), float(np.quantile(xs, 0.99))
        for clamp in (True, False):
            for bits in (2, 3):
                errs = {m: float(quant_error(xs, bq.fit_levels(xs, method=m, bits=bits, lo=lo, hi=hi, clamp=clamp), clamp=clamp).mse)
                        for m in bq.METHODS}
                best_other = min(v for m, v in errs.items() if m != "kmeans_exact")
                part2[f"{dist}, clamp={clamp}, {bits} bits"] = errs["kmeans_exact"] / best_other - 1
    out["kmeans_exact_excess_over_best_other_method"] = part2

    part3 = {}
    for dist in ("relu_clamp", "gelu", "gaussian"):
        xs, lo, hi = sample(dist, 1_000_000, seed=5)
        x2 = xs[None]
        s = st.init_stats_from_batch(x2[:, :100_000], lo=lo, hi=hi, margin=0.05)
        for chunk in np.split(x2, 10, axis=1):
            s = st.update(s, chunk)
        for m in bq.METHODS:
            for bits in (2, 3, 4):
                a = float(quant_error(x2, st.fit_levels_from_stats(s, method=m, bits=bits)).mse[0])
                b = float(quant_error(x2, bq.fit_levels(x2, method=m, bits=bits, lo=s.lo, hi=s.hi)).mse[0])
                part3[m] = max(part3.get(m, 0.0), abs(a / b - 1))
    out["stats_vs_samples_worst_relative_mse_deviation"] = part3

    lines = [f"# Fitting accuracy (jax {jax.__version__})\n"]
    for section, vals in out.items():
        lines.append(f"\n## {section}\n\n" + io.markdown_table(["case", "value"], [[k, f"{v:+.3e}"] for k, v in vals.items()]))
    text = "".join(lines)
    print(text)
    io.write_text(f"{args.out}/fitting_accuracy.md", text)
    io.write_json(f"{args.out}/fitting_accuracy.json", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
