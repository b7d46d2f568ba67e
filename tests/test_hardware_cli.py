"""Design sweep, PTQ accuracy input and the `bskmq hardware` subcommands (in-process)."""

import json

import numpy as np
import pytest

from bskmq_jax.cli import main
from bskmq_jax.hardware.networks import resnet18_imagenet_shapes
from bskmq_jax.hardware.sweep import accuracy_energy_points, design_grid, load_accuracy, pareto_mask, run_sweep
from bskmq_jax.hardware.system import ChipConfig

ACC = {"model": "resnet18", "metric": "top-1 (%)",
       "accuracy": {"bs_kmq": {"2": 50.0, "3": 68.0, "4": 69.5}, "linear": {"4": 40.0, "6": 68.5, "8": 69.7}}}


@pytest.fixture(scope="module")
def sweep():
    return run_sweep(resnet18_imagenet_shapes(), ChipConfig())


def test_sweep_covers_at_least_10000_points(sweep):
    assert sweep["points"] >= 10_000
    assert 0 < sweep["valid"] < sweep["points"]
    r = sweep["results"]
    assert np.all(np.isfinite(r["energy_j"][r["valid"]])) and np.all(np.isnan(r["energy_j"][~r["valid"]]))


def test_sweep_marks_invalid_points(sweep):
    g, v = sweep["grid"], sweep["results"]["valid"]
    nl = g["adc_kind"] >= 3
    assert not np.any(v & nl & ~g["fused"])  # NL forms need fused accumulation
    assert not np.any(v & (g["sharing"] > g["cols"]))


def test_design_grid_axes():
    g = design_grid(ChipConfig(), adc_kind=("sar", "nl_inmem"), adc_bits=(3,), rows=(128,), cols=(128,), sharing=(1, 8))
    assert set(np.unique(g["dac_bits"])) == {1, 6} and g["adc_kind"].size == 2 * 2 * 2 * 2
    with pytest.raises(ValueError, match="unknown sweep axes"):
        design_grid(ChipConfig(), colour=(1,))
    with pytest.raises(ValueError, match="empty"):
        design_grid(ChipConfig(), rows=())


def test_pareto_mask():
    pts = np.array([[1, 5], [2, 4], [3, 4], [2, 6], [5, 1], [np.nan, 0]])
    assert pareto_mask(pts).tolist() == [True, True, False, False, True, False]
    assert pareto_mask([1.0, 2.0, 3.0], [10.0, 5.0, 20.0]).tolist() == [True, False, True]


def test_accuracy_points(sweep, tmp_path):
    f = tmp_path / "acc.json"
    f.write_text(json.dumps(ACC))
    acc = load_accuracy(f)
    assert acc["accuracy"]["bs_kmq"][3] == 68.0
    pts = accuracy_energy_points(sweep, acc)
    assert [p["adc"] for p in pts["linear"]] == ["sar"] * 3 and pts["bs_kmq"][0]["adc"] == "nl_inmem"
    assert all(np.isfinite(p["energy_j"]) for ps in pts.values() for p in ps)
    e = [p["energy_j"] for p in pts["bs_kmq"]]
    assert e == sorted(e)  # more ADC bits cost more energy


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "no such file"),
        ("{not json", "not readable JSON"),
        ("[1, 2]", '"accuracy" object'),
        ('{"accuracy": {}}', '"accuracy" object'),
        ('{"accuracy": {"bs_kmq": [68]}}', "non-empty object"),
        ('{"accuracy": {"bs_kmq": {"three": 68}}}', "not an integer bit width"),
        ('{"accuracy": {"bs_kmq": {"9": 68}}}', "outside 1..8"),
        ('{"accuracy": {"bs_kmq": {"3": "high"}}}', "not a finite number"),
        ('{"accuracy": {"bs_kmq": {"3": NaN}}}', "not a finite number"),
    ],
)
def test_bad_accuracy_files(tmp_path, content, match):
    f = tmp_path / "acc.json"
    if content is not None:
        f.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_accuracy(f)


# ---- CLI -----------------------------------------------------------------


def test_cli_adc(tmp_path, capsys):
    out = tmp_path / "adc"
    assert main(["hardware", "adc", "--bits", "3,4", "--sharing", "1,8", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["command"] == "hardware adc" and res["versions"]["numpy"]
    assert len(res["adc"]) == 7 * 2 * 2
    assert {(r["bits"], r["prior"]) for r in res["nl_area_ratios"]} == {(b, p) for b in (3, 4) for p in ("nl_sar_lut", "nl_flash", "nl_mem_ramp")}
    assert all(r["seed_ratio"] == 7.0 and r["ratio"] > 0 for r in res["nl_area_ratios"])
    md = (out / "results.md").read_text()
    assert "seed claims 7x" in md and "what drives it" in md
    assert (out / "adc_sharing1.png").stat().st_size > 10_000 and (out / "adc_sharing8.png").exists()


def test_cli_system(tmp_path):
    out = tmp_path / "sys"
    argv = ["hardware", "system", "--model", "resnet18", "--config", "6/2/3", "--adc", "nl_inmem", "--linear-bits", "5", "--out", str(out)]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["chip"]["totals"]["macs"] == sum(lay.macs for lay in resnet18_imagenet_shapes())
    assert [r["baseline"] for r in res["ratios"]] == ["isaac", "neurosim", "same_chip"]
    assert res["baselines"]["neurosim"]["chip"]["adc"]["bits"] == 5
    md = (out / "results.md").read_text()
    assert "ISAAC-like" in md and "NeuroSim-like (5-b SAR" in md and "24x" in md and "4x" in md
    assert (out / "breakdown.png").stat().st_size > 10_000


def test_cli_sweep_with_accuracy(tmp_path, capsys):
    f = tmp_path / "acc.json"
    f.write_text(json.dumps(ACC))
    out = tmp_path / "sw"
    assert main(["hardware", "sweep", "--accuracy", str(f), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["points"] >= 10_000 and res["seed_point"]["adc"] == "nl_inmem" and res["seed_point"]["adc_bits"] == 3
    assert set(res["accuracy_points"]) == {"bs_kmq", "linear"}
    assert (out / "sweep.png").exists() and (out / "pareto_accuracy.png").stat().st_size > 10_000
    assert "design points" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["hardware", "system", "--model", "alexnet"], "unknown model 'alexnet'"),
        (["hardware", "system", "--adc", "pipelined"], "unknown ADC type"),
        (["hardware", "system", "--config", "6/2"], "--config"),
        (["hardware", "system", "--config", "6/2/9"], "outside 1..8"),
        (["hardware", "system", "--rows", "0"], "rows: 0"),
        (["hardware", "system", "--accumulation", "partial_sum"], "accumulation"),
        (["hardware", "system", "--baseline", "eyeriss"], "unknown baseline"),
        (["hardware", "system", "--node", "7"], "node_nm"),
        (["hardware", "system", "--cell", "pcm"], "unknown cell kind"),
        (["hardware", "adc", "--bits", "0,3"], "outside 1..8"),
        (["hardware", "adc", "--sharing", "0"], "--sharing"),
        (["hardware", "sweep", "--accuracy", "/nonexistent/acc.json"], "no such file"),
    ],
)
def test_cli_errors(tmp_path, capsys, argv, match):
    out = tmp_path / "o"
    assert main([*argv, "--out", str(out), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert match in err and err.startswith("bskmq hardware: error:")
    assert not out.exists()  # nothing written


def test_help_lists_hardware(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "hardware" in capsys.readouterr().out
