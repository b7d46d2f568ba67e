"""``bskmq levels``: fit every method to a distribution and compare by every metric.

Example::

    bskmq levels --dist relu_clamp --bits 3 --out results/levels

Writes ``results.json`` (config, versions, levels, metrics), ``results.md``
(one table per distribution and bit width) and ``levels_<dist>_<b>b.png``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

METRICS = ("mse", "interior_mse", "sqnr_db", "max_abs", "entropy_bits", "used_levels")


def _int_list(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def add_parser(sub) -> None:
    p = sub.add_parser(
        "levels",
        help="compare level-fitting methods on a distribution",
        description="Fit NL-ADC levels with every method and report every error metric.",
    )
    p.add_argument("--dist", default="relu_clamp", help="comma-separated: gaussian, laplace, relu_clamp, gelu, or FILE.npy (default relu_clamp)")
    p.add_argument("--bits", type=_int_list, default=[2, 3, 4], help="comma-separated ADC bits (default 2,3,4)")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: all)")
    p.add_argument("--samples", type=int, default=1_000_000, help="samples drawn from a built-in distribution (default 1e6)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling and k-means++ (default 0)")
    p.add_argument("--lo", type=float, default=None, help="ADC range start (default: the distribution's, else the data min)")
    p.add_argument("--hi", type=float, default=None, help="ADC range end (default: the distribution's, else the data max)")
    p.add_argument("--no-clamp", dest="clamp", action="store_false", help="fit on raw samples instead of samples clamped to [lo, hi]")
    p.add_argument("--mode", default=None, help="BS-KMQ suppression mode: drop, equalize or clip (default: the library default)")
    p.add_argument("--out", default="results/levels", help="output folder (default results/levels)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNGs")
    p.set_defaults(run=run)


def load_npy(path: str) -> np.ndarray:
    """Loads a user's activation dump as one flattened float32 layer, or raises ValueError."""
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file (give a built-in distribution name or an existing .npy file)")
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises several types for corrupt files
        raise ValueError(f"{path}: not a readable .npy file ({type(e).__name__}: {e}); save activations with np.save") from None
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{path}: holds an archive, not one array; save a single array with np.save")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{path}: dtype {x.dtype} is not floating; activations must be float (x.astype(np.float32))")
    if x.size == 0:
        raise ValueError(f"{path}: the array is empty")
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise ValueError(f"{path}: {bad} of {x.size} values are NaN or Inf; remove them (x[np.isfinite(x)]) first")
    return x.reshape(-1).astype(np.float32)


def _sources(args):
    from bskmq_jax.distributions import sample

    for name in [d.strip() for d in args.dist.split(",") if d.strip()]:
        if name.endswith(".npy") or os.path.sep in name:
            yield Path(name).stem, load_npy(name), None, None
        else:
            x, lo, hi = sample(name, args.samples, args.seed)
            yield name, x, lo, hi


def run(args) -> int:
    import jax
    from tqdm import tqdm

    import bskmq_jax as bq
    from bskmq_jax import io
    from bskmq_jax.metrics import quant_error

    methods = args.methods.split(",") if args.methods else list(bq.METHODS)
    for m in methods:
        if m not in bq.METHODS:
            raise ValueError(f"--methods: unknown method {m!r}; known: {','.join(bq.METHODS)}")
    for b in args.bits:
        if not 1 <= b <= 8:
            raise ValueError(f"--bits: {b} is outside 1..8")
    if args.lo is not None and args.hi is not None and args.lo >= args.hi:
        raise ValueError(f"--lo/--hi: lo={args.lo} must be below hi={args.hi}")
    sources = list(_sources(args))  # validates every input before any work
    out = Path(args.out)
    key = jax.random.key(args.seed)
    results, md = [], [f"# bskmq levels\n\nclamp={args.clamp}, seed={args.seed}\n"]
    bar = tqdm(total=len(sources) * len(args.bits) * len(methods), desc="fitting", unit="fit", disable=None)
    for name, x, dlo, dhi in sources:
        lo = args.lo if args.lo is not None else dlo
        hi = args.hi if args.hi is not None else dhi
        for bits in args.bits:
            rows, fits = [], {}
            for m in methods:
                opts = {"mode": args.mode} if (m == "bs_kmq" and args.mode) else {}
                t0 = time.perf_counter()
                nl = jax.block_until_ready(bq.fit_levels(x, method=m, bits=bits, lo=lo, hi=hi, key=key, clamp=args.clamp, **opts))
                dt = time.perf_counter() - t0
                err = quant_error(x, nl, clamp=args.clamp).as_dict()
                results.append(
                    {"dist": name, "bits": bits, "method": m, "options": opts, "levels": nl.levels, "thresholds": nl.thresholds,
                     "lo": float(nl.lo), "hi": float(nl.hi), "metrics": err, "fit_seconds": dt}
                )
                rows.append([m, *(err[k] for k in METRICS), dt])
                fits[m] = {"levels": np.asarray(nl.levels), "thresholds": np.asarray(nl.thresholds), "mse": err["mse"]}
                bar.update()
            table = io.markdown_table(["method", *METRICS, "fit_s (incl. compile)"], rows)
            md.append(f"\n## {name}, {bits} bits (N={x.size}, range [{float(nl.lo):.4g}, {float(nl.hi):.4g}])\n\n{table}")
            bar.write(f"\n{name}, {bits} bits\n{table}")
            if args.plots:
                from bskmq_jax.plots import levels_figure

                levels_figure(
                    x, fits, f"{name}, {bits}-bit levels", out / f"levels_{name}_{bits}b.png", lo=float(nl.lo), hi=float(nl.hi)
                )
    bar.close()
    config = {k: v for k, v in vars(args).items() if k != "run"}
    io.write_json(
        out / "results.json",
        {"command": "levels", "config": config, "versions": versions(), "results": results},
    )
    io.write_text(out / "results.md", "".join(md))
    print(f"wrote {out}/results.json, results.md" + (" and PNGs" if args.plots else ""))
    return 0


def versions() -> dict:
    """Versions of the packages that determine the numbers."""
    import flax
    import jax

    import bskmq_jax

    return {
        "bskmq_jax": bskmq_jax.__version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
    }
