"""``bskmq hardware``: ADC comparison, system model and design sweep of IMC accelerators.

Examples::

    bskmq hardware adc --bits 3,4,5
    bskmq hardware system --model resnet18 --config 6/2/3 --adc nl_inmem --baseline isaac,neurosim,same_chip [--ptq DIR]
    bskmq hardware sweep --model resnet18 --config 6/2/3 [--accuracy DIR | results.json | accuracy.json]

Each writes ``results.json``, ``results.md`` and PNGs to ``--out``
(default ``results/hardware/<subcommand>``). Formulas and sources:
docs/hardware_model.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def _int_list(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def _common(p, sub: str) -> None:
    p.add_argument("--node", type=float, default=22.0, help="technology node in nm, 22..65 (default 22, NeuroSim's)")
    p.add_argument("--cell", default="sram", help="memory cell: sram (the seed's macro) or rram (default sram)")
    p.add_argument("--counter", default="per_column", help="ramp ADC counter: per_column or shared (default per_column)")
    p.add_argument("--extra-bits", type=int, default=2, help="SAR+LUT / NL-flash resolution above the NL bits (default 2)")
    p.add_argument("--out", default=f"results/hardware/{sub}", help=f"output folder (default results/hardware/{sub})")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNGs")


def add_parser(sub) -> None:
    p = sub.add_parser("hardware", help="hardware cost model: ADC forms, system simulation, design sweeps",
                       description="Area, energy and latency of IMC accelerators with linear and nonlinear ADCs.")
    hs = p.add_subparsers(dest="hw_command", required=True, metavar="WHAT")
    a = hs.add_parser("adc", help="compare ADC forms and NL-ADC areas", description="Every ADC form at each bit width.")
    a.add_argument("--bits", type=_int_list, default=[3, 4, 5], help="comma-separated ADC bits (default 3,4,5)")
    a.add_argument("--sharing", type=_int_list, default=[1, 8], help="comma-separated columns per ADC (default 1,8)")
    a.add_argument("--rows", type=int, default=128, help="array rows (default 128)")
    a.add_argument("--cols", type=int, default=128, help="array columns (default 128)")
    _common(a, "adc")
    a.set_defaults(run=run_adc)

    s = hs.add_parser("system", help="map a network onto a chip and compare with baselines",
                      description="Layer-by-layer latency, energy and area against ISAAC-like, NeuroSim-like and linear baselines.")
    _system_flags(s)
    s.add_argument("--baseline", default="isaac,neurosim,same_chip", help="comma-separated: isaac, neurosim, same_chip")
    s.add_argument("--ptq", default=None, metavar="DIR_OR_JSON",
                   help="PTQ results (bskmq ptq --out DIR, or its results.json): the NeuroSim-like bits become the smallest "
                        "linear bits that match bs_kmq at the chip's ADC bits")
    s.add_argument("--match-tolerance", type=float, default=0.005,
                   help="accepted shortfall of linear below bs_kmq, in the metric's units, widened to bs_kmq's seed std "
                        "(default 0.005 = 0.5 points of a fraction)")
    _common(s, "system")
    s.set_defaults(run=run_system)

    w = hs.add_parser("sweep", help="vectorised design-space sweep (>= 10,000 points)",
                      description="Every ADC form x bits x array size x sharing x DAC width x accumulation in one numpy pass.")
    _system_flags(w)
    w.add_argument("--accuracy", default=None,
                   help="PTQ result directory, its results.json, or a JSON {accuracy: {method: {bits: number}}}, for a Pareto plot")
    _common(w, "sweep")
    w.set_defaults(run=run_sweep)


def _system_flags(p) -> None:
    p.add_argument("--model", default="resnet18", help="model whose real layer shapes are mapped: resnet18, vgg16, vgg16_bn, inception_v3, distilbert, bert (default resnet18)")
    p.add_argument("--input-size", type=int, default=None, help="image side or sequence length of the traced input (default: 224, 299 for inception_v3, 128 tokens)")
    p.add_argument("--config", default="6/2/3", help="input/weight/ADC bits (default 6/2/3, the seed's)")
    p.add_argument("--adc", default="nl_inmem", help="ADC form of the chip under study (default nl_inmem)")
    p.add_argument("--rows", type=int, default=128, help="array rows (default 128)")
    p.add_argument("--cols", type=int, default=128, help="array columns (default 128)")
    p.add_argument("--sharing", type=int, default=1, help="columns per ADC (default 1)")
    p.add_argument("--dac-bits", type=int, default=1, help="input bits per array read; 1 = bit-serial (default 1)")
    p.add_argument("--accumulation", default="fused", help="fused or partial_sum (default fused)")
    p.add_argument("--tiles", type=int, default=None, help="chip capacity in tiles (default: as many as needed)")
    p.add_argument("--no-pipeline", dest="pipelined", action="store_false", help="do not overlap reads and conversions")
    p.add_argument("--linear-bits", type=int, default=None,
                   help="NeuroSim-like baseline ADC bits; overrides --ptq (default: from --ptq, else 6)")
    p.add_argument("--linear-adc", default="sar", help="linear ADC of the same-chip baseline and of linear methods (default sar)")
    p.add_argument("--dac-energy-pj", type=float, default=None, help="override the 1-bit row-drive energy at 32 nm (default ISAAC's 0.39 pJ)")


def _parts(args):
    """Component configs from the common flags (validated by their constructors)."""
    from bskmq_jax.hardware import AdcParams, DriverConfig, TechConfig, cell_preset

    tech = TechConfig(node_nm=args.node)
    cell = cell_preset(args.cell)
    params = AdcParams(counter=args.counter, lut_extra_bits=args.extra_bits)
    driver = DriverConfig() if getattr(args, "dac_energy_pj", None) is None else DriverConfig(dac1_energy_pj=args.dac_energy_pj)
    return tech, cell, params, driver


def _chip(args):
    from bskmq_jax.hardware import AdcConfig, ChipConfig, DigitalConfig
    from bskmq_jax.hardware.baselines import parse_config

    i, w, b = parse_config(args.config)
    tech, cell, params, driver = _parts(args)
    adc = AdcConfig(kind=args.adc, bits=b, sharing=args.sharing, params=params)
    return ChipConfig(name=f"{args.adc} chip ({args.config}b)", rows=args.rows, cols=args.cols, input_bits=i, weight_bits=w,
                      dac_bits=args.dac_bits, accumulation=args.accumulation, pipelined=args.pipelined, max_tiles=args.tiles,
                      adc=adc, cell=cell, driver=driver, digital=DigitalConfig(), tech=tech)


def _write(args, out: Path, payload: dict, md: str) -> None:
    from bskmq_jax import io
    from bskmq_jax.cli.levels import versions

    config = {k: v for k, v in vars(args).items() if k != "run"}
    io.write_json(out / "results.json", {"command": f"hardware {args.hw_command}", "config": config, "versions": versions(), **payload})
    io.write_text(out / "results.md", md)
    print(f"wrote {out}/results.json, results.md" + (" and PNGs" if args.plots else ""))


def run_adc(args) -> int:
    from bskmq_jax import io
    from bskmq_jax.hardware.adc_table import SEED_AREA_RATIO, adc_rows, nl_area_ratios

    tech, cell, params, driver = _parts(args)
    kw = dict(cols=args.cols, rows=args.rows, params=params, cell=cell, driver=driver, tech=tech)
    if args.rows < 2 or args.cols < 2:
        raise ValueError(f"--rows/--cols: {args.rows}x{args.cols} must be at least 2x2")
    rows = adc_rows(args.bits, args.sharing, **kw)
    ratios = nl_area_ratios(args.bits, **kw)
    out = Path(args.out)
    head = ["adc", "bits", "sharing", "area/ADC um^2", "area/column um^2", "energy/conv fJ", "time/conv ns", "array time ns", "comparators"]
    keys = ["adc", "bits", "sharing", "area_per_adc_um2", "area_per_column_um2", "energy_fj", "time_ns", "array_time_ns", "comparators"]
    md = [f"# bskmq hardware adc\n\n{args.rows}x{args.cols} array, {args.cell} cells, {tech.node_nm:g} nm, counter={args.counter}, "
          f"SAR+LUT/NL-flash resolution = bits + {args.extra_bits}\n\n", io.markdown_table(head, [[r[k] for k in keys] for r in rows])]
    md.append(f"\n## In-memory NL-ADC area vs prior NL-ADCs (per column, one ADC per column; seed claims {SEED_AREA_RATIO:g}x)\n\n")
    md.append(io.markdown_table(["bits", "prior NL-ADC", "prior um^2", "nl_inmem um^2", "ratio (model)", "seed", "what drives it"],
                                [[r["bits"], r["prior"], r["prior_area_um2"], r["nl_inmem_area_um2"], r["ratio"], f"{r['seed_ratio']:g}x",
                                  r["driver"]] for r in ratios]))
    print("".join(md))
    if args.plots:
        from bskmq_jax.hardware.plots import adc_figure

        for s in args.sharing:
            adc_figure(rows, out / f"adc_sharing{s}.png", sharing=s, title=f"ADC forms, {args.cell}, {tech.node_nm:g} nm")
    _write(args, out, {"adc": rows, "nl_area_ratios": ratios, "params": dataclasses.asdict(params),
                       "tech": dataclasses.asdict(tech), "cell": dataclasses.asdict(cell)}, "".join(md))
    return 0


def _totals_table(results: dict) -> str:
    from bskmq_jax import io

    head = ["chip", "energy uJ", "latency ms", "area mm^2", "TOPS/W", "TOPS/mm^2", "conversions", "array activations", "arrays"]
    rows = [[r.chip.name, r.totals["energy_j"] * 1e6, r.totals["latency_s"] * 1e3, r.totals["area_mm2"], r.totals["tops_per_w"],
             r.totals["tops_per_mm2"], r.totals["conversions"], r.totals["activations"], r.totals["arrays"]] for r in results.values()]
    return io.markdown_table(head, rows)


def run_system(args) -> int:
    from bskmq_jax import io
    from bskmq_jax.hardware.accuracy import MatchConfig, resolve_linear_bits
    from bskmq_jax.hardware.baselines import build_chips, compare_chips
    from bskmq_jax.hardware.networks import network_shapes
    from bskmq_jax.hardware.system import ENERGY_PARTS

    chip = _chip(args)
    linear = resolve_linear_bits(args.linear_bits, args.ptq, nl_bits=chip.adc.bits, cfg=MatchConfig(tolerance=args.match_tolerance),
                                 model=args.model, input_bits=chip.input_bits, weight_bits=chip.weight_bits)
    names = [n.strip() for n in args.baseline.split(",") if n.strip()]
    baselines = build_chips(chip, names, linear_bits=linear["bits"], linear_adc=args.linear_adc)
    layers = network_shapes(args.model, size=getattr(args, 'input_size', None))
    for w in linear["warnings"]:
        print(f"bskmq hardware: warning: {w}", file=sys.stderr)
    res, base, ratios = compare_chips(chip, baselines, layers)
    everything = {"chip": res, **base}
    md = [f"# bskmq hardware system: {args.model}, {args.config}b (input/weight/ADC)\n\n"
          f"{args.cell} cells, {chip.tech.node_nm:g} nm, {chip.rows}x{chip.cols} arrays. Every chip shares cells, node and "
          "component figures; they differ in ADC, precision and dataflow.\n\n", _totals_table(everything)]
    md.append("\n## Ratios of the chip over each baseline (seed: up to 4x speedup, 24x energy efficiency)\n\n")
    md.append(io.markdown_table(
        ["baseline", "speedup (model)", "seed speedup", "energy efficiency (model)", "seed energy eff.", "TOPS/mm^2 ratio"],
        [[r["baseline_name"], r["speedup"], "4x", r["energy_efficiency"], "24x", r["tops_per_mm2_ratio"]] for r in ratios]))
    md.append(f"\nNeuroSim-like ADC bits: {linear['bits']} (source: {linear['source']}; {linear['reason']}).\n")
    md.extend(f"\nWarning: {w}\n" for w in linear["warnings"])
    md.append("\n## Energy breakdown (uJ)\n\n")
    md.append(io.markdown_table(["chip", *ENERGY_PARTS], [[r.chip.name, *(r.energy_breakdown[k] * 1e6 for k in ENERGY_PARTS)]
                                                         for r in everything.values()]))
    md.append(f"\n## Per layer: {chip.name}\n\n")
    md.append(io.markdown_table(["layer", "rows", "cols", "positions", "MACs", "arrays", "conversions", "latency us", "energy nJ"],
                                [[p["name"], p["rows"], p["cols"], p["positions"], p["macs"], p["arrays"], p["conversions"],
                                  p["latency_s"] * 1e6, p["energy_j"] * 1e9] for p in res.per_layer]))
    text = "".join(md)
    print(text)
    out = Path(args.out)
    if args.plots:
        from bskmq_jax.hardware.plots import breakdown_figure

        breakdown_figure(everything, out / "breakdown.png", title=f"{args.model} {args.config}b: energy and area breakdown")
    _write(args, out, {"chip": res.as_dict(), "baselines": {k: v.as_dict() for k, v in base.items()}, "ratios": ratios,
                       "linear_bits": linear}, text)
    return 0


def run_sweep(args) -> int:
    import numpy as np

    from bskmq_jax import io
    from bskmq_jax.hardware.adc import kind_code
    from bskmq_jax.hardware.networks import network_shapes
    from bskmq_jax.hardware.sweep import accuracy_energy_points, best_per_kind_bits, load_accuracy, pareto_mask, point_record
    from bskmq_jax.hardware.sweep import run_sweep as sweep_fn

    accuracy = load_accuracy(args.accuracy) if args.accuracy else None  # validate inputs before any work
    if accuracy is not None and accuracy["skipped"]:
        print(f"bskmq hardware: warning: --accuracy: ignored results outside 1..8 ADC bits: {', '.join(accuracy['skipped'])}",
              file=sys.stderr)
    layers = network_shapes(args.model, size=getattr(args, 'input_size', None))
    chip = _chip(args)
    sw = sweep_fn(layers, chip)
    r, g = sw["results"], sw["grid"]
    print(f"swept {sw['points']} design points ({sw['valid']} valid) in {sw['seconds']:.3f} s, one vectorised call")
    # Cost-only fronts at the configured ADC bits: across bits the cheapest (1-bit) ADC always wins
    # without accuracy; accuracy enters through --accuracy.
    at_bits = g["adc_bits"] == chip.adc.bits
    front_el = pareto_mask(np.stack([np.where(at_bits, r["energy_j"], np.nan), r["latency_s_total"]], axis=1))
    front_ea = pareto_mask(np.stack([np.where(at_bits, r["energy_j"], np.nan), r["area_m2"]], axis=1))
    best = best_per_kind_bits(sw)
    seed_sel = np.flatnonzero(r["valid"] & (g["adc_kind"] == kind_code("nl_inmem")) & (g["adc_bits"] == chip.adc.bits))
    seed = point_record(sw, int(seed_sel[np.nanargmin(r["energy_j"][seed_sel])])) if seed_sel.size else None
    md = [f"# bskmq hardware sweep: {args.model}, input/weight bits {chip.input_bits}/{chip.weight_bits}\n\n"
          f"{sw['points']} design points ({sw['valid']} valid) evaluated in {sw['seconds']:.3f} s in one vectorised numpy call.\n\n"]
    keys = ["adc", "adc_bits", "rows", "cols", "sharing", "dac_bits", "accumulation"]
    head = [*keys, "energy uJ", "latency ms", "area mm^2", "TOPS/W", "TOPS/mm^2"]

    def rows_of(recs):
        return [[p[k] for k in keys] + [p["energy_j"] * 1e6, p["latency_s_total"] * 1e3, p["area_m2"] * 1e6, p["tops_per_w"],
                                        p["tops_per_mm2"]] for p in recs]

    for title, mask in (("energy-latency", front_el), ("energy-area", front_ea)):
        recs = sorted((point_record(sw, int(i)) for i in np.flatnonzero(mask)), key=lambda p: p["energy_j"])
        md.append(f"## Pareto front, {title}, {chip.adc.bits}-bit ADCs ({len(recs)} points)\n\n{io.markdown_table(head, rows_of(recs))}\n")
    md.append(f"## Minimum-energy design per ADC form and bits\n\n{io.markdown_table(head, rows_of(best))}\n")
    payload = {"points": sw["points"], "valid": sw["valid"], "seconds": sw["seconds"], "seed_point": seed,
               "pareto_energy_latency": [point_record(sw, int(i)) for i in np.flatnonzero(front_el)],
               "pareto_energy_area": [point_record(sw, int(i)) for i in np.flatnonzero(front_ea)], "best_per_adc_bits": best}
    out = Path(args.out)
    if accuracy is not None:
        pts = accuracy_energy_points(sw, accuracy, linear_adc=args.linear_adc)
        payload["accuracy_points"] = pts
        payload["accuracy_source"] = {"path": str(args.accuracy), "format": accuracy["format"], "model": accuracy["model"],
                                      "metric": accuracy["metric"], "skipped": accuracy["skipped"]}
        md.append("## Accuracy vs energy per method\n\n" + io.markdown_table(
            ["method", "bits", "adc", "accuracy", "energy uJ", "on Pareto front"],
            [[m, p["bits"], p["adc"], p["accuracy"], p["energy_j"] * 1e6, p["on_front"]] for m, ps in pts.items() for p in ps]))
    text = "".join(md)
    print(text)
    if args.plots:
        from bskmq_jax.hardware.plots import pareto_accuracy_figure, sweep_figure

        mark = (seed["energy_j"], seed["latency_s_total"], f"seed point (nl_inmem, {chip.adc.bits} b)") if seed else None
        sweep_figure(sw, out / "sweep.png", front=front_el, mark=mark, title=f"{args.model} sweep")
        if accuracy is not None:
            seed_acc = accuracy["accuracy"].get("bs_kmq", {}).get(chip.adc.bits)
            sp = (seed["energy_j"], seed_acc, f"seed point (bs_kmq, {chip.adc.bits} b)") if seed else None
            pareto_accuracy_figure(pts, out / "pareto_accuracy.png", seed=sp, metric=accuracy.get("metric") or "accuracy",
                                   title=f"{args.model}: accuracy vs energy")
    _write(args, out, payload, text)
    return 0
