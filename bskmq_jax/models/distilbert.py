"""DistilBERT (Hugging Face ``DistilBertModel``) with NL-ADC conversion at every IMC output.

The structure and attribute names mirror transformers 5.23 exactly, so the
checkpoint keys are the attribute paths (see `transformer.hf_rules`)::

    embeddings.{word_embeddings, position_embeddings, LayerNorm}
    transformer.layer.{i}.attention.{q_lin, k_lin, v_lin, out_lin}   IMCDense
    transformer.layer.{i}.attention.{score, context}                 IMCMatmul (Q K^T, P V)
    transformer.layer.{i}.sa_layer_norm
    transformer.layer.{i}.ffn.lin1 (GELU folded into the NL-ADC), ffn.lin2
    transformer.layer.{i}.output_layer_norm
    pre_classifier (ReLU), classifier                                with num_classes

Block (post-LayerNorm): ``h = LN(attn(x) + x); out = LN(dropout(ffn(h)) + h)``.
DistilBERT's LayerNorms use eps 1e-12 (hard-coded in transformers).

With ``num_classes`` the model is ``DistilBertForSequenceClassification``:
the first token's hidden state -> ``pre_classifier`` -> ReLU -> dropout
(0.2) -> ``classifier``; its checkpoint keys carry the ``distilbert.``
prefix on the encoder (``key_prefix``).
"""

from __future__ import annotations

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

__all__ = ["DistilBert", "distilbert", "DEFAULTS"]

#: ``DistilBertConfig()`` (distilbert-base) in `TransformerSizes` terms.
DEFAULTS = dict(vocab=30522, hidden=768, layers=6, heads=12, intermediate=3072, max_positions=512, type_vocab=0,
                eps=1e-12, dropout=0.1, attention_dropout=0.1, classifier_dropout=0.2)


class DistilBertAttention(nnx.Module):
    """``DistilBertSelfAttention``: Q/K/V projections, the two attention products, output projection."""

    def __init__(self, f: LayerFactory, name: str, s: TransformerSizes, rngs: nnx.Rngs):
        h = s.hidden
        self.heads = s.heads
        self.q_lin = f.dense(f"{name}.q_lin", h, h)
        self.k_lin = f.dense(f"{name}.k_lin", h, h)
        self.v_lin = f.dense(f"{name}.v_lin", h, h)
        self.score = f.matmul(f"{name}.score")
        # Softmax probabilities are non-negative: an unsigned DAC.
        self.context = f.matmul(f"{name}.context", input_signed=False)
        self.dropout = dropout(s.attention_dropout, rngs)
        self.out_lin = f.dense(f"{name}.out_lin", h, h)

    def __call__(self, x, bias):
        ctx = multi_head_attention(self.q_lin(x), self.k_lin(x), self.v_lin(x), bias, heads=self.heads,
                                   score=self.score, context=self.context, drop=self.dropout)
        return self.out_lin(ctx)


class FFN(nnx.Module):
    """``lin1`` (GELU, converted by the NL-ADC) -> ``lin2`` -> dropout."""

    def __init__(self, f: LayerFactory, name: str, s: TransformerSizes, rngs: nnx.Rngs):
        self.lin1 = f.dense(f"{name}.lin1", s.hidden, s.intermediate, activation="gelu")
        # GELU outputs dip to -0.17: the DAC stays signed.
        self.lin2 = f.dense(f"{name}.lin2", s.intermediate, s.hidden)
        self.dropout = dropout(s.dropout, rngs)

    def __call__(self, x):
        return self.dropout(self.lin2(self.lin1(x)))


class TransformerBlock(nnx.Module):
    """One post-LayerNorm encoder layer."""

    def __init__(self, f: LayerFactory, name: str, s: TransformerSizes, rngs: nnx.Rngs):
        self.attention = DistilBertAttention(f, f"{name}.attention", s, rngs)
        self.sa_layer_norm = layer_norm(s.hidden, s.eps, rngs)
        self.ffn = FFN(f, f"{name}.ffn", s, rngs)
        self.output_layer_norm = layer_norm(s.hidden, s.eps, rngs)

    def __call__(self, x, bias):
        h = self.sa_layer_norm(self.attention(x, bias) + x)
        return self.output_layer_norm(self.ffn(h) + h)


class Transformer(nnx.Module):
    """The stack of blocks (``transformer.layer``)."""

    def __init__(self, f: LayerFactory, name: str, s: TransformerSizes, rngs: nnx.Rngs):
        self.layer = nnx.List([TransformerBlock(f, f"{name}.layer.{i}", s, rngs) for i in range(s.layers)])

    def __call__(self, x, bias):
        for block in self.layer:
            x = block(x, bias)
        return x


class DistilBert(nnx.Module):
    """DistilBERT encoder, optionally with the sequence-classification head.

    Args:
      sizes: the architecture.
      num_classes: None (``DistilBertModel``) or the number of labels.
      quant: None, an `IMCConfig` or a `QuantSpec`.
      key_prefix: prefix of the encoder's checkpoint keys (default: ``""``
        without a head, ``"distilbert."`` with one, as Hugging Face saves them).
      rngs: `nnx.Rngs`.

    Call: ``model(input_ids [B, L] int, attention_mask [B, L] | None)`` ->
    ``last_hidden_state [B, L, H]``, or ``logits [B, num_classes]`` with a head.
    """

    base_prefix = "distilbert."

    def __init__(self, sizes: TransformerSizes, *, num_classes: int | None, quant, key_prefix: str | None = None,
                 rngs: nnx.Rngs):
        check_num_classes(num_classes)
        f = LayerFactory(quant, rngs)
        self.sizes = sizes
        self.num_classes = num_classes
        self.key_prefix = key_prefix if key_prefix is not None else ("" if num_classes is None else self.base_prefix)
        self.embeddings = Embeddings(sizes, rngs)
        self.transformer = Transformer(f, "transformer", sizes, rngs)
        if num_classes is not None:
            self.pre_classifier = f.dense("pre_classifier", sizes.hidden, sizes.hidden, activation="relu")
            self.dropout = dropout(sizes.classifier_dropout, rngs)
            self.classifier = f.dense("classifier", sizes.hidden, num_classes, input_signed=False)
        f.finish(self)

    def __call__(self, input_ids, attention_mask=None):
        check_inputs(input_ids, attention_mask, None, self.sizes)
        h = self.transformer(self.embeddings(input_ids), attention_bias(attention_mask))
        if self.num_classes is None:
            return h
        return self.classifier(self.dropout(self.pre_classifier(h[:, 0])))

    def checkpoint_rules(self, state) -> list:
        """Rules for a given checkpoint: its keys may carry the base prefix or not."""
        from bskmq_jax.models.transformer import detect_prefix

        return self.reference_rules(detect_prefix(state, self.base_prefix))

    def reference_rules(self, prefix: str | None = None):
        """Rules to the Hugging Face keys (encoder keys under ``prefix``, default ``key_prefix``)."""
        return hf_rules(self, self.key_prefix if prefix is None else prefix)


def distilbert(*, num_classes: int | None = None, quant=None, rngs: nnx.Rngs, size: str = "base",
               key_prefix: str | None = None, **options) -> DistilBert:
    """Builds DistilBERT (`bskmq_jax.models.create` name ``"distilbert"``).

    Args:
      num_classes: None for the base model, else the classifier's labels.
      quant: None, an `IMCConfig` or a `QuantSpec`.
      rngs: `nnx.Rngs`.
      size: ``"base"`` (distilbert-base, 6 layers of 768) or ``"small"``
        (`transformer.SMALL`); explicit options override either.
      key_prefix: see `DistilBert`.
      **options: `TransformerSizes` fields (``vocab``, ``hidden``,
        ``layers``, ``heads``, ``intermediate``, ``max_positions``, ``eps``,
        ``dropout``, ``attention_dropout``, ``classifier_dropout``).

    Raises:
      ValueError: naming a bad option or value.
    """
    if options.get("type_vocab"):
        raise ValueError(f"type_vocab: DistilBERT has no token types, got {options['type_vocab']!r}")
    sizes = resolve_sizes(DEFAULTS, size, options)
    return DistilBert(sizes, num_classes=num_classes, quant=quant, key_prefix=key_prefix, rngs=rngs)
