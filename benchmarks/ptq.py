"""PTQ sweep cost against its floor: is fitting negligible next to evaluation?

Run:  .venv/bin/python benchmarks/ptq.py [--repeats 3]

The digits ResNet-18 of the main job (trained on first use, cached under
checkpoints/). One PTQ sweep with one calibration set: float baseline,
held-out statistics, calibration, 6 methods x 3 bit widths fitted, 18
quantized evaluations and per-layer errors (`bskmq_jax.ptq.sweep`). The peer
in the same run is the floor any PTQ sweep pays: one calibration pass plus 18
float evaluations of the same data. Both are timed warm (after one untimed
run that compiles everything), best of ``--repeats``. Goal: ratio <= 1.5.

``--eval-repeat 10`` tiles the test set 10x (5,000 images) to show how the
ratio falls as evaluation grows while fitting stays fixed.

Prints a Markdown table and writes results/bench_ptq[_xN].{md,json}.
"""

from __future__ import annotations

import argparse
import os
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eval-repeat", type=int, default=1,
                    help="tile the 500 test images this many times (shows how the ratio falls with evaluation size)")
    ap.add_argument("--out", default="results")
    args = ap.parse_args(argv)

    from flax import nnx

    from bskmq_jax.cli import enable_compilation_cache
    from bskmq_jax.io import markdown_table, write_json, write_text
    from bskmq_jax.ptq import calibrate, run, sweep
    from bskmq_jax.ptq_job import ALL_METHODS, PTQJobConfig, _load, _subset, versions

    enable_compilation_cache()
    cfg = PTQJobConfig()
    model, task, calib, evals, _, _ = _load(cfg, progress=True)
    if args.eval_repeat > 1:
        import dataclasses

        import numpy as np

        evals = dataclasses.replace(evals, arrays={k: np.concatenate([v] * args.eval_repeat) for k, v in evals.arrays.items()})
    calib_set = _subset(calib, cfg.batch_size * cfg.calib_batches, 0)
    step = nnx.jit(task.step)

    def floor():
        calibrate(model, calib_set, step, progress=False, jit=False)
        for _ in range(len(ALL_METHODS) * 3):
            run(model, evals, step, progress=False)

    def full():
        return sweep(model, task, [calib_set], evals, methods=ALL_METHODS, bits=(2, 3, 4), progress=False)[0]

    full()  # compiles every program once
    floor()
    t_floor, t_full, timing = [], [], None
    for _ in range(args.repeats):
        t = time.perf_counter()
        floor()
        t_floor.append(time.perf_counter() - t)
        t = time.perf_counter()
        s = full()
        t_full.append(time.perf_counter() - t)
        if t_full[-1] == min(t_full):
            timing = s["timing"]
    ratio = min(t_full) / min(t_floor)
    rows = [["calibration pass + 18 float evaluations (floor)", min(t_floor)],
            ["PTQ sweep: 6 methods x 3 bits, 1 calibration set", min(t_full)]]
    rows += [[f"  of which {k}", v] for k, v in timing.items()]
    md = markdown_table([f"digits ResNet-18 ({evals.num_examples} evaluation images)", "seconds"], rows)
    md += f"\nratio sweep / floor: {ratio:.2f} (goal <= 1.5); {os.cpu_count()} CPU cores\n"
    print(md)
    stem = "bench_ptq" + (f"_x{args.eval_repeat}" if args.eval_repeat > 1 else "")
    write_text(os.path.join(args.out, stem + ".md"), md)
    write_json(os.path.join(args.out, stem + ".json"), {"floor_s": t_floor, "sweep_s": t_full, "ratio": ratio,
                                                            "timing": timing, "versions": versions()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
