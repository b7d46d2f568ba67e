"""NL-ADC and crossbar-conv speed and memory against plain JAX baselines.

Run:  .venv/bin/python benchmarks/adc.py [--values 67108864] [--batch 32]

1. `nl_adc` at 3 bits on 64M float32 values, jitted, against `jnp.clip` on the
   same array (the cheapest possible elementwise conversion):
   bars <= 2x without noise, <= 3x with per-conversion noise, and the STE
   backward pass (the VJP alone) <= 3x.
2. `IMCConv` (functional `imc_conv` + NL-ADC), 3x3, 256 -> 256 channels,
   16x16 maps, batch 32, against plain `lax.conv_general_dilated`:
   fused mode <= 3x; partial_sum reported. Also the im2col formulation of the
   fused product, which decided the implementation (`lax.conv` vs im2col).
3. Peak memory of that IMCConv vs plain conv, from XLA's compiled memory
   analysis (arguments + outputs + temporaries): bar <= 3x.

Prints Markdown tables and writes results/bench_adc.{md,json}. Times are the
best of 5 after a warm-up call.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def best_of(fn, *args, repeats: int = 5) -> float:
    import jax

    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    return min(ts)


def peak_bytes(fn, *args) -> int:
    """Arguments + outputs + temporaries of the compiled function (XLA's analysis)."""
    import jax

    m = jax.jit(fn).lower(*args).compile().memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--values", type=int, default=64 * 1024 * 1024)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default="results")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    from jax import lax

    import bskmq_jax as bq
    from bskmq_jax import io
    from bskmq_jax.adc import ADCConfig, nl_adc
    from bskmq_jax.imc import IMCConfig, imc_conv

    rows, raw, ok = [], {}, True
    x = jnp.asarray(np.random.default_rng(0).normal(size=args.values).astype(np.float32))
    nl = bq.NLLevels.from_levels(jnp.array([0.0, 0.1, 0.25, 0.45, 0.7, 1.0, 1.4, 2.0]), lo=0.0, hi=2.0)
    t_clip = best_of(jax.jit(lambda v: jnp.clip(v, 0.0, 2.0)), x)
    t_plain = best_of(jax.jit(lambda v: nl_adc(v, nl)), x)
    noisy = ADCConfig(noise_sigma=0.01)
    t_noise = best_of(jax.jit(lambda v, k: nl_adc(v, nl, cfg=noisy, key=k)), x, jax.random.key(1))
    _, vjp = jax.vjp(lambda v: nl_adc(v, nl), x)
    t_bwd = best_of(jax.jit(lambda g: vjp(g)[0]), jnp.ones_like(x))
    for name, t, bar in (("nl_adc 3b, ideal", t_plain, 2.0), ("nl_adc 3b, noise", t_noise, 3.0), ("nl_adc STE backward", t_bwd, 3.0)):
        rows.append([name, t * 1e3, t_clip * 1e3, t / t_clip, f"<= {bar}x", "met" if t / t_clip <= bar else "NOT met"])
        raw[name] = {"seconds": t, "clip_seconds": t_clip, "ratio": t / t_clip, "bar": bar}
        ok &= t / t_clip <= bar
    del x, vjp

    rng = np.random.default_rng(0)
    xc = jnp.asarray(np.maximum(rng.normal(size=(args.batch, 16, 16, 256)), 0).astype(np.float32))
    wc = jnp.asarray((rng.normal(size=(3, 3, 256, 256)) / 48).astype(np.float32))
    dn = ("NHWC", "HWIO", "NHWC")
    plain = lambda a, w: lax.conv_general_dilated(a, w, (1, 1), "SAME", dimension_numbers=dn)  # noqa: E731
    z = plain(xc, wc)
    nl_c = bq.fit_levels(jnp.asarray(z).reshape(-1)[:200_000], method="kmeans_exact", bits=3, lo=0.0, hi=float(jnp.max(z)))
    fused_cfg = IMCConfig(in_bits=6, w_bits=2, adc_bits=3, input_signed=False)
    psum_cfg = IMCConfig(in_bits=6, w_bits=2, adc_bits=3, input_signed=False, mode="partial_sum", bit_serial=True)
    fused = lambda a, w: nl_adc(imc_conv(a, w, cfg=fused_cfg), nl_c)  # noqa: E731
    psum = lambda a, w: jax.nn.relu(imc_conv(a, w, cfg=psum_cfg))  # noqa: E731

    def im2col_fused(a, w):
        from bskmq_jax.imc.quant import quantize_inputs, quantize_weights

        a_int, sa = quantize_inputs(a, 6, False)
        w_int, sw = quantize_weights(w, 2)
        p = lax.conv_general_dilated_patches(a_int, (3, 3), (1, 1), "SAME", dimension_numbers=dn)
        y = (p @ w_int.transpose(2, 0, 1, 3).reshape(-1, w.shape[-1])) * (sa * sw)
        return nl_adc(y, nl_c)

    t_conv = best_of(jax.jit(plain), xc, wc)
    m_conv = peak_bytes(plain, xc, wc)
    for name, fn, bar in (("IMCConv fused 6/2/3b (lax.conv)", fused, 3.0), ("IMCConv fused 6/2/3b (im2col)", im2col_fused, None),
                          ("IMCConv partial_sum 6/2/3b bit-serial", psum, None)):
        t = best_of(jax.jit(fn), xc, wc)
        m = peak_bytes(fn, xc, wc)
        met = "" if bar is None else ("met" if t / t_conv <= bar else "NOT met")
        rows.append([name, t * 1e3, t_conv * 1e3, t / t_conv, "" if bar is None else f"<= {bar}x", met])
        raw[name] = {"seconds": t, "conv_seconds": t_conv, "ratio": t / t_conv, "peak_bytes": m, "conv_peak_bytes": m_conv, "memory_ratio": m / m_conv}
        mem_bar = 3.0 if bar is not None else None
        rows.append([name + ", peak memory", m / 2**20, m_conv / 2**20, m / m_conv, "" if mem_bar is None else f"<= {mem_bar}x",
                     "" if mem_bar is None else ("met" if m / m_conv <= mem_bar else "NOT met")])
        if bar is not None:
            ok &= t / t_conv <= bar and m / m_conv <= 3.0
    header = ["case", "ours (ms or MiB)", "baseline (ms or MiB)", "ratio", "bar", "status"]
    table = io.markdown_table(header, rows)
    info = f"{args.values} values; conv batch {args.batch}; {os.cpu_count()} CPUs; jax {jax.__version__}"
    print(info)
    print(table)
    print("all bars", "MET" if ok else "NOT MET")
    io.write_text(os.path.join(args.out, "bench_adc.md"), f"{info}\n\n{table}")
    io.write_json(os.path.join(args.out, "bench_adc.json"), {"info": info, "results": raw, "bars_met": bool(ok)})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
