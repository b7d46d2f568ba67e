"""The bskmq command line (run in-process)."""

import json

import numpy as np
import pytest

import bskmq_jax as bq
from bskmq_jax.cli import main


def test_levels_writes_json_markdown_and_png(tmp_path, capsys):
    out = tmp_path / "lv"
    rc = main(["levels", "--dist", "relu_clamp", "--bits", "2", "--samples", "20000", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["bits"] == [2] and res["versions"]["jax"]
    assert [r["method"] for r in res["results"]] == list(bq.METHODS)
    for r in res["results"]:
        assert len(r["levels"]) == 4 and r["lo"] == 0.0 and r["hi"] == 2.0
        assert set(r["metrics"]) >= {"mse", "interior_mse", "sqnr_db", "max_abs", "entropy_bits"}
    md = (out / "results.md").read_text()
    assert all(m in md for m in bq.METHODS)
    assert (out / "levels_relu_clamp_2b.png").stat().st_size > 10_000
    assert "kmeans_exact" in capsys.readouterr().err + "".join(md)


def test_levels_accepts_user_npy(tmp_path):
    acts = np.maximum(np.random.default_rng(0).normal(size=5000), 0).astype(np.float32)
    f = tmp_path / "acts.npy"
    np.save(f, acts.reshape(50, 100))
    out = tmp_path / "o"
    assert main(["levels", "--dist", str(f), "--bits", "3", "--methods", "linear,bs_kmq", "--no-plots", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["dist"] for r in res["results"]] == ["acts", "acts"]
    assert res["results"][1]["lo"] == 0.0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b"not numpy"), "not a readable .npy"),
        (lambda p: np.save(p, np.arange(10)), "not floating"),
        (lambda p: np.save(p, np.array([1.0, np.nan])), "NaN or Inf"),
        (lambda p: np.save(p, np.zeros((0,), np.float32)), "empty"),
    ],
)
def test_levels_bad_files_fail_cleanly(tmp_path, capsys, make, match):
    f = tmp_path / "bad.npy"
    make(f)
    out = tmp_path / "o"
    assert main(["levels", "--dist", str(f), "--out", str(out)]) == 2
    assert match in capsys.readouterr().err
    assert not out.exists()  # nothing written, not even a partial file


@pytest.mark.parametrize(
    "args, match",
    [
        (["--dist", "weibull"], "unknown distribution"),
        (["--bits", "0"], "outside 1..8"),
        (["--methods", "linear,foo"], "unknown method"),
        (["--lo", "2", "--hi", "1"], "must be below"),
        (["--mode", "shrink", "--methods", "bs_kmq"], "mode"),
    ],
)
def test_levels_bad_flags(tmp_path, capsys, args, match):
    assert main(["levels", *args, "--samples", "1000", "--out", str(tmp_path / "o")]) == 2
    assert match in capsys.readouterr().err


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "levels" in capsys.readouterr().out
