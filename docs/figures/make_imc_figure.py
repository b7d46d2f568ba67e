"""Draws docs/figures/imc_model.png: the ramp NL-ADC and the crossbar mapping.

Command::

    .venv/bin/python docs/figures/make_imc_figure.py

Panels: (a) one conversion: the reference ramp steps through the thresholds
of 3-bit BS-KMQ levels fitted to clip(relu(N(0,1)), 0, 2); the comparator
flips when the ramp passes the bitline value and the counter holds the code;
(b) the transfer function of that NL-ADC, ideal and on one simulated chip
with every non-ideality on; (c) kernel-wise mapping of a 3x3 conv with 64
input channels onto 256-row arrays, and where the ADCs sit in the two modes.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.patches as mpatches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bskmq_jax as bq  # noqa: E402
from bskmq_jax.adc import ADCConfig, chip_thresholds, nl_adc  # noqa: E402
from bskmq_jax.distributions import sample  # noqa: E402
from bskmq_jax.io import save_figure  # noqa: E402


def main() -> Path:
    x, lo, hi = sample("relu_clamp", 200_000, seed=0)
    nl = bq.fit_levels(x, method="bs_kmq", bits=3, lo=lo, hi=hi)
    t = np.asarray(nl.thresholds)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))

    ax = axes[0]
    v = 0.83  # bitline value
    steps = np.concatenate([[lo], t])
    ax.step(np.arange(len(steps) + 1), np.concatenate([steps, [hi]]), where="post", color="tab:blue", label="reference ramp")
    ax.axhline(v, color="tab:red", ls="--", label=f"bitline value {v}")
    code = int(np.sum(v >= t))
    ax.axvline(code + 1, color="k", lw=0.8)
    ax.annotate(f"comparator flips:\ncode {code} -> level {float(nl.levels[code]):.3f}", (code + 1, v), xytext=(code + 1.4, 0.2))
    ax.set_xlabel("ramp step (clock cycles; 2**bits per conversion)")
    ax.set_ylabel("analog value")
    ax.set_title("(a) one ramp conversion (3-bit BS-KMQ levels)")
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[1]
    grid = jnp.linspace(-0.3, 2.3, 2000)
    cfg = ADCConfig(ref_sigma=0.1, offset_sigma=0.01, noise_sigma=0.005, inl=0.02, saturation=0.3)
    ax.plot(grid, nl_adc(grid, nl), color="tab:blue", label="ideal (= quantize)")
    ax.plot(grid, nl_adc(grid, nl, cfg=cfg, key=jax.random.key(0), chip_key=jax.random.key(1)), color="tab:orange", lw=0.8,
            label="one chip: ref 10%, offset 1%, noise 0.5%,\nINL 2%, saturation 0.3")
    real = np.asarray(chip_thresholds(nl, nl.thresholds, cfg, jax.random.key(1)))
    ax.plot(real, np.full_like(real, -0.1), "|", color="tab:orange", ms=10)
    ax.plot(t, np.full_like(t, -0.15), "|", color="tab:blue", ms=10)
    ax.set_xlabel("ADC input (ReLU and clamp folded in: range [0, 2])")
    ax.set_ylabel("output level")
    ax.set_title("(b) transfer function; ticks: thresholds")
    ax.legend(fontsize=7, loc="upper left")

    ax = axes[2]
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    ax.axis("off")
    ax.set_title("(c) kernel-wise mapping, 3x3 conv, 64 -> N channels")
    for i, (rows, ch) in enumerate([(252, "ch 0-27"), (252, "ch 28-55"), (72, "ch 56-63")]):
        y0 = 7.2 - 2.6 * i
        h = 2.2 * rows / 256
        ax.add_patch(mpatches.Rectangle((0.5, y0 + 2.2 - h), 4.5, h, fc="#cde", ec="k"))
        ax.text(2.75, y0 + 1.1, f"array {i}: {rows} rows\n({ch} x 9 taps)", ha="center", va="center", fontsize=8)
        ax.annotate("", (6.0, y0 + 1.1), (5.0, y0 + 1.1), arrowprops=dict(arrowstyle="->"))
        ax.text(6.1, y0 + 1.1, "partial_sum: ADC per tile\n(per input bit, per slice)", fontsize=7, va="center")
    ax.text(0.5, 0.05, "fused (the seed's scheme): the column sums of all tiles are\ncombined in analog and converted once by the NL-ADC,\nwhich applies ReLU/clamp; N columns = N comparators",
            fontsize=8)

    fig.tight_layout()
    out = Path(__file__).with_name("imc_model.png")
    save_figure(fig, out, dpi=110)
    return out


if __name__ == "__main__":
    print(main())
