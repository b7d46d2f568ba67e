"""Forward time of every model: float vs fused 3-bit NL-ADC, on CPU at a small batch.

Run:  .venv/bin/python benchmarks/models.py [--models resnet18,bert] [--batch 2]

For each model: build it with a fused 6/4/3b crossbar config (8-bit DAC on the
first layer's signed input is not special-cased), run one calibration batch,
fit linear levels for every layer (the level values do not change the cost),
then time the jitted forward in float mode and in quantized mode (best of 3
after a warm-up call; compile time excluded). Bar: quantized <= 2.5x float.

Prints a Markdown table and writes results/bench_models.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

INPUTS = {
    "resnet18": ("image", (224, 224, 3)),
    "vgg16": ("image", (224, 224, 3)),
    "vgg16_bn": ("image", (224, 224, 3)),
    "inception_v3": ("image", (299, 299, 3)),
    "distilbert": ("tokens", 64),
    "bert": ("tokens", 64),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(INPUTS))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--out", default="results")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    from flax import nnx

    import bskmq_jax as bq
    from bskmq_jax import imc, io, models, ptq

    cfg = bq.IMCConfig(in_bits=6, w_bits=4, adc_bits=3)
    rows, raw, ok = [], {}, True
    for name in args.models.split(","):
        kind, shape = INPUTS[name]
        # Eval mode never runs Inception's aux head: keep it digital (unconverted).
        quant = models.QuantSpec(cfg, overrides=(("AuxLogits.*", None),)) if name == "inception_v3" else cfg
        m = models.create(name, num_classes=1000 if kind == "image" else None, quant=quant)
        m.eval()
        rng = np.random.default_rng(0)
        if kind == "image":
            batch = jnp.asarray(rng.normal(size=(args.batch, *shape)).astype(np.float32))

            def fwd(mod, b):
                return mod(b)
        else:
            batch = jnp.asarray(rng.integers(1000, 20000, size=(args.batch, shape)).astype(np.int32))

            def fwd(mod, b):
                out = mod(b)
                return out[0] if isinstance(out, tuple) else out

        stats = ptq.calibrate(m, [batch], fwd, progress=False)
        imc.load_levels(m, ptq.fit_all(stats, ["linear"], [3], progress=False)["linear"][3])
        step = nnx.jit(fwd)
        times = {}
        for mode in ("float", "quantized"):
            imc.set_mode(m, mode)
            jax.block_until_ready(step(m, batch))
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                jax.block_until_ready(step(m, batch))
                ts.append(time.perf_counter() - t0)
            times[mode] = min(ts)
        ratio = times["quantized"] / times["float"]
        ok &= ratio <= 2.5
        rows.append([name, times["float"] * 1e3, times["quantized"] * 1e3, ratio, "met" if ratio <= 2.5 else "NOT met"])
        raw[name] = {**times, "ratio": ratio, "layers": len(stats)}
        del m, step
        jax.clear_caches()
    table = io.markdown_table(["model", "float ms", "fused 6/4/3b ms", "ratio", "bar <= 2.5x"], rows)
    info = f"batch {args.batch}; {os.cpu_count()} CPUs; jax {jax.__version__}"
    print(info)
    print(table)
    io.write_text(os.path.join(args.out, "bench_models.md"), f"{info}\n\n{table}")
    io.write_json(os.path.join(args.out, "bench_models.json"), {"info": info, "results": raw, "bars_met": bool(ok)})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
