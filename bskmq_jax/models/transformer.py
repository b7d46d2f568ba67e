"""Pieces DistilBERT and BERT share: sizes, embeddings, attention, masks, weight mapping.

Both models follow Hugging Face transformers (``DistilBertModel``,
``BertModel``) and name every NNX attribute exactly as the Hugging Face
module it mirrors (``transformer.layer.0.attention.q_lin``,
``encoder.layer.0.attention.output.LayerNorm``). The reference checkpoint's
keys are therefore the variables' dotted paths plus a suffix (``weight`` ->
``kernel`` / ``scale`` / ``embedding``), and `hf_rules` derives the whole
mapping from the model's modules instead of a hand-typed table.

What converts on the chip (built through the model's `LayerFactory`): every
dense projection, and the two attention products ``Q K^T`` (``score``) and
``P V`` (``context``). Softmax, LayerNorm, residual adds, embeddings and
dropout stay digital.

Dropout is built deterministic (inference, like a Hugging Face model after
``from_pretrained``); ``model.train()`` enables it (rng stream ``dropout``)
and ``model.eval()`` disables it again.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bskmq_jax.imc.layers import IMCDense
from bskmq_jax.models.weights import (
    DEFAULT_IGNORE,
    Rule,
    dense_rules,
    embedding_rules,
    norm_rules,
)

__all__ = [
    "TransformerSizes",
    "SMALL",
    "resolve_sizes",
    "Embeddings",
    "attention_bias",
    "multi_head_attention",
    "layer_norm",
    "dropout",
    "check_inputs",
    "check_num_classes",
    "hf_rules",
    "detect_prefix",
    "load_hf_checkpoint",
]

#: The small CPU variant (``size="small"``): 2 layers of width 64. The
#: vocabulary and positions stay those of the base models, so real tokenizer
#: output runs through it.
SMALL = dict(layers=2, hidden=64, heads=2, intermediate=128)


@dataclasses.dataclass(frozen=True)
class TransformerSizes:
    """Architecture of a BERT-family encoder (defaults: bert-base / distilbert-base).

    Attributes:
      vocab: vocabulary size (word embeddings).
      hidden: model width ``H``.
      layers: number of encoder layers.
      heads: attention heads (must divide ``hidden``).
      intermediate: FFN inner width.
      max_positions: learned absolute position embeddings.
      type_vocab: token-type (segment) vocabulary; 0 for none (DistilBERT).
      eps: LayerNorm epsilon.
      dropout: hidden dropout (embeddings, FFN and projection outputs).
      attention_dropout: dropout on the attention probabilities.
      classifier_dropout: dropout before the classifier.
    """

    vocab: int = 30522
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072
    max_positions: int = 512
    type_vocab: int = 2
    eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    classifier_dropout: float = 0.1

    def __post_init__(self):
        for name in ("vocab", "hidden", "layers", "heads", "intermediate", "max_positions", "type_vocab"):
            v = getattr(self, name)
            low = 0 if name == "type_vocab" else 1
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name}: {v!r} must be an int >= {low}")
        if self.hidden % self.heads:
            raise ValueError(f"heads: {self.heads} must divide hidden={self.hidden}")
        if not (isinstance(self.eps, (int, float)) and 0 < self.eps < 1):
            raise ValueError(f"eps: {self.eps!r} must be a float in (0, 1)")
        for name in ("dropout", "attention_dropout", "classifier_dropout"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v < 1):
                raise ValueError(f"{name}: {v!r} must be a rate in [0, 1)")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def resolve_sizes(defaults: dict, size: str, options: dict) -> TransformerSizes:
    """Sizes from a model's defaults, a preset (``"base"`` / ``"small"``) and explicit options.

    Raises:
      ValueError: for an unknown preset or option name, or a bad value.
    """
    presets = {"base": {}, "small": SMALL}
    if size not in presets:
        raise ValueError(f"size: unknown preset {size!r}; choose one of {list(presets)}")
    fields = [f.name for f in dataclasses.fields(TransformerSizes)]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(f"model: unknown option(s) {unknown}; the transformer options are {fields} and size")
    given = {k: v for k, v in options.items() if v is not None}
    return TransformerSizes(**{**defaults, **presets[size], **given})


def layer_norm(features: int, eps: float, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """A LayerNorm as PyTorch computes it (two-pass variance, for exact equivalence)."""
    return nnx.LayerNorm(features, epsilon=eps, use_fast_variance=False, rngs=rngs)


def dropout(rate: float, rngs: nnx.Rngs) -> nnx.Dropout:
    """Dropout, off until ``model.train()``."""
    return nnx.Dropout(rate, deterministic=True, rngs=rngs)


class Embeddings(nnx.Module):
    """Word + (token-type) + learned position embeddings, LayerNorm, dropout.

    Mirrors ``BertEmbeddings`` (``type_vocab > 0``) and DistilBERT's
    ``Embeddings`` (``type_vocab == 0``); digital on the chip.
    """

    def __init__(self, s: TransformerSizes, rngs: nnx.Rngs):
        self.word_embeddings = nnx.Embed(s.vocab, s.hidden, rngs=rngs)
        self.position_embeddings = nnx.Embed(s.max_positions, s.hidden, rngs=rngs)
        self.token_type_embeddings = nnx.Embed(s.type_vocab, s.hidden, rngs=rngs) if s.type_vocab else None
        self.LayerNorm = layer_norm(s.hidden, s.eps, rngs)
        self.dropout = dropout(s.dropout, rngs)

    def __call__(self, input_ids, token_type_ids=None):
        """``input_ids [B, L]`` (and ``token_type_ids [B, L]``) -> ``[B, L, H]``."""
        length = input_ids.shape[1]
        x = self.word_embeddings(input_ids)
        if self.token_type_embeddings is not None:
            # BERT adds token types before positions; absent types are segment 0.
            if token_type_ids is None:
                x = x + self.token_type_embeddings.embedding[0]
            else:
                x = x + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings.embedding[:length]
        return self.dropout(self.LayerNorm(x))


def attention_bias(attention_mask, dtype=jnp.float32):
    """The additive mask of Hugging Face attention: 0 on kept keys, the dtype's minimum on padded ones.

    Args:
      attention_mask: ``[B, L]`` (1 = token, 0 = padding) or None.

    Returns:
      ``[B, 1, 1, L]`` bias added to the scores (None when there is no mask).
    """
    if attention_mask is None:
        return None
    keep = jnp.asarray(attention_mask)[:, None, None, :] > 0
    return jnp.where(keep, jnp.zeros((), dtype), jnp.finfo(dtype).min)


def multi_head_attention(q, k, v, bias, *, heads: int, score: Callable, context: Callable, drop: Callable):
    """Scaled dot-product attention over projected ``q, k, v`` (``[B, L, H]`` each).

    ``score(Q, K^T)`` and ``context(P, V)`` are the model's `IMCMatmul` s: on
    the chip the scores and the context are converted outputs. The scaling by
    ``1/sqrt(head_dim)`` follows the score product as in Hugging Face's eager
    attention, then the mask bias, softmax (digital) and dropout.

    Returns:
      ``[B, L, H]`` context with heads merged.
    """
    b, length, hidden = q.shape
    d = hidden // heads

    def split(x):  # [B, L, H] -> [B, heads, L, d]
        return x.reshape(b, length, heads, d).transpose(0, 2, 1, 3)

    s = score(split(q), split(k).swapaxes(-1, -2)) * (d**-0.5)
    if bias is not None:
        s = s + bias
    p = drop(jax.nn.softmax(s, axis=-1))
    out = context(p, split(v))
    return out.transpose(0, 2, 1, 3).reshape(b, length, hidden)


def check_inputs(input_ids, attention_mask, token_type_ids, s: TransformerSizes):
    """Validates token inputs (shapes are static, so this also runs under jit).

    Raises:
      ValueError: naming the argument whose shape or dtype is wrong.
    """
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids: expected [batch, length], got shape {tuple(input_ids.shape)}")
    if not jnp.issubdtype(input_ids.dtype, jnp.integer):
        raise ValueError(f"input_ids: expected integer token ids, got {input_ids.dtype}")
    if input_ids.shape[1] > s.max_positions:
        raise ValueError(f"input_ids: length {input_ids.shape[1]} exceeds max_positions={s.max_positions}")
    for name, a in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if a is not None and tuple(a.shape) != tuple(input_ids.shape):
            raise ValueError(f"{name}: shape {tuple(a.shape)} differs from input_ids {tuple(input_ids.shape)}")
    if token_type_ids is not None and not s.type_vocab:
        raise ValueError("token_type_ids: this model has no token-type embeddings")


def check_num_classes(num_classes) -> None:
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes: {num_classes!r} must be None (base model) or an int >= 1")


# --- Weight mapping ---------------------------------------------------------


def hf_rules(model: nnx.Module, prefix: str, unprefixed: tuple[str, ...] = ("pre_classifier", "classifier")) -> list[Rule]:
    """The Hugging Face mapping of a model whose attribute paths mirror the reference modules.

    Every `IMCDense`, `nnx.LayerNorm` and `nnx.Embed` at NNX path ``p`` maps
    to the checkpoint key ``prefix + ".".join(p)`` (with the torch suffixes);
    the sequence-classification head's top-level modules (``unprefixed``)
    carry no prefix, as in ``*ForSequenceClassification`` checkpoints.
    """
    rules: list[Rule] = []
    for path, m in nnx.iter_modules(model):
        if not path:
            continue
        key = ("" if path[0] in unprefixed else prefix) + ".".join(str(p) for p in path)
        if isinstance(m, IMCDense):
            rules += dense_rules(tuple(path), key)
        elif isinstance(m, nnx.LayerNorm):
            rules += norm_rules(tuple(path), key)
        elif isinstance(m, nnx.Embed):
            rules += embedding_rules(tuple(path), key)
    return rules


def detect_prefix(keys, base_prefix: str) -> str:
    """``base_prefix`` (e.g. ``"bert."``) if the checkpoint's encoder keys carry it, else ``""``."""
    keys = [k for k in keys if not any(fnmatch.fnmatchcase(k, p) for p in DEFAULT_IGNORE)]
    return base_prefix if any(k.startswith(base_prefix) for k in keys) else ""


def load_hf_checkpoint(model: nnx.Module, checkpoint, *, strict: bool = True) -> nnx.Module:
    """Loads a Hugging Face ``model.safetensors`` (path or ``{key: array}``), with or without the base prefix.

    Same as `bskmq_jax.models.load_checkpoint`, whose ``checkpoint_rules``
    hook on these models detects whether the keys start with
    ``"distilbert."`` / ``"bert."`` (a checkpoint saved from a task model).
    """
    from bskmq_jax.models import load_checkpoint

    return load_checkpoint(model, checkpoint, strict=strict)
