"""The PTQ pipeline end to end on a tiny digits ResNet: calibrate, fit, sweep, report, CLI."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import bskmq_jax as bq
from bskmq_jax import ptq
from bskmq_jax.cli import main
from bskmq_jax.data import digits
from bskmq_jax.models import export_checkpoint
from bskmq_jax.ptq_job import PTQJobConfig, run_ptq_job
from bskmq_jax.results import levels_path, load_levels, load_ptq, save_levels
from bskmq_jax.zoo import ModelSpec, build

TINY = {"in_channels": 1, "stem": "cifar", "width": 0.125}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny CIFAR-stem ResNet-18 trained a few steps on 8x8 digits, saved as safetensors."""
    from bskmq_jax.train import TrainConfig, train

    spec = ModelSpec(options=TINY, adc_bits=3)
    model = build(spec, seed=0)
    bq.imc.set_mode(model, "float")
    train(model, digits("train", batch_size=50, size=8, shuffle=True, drop_last=True),
          TrainConfig(steps=30, batch_size=50, lr=3e-3), progress=False)
    path = tmp_path_factory.mktemp("ck") / "tiny.safetensors"
    export_checkpoint(model, str(path))
    return str(path)


@pytest.fixture(scope="module")
def job(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("ptq")
    cfg = PTQJobConfig(model="resnet18", model_options=TINY, dataset="digits", checkpoint=tiny_checkpoint,
                       methods=("linear", "bs_kmq"), adc_bits=(2, 3), size=8, batch_size=50, calib_seeds=2,
                       eval_examples=200)
    return run_ptq_job(cfg, out, progress=False), out


def test_results_json_holds_every_number(job):
    res, out = job
    assert load_ptq(out)["schema"] == "bskmq.ptq/1"
    assert res["data"]["disjoint"] and res["data"]["calibration"] == "digits:calib" and res["data"]["evaluation"] == "digits:test"
    assert res["data"]["evaluation_examples"] == 200 and res["calibration_sets"] == 2
    assert res["versions"]["jax"] == jax.__version__ and res["seed"] == 0
    assert 0.0 <= res["float"]["top1"] <= res["float"]["top5"] <= 1.0
    for m in ("linear", "bs_kmq"):
        for b in ("2", "3"):
            r = res["results"][m][b]
            top1 = [s["top1"] for s in r["per_seed"]]
            assert len(top1) == 2
            assert r["mean"]["top1"] == pytest.approx(np.mean(top1)) and r["std"]["top1"] == pytest.approx(np.std(top1))
            assert res["accuracy"][m][b] == r["mean"]["top1"]
            assert set(r["layers"]) == set(res["ranges"]) and len(r["layers"]) == 21
            for n, e in r["layers"].items():
                # one normalization per layer (its held-out mean square), whatever the levels
                ref = res["results"]["linear"]["2"]["layers"][n]
                assert e["rel_mse"] / e["mse"] == pytest.approx(ref["rel_mse"] / ref["mse"], rel=1e-5)
    # more bits, less error, on every layer (held-out data)
    for m in ("linear", "bs_kmq"):
        e2, e3 = (res["results"][m][b]["layers"] for b in ("2", "3"))
        assert all(e3[n]["mse"] <= e2[n]["mse"] * 1.001 for n in e2)


def test_report_files(job):
    res, out = job
    md = (out / "results.md").read_text()
    assert "| bs_kmq |" in md and "2-bit top1 (%)" in md and "disjoint" in md
    for f in res["files"]:
        assert (out / f).stat().st_size > 500, f
    assert sum(f.startswith("levels_") for f in res["files"]) == 3
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_levels_files_round_trip_and_reprogram(job, tiny_checkpoint):
    res, out = job
    lv = load_levels(levels_path(out, "bs_kmq", 2))
    assert set(lv) == set(res["ranges"])
    for n, nl in lv.items():
        assert nl.bits == 2 and nl.levels.shape == (4,) and np.all(np.diff(nl.levels) >= 0)
        assert float(nl.lo) == pytest.approx(res["ranges"][n][0]) and float(nl.hi) == pytest.approx(res["ranges"][n][1])
    # the model rebuilt from results.json, with these levels, gives the reported first-seed accuracy
    model = build(ModelSpec.from_dict(res["model"]))
    bq.models.load_checkpoint(model, res["checkpoint"])
    evals = digits("test", batch_size=50, size=8).take(200)
    task = ptq.Classification()
    outs = ptq.run(model, evals, nnx.jit(task.step), levels=lv, progress=False)
    assert task.metrics(outs, evals)["top1"] == pytest.approx(res["results"]["bs_kmq"]["2"]["per_seed"][0]["top1"])


def test_layer_errors_match_per_layer_metric(job):
    # the vectorized layer_errors equals quant_error_from_stats layer by layer
    model = build(ModelSpec(options=TINY, adc_bits=2))
    batches = digits("calib", batch_size=50, size=8).take(100)
    stats = ptq.calibrate(model, batches, ptq.Classification().step, progress=False)
    fits = ptq.fit_all(stats, ["kmeans_exact"], [2], progress=False)["kmeans_exact"][2]
    errs = ptq.layer_errors(stats, fits)
    for n in list(stats)[:3]:
        one = jax.tree_util.tree_map(lambda a: a[None], fits[n])
        ref = bq.quant_error_from_stats(stats[n], one)
        assert errs[n]["mse"] == pytest.approx(float(ref.mse[0]), rel=1e-5)


def test_calibration_memory_is_independent_of_batches():
    model = build(ModelSpec(options=TINY, adc_bits=2))
    step = ptq.Classification().step
    one = ptq.calibrate(model, digits("calib", batch_size=50, size=8).take(50), step, progress=False)
    many = ptq.calibrate(model, digits("calib", batch_size=50, size=8).take(250), step, progress=False)
    size = lambda s: sum(a.size for a in jax.tree_util.tree_leaves(s))  # noqa: E731
    assert {n: size(s) for n, s in one.items()} == {n: size(s) for n, s in many.items()}
    assert all(float(many[n].count[0]) == 5 * float(one[n].count[0]) for n in one)


def test_sentence_fidelity_metrics():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(20, 8)).astype(np.float32)
    task = ptq.SentenceFidelity(embed=None)
    same = task.metrics([f], None, reference=[f])
    assert same["cosine"] == pytest.approx(1.0) and same["spearman"] == pytest.approx(1.0)
    noisy = task.metrics([f + rng.normal(size=f.shape).astype(np.float32)], None, reference=[f])
    assert 0.0 < noisy["cosine"] < 0.95 and noisy["spearman"] < 0.95
    assert task.metrics([-f], None, reference=[f])["cosine"] == pytest.approx(-1.0)


def test_save_levels_errors(tmp_path):
    with pytest.raises(ValueError, match="nothing to save"):
        save_levels(tmp_path / "a.safetensors", {})
    two = bq.NLLevels.from_levels(jnp.linspace(0, 1, 4)[None].repeat(2, 0))
    with pytest.raises(ValueError, match="batch shape"):
        save_levels(tmp_path / "a.safetensors", {"x": two})
    with pytest.raises(FileNotFoundError, match="bskmq ptq"):
        load_levels(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a readable"):
        load_levels(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError, match="run `bskmq ptq"):
        load_ptq(tmp_path)


@pytest.mark.parametrize("kwargs, match", [
    ({"dataset": "mnist"}, "dataset: unknown dataset 'mnist'"),
    ({"model": "minilm"}, "model: 'minilm' does not run on digits"),
    ({"methods": ("linear", "kmeanz")}, "methods: unknown method 'kmeanz'"),
    ({"adc_bits": (2, 9)}, r"adc_bits: 9 is not an int in 1..8"),
    ({"adc_bits": ()}, "adc_bits: at least one"),
    ({"in_bits": 0}, "in_bits"),
    ({"mode": "analog"}, "mode: 'analog'"),
    ({"calib_seeds": 0}, "calib_seeds: 0 must be"),
    ({"clip_percentile": 40.0}, "clip_percentile: 40.0"),
    ({"dataset": "imagenet2012"}, "checkpoint: imagenet2012 needs trained weights"),
    ({"fit_bins": 8}, "fit_bins: 8 must be an int >= 16 or None"),
])
def test_job_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PTQJobConfig(**kwargs)


@pytest.mark.parametrize("args, match", [
    (["--methods", "linear,nope"], "--methods: unknown method 'nope'"),
    (["--adc-bits", "0"], "--adc-bits: 0 is not an int in 1..8"),
    (["--model", "minilm"], "--model: 'minilm' does not run on digits"),
    (["--dataset", "cifar10"], "--checkpoint: cifar10 needs trained weights"),
    (["--checkpoint", "/nonexistent.safetensors"], "checkpoint /nonexistent.safetensors does not exist"),
    (["--dataset", "cifar10", "--checkpoint", "x.safetensors", "--data-dir", "/nonexistent"], "dataset cifar10: .*tfds build cifar10"),
])
def test_cli_bad_flags(tmp_path, capsys, args, match):
    rc = main(["ptq", *args, "--size", "8", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("bskmq ptq: error:"), err
    assert __import__("re").search(match, err), err
    assert not (tmp_path / "o" / "results.json").exists()


def test_cli_checkpoint_that_does_not_fit(tmp_path, capsys, tiny_checkpoint):
    # a width-0.125 checkpoint cannot load into the default width-0.25 digits model
    rc = main(["ptq", "--checkpoint", tiny_checkpoint, "--size", "8", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not fit model resnet18" in err and "shape" in err, err


def test_cli_writes_json(tmp_path, capsys, tiny_checkpoint):
    rc = main(["ptq", "--checkpoint", tiny_checkpoint, "--model-options", "width=0.125", "--size", "8",
               "--methods", "cdf", "--adc-bits", "2", "--calib-seeds", "1", "--batch-size", "50",
               "--eval-examples", "100", "--no-plots", "--json", "--out", str(tmp_path / "o")])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["model"]["options"] == TINY and list(res["accuracy"]) == ["cdf"]
    assert res["files"] == ["results.json", "results.md"]


def test_main_job_rejects_unknown_stage(tmp_path, capsys):
    assert main(["main", "--stages", "digits,mnist", "--out", str(tmp_path)]) == 2
    assert "--stages: unknown stage(s) ['mnist']" in capsys.readouterr().err


@pytest.mark.parametrize("bins, fit_bins, factor", [(4096, 1024, 4), (4096, 4096, 1), (4096, 5000, 1), (3000, 1024, 3),
                                                    (1000, 1024, 1), (4096, 100, 64)])
def test_merge_factor(bins, fit_bins, factor):
    assert ptq.merge_factor(bins, fit_bins) == factor


@pytest.mark.parametrize("bins, fit_bins, match", [(4099, 1024, "cannot be merged evenly"), (4096, 8, "int >= 16"),
                                                   (4096, True, "int >= 16")])
def test_merge_factor_errors(bins, fit_bins, match):
    with pytest.raises(ValueError, match=f"fit_bins: .*{match}"):
        ptq.merge_factor(bins, fit_bins)


def test_fit_bins_changes_held_out_error_by_under_one_percent():
    # ReLU layers of different spreads; fitted on 4096-bin statistics merged
    # to 1024 and 256 bins, measured on the full-resolution statistics.
    from bskmq_jax import stats as st

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 100_000)).astype(np.float32) * np.array([[1.0], [0.3], [2.0]], np.float32)
    s = st.update(st.init_stats(0.0, np.abs(x).max(1) + 0.1, num_layers=3), np.maximum(x, 0.0))
    layers = {f"l{i}": jax.tree_util.tree_map(lambda a: a[i:i + 1], s) for i in range(3)}
    mse = {}
    for fb in (None, 1024, 256):
        fits = ptq.fit_all(layers, ["lloyd_max", "cdf"], [3], progress=False, pad_layers=1, fit_bins=fb)
        mse[fb] = {(m, n): ptq.layer_errors(layers, fits[m][3])[n]["mse"] for m in fits for n in layers}
    for fb in (1024, 256):
        for k, v in mse[None].items():
            assert mse[fb][k] == pytest.approx(v, rel=0.01), (fb, k)


def test_layer_errors_of_mixed_bit_widths_equal_separate_calls():
    from bskmq_jax import stats as st

    x = np.maximum(np.random.default_rng(1).normal(size=(2, 20_000)), 0.0).astype(np.float32)
    s = st.update(st.init_stats(0.0, 3.0, num_layers=2, bins=256), x)
    layers = {f"l{i}": jax.tree_util.tree_map(lambda a: a[i:i + 1], s) for i in range(2)}
    fits = ptq.fit_all(layers, ["linear", "cdf"], [2, 3], progress=False)
    sets = {(m, b): fits[m][b] for m in fits for b in (2, 3)}
    mixed = ptq.layer_errors_many(layers, sets)
    for (m, b), levels in sets.items():
        alone = ptq.layer_errors(layers, levels)
        for n in layers:
            assert mixed[(m, b)][n] == pytest.approx(alone[n], rel=1e-6, nan_ok=True), (m, b, n)
    assert mixed[("linear", 3)]["l0"]["used_levels"] > 4  # the 3-bit sets keep their own codes


def test_cli_fit_bins_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["ptq", "--fit-bins", "lots", "--out", str(tmp_path / "o")])
    assert "--fit-bins: expected an int >= 16 or 'none'" in capsys.readouterr().err
    from bskmq_jax.cli.ptq import _fit_bins

    assert _fit_bins("none") is None and _fit_bins("512") == 512
