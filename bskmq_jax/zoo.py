"""Model specs the jobs share, and the cached digits baseline of the main job.

A `ModelSpec` names a model, its architecture options and its crossbar
settings; PTQ writes it into ``results.json`` and fine-tuning rebuilds the
same model from it. `digits_baseline` trains the main job's CIFAR-stem
ResNet-18 on scikit-learn digits once and caches its weights under
``checkpoints/`` keyed by a hash of everything that decides them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from flax import nnx

from bskmq_jax.imc.config import MODES, IMCConfig
from bskmq_jax.io import write_json
from bskmq_jax.train import TrainConfig

__all__ = ["ModelSpec", "build", "DigitsRecipe", "digits_baseline", "config_hash"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A model and how its layers run on the crossbar."""

    name: str = "resnet18"  # a name in bskmq_jax.models.MODELS, or "minilm" (the shipped all-MiniLM-L6-v2 weights)
    num_classes: int | None = 10  # classifier outputs (None: no head)
    options: tuple[tuple[str, object], ...] = ()  # architecture options, e.g. (("stem", "cifar"), ("width", 0.25))
    in_bits: int = 8  # input DAC bits of every converted layer
    w_bits: int = 8  # weight bits of every converted layer
    adc_bits: int = 4  # NL-ADC bits (levels of another width reprogram it)
    mode: str = "fused"  # "fused" | "partial_sum"

    def __post_init__(self):
        from bskmq_jax.models import MODELS

        if self.name not in MODELS and self.name != "minilm":
            raise ValueError(f"name: unknown model {self.name!r}; known models are {[*MODELS, 'minilm']}")
        if self.mode not in MODES:
            raise ValueError(f"mode: {self.mode!r} is not one of {list(MODES)}")
        if isinstance(self.options, dict):
            object.__setattr__(self, "options", tuple(sorted(self.options.items())))
        self.imc_config()  # validates the bit widths once, naming the field

    def imc_config(self) -> IMCConfig:
        return IMCConfig(in_bits=self.in_bits, w_bits=self.w_bits, adc_bits=self.adc_bits, mode=self.mode)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"model spec: unknown field(s) {sorted(unknown)}; known fields are {sorted(known)}")
        return cls(**{**d, "options": dict(d.get("options", {}))})


def build(spec: ModelSpec, *, seed: int = 0) -> nnx.Module:
    """Builds the model of ``spec`` (randomly initialized with ``seed``; "minilm" loads its real weights)."""
    from bskmq_jax.models import create

    if spec.name == "minilm":
        from bskmq_jax.models.minilm import load_minilm

        return load_minilm(quant=spec.imc_config(), seed=seed)
    return create(spec.name, num_classes=spec.num_classes, quant=spec.imc_config(), seed=seed, **dict(spec.options))


def config_hash(obj) -> str:
    """A short stable hash of a JSON-able config."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DigitsRecipe:
    """How the main job's digits baseline is trained."""

    model: ModelSpec = ModelSpec(options=(("in_channels", 1), ("stem", "cifar"), ("width", 0.25)))  # the network
    size: int = 16  # digits are resized to size x size
    train: TrainConfig = TrainConfig(steps=400, batch_size=64, lr=3e-3, warmup_steps=30, weight_decay=5e-4,
                                     label_smoothing=0.1, log_every=50)  # optimization
    seed: int = 0  # initialization seed

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "size": self.size, "train": dataclasses.asdict(self.train), "seed": self.seed}

    def key(self) -> str:
        # Crossbar bit widths do not change float training, so they are not
        # part of the key: one float checkpoint serves every PTQ setting.
        d = self.to_dict()
        for f in ("in_bits", "w_bits", "adc_bits", "mode"):
            d["model"].pop(f)
        return config_hash(d)


def digits_baseline(recipe: DigitsRecipe = DigitsRecipe(), *, cache_dir="checkpoints", progress: bool = True,
                    retrain: bool = False) -> tuple[nnx.Module, dict]:
    """The trained digits model, from the cache or trained now (in float mode).

    Returns:
      ``(model, info)``: the model (IMC layers, float mode) and a dict with
      the checkpoint path, its config, test accuracy and training time.
    """
    from bskmq_jax.data import digits
    from bskmq_jax.imc.control import set_mode
    from bskmq_jax.imc.layers import QuantMode
    from bskmq_jax.models import export_checkpoint, load_checkpoint
    from bskmq_jax.train import evaluate_accuracy, train

    cache = Path(cache_dir) / f"digits-{recipe.model.name}-{recipe.key()}"
    weights, meta_path = cache / "model.safetensors", cache / "meta.json"
    model = build(recipe.model, seed=recipe.seed)
    set_mode(model, QuantMode.FLOAT)
    test = digits("test", batch_size=250, size=recipe.size)
    if weights.is_file() and meta_path.is_file() and not retrain:
        load_checkpoint(model, str(weights))
        info = json.loads(meta_path.read_text())
        return model, {**info, "checkpoint": str(weights), "cached": True}
    t0 = time.perf_counter()
    batches = digits("train", batch_size=recipe.train.batch_size, size=recipe.size, shuffle=True,
                     seed=recipe.train.seed, drop_last=True)
    summary = train(model, batches, recipe.train, progress=progress)
    acc = evaluate_accuracy(model, test)
    info = {"recipe": recipe.to_dict(), "test_top1": acc, "train_seconds": time.perf_counter() - t0,
            "train_summary": summary}
    cache.mkdir(parents=True, exist_ok=True)
    export_checkpoint(model, str(weights))  # atomic (write_safetensors)
    write_json(meta_path, info)
    return model, {**info, "checkpoint": str(weights), "cached": False}
