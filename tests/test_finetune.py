"""Fine-tuning: level strategies (frozen, learned, refit), the STE pass range, the job and `bskmq finetune`."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bskmq_jax import imc, ptq
from bskmq_jax.adc import STEConfig, nl_adc
from bskmq_jax.cli import main
from bskmq_jax.data import digits, sentences
from bskmq_jax.finetune import (FinetuneConfig, LevelConfig, LevelLogits, LevelStrategy, finetune_job, levels_from_logits,
                                logits_from_levels)
from bskmq_jax.levels import NLLevels, thresholds_from_levels
from bskmq_jax.train import TrainConfig, cross_entropy, evaluate_accuracy, train

Q = imc.IMCConfig(in_bits=6, w_bits=4, adc_bits=3)


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.fc1 = imc.IMCDense(64, 32, quant=Q, rngs=rngs)
        self.fc2 = imc.IMCDense(32, 10, quant=Q, activation="identity", rngs=rngs)

    def __call__(self, x):
        return self.fc2(self.fc1(x.reshape(x.shape[0], -1)))


def _loss(model, batch, label_smoothing):
    logits = model(batch["image"])
    return cross_entropy(logits, batch["label"], label_smoothing), logits


@pytest.fixture(scope="module")
def data():
    return {"train": digits("train", batch_size=50, size=8, shuffle=True, drop_last=True),
            "calib": digits("calib", batch_size=99, size=8), "test": digits("test", batch_size=250, size=8)}


@pytest.fixture(scope="module")
def ptq_levels(data):
    stats = ptq.calibrate(MLP(nnx.Rngs(0)), data["calib"], lambda m, b: m(b["image"]), progress=False)
    return ptq.fit_all(stats, ["linear"], [3], progress=False)["linear"][3]  # bs_kmq's fit compiles for ~9 s


def quantized_mlp(levels):
    m = MLP(nnx.Rngs(0))
    imc.load_levels(m, levels)
    imc.set_mode(m, "quantized")
    return m


def fine_tune(m, data, strategy, steps=10, lr=3e-3):
    cfg = TrainConfig(steps=steps, batch_size=50, lr=lr, log_every=5)
    return train(m, data["train"], cfg, loss_fn=strategy.loss_fn(_loss), groups=strategy.groups(cfg),
                 post_update=strategy.post_update, on_step=strategy.on_step, progress=False)


def test_logit_parametrization_is_sorted_and_inside_the_range_for_any_logits():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(scale=30.0, size=(64, 9)), jnp.float32)
    lo = jnp.asarray(rng.normal(size=64), jnp.float32)
    hi = lo + jnp.asarray(rng.uniform(0.1, 5.0, size=64), jnp.float32)
    lv = levels_from_logits(logits, lo, hi)
    assert bool(jnp.all(jnp.diff(lv, axis=-1) >= 0))
    assert bool(jnp.all((lv >= lo[:, None]) & (lv <= hi[:, None])))
    fitted = jnp.sort(jax.random.uniform(jax.random.key(1), (64, 8)), axis=-1) * (hi - lo)[:, None] + lo[:, None]
    back = levels_from_logits(logits_from_levels(fitted, lo, hi), lo, hi)
    np.testing.assert_allclose(back, fitted, atol=1e-5 * float(jnp.max(hi - lo)))


def test_pass_range_levels_blocks_gradients_the_conversion_cannot_follow():
    nl = NLLevels.from_levels(jnp.array([0.5, 1.0, 1.5, 2.0]), lo=0.0, hi=6.0)
    x = jnp.array([0.2, 1.2, 3.0, 7.0])
    grad = {r: jax.grad(lambda v: jnp.sum(nl_adc(v, nl, ste=STEConfig(pass_range=r))))(x) for r in ("range", "levels")}
    np.testing.assert_array_equal(grad["range"], [1.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(grad["levels"], [0.0, 1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="pass_range"):
        STEConfig(pass_range="wide")


def test_learned_levels_move_stay_sorted_inside_the_range_and_trace_once(data, ptq_levels):
    m = quantized_mlp(ptq_levels)
    strategy = LevelStrategy(LevelConfig(strategy="learned", level_lr=0.3), m)
    assert m.fc1.adc.ste.learn_levels and m.fc1.adc.ste.thresholds == "midpoint"
    summary = fine_tune(m, data, strategy)
    assert summary["traces"] == 1
    for name, before in ptq_levels.items():
        a = getattr(m, name).adc
        lv, lo, hi = np.asarray(a.levels[...]), float(a.lo[...]), float(a.hi[...])
        assert np.max(np.abs(lv - np.asarray(before.levels))) > 1e-3 * (hi - lo)  # the gradient reached them
        assert np.all(np.diff(lv) >= 0) and lo <= lv[0] and lv[-1] <= hi
        np.testing.assert_allclose(a.thresholds[...], thresholds_from_levels(a.levels[...]))
    strategy.finish(m)
    assert not nnx.state(m, LevelLogits) and m.fc1.adc.ste == STEConfig()


def test_frozen_levels_stay_while_the_weights_train(data, ptq_levels):
    m = quantized_mlp(ptq_levels)
    kernel = m.fc1.kernel[...]
    strategy = LevelStrategy(LevelConfig(strategy="frozen"), m)
    assert m.fc1.adc.ste.pass_range == "levels"
    assert fine_tune(m, data, strategy, steps=5)["traces"] == 1
    np.testing.assert_array_equal(m.fc1.adc.levels[...], ptq_levels["fc1"].levels)
    assert not np.array_equal(m.fc1.kernel[...], kernel)
    strategy.finish(m)
    assert m.fc1.adc.ste == STEConfig()


def test_refit_fits_running_statistics_of_the_quantized_network_without_retracing(data, ptq_levels):
    m = quantized_mlp(ptq_levels)
    strategy = LevelStrategy(LevelConfig(strategy="refit", refit_every=4), m, method="linear", bits=3)
    refits = []

    def on_step(step, model):
        out = strategy.on_step(step, model)
        refits.append(bool(out))
        with strategy.evaluating(model):  # evaluation data must not reach the statistics
            evaluate_accuracy(model, data["test"])
        model.train()
        return out

    cfg = TrainConfig(steps=10, batch_size=50, lr=1e-2, log_every=5)
    s = train(m, data["train"], cfg, loss_fn=_loss, groups=strategy.groups(cfg), on_step=on_step, progress=False)
    assert s["traces"] == 1 and [i + 1 for i, r in enumerate(refits) if r] == [4, 8]
    assert not np.array_equal(m.fc1.adc.levels[...], ptq_levels["fc1"].levels)
    # two training batches since the refit at step 8, none of the test batches
    assert float(imc.collect_stats(m)["fc1"].count[0]) == 2 * 50 * 32
    strategy.finish(m)
    assert not m.fc1.adc.record_quantized


@pytest.mark.parametrize("kwargs, match", [
    ({"strategy": "tuned"}, "strategy"), ({"refit_every": 0}, "refit_every"), ({"level_lr": 0.0}, "level_lr"),
    ({"pass_range": "all"}, "pass_range"), ({"refit_percentile": 50.0}, "refit_percentile"),
])
def test_level_config_names_the_bad_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LevelConfig(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"dataset": "cifar10"}, "from_ptq: fine-tuning on cifar10 starts from a PTQ result"),
    ({"dataset": "sentences"}, "dataset: 'sentences' cannot be fine-tuned"), ({"method": "median"}, "method"),
    ({"adc_bits": 9}, "adc_bits"), ({"from_ptq": "p", "in_bits": 4}, "in_bits"), ({"model": "vgg16"}, "model"),
    ({"in_bits": 0}, "in_bits"), ({"keep": 0}, "keep"), ({"eval_every": -1}, "eval_every"),
    ({"data_dir": ""}, "data_dir"), ({"eval_examples": 0}, "eval_examples"), ({"augment": "yes"}, "augment"),
])
def test_finetune_config_names_the_bad_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FinetuneConfig(out="o", **kwargs)


@pytest.fixture(scope="module")
def ptq_dir(tmp_path_factory):
    """A PTQ result folder as `bskmq ptq` writes it, for a tiny ResNet-18 on 8x8 digits."""
    from bskmq_jax.models import export_checkpoint
    from bskmq_jax.results import SCHEMA, levels_path, save_levels
    from bskmq_jax.zoo import ModelSpec, build

    d = tmp_path_factory.mktemp("ptq")
    spec = ModelSpec(options={"stem": "cifar", "width": 0.125, "in_channels": 1}, in_bits=6, w_bits=4, adc_bits=3)
    model = build(spec)
    export_checkpoint(model, str(d / "float.safetensors"))
    stats = ptq.calibrate(model, digits("calib", batch_size=99, size=8), lambda m, b: m(b["image"]), progress=False)
    save_levels(levels_path(d, "linear", 3), ptq.fit_all(stats, ["linear"], [3], progress=False)["linear"][3])
    res = {"schema": SCHEMA, "model": spec.to_dict(), "checkpoint": str(d / "float.safetensors"), "dataset": "digits",
           "config": {"size": 8}, "results": {}, "accuracy": {"linear": {"3": 0.1}}}
    (d / "results.json").write_text(json.dumps(res))
    return d


def _cli(ptq_dir, out, *extra):
    return ["finetune", "--from-ptq", str(ptq_dir), "--method", "linear", "--adc-bits", "3", "--steps", "6",
            "--batch-size", "48", "--checkpoint-every", "3", "--keep", "2", "--eval-every", "3", "--out", str(out), *extra]


def test_job_from_ptq_data_parallel_with_checkpoints_and_resume_rules(ptq_dir, tmp_path, capsys):
    out = tmp_path / "ft"
    cfg = FinetuneConfig(out=str(out), from_ptq=str(ptq_dir), method="linear", adc_bits=3,
                         levels=LevelConfig(strategy="frozen"), data_parallel=True, checkpoint_every=3, keep=2,
                         eval_every=3, train=TrainConfig(steps=6, batch_size=48, lr=1e-3, log_every=2))
    res = finetune_job(cfg, progress=False)
    for key in ("float_accuracy", "ptq_accuracy", "finetuned_accuracy", "steps_per_s", "config", "versions", "seed"):
        assert key in res
    assert res["train"]["traces"] == 1 and res["parallel"]["devices"] == 4 and res["resumed_from"] is None
    assert json.loads((out / "finetune.json").read_text())["finetuned_accuracy"] == res["finetuned_accuracy"]
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == list(range(1, 7)) and [r["step"] for r in recs if "test_accuracy" in r] == [3, 6]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["3", "6"]
    for f in ("loss.png", "accuracy.png", "model.safetensors", "levels/linear-3b.safetensors"):
        assert (out / f).is_file(), f

    assert main(_cli(ptq_dir, out, "--levels", "frozen", "--data-parallel")) == 2  # no --resume: would overwrite
    assert "already holds checkpoints" in capsys.readouterr().err
    assert main(_cli(ptq_dir, out, "--levels", "refit", "--data-parallel", "--resume")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "levels=" in err and '"strategy": "frozen"' in err
    assert main(_cli(ptq_dir, tmp_path / "fresh", "--resume")) == 2
    assert "no checkpoint to resume" in capsys.readouterr().err


class FakeSource:
    """An in-memory random-access source shaped like a ``tfds.data_source`` cifar10 split."""

    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.records = [{"image": rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8), "label": i % 10} for i in range(n)]

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]


@pytest.fixture(scope="module")
def cifar_ptq_dir(tmp_path_factory):
    """A PTQ result folder on cifar10 (8x8 images) for a tiny 3-channel ResNet-18.

    Its levels are evenly spaced over [-4, 4] in every layer instead of
    fitted (a calibration and fit would cost ~3 s; the job only needs levels).
    """
    from bskmq_jax.imc.control import _adcs
    from bskmq_jax.models import export_checkpoint
    from bskmq_jax.results import SCHEMA, levels_path, save_levels
    from bskmq_jax.zoo import ModelSpec, build

    d = tmp_path_factory.mktemp("ptq_cifar")
    spec = ModelSpec(options={"stem": "cifar", "width": 0.125}, in_bits=6, w_bits=4, adc_bits=3)
    model = build(spec)
    export_checkpoint(model, str(d / "float.safetensors"))
    even = NLLevels.from_levels(jnp.linspace(-4.0, 4.0, 8), method="linear")
    save_levels(levels_path(d, "linear", 3), {name: even for name in _adcs(model)})
    res = {"schema": SCHEMA, "model": spec.to_dict(), "checkpoint": str(d / "float.safetensors"), "dataset": "cifar10",
           "config": {"size": 8, "data_dir": "/prepared/tfds"}, "results": {}, "accuracy": {"linear": {"3": 0.1}}}
    (d / "results.json").write_text(json.dumps(res))
    return d


def test_full_scale_job_streams_batches_and_checkpoints_the_batch_count(cifar_ptq_dir, tmp_path, monkeypatch):
    from bskmq_jax import data as data_mod
    from bskmq_jax.checkpoint import CheckpointConfig, Checkpoints

    opened = []

    def fake_tfds_source(name, split, data_dir):
        opened.append((name, split, data_dir))
        return FakeSource(40 if split == "train" else 20, seed=split == "train")

    monkeypatch.setattr(data_mod, "_tfds_source", fake_tfds_source)
    out = tmp_path / "ft"
    cfg = FinetuneConfig(out=str(out), from_ptq=str(cifar_ptq_dir), method="linear", adc_bits=3, eval_examples=16,
                         checkpoint_every=2, keep=2, eval_every=2, plots=False,
                         train=TrainConfig(steps=4, batch_size=8, lr=1e-3, log_every=2))
    res = finetune_job(cfg, progress=False)
    assert res["dataset"] == "cifar10" and res["train"]["traces"] == 1
    assert sorted(opened) == [("cifar10", "test", "/prepared/tfds"), ("cifar10", "train", "/prepared/tfds")]
    assert res["data"]["evaluation"] == "cifar10:test (16 examples)" and "random crop and flip" in res["data"]["train"]
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if "test_accuracy" in r] == [2, 4]
    ckpts = Checkpoints(CheckpointConfig(directory=str(out / "checkpoints")))
    assert [ckpts.meta(i)["data"] for i in (2, 4)] == [{"batch": 2}, {"batch": 4}]  # the data position: batches consumed
    assert ckpts.meta(4)["compat"]["augment"] is True and ckpts.meta(4)["compat"]["dataset"] == "cifar10"
    ckpts.close()


def test_training_on_a_random_access_stream_resumes_exactly_from_the_batch_count(data, ptq_levels, tmp_path):
    import shutil

    from bskmq_jax.checkpoint import CheckpointConfig, Checkpoints
    from bskmq_jax.streams import SourceBatches

    x, y = data["train"].arrays["image"][:60], data["train"].arrays["label"][:60]
    records = [{"image": x[i], "label": y[i]} for i in range(60)]

    def pre(rows, rng):  # a little noise from the batch's generator, as augmentation would draw
        img = np.stack([r["image"] for r in rows])
        return {"image": img + 0.1 * rng.standard_normal(img.shape).astype(np.float32),
                "label": np.array([r["label"] for r in rows], np.int32)}

    cfg = TrainConfig(steps=8, batch_size=20, lr=3e-3, log_every=2)  # 3 batches a pass: resumes inside pass 2

    def run(ckdir, log, resume=False):
        m = quantized_mlp(ptq_levels)
        ckpts = Checkpoints(CheckpointConfig(directory=str(ckdir), every=4, keep=2), compat={"run": "stream"})
        train(m, SourceBatches(records, 20, pre, shuffle=True, seed=3, drop_last=True), cfg, loss_fn=_loss,
              progress=False, log_path=str(log), checkpoints=ckpts, resume=resume)
        ckpts.close()
        return [json.loads(line)["loss"] for line in log.read_text().splitlines()], m

    losses, m = run(tmp_path / "a", tmp_path / "a.jsonl")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "8")
    shutil.copy(tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    resumed, m2 = run(tmp_path / "b", tmp_path / "b.jsonl", resume=True)
    assert len(losses) == 8 and resumed == losses  # steps 5..8 again, bit for bit
    np.testing.assert_array_equal(m2.fc1.kernel[...], m.fc1.kernel[...])


def test_sst2_job_trains_a_text_classifier_on_input_ids_and_attention_mask(tmp_path, monkeypatch):
    import shutil

    from bskmq_jax import data as data_mod
    from bskmq_jax.imc.control import _adcs
    from bskmq_jax.models import export_checkpoint
    from bskmq_jax.models.minilm import minilm_dir
    from bskmq_jax.results import SCHEMA, levels_path, save_levels
    from bskmq_jax.zoo import ModelSpec, build

    d = tmp_path / "ptq"
    d.mkdir()
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_dir() / f, d / f)  # the job tokenizes with the tokenizer next to the checkpoint, as PTQ does
    spec = ModelSpec(name="distilbert", num_classes=2, options={"size": "small", "hidden": 16, "layers": 1, "heads": 2,
                                                                "intermediate": 32}, in_bits=6, w_bits=4, adc_bits=3)
    model = build(spec)
    export_checkpoint(model, str(d / "model.safetensors"))
    even = NLLevels.from_levels(jnp.linspace(-4.0, 4.0, 8), method="linear")
    save_levels(levels_path(d, "linear", 3), {name: even for name in _adcs(model)})
    (d / "results.json").write_text(json.dumps({
        "schema": SCHEMA, "model": spec.to_dict(), "checkpoint": str(d / "model.safetensors"), "dataset": "glue/sst2",
        "config": {"data_dir": "/prepared/tfds"}, "results": {}, "accuracy": {}}))
    rows = [{"sentence": s.encode(), "label": i % 2} for i, s in enumerate(sentences("eval")[:12])]

    class Rows:
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return rows[i]

    monkeypatch.setattr(data_mod, "_tfds_source", lambda name, split, data_dir: Rows())
    cfg = FinetuneConfig(out=str(tmp_path / "ft"), from_ptq=str(d), method="linear", adc_bits=3, eval_examples=8,
                         eval_every=0, checkpoint_every=2, plots=False, train=TrainConfig(steps=2, batch_size=4, log_every=1))
    res = finetune_job(cfg, progress=False)
    assert res["dataset"] == "glue/sst2" and res["train"]["traces"] == 1 and res["data"]["evaluation"].endswith("(8 examples)")
    recs = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2] and all(np.isfinite(r["loss"]) for r in recs)
    assert res["finetuned_accuracy"] in {k / 8 for k in range(9)}  # evaluated on the 8 examples


def test_full_scale_job_refuses_a_missing_dataset_or_another_dataset_before_writing(cifar_ptq_dir, tmp_path, capsys):
    out = tmp_path / "ft"
    # tensorflow-datasets is not installed here (where it is, the folder is not prepared): both name the steps
    assert main(["finetune", "--from-ptq", str(cifar_ptq_dir), "--method", "linear", "--data-dir", str(tmp_path / "none"),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "dataset cifar10:" in err and "tfds build cifar10 --data_dir=DATA_DIR" in err
    assert not out.exists()
    with pytest.raises(ValueError, match="dataset: 'digits' differs from the PTQ result's dataset 'cifar10'"):
        finetune_job(FinetuneConfig(out=str(out), from_ptq=str(cifar_ptq_dir), dataset="digits", method="linear"))
    assert not out.exists()


def test_cli_choices_match_the_library():
    from bskmq_jax import finetune, train as train_mod
    from bskmq_jax.cli import finetune as cli

    assert cli.STRATEGIES == finetune.STRATEGIES and cli.OPTIMIZERS == train_mod.OPTIMIZERS


@pytest.mark.parametrize("args, match", [
    (["--levels", "tuned"], "invalid choice"), (["--adc-bits", "9"], "adc_bits"), (["--steps", "0"], "steps"),
    (["--steps", "x"], "invalid int"), (["--from-ptq", "/nonexistent/ptq"], "do not exist"),
    (["--model", "bert"], "needs a PTQ result"),
])
def test_cli_bad_flags_give_one_line_and_status_2(tmp_path, capsys, args, match):
    argv = ["finetune", "--out", str(tmp_path / "o"), *args]
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's own errors (through the one-line handler)
        status = e.code
    err = capsys.readouterr().err.strip()
    assert status == 2 and match in err and err.count("\n") == 0
    assert not (tmp_path / "o").exists()
