"""Fit resolution: how many histogram bins the PTQ fits need (the ``fit_bins`` default).

Run here (about 1 minute after the digits model is cached)::

    .venv/bin/python experiments/fit_resolution.py --out results/fit_resolution

The main job's digits ResNet-18 is calibrated once (125 images; statistics
with 4096 bins per layer). Every method is fitted at 2, 3 and 4 bits on the
statistics merged to ``fit_bins`` bins (`bskmq_jax.stats.coarsen`), for
several ``fit_bins`` (``none``: all 4096). For each, the table gives the warm
wall time of fitting all 18 (method, bits) level sets of all layers
(`bskmq_jax.ptq.fit_all`, best of 3) and, on held-out statistics (a
calibration pass over the 500 test images, at full resolution), the mean
relative MSE over layers and methods, and per method the worst relative
change of one layer's MSE (any bit width) against the full-resolution fit. Writes ``OUT/fit_resolution.{md,json}``.
"""

from __future__ import annotations

import argparse
import os
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit-bins", default="none,2048,1024,512,256", help="comma-separated; none = all 4096")
    ap.add_argument("--out", default="results/fit_resolution")
    args = ap.parse_args(argv)

    import jax
    import numpy as np
    from flax import nnx

    from bskmq_jax.cli import enable_compilation_cache
    from bskmq_jax.io import markdown_table, write_json, write_text
    from bskmq_jax.ptq import calibrate, fit_all, layer_errors_many
    from bskmq_jax.ptq_job import ALL_METHODS, PTQJobConfig, _load, _subset, versions

    enable_compilation_cache()
    cfg = PTQJobConfig()
    model, task, calib, evals, _, _ = _load(cfg, progress=True)
    step = nnx.jit(task.step)
    stats = calibrate(model, _subset(calib, cfg.batch_size * cfg.calib_batches, 0), step, progress=False, jit=False)
    held = calibrate(model, evals, step, progress=False, jit=False)
    bits = (2, 3, 4)
    grid = [None if v.strip().lower() == "none" else int(v) for v in args.fit_bins.split(",")]
    mse, seconds = {}, {}
    for fb in grid:
        def fit():
            return jax.block_until_ready(fit_all(stats, ALL_METHODS, bits, key=jax.random.key(0), progress=False, fit_bins=fb))

        fits = fit()  # compiles
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fit()
            times.append(time.perf_counter() - t)
        seconds[fb] = min(times)
        mse[fb] = {(m, b, n): e["rel_mse"] for b in bits
                   for m, per in layer_errors_many(held, {m: fits[m][b] for m in ALL_METHODS}).items() for n, e in per.items()}
    full = mse[grid[0]]
    rows, js = [], {}
    for fb in grid:
        change = {m: max(abs(mse[fb][k] / full[k] - 1.0) for k in full if k[0] == m) for m in ALL_METHODS}
        per_bits = {b: float(np.mean([v for (m, bb, n), v in mse[fb].items() if bb == b])) for b in bits}
        rows.append([fb or "none (4096)", seconds[fb], *per_bits.values(), *(f"{100 * c:.2f}%" for c in change.values())])
        js[str(fb)] = {"fit_seconds": seconds[fb], "mean_rel_mse": per_bits, "worst_layer_change": change}
    md = markdown_table(["fit_bins", "fit all 18 level sets (s)", *[f"mean rel. MSE {b}b" for b in bits],
                         *[f"worst layer change {m}" for m in ALL_METHODS]], rows)
    text = (f"# Fit resolution (digits ResNet-18, {len(stats)} layers, {os.cpu_count()} CPU cores)\n\n{md}\n"
            "Relative MSE: held-out MSE / mean square of the layer's values, averaged over layers and methods.\n")
    write_text(os.path.join(args.out, "fit_resolution.md"), text)
    write_json(os.path.join(args.out, "fit_resolution.json"), {"results": js, "versions": versions()})
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
