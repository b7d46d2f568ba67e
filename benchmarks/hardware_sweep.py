"""Design-sweep speed: one vectorised call against a plain Python loop over the same points.

Run:  .venv/bin/python benchmarks/hardware_sweep.py [--repeats 5] [--loop-points N] [--out DIR]

The grid is `bskmq hardware sweep`'s default (every ADC form x 1-8 bits x
4 row counts x 4 column counts x 6 sharing factors x 2 DAC widths x 2
accumulation modes = 21,504 points) on ResNet-18's 21 layers. The peer is
what a user would write without the vectorised model: a Python loop that
builds one `ChipConfig` per point and calls `evaluate` (invalid points
raise in the config and are skipped). ``--loop-points`` times the loop on
an evenly spaced subset and extrapolates. The loop's results are checked
against the vectorised ones. Bar: the sweep takes under 2 s on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np


def _best_of(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of the vectorised sweep (best is reported)")
    p.add_argument("--loop-points", type=int, default=0, help="points timed in the Python loop (0: all of them)")
    p.add_argument("--out", default=None, help="also write bench_hardware_sweep.{json,md} to this folder")
    args = p.parse_args(argv)

    from bskmq_jax import io
    from bskmq_jax.hardware import ADC_KINDS, AdcConfig, ChipConfig, evaluate, resnet18_imagenet_shapes
    from bskmq_jax.hardware.sweep import design_grid, run_sweep

    layers = resnet18_imagenet_shapes()
    base = ChipConfig()
    grid = design_grid(base)
    n = grid["adc_kind"].size
    run_sweep(layers, base, grid)  # warm-up
    t_vec = _best_of(lambda: run_sweep(layers, base, grid), args.repeats)
    sw = run_sweep(layers, base, grid)

    idx = np.arange(n) if args.loop_points <= 0 else np.linspace(0, n - 1, min(args.loop_points, n)).astype(int)
    energies, worst = {}, 0.0
    t0 = time.perf_counter()
    for i in idx:
        try:
            chip = dataclasses.replace(
                base, rows=int(grid["rows"][i]), cols=int(grid["cols"][i]), dac_bits=int(grid["dac_bits"][i]),
                accumulation="fused" if grid["fused"][i] else "partial_sum",
                adc=AdcConfig(kind=ADC_KINDS[int(grid["adc_kind"][i])], bits=int(grid["adc_bits"][i]), sharing=int(grid["sharing"][i])),
            )
        except ValueError:
            continue  # an invalid design point
        energies[int(i)] = evaluate(chip, layers).totals["energy_j"]
    t_loop = (time.perf_counter() - t0) * n / idx.size
    for i, e in energies.items():
        worst = max(worst, abs(e - sw["results"]["energy_j"][i]) / e)
    valid_loop = len(energies)
    agree = valid_loop == int(sw["results"]["valid"][idx].sum()) and worst < 1e-9

    rows = [
        ["Python loop over evaluate() (peer)" + ("" if idx.size == n else f", {idx.size} points timed, extrapolated"), n, t_loop, 1.0],
        ["vectorised sweep (one numpy call)", n, t_vec, t_loop / t_vec],
    ]
    table = io.markdown_table(["method", "design points", "seconds", "speedup vs loop"], rows)
    print(table)
    print(f"valid points: {sw['valid']}; loop and sweep agree: {agree} (max relative energy difference {worst:.2e})")
    print(f"bar: sweep under 2 s -> {'PASS' if t_vec < 2.0 else 'FAIL'}")
    if args.out:
        io.write_json(f"{args.out}/bench_hardware_sweep.json",
                      {"points": n, "valid": sw["valid"], "sweep_seconds": t_vec, "loop_seconds": t_loop,
                       "loop_points_timed": int(idx.size), "speedup": t_loop / t_vec, "agree": agree, "max_rel_diff": worst})
        io.write_text(f"{args.out}/bench_hardware_sweep.md", table)
    return 0 if (agree and t_vec < 2.0) else 1


if __name__ == "__main__":
    raise SystemExit(main())
