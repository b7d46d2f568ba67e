"""PTQ results as hardware accuracy input: the NeuroSim-like linear bits and the sweep's --accuracy DIR."""

import json

import pytest

from bskmq_jax.cli import main
from bskmq_jax.hardware.accuracy import DEFAULT_LINEAR_BITS, MatchConfig, linear_bits_for_accuracy, load_ptq_accuracy, resolve_linear_bits
from bskmq_jax.hardware.sweep import load_accuracy
from bskmq_jax.results import SCHEMA

# top-1 as fractions, the way `bskmq ptq` writes it. bs_kmq at 3 b: 0.690 +- 0.002.
BS_KMQ = {2: (0.55, 0.004), 3: (0.690, 0.002), 4: (0.700, 0.001)}
LINEAR = {3: (0.40, 0.01), 4: (0.682, 0.003), 5: (0.688, 0.002), 6: (0.699, 0.001), 8: (0.701, 0.0)}


def write_ptq(directory, methods=None, *, model="resnet18", in_bits=6, w_bits=2, metric="top1"):
    """A minimal results.json of schema bskmq.ptq/1: {method: {bits: (mean, std)}} of the headline metric."""
    methods = {"bs_kmq": BS_KMQ, "linear": LINEAR} if methods is None else methods
    results = {m: {str(b): {"mean": {metric: mu, "top5": 0.9}, "std": {metric: sd, "top5": 0.0}, "per_seed": [], "layers": {}}
                   for b, (mu, sd) in per.items()} for m, per in methods.items()}
    res = {
        "schema": SCHEMA,
        "model": {"name": model, "num_classes": 1000, "options": [], "in_bits": in_bits, "w_bits": w_bits, "adc_bits": 3, "mode": "fused"},
        "checkpoint": "synthetic",
        "dataset": "synthetic",
        "metric": metric,
        "float": {metric: 0.7076, "top5": 0.95},
        "results": results,
        "accuracy": {m: {str(b): mu for b, (mu, _) in per.items()} for m, per in methods.items()},
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(res))
    return directory


def test_ptq_accuracy_table(tmp_path):
    acc = load_ptq_accuracy(write_ptq(tmp_path / "ptq"))
    assert acc["metric"] == "top1" and acc["model"] == "resnet18" and acc["skipped"] == []
    assert acc["accuracy"]["linear"] == {b: mu for b, (mu, _) in LINEAR.items()}
    assert acc["std"]["bs_kmq"][3] == 0.002


def test_linear_bits_reached(tmp_path):
    acc = load_ptq_accuracy(write_ptq(tmp_path / "ptq"))
    m = linear_bits_for_accuracy(acc, 3)
    # target = 0.690 - max(0.005, 0.002) = 0.685: linear 4 b (0.682) misses, 5 b (0.688) reaches.
    assert m["reached"] and m["bits"] == 5
    assert m["target"] == pytest.approx(0.685) and m["effective_tolerance"] == 0.005 and m["nl_accuracy"] == 0.690
    # A looser tolerance admits 4 b; a zero tolerance still uses the seed spread (0.002), so 4 b stays out.
    assert linear_bits_for_accuracy(acc, 3, MatchConfig(tolerance=0.01))["bits"] == 4
    strict = linear_bits_for_accuracy(acc, 3, MatchConfig(tolerance=0.0))
    assert strict["effective_tolerance"] == 0.002 and strict["bits"] == 5
    # At 4 b bs_kmq reaches 0.700: linear needs 6 b (0.699 >= 0.695).
    assert linear_bits_for_accuracy(acc, 4)["bits"] == 6


def test_seed_spread_widens_tolerance(tmp_path):
    noisy = {3: (0.690, 0.010)}
    acc = load_ptq_accuracy(write_ptq(tmp_path / "ptq", {"bs_kmq": noisy, "linear": LINEAR}))
    m = linear_bits_for_accuracy(acc, 3)
    assert m["effective_tolerance"] == 0.010 and m["bits"] == 4  # 0.682 >= 0.690 - 0.010


def test_resolve_from_ptq(tmp_path):
    d = write_ptq(tmp_path / "ptq")
    r = resolve_linear_bits(None, d, nl_bits=3, model="resnet18", input_bits=6, weight_bits=2)
    assert (r["bits"], r["source"], r["warnings"]) == (5, "ptq", [])
    assert r["ptq"]["path"] == str(d) and r["ptq"]["linear_accuracy"][5] == 0.688
    # results.json itself works as well as its directory
    assert resolve_linear_bits(None, d / "results.json", nl_bits=3)["bits"] == 5


def test_resolve_not_reached_falls_back(tmp_path):
    low = {3: (0.40, 0.0), 4: (0.60, 0.0), 8: (0.67, 0.0)}
    d = write_ptq(tmp_path / "ptq", {"bs_kmq": BS_KMQ, "linear": low})
    r = resolve_linear_bits(None, d, nl_bits=3)
    assert r["bits"] == DEFAULT_LINEAR_BITS and r["source"] == "flag" and not r["ptq"]["reached"] and r["ptq"]["bits"] is None
    assert len(r["warnings"]) == 1 and "does not reach" in r["warnings"][0] and "8 b: 0.67" in r["warnings"][0]
    explicit = resolve_linear_bits(7, d, nl_bits=3)
    assert explicit["bits"] == 7 and explicit["source"] == "flag" and "not backed by PTQ" in explicit["warnings"][0]


def test_resolve_flag_overrides_ptq(tmp_path):
    d = write_ptq(tmp_path / "ptq")
    r = resolve_linear_bits(4, d, nl_bits=3)
    assert (r["bits"], r["source"]) == (4, "flag") and r["ptq"]["bits"] == 5
    assert "overrides the PTQ-derived 5 b" in r["reason"] and "overrides the 5 b" in r["warnings"][0]
    assert resolve_linear_bits(5, d, nl_bits=3)["warnings"] == []  # agreeing flag: nothing to warn about
    none = resolve_linear_bits(None, None, nl_bits=3)
    assert (none["bits"], none["source"], none["ptq"]) == (DEFAULT_LINEAR_BITS, "flag", None)
    assert resolve_linear_bits(7, None, nl_bits=3)["bits"] == 7


def test_resolve_warns_on_mismatched_run(tmp_path):
    d = write_ptq(tmp_path / "ptq", model="vgg16", in_bits=8, w_bits=8)
    w = resolve_linear_bits(None, d, nl_bits=3, model="resnet18", input_bits=6, weight_bits=2)["warnings"]
    assert any("model 'vgg16'" in x for x in w) and any("in_bits=8" in x for x in w) and any("w_bits=8" in x for x in w)


def test_ptq_bits_outside_adc_range_are_skipped(tmp_path):
    d = write_ptq(tmp_path / "ptq", {"bs_kmq": BS_KMQ, "linear": {**LINEAR, 10: (0.705, 0.0)}})
    r = resolve_linear_bits(None, d, nl_bits=3)
    assert r["bits"] == 5 and 10 not in r["ptq"]["linear_accuracy"]
    assert any("linear@10" in x for x in r["warnings"])


@pytest.mark.parametrize(
    "methods, nl_bits, match",
    [
        ({"bs_kmq": {4: (0.7, 0.0)}, "linear": LINEAR}, 3, "no bs_kmq result at the chip's 3 ADC bits \\(measured: 4\\)"),
        ({"bs_kmq": BS_KMQ, "kmeans": LINEAR}, 3, "no 'linear' results"),
    ],
)
def test_resolve_unusable_ptq(tmp_path, methods, nl_bits, match):
    d = write_ptq(tmp_path / "ptq", methods)
    with pytest.raises(ValueError, match=match):
        resolve_linear_bits(None, d, nl_bits=nl_bits)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="--ptq: PTQ results .* do not exist"):
        resolve_linear_bits(None, tmp_path / "missing", nl_bits=3)
    (tmp_path / "other.json").write_text(json.dumps({"schema": "something/1"}))
    with pytest.raises(ValueError, match="schema 'something/1'"):
        resolve_linear_bits(None, tmp_path / "other.json", nl_bits=3)
    with pytest.raises(ValueError, match="--linear-bits: 0 is outside 1..8"):
        resolve_linear_bits(0, None, nl_bits=3)
    for bad in (-0.1, float("nan"), True):
        with pytest.raises(ValueError, match="tolerance"):
            MatchConfig(tolerance=bad)


def test_sweep_accuracy_reads_ptq(tmp_path):
    d = write_ptq(tmp_path / "ptq")
    for path in (d, d / "results.json"):
        acc = load_accuracy(path)
        assert acc["format"] == "ptq" and acc["metric"] == "top1" and acc["accuracy"]["bs_kmq"][3] == 0.690
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="--accuracy: PTQ results .*results.json do not exist"):
        load_accuracy(tmp_path / "empty")
    old = tmp_path / "acc.json"
    old.write_text(json.dumps({"accuracy": {"bs_kmq": {"3": 68.0}}}))
    assert load_accuracy(old)["format"] == "accuracy"


# ---- CLI -----------------------------------------------------------------


def test_cli_system_with_ptq(tmp_path, capsys):
    d = write_ptq(tmp_path / "ptq")
    out = tmp_path / "sys"
    argv = ["hardware", "system", "--config", "6/2/3", "--baseline", "neurosim", "--ptq", str(d), "--no-plots", "--out", str(out)]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["linear_bits"]["source"] == "ptq" and res["linear_bits"]["bits"] == 5
    assert res["linear_bits"]["ptq"]["target"] == pytest.approx(0.685)
    assert res["baselines"]["neurosim"]["chip"]["adc"]["bits"] == 5
    assert "NeuroSim-like ADC bits: 5 (source: ptq" in (out / "results.md").read_text()
    assert "warning" not in capsys.readouterr().err

    assert main([*argv, "--linear-bits", "7"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert (res["linear_bits"]["source"], res["linear_bits"]["bits"]) == ("flag", 7)
    assert res["baselines"]["neurosim"]["chip"]["adc"]["bits"] == 7
    assert "warning: --linear-bits 7 overrides the 5 b that --ptq gives" in capsys.readouterr().err


def test_cli_system_ptq_not_reached(tmp_path, capsys):
    d = write_ptq(tmp_path / "ptq", {"bs_kmq": BS_KMQ, "linear": {4: (0.5, 0.0), 6: (0.6, 0.0)}})
    out = tmp_path / "sys"
    assert main(["hardware", "system", "--baseline", "neurosim", "--ptq", str(d), "--no-plots", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["linear_bits"]["source"] == "flag" and res["linear_bits"]["bits"] == DEFAULT_LINEAR_BITS
    assert res["linear_bits"]["ptq"]["reached"] is False and res["linear_bits"]["warnings"]
    assert "does not reach" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--match-tolerance", "-1"], "--match-tolerance"),
        (["--ptq", "PTQ/none"], "--ptq: PTQ results"),
        (["--config", "6/2/2"], "no bs_kmq result at the chip's 2 ADC bits"),
    ],
)
def test_cli_system_ptq_errors(tmp_path, capsys, extra, match):
    d = write_ptq(tmp_path / "ptq", {"bs_kmq": {3: (0.69, 0.0)}, "linear": LINEAR})
    extra = [str(tmp_path / "none") if x == "PTQ/none" else x for x in extra]
    argv = ["hardware", "system", "--no-plots", "--out", str(tmp_path / "o")]
    if "--ptq" not in extra:
        argv += ["--ptq", str(d)]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert match in err and err.startswith("bskmq hardware: error:") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_cli_sweep_with_ptq_dir(tmp_path):
    d = write_ptq(tmp_path / "ptq")
    out = tmp_path / "sw"
    assert main(["hardware", "sweep", "--accuracy", str(d), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["accuracy_source"]["format"] == "ptq" and res["accuracy_source"]["metric"] == "top1"
    assert set(res["accuracy_points"]) == {"bs_kmq", "linear"}
    assert [p["bits"] for p in res["accuracy_points"]["linear"]] == sorted(LINEAR)
    assert all(p["adc"] == "sar" for p in res["accuracy_points"]["linear"])
    assert (out / "pareto_accuracy.png").stat().st_size > 10_000
