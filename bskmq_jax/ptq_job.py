"""The PTQ job behind ``bskmq ptq`` and the main job: data, model, sweep, report.

`PTQJobConfig` says what to run; `run_ptq_job` resolves the data source and
the model, runs `bskmq_jax.ptq.sweep` over every method and bit width and
writes the result directory (`bskmq_jax.results`): ``results.json``,
``results.md``, the levels of every method and bit width, and the plots.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path

import numpy as np

from bskmq_jax._validate import check_bits_list
from bskmq_jax.data import Batches
from bskmq_jax.imc.config import MODES
from bskmq_jax.results import SCHEMA, levels_path, save_levels

__all__ = ["PTQJobConfig", "run_ptq_job", "DATASETS", "ALL_METHODS", "versions", "image_size"]

ALL_METHODS = ("linear", "lloyd_max", "cdf", "kmeans", "kmeans_exact", "bs_kmq")
#: dataset -> (task kind, calibration split, evaluation split)
DATASETS = {
    "digits": ("image", "calib", "test"),
    "sentences": ("sentence", "calib", "eval"),
    "cifar10": ("image", "train", "test"),
    "imagenet2012": ("image", "train", "validation"),
    "glue/sst2": ("sentence", "train", "validation"),
}
_IMAGE_MODELS = ("resnet18", "vgg16", "vgg16_bn", "inception_v3")
_TEXT_MODELS = ("minilm", "distilbert", "bert")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PTQJobConfig:
    """One PTQ comparison: a model on a dataset, every method at every bit width."""

    model: str = "resnet18"  # resnet18 | vgg16 | vgg16_bn | inception_v3 | minilm | distilbert | bert
    model_options: tuple[tuple[str, object], ...] = ()  # architecture options (digits default: CIFAR stem, width 0.25, 1 channel)
    dataset: str = "digits"  # a key of DATASETS
    checkpoint: str | None = None  # float weights (safetensors); None: cached digits baseline / shipped MiniLM
    methods: tuple[str, ...] = ALL_METHODS  # quantization methods to compare
    adc_bits: tuple[int, ...] = (2, 3, 4)  # NL-ADC resolutions to sweep (bits)
    in_bits: int = 8  # input DAC bits
    w_bits: int = 8  # weight bits
    mode: str = "fused"  # "fused" | "partial_sum"
    batch_size: int | None = None  # examples per batch (None: 125 digits, 60 sentences, else 128; a divisor of the split keeps one compiled shape)
    calib_batches: int = 1  # batches per calibration set
    calib_seeds: int = 3  # calibration sets (random subsets of the calibration split), one per seed
    eval_examples: int | None = None  # cap on evaluation examples (None: the whole split)
    clip_percentile: float = 100.0  # ADC range: this percentile of calibration values (100: the maximum)
    bs_kmq_mode: str | None = None  # BS-KMQ suppression rule (None: the method's default)
    fit_bins: int | None = 1024  # fit on calibration histograms merged to at most this many bins (None: all 4096)
    size: int | None = None  # image side in pixels (None: 16 for digits, 32 for cifar10, 224/299 for imagenet2012)
    data_dir: str | None = None  # tensorflow-datasets data_dir for the full-scale datasets
    seed: int = 0  # base seed: calibration subsets and k-means seeding use seed + i
    cache_dir: str = "checkpoints"  # where the digits baseline is cached (trained on first use)

    def __post_init__(self):
        from bskmq_jax.quantizers import METHODS

        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: unknown dataset {self.dataset!r}; choose one of {list(DATASETS)}")
        kind = DATASETS[self.dataset][0]
        allowed = _IMAGE_MODELS if kind == "image" else _TEXT_MODELS
        if self.model not in allowed:
            raise ValueError(f"model: {self.model!r} does not run on {self.dataset} ({kind} data); choose one of {list(allowed)}")
        if not self.methods:
            raise ValueError("methods: at least one method is needed")
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"methods: unknown method {m!r}; choose from {list(METHODS)}")
        check_bits_list("adc_bits", self.adc_bits, 1, 8)
        if self.mode not in MODES:
            raise ValueError(f"mode: {self.mode!r} is not one of {list(MODES)}")
        if self.batch_size is None:
            object.__setattr__(self, "batch_size", {"digits": 125, "sentences": 60}.get(self.dataset, 128))
        for name in ("batch_size", "calib_batches", "calib_seeds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: {v!r} must be an int >= 1")
        if self.eval_examples is not None and self.eval_examples < 1:
            raise ValueError(f"eval_examples: {self.eval_examples} must be >= 1 or None")
        if not 50.0 < self.clip_percentile <= 100.0:
            raise ValueError(f"clip_percentile: {self.clip_percentile} must be in (50, 100]")
        if self.fit_bins is not None and (isinstance(self.fit_bins, bool) or not isinstance(self.fit_bins, int)
                                          or self.fit_bins < 16):
            raise ValueError(f"fit_bins: {self.fit_bins!r} must be an int >= 16 or None")
        if isinstance(self.model_options, dict):
            object.__setattr__(self, "model_options", tuple(sorted(self.model_options.items())))
        if self.dataset in ("cifar10", "imagenet2012", "glue/sst2") and self.checkpoint is None:
            raise ValueError(f"checkpoint: {self.dataset} needs trained weights (--checkpoint FILE.safetensors); "
                             "only digits (trained on first use) and minilm (shipped) have defaults")
        if self.model in ("distilbert", "bert") and self.checkpoint is None:
            raise ValueError(f"checkpoint: {self.model} needs Hugging Face weights (--checkpoint model.safetensors); "
                             "use --model minilm for the shipped all-MiniLM-L6-v2")
        # the quantizer options and the crossbar config are validated here, once
        self.model_spec()

    def image_size(self) -> int:
        return image_size(self.dataset, self.model, self.size)

    def model_spec(self):
        from bskmq_jax.zoo import DigitsRecipe, ModelSpec

        opts = dict(self.model_options)
        if self.dataset == "digits" and self.model in _IMAGE_MODELS:
            # the main job's digits network (zoo.DigitsRecipe) is the default for resnet18
            base = dict(DigitsRecipe().model.options) if self.model == "resnet18" else {"in_channels": 1}
            opts = {**base, **opts}
        if self.model == "minilm":
            return ModelSpec(name="minilm", num_classes=None, in_bits=self.in_bits, w_bits=self.w_bits,
                             adc_bits=max(self.adc_bits), mode=self.mode)
        n = {"digits": 10, "cifar10": 10, "imagenet2012": 1000, "glue/sst2": 2}.get(self.dataset)
        return ModelSpec(name=self.model, num_classes=n, options=opts, in_bits=self.in_bits, w_bits=self.w_bits,
                         adc_bits=max(self.adc_bits), mode=self.mode)

    def fit_options(self) -> dict:
        return {"fit_bins": self.fit_bins, **({"mode": self.bs_kmq_mode} if self.bs_kmq_mode else {})}

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model_options"] = dict(self.model_options)
        return d


def image_size(dataset: str, model: str, size: int | None = None) -> int:
    """Image side of a PTQ run: ``size``, or the dataset's default (fine-tuning from its result uses the same)."""
    if size is not None:
        return size
    return {"digits": 16, "cifar10": 32}.get(dataset, 299 if model == "inception_v3" else 224)


def versions() -> dict:
    """`bskmq_jax.cli.levels.versions` plus optax, the platform and the devices a result was measured on."""
    import jax
    import optax

    from bskmq_jax.cli.levels import versions as base

    return {**base(), "optax": optax.__version__, "platform": platform.platform(), "devices": [str(d) for d in jax.devices()]}


def _subset(b: Batches, n: int, seed: int) -> Batches:
    """``n`` examples of ``b`` drawn without replacement with ``seed``."""
    n = min(n, b.num_examples)
    idx = np.sort(np.random.default_rng([seed, 1]).permutation(b.num_examples)[:n])
    return dataclasses.replace(b, arrays={k: v[idx] for k, v in b.arrays.items()}, shuffle=False, _epoch=0)


def _load(cfg: PTQJobConfig, progress: bool):
    """(model, task, calibration split, evaluation split, data description, checkpoint info)."""
    from bskmq_jax import data
    from bskmq_jax.ptq import Classification, SentenceFidelity
    from bskmq_jax.zoo import DigitsRecipe, digits_baseline

    spec = cfg.model_spec()
    kind, calib_split, eval_split = DATASETS[cfg.dataset]
    if cfg.dataset == "digits":
        size = cfg.image_size()
        calib = data.digits(calib_split, batch_size=cfg.batch_size, size=size)
        evals = data.digits(eval_split, batch_size=cfg.batch_size, size=size)
        if cfg.checkpoint is None:
            model, info = digits_baseline(DigitsRecipe(model=spec, size=size), cache_dir=cfg.cache_dir, progress=progress)
        else:
            model, info = _from_checkpoint(spec, cfg.checkpoint), {"checkpoint": cfg.checkpoint}
        task = Classification()
    elif kind == "image":
        size = cfg.image_size()
        calib = data.tfds_images(cfg.dataset, calib_split, data_dir=cfg.data_dir, batch_size=cfg.batch_size, size=size,
                                 limit=cfg.calib_batches * cfg.batch_size * cfg.calib_seeds * 4)
        evals = data.tfds_images(cfg.dataset, eval_split, data_dir=cfg.data_dir, batch_size=cfg.batch_size, size=size,
                                 limit=cfg.eval_examples)
        model, info = _from_checkpoint(spec, cfg.checkpoint), {"checkpoint": cfg.checkpoint}
        task = Classification()
    else:
        from bskmq_jax.models import minilm

        if cfg.model == "minilm":
            model = minilm.load_minilm(quant=spec.imc_config())
            info = {"checkpoint": str(minilm.minilm_dir() / "model.safetensors")}
            tok = minilm.minilm_tokenizer()
        else:
            model, info = _from_checkpoint(spec, cfg.checkpoint), {"checkpoint": cfg.checkpoint}
            tok = minilm.minilm_tokenizer(Path(cfg.checkpoint).parent)
        if cfg.dataset == "sentences":
            calib = data.tokenize(data.sentences(calib_split), tok, max_length=32, batch_size=cfg.batch_size)
            evals = data.tokenize(data.sentences(eval_split), tok, max_length=32, batch_size=cfg.batch_size)
        else:
            calib = data.tfds_text(cfg.dataset, calib_split, tok, data_dir=cfg.data_dir, batch_size=cfg.batch_size,
                                   limit=cfg.calib_batches * cfg.batch_size * cfg.calib_seeds * 4)
            evals = data.tfds_text(cfg.dataset, eval_split, tok, data_dir=cfg.data_dir, batch_size=cfg.batch_size,
                                   limit=cfg.eval_examples)
        task = (SentenceFidelity(embed=sentence_embeddings) if cfg.dataset == "sentences"
                else Classification(inputs=("input_ids", "attention_mask", "token_type_ids")))
    if cfg.eval_examples is not None:
        evals = evals.take(cfg.eval_examples)
    desc = {"calibration": f"{cfg.dataset}:{calib_split}", "evaluation": f"{cfg.dataset}:{eval_split}",
            "disjoint": True, "calibration_examples_per_set": min(cfg.calib_batches * cfg.batch_size, calib.num_examples),
            "evaluation_examples": evals.num_examples}
    return model, task, calib, evals, desc, info


def sentence_embeddings(model, batch):
    """Mean-pooled, L2-normalized last hidden states ``[B, H]`` of a BERT-family encoder."""
    from bskmq_jax.models.minilm import l2_normalize, mean_pool

    args = [batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch]
    out = model(*args)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out
    return l2_normalize(mean_pool(hidden, batch["attention_mask"]))


def _from_checkpoint(spec, path: str):
    from bskmq_jax.models import load_checkpoint
    from bskmq_jax.zoo import build

    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    model = build(spec)
    try:
        load_checkpoint(model, path)
    except ValueError as e:
        raise ValueError(f"checkpoint {path} does not fit model {spec.name} {dict(spec.options)}: {e}") from None
    return model


def run_ptq_job(cfg: PTQJobConfig, out_dir, *, progress: bool = True, plots: bool = True) -> dict:
    """Runs the PTQ comparison of ``cfg`` and writes ``out_dir``.

    Returns:
      the ``results.json`` content (see `bskmq_jax.results`).
    """
    from bskmq_jax.ptq import sweep
    from bskmq_jax.ptq_report import write_report

    t0 = time.perf_counter()
    model, task, calib, evals, desc, info = _load(cfg, progress)
    t_load = time.perf_counter() - t0
    n_calib = cfg.calib_batches * cfg.batch_size
    sets = [_subset(calib, n_calib, cfg.seed + i) for i in range(cfg.calib_seeds)]
    summary, extras = sweep(model, task, sets, evals, methods=cfg.methods, bits=cfg.adc_bits,
                            clip_percentile=cfg.clip_percentile, seed=cfg.seed, progress=progress, **cfg.fit_options())
    metric = "top1" if "top1" in summary["float"] else "cosine"
    res = {
        "schema": SCHEMA,
        "config": cfg.to_dict(),
        "model": cfg.model_spec().to_dict(),
        "checkpoint": info.get("checkpoint"),
        "baseline": {k: v for k, v in info.items() if k != "checkpoint"},
        "dataset": cfg.dataset,
        "data": desc,
        "seed": cfg.seed,
        "versions": versions(),
        "metric": metric,
        **summary,
        "accuracy": {m: {str(b): r["mean"][metric] for b, r in per.items()} for m, per in summary["results"].items()},
    }
    res["results"] = {m: {str(b): r for b, r in per.items()} for m, per in summary["results"].items()}
    res["timing"]["load"] = t_load
    out = Path(out_dir)
    for m, per in extras["fits"].items():
        for b, levels in per.items():
            save_levels(levels_path(out, m, b), levels)
    res["timing"]["total"] = time.perf_counter() - t0
    write_report(res, extras, out, plots=plots)
    return res
