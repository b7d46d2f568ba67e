"""BERT encoder (Hugging Face ``BertModel``: token types, pooler) with NL-ADC conversion.

The structure and attribute names mirror transformers 5.23 exactly, so the
checkpoint keys are the attribute paths (see `transformer.hf_rules`)::

    embeddings.{word_embeddings, position_embeddings, token_type_embeddings, LayerNorm}
    encoder.layer.{i}.attention.self.{query, key, value}        IMCDense
    encoder.layer.{i}.attention.self.{score, context}           IMCMatmul (Q K^T, P V)
    encoder.layer.{i}.attention.output.{dense, LayerNorm}
    encoder.layer.{i}.intermediate.dense (GELU folded into the NL-ADC)
    encoder.layer.{i}.output.{dense, LayerNorm}
    pooler.dense (tanh folded into the NL-ADC)
    classifier                                                  with num_classes

With ``num_classes`` the model is ``BertForSequenceClassification``: the
pooled output -> dropout -> ``classifier``; its checkpoint keys carry the
``bert.`` prefix on the encoder (``key_prefix``). `bert_from_hf_config`
builds the model a Hugging Face ``config.json`` describes (e.g.
all-MiniLM-L6-v2, see `bskmq_jax.models.minilm`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import jax
from flax import nnx

from bskmq_jax.models.quant import LayerFactory
from bskmq_jax.models.transformer import (
    Embeddings,
    TransformerSizes,
    attention_bias,
    check_inputs,
    check_num_classes,
    dropout,
    hf_rules,
    layer_norm,
    multi_head_attention,
    resolve_sizes,
)

__all__ = ["Bert", "BertOutput", "bert", "bert_from_hf_config", "sizes_from_hf_config", "DEFAULTS"]

#: ``BertConfig()`` (bert-base) in `TransformerSizes` terms.
DEFAULTS = dict(vocab=30522, hidden=768, layers=12, heads=12, intermediate=3072, max_positions=512, type_vocab=2,
                eps=1e-12, dropout=0.1, attention_dropout=0.1, classifier_dropout=0.1)


class BertOutput(NamedTuple):
    """The base model's outputs (a pytree; unpacks as ``hidden, pooled = model(ids)``).

    Attributes:
      last_hidden_state: ``[B, L, H]``.
      pooler_output: ``[B, H]`` (``tanh(dense(hidden[:, 0]))``), or None
        for a model built with ``pooler=False``.
    """

    last_hidden_state: jax.Array
    pooler_output: jax.Array | None


class BertSelfAttention(nnx.Module):
    """``attention.self``: Q/K/V projections and the two attention products."""

    def __init__(self, f: LayerFactory, name: str, s: TransformerSizes, rngs: nnx.Rngs):
        h = s.hidden
        self.heads = s.heads
        self.query = f.dense(f"{name}.query", h, h)
        self.key = f.dense(f"{name}.key", h, h)
        self.value = f.dense(f"{name}.value", h, h)
        self.score = f.matmul(f"{name}.score")
        # Softmax probabilities are non-negative: an unsigned DAC.
        self.context = f.matmul(f"{name}.context", input_signed=False)
        self.dropout = dropout(s.attention_dropout, rngs)

    def __call__(self, x, bias):
        return multi_head_attention(self.query(x), self.key(x), self.value(x), bias, heads=self.heads,
                                    score=self.score, context=self.context, drop=self.dropout)


class BertResidualOutput(nnx.Module):
    """``BertSelfOutput`` / ``BertOutput``: ``LayerNorm(dropout(dense(x)) + residual)``."""

    def __init__(self, f: LayerFactory, name: str, din: int, s: TransformerSizes, rngs: nnx.Rngs):
        # Inputs are attention contexts or GELU outputs (down to -0.17): signed.
        self.dense = f.dense(f"{name}.dense", din, s.hidden)
        self.LayerNorm = layer_norm(s.hidden, s.eps, rngs)
        self.dropout = dropout(s.dropout, rngs)

    def __call__(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nnx.Module):
    def __init__(self, f: LayerFactory, name: str, s: TransformerSizes, rngs: nnx.Rngs):
        self.self = BertSelfAttention(f, f"{name}.self", s, rngs)
        self.output = BertResidualOutput(f, f"{name}.output", s.hidden, s, rngs)

    def __call__(self, x, bias):
        return self.output(self.self(x, bias), x)


class BertIntermediate(nnx.Module):
    def __init__(self, f: LayerFactory, name: str, s: TransformerSizes):
        self.dense = f.dense(f"{name}.dense", s.hidden, s.intermediate, activation="gelu")

    def __call__(self, x):
        return self.dense(x)


class BertLayer(nnx.Module):
    """One post-LayerNorm encoder layer."""

    def __init__(self, f: LayerFactory, name: str, s: TransformerSizes, rngs: nnx.Rngs):
        self.attention = BertAttention(f, f"{name}.attention", s, rngs)
        self.intermediate = BertIntermediate(f, f"{name}.intermediate", s)
        self.output = BertResidualOutput(f, f"{name}.output", s.intermediate, s, rngs)

    def __call__(self, x, bias):
        h = self.attention(x, bias)
        return self.output(self.intermediate(h), h)


class BertEncoder(nnx.Module):
    def __init__(self, f: LayerFactory, name: str, s: TransformerSizes, rngs: nnx.Rngs):
        self.layer = nnx.List([BertLayer(f, f"{name}.layer.{i}", s, rngs) for i in range(s.layers)])

    def __call__(self, x, bias):
        for layer in self.layer:
            x = layer(x, bias)
        return x


class BertPooler(nnx.Module):
    """``tanh(dense(hidden[:, 0]))``."""

    def __init__(self, f: LayerFactory, name: str, s: TransformerSizes):
        self.dense = f.dense(f"{name}.dense", s.hidden, s.hidden, activation="tanh")

    def __call__(self, h):
        return self.dense(h[:, 0])


class Bert(nnx.Module):
    """BERT encoder with pooler, optionally with the sequence-classification head.

    Args:
      sizes: the architecture.
      num_classes: None (``BertModel``) or the number of labels.
      quant: None, an `IMCConfig` or a `QuantSpec`.
      pooler: build the pooler (``add_pooling_layer``); the head needs it.
      key_prefix: prefix of the encoder's checkpoint keys (default: ``""``
        without a head, ``"bert."`` with one, as Hugging Face saves them).
      rngs: `nnx.Rngs`.

    Call: ``model(input_ids [B, L] int, attention_mask [B, L] | None,
    token_type_ids [B, L] | None)`` -> `BertOutput`, or ``logits
    [B, num_classes]`` with a head.
    """

    base_prefix = "bert."

    def __init__(self, sizes: TransformerSizes, *, num_classes: int | None, quant, pooler: bool = True,
                 key_prefix: str | None = None, rngs: nnx.Rngs):
        check_num_classes(num_classes)
        if num_classes is not None and not pooler:
            raise ValueError("pooler: the classification head reads the pooled output; pooler=False needs num_classes=None")
        f = LayerFactory(quant, rngs)
        self.sizes = sizes
        self.num_classes = num_classes
        self.key_prefix = key_prefix if key_prefix is not None else ("" if num_classes is None else self.base_prefix)
        self.embeddings = Embeddings(sizes, rngs)
        self.encoder = BertEncoder(f, "encoder", sizes, rngs)
        self.pooler = BertPooler(f, "pooler", sizes) if pooler else None
        if num_classes is not None:
            self.dropout = dropout(sizes.classifier_dropout, rngs)
            self.classifier = f.dense("classifier", sizes.hidden, num_classes)
        f.finish(self)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None):
        check_inputs(input_ids, attention_mask, token_type_ids, self.sizes)
        h = self.encoder(self.embeddings(input_ids, token_type_ids), attention_bias(attention_mask))
        pooled = self.pooler(h) if self.pooler is not None else None
        if self.num_classes is None:
            return BertOutput(h, pooled)
        return self.classifier(self.dropout(pooled))

    def checkpoint_rules(self, state) -> list:
        """Rules for a given checkpoint: its keys may carry the base prefix or not."""
        from bskmq_jax.models.transformer import detect_prefix

        return self.reference_rules(detect_prefix(state, self.base_prefix))

    def reference_rules(self, prefix: str | None = None):
        """Rules to the Hugging Face keys (encoder keys under ``prefix``, default ``key_prefix``)."""
        return hf_rules(self, self.key_prefix if prefix is None else prefix)


def bert(*, num_classes: int | None = None, quant=None, rngs: nnx.Rngs, size: str = "base", pooler: bool = True,
         key_prefix: str | None = None, **options) -> Bert:
    """Builds a BERT encoder (`bskmq_jax.models.create` name ``"bert"``).

    Args:
      num_classes: None for the base model, else the classifier's labels.
      quant: None, an `IMCConfig` or a `QuantSpec`.
      rngs: `nnx.Rngs`.
      size: ``"base"`` (bert-base, 12 layers of 768) or ``"small"``
        (`transformer.SMALL`); explicit options override either.
      pooler, key_prefix: see `Bert`.
      **options: `TransformerSizes` fields (``vocab``, ``hidden``,
        ``layers``, ``heads``, ``intermediate``, ``max_positions``,
        ``type_vocab``, ``eps``, ``dropout``, ``attention_dropout``,
        ``classifier_dropout``).

    Raises:
      ValueError: naming a bad option or value.
    """
    sizes = resolve_sizes(DEFAULTS, size, options)
    return Bert(sizes, num_classes=num_classes, quant=quant, pooler=pooler, key_prefix=key_prefix, rngs=rngs)


def _read_config(config) -> dict:
    if isinstance(config, dict):
        return config
    path = Path(config)
    if path.is_dir():
        path = path / "config.json"
    if not path.exists():
        raise ValueError(f"config: {path} does not exist")
    return json.loads(path.read_text())


def sizes_from_hf_config(config) -> dict:
    """`TransformerSizes` options from a Hugging Face BERT ``config.json`` (path, folder or dict).

    Raises:
      ValueError: for a config this encoder does not implement (another
        activation, relative positions, a decoder).
    """
    c = _read_config(config)
    checks = {"hidden_act": ("gelu", c.get("hidden_act", "gelu")),
              "position_embedding_type": ("absolute", c.get("position_embedding_type", "absolute")),
              "is_decoder": (False, bool(c.get("is_decoder", False)))}
    for field, (want, got) in checks.items():
        if got != want:
            raise ValueError(f"{field}: {got!r} is not supported (this BERT implements {want!r})")
    classifier_dropout = c.get("classifier_dropout")
    return dict(
        vocab=c.get("vocab_size", DEFAULTS["vocab"]),
        hidden=c.get("hidden_size", DEFAULTS["hidden"]),
        layers=c.get("num_hidden_layers", DEFAULTS["layers"]),
        heads=c.get("num_attention_heads", DEFAULTS["heads"]),
        intermediate=c.get("intermediate_size", DEFAULTS["intermediate"]),
        max_positions=c.get("max_position_embeddings", DEFAULTS["max_positions"]),
        type_vocab=c.get("type_vocab_size", DEFAULTS["type_vocab"]),
        eps=c.get("layer_norm_eps", DEFAULTS["eps"]),
        dropout=c.get("hidden_dropout_prob", DEFAULTS["dropout"]),
        attention_dropout=c.get("attention_probs_dropout_prob", DEFAULTS["attention_dropout"]),
        classifier_dropout=classifier_dropout if classifier_dropout is not None else c.get("hidden_dropout_prob", 0.1),
    )


def bert_from_hf_config(config: str | os.PathLike | dict, *, num_classes: int | None = None, quant=None,
                        rngs: nnx.Rngs | None = None, seed: int = 0, **overrides) -> Bert:
    """Builds the BERT a Hugging Face ``config.json`` (path, its folder, or a dict) describes.

    ``overrides`` are `bert` keywords applied on top (e.g. ``pooler=False``).
    """
    return bert(num_classes=num_classes, quant=quant, rngs=rngs if rngs is not None else nnx.Rngs(seed),
                **{**sizes_from_hf_config(config), **overrides})
