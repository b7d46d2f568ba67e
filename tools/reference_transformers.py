"""Hugging Face references for `make_reference_fixtures.py`: DistilBERT and BERT.

Runs only in the throwaway torch environment (see that tool's docstring).
Each reference builds the base model from its default config (the
distilbert-base / bert-base sizes; nothing is downloaded), fills every tensor
with the fixture formula, runs a fixed padded batch and keeps a compact part
of the output (kilobytes):

- ``hidden``: ``last_hidden_state[:, POSITIONS, ::STRIDE]`` (the first
  token, a middle one, the first padded one of the second sequence, the last);
- ``row_norms``: the L2 norm of every position's hidden vector ``[B, L]``,
  so every position (padded ones too) is checked;
- ``pooled`` (BERT): the pooler output ``[B, H]``;
- ``classifier``: a sequence-classification model at the small sizes
  (``SMALL``, 3 labels; its keys carry the ``distilbert.`` / ``bert.``
  prefix) on the same input, and its logits.

Attention runs in the ``eager`` implementation: the additive mask is the
definition our models follow (``sdpa`` agrees to rounding).
"""

from __future__ import annotations

import numpy as np

BATCH, LENGTH, PAD = 2, 16, 4  # the second sequence's last PAD tokens are padding
POSITIONS = (0, 7, LENGTH - PAD, LENGTH - 1)
STRIDE = 4
NUM_LABELS = 3
#: The small variant (bskmq_jax.models.transformer.SMALL) in Hugging Face names.
SMALL = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=128)
SMALL_DISTIL = dict(n_layers=2, dim=64, n_heads=2, hidden_dim=128)


def _round(a) -> list:
    """Float list with 9 significant digits (float32 round-trips exactly)."""
    return [float(f"{x:.9g}") for x in np.asarray(a, np.float64).ravel()]


def _inputs(fx, vocab: int, token_types: bool) -> dict:
    ids = fx.token_input(BATCH, LENGTH, vocab)
    mask = np.ones((BATCH, LENGTH), np.int64)
    mask[1, LENGTH - PAD:] = 0
    ids[1, LENGTH - PAD:] = 0  # [PAD]
    out = {"input_ids": ids.tolist(), "attention_mask": mask.tolist()}
    if token_types:
        out["token_type_ids"] = np.broadcast_to((np.arange(LENGTH) >= LENGTH // 2).astype(np.int64), (BATCH, LENGTH)).tolist()
    return out


def _torch_inputs(inputs: dict) -> dict:
    import torch

    return {k: torch.tensor(v, dtype=torch.long) for k, v in inputs.items()}


def _run(model_cls, config, fx, fill_state_dict, inputs):
    import torch

    model = model_cls(config).eval()
    keys = fill_state_dict(model, fx)
    with torch.no_grad():
        out = model(**_torch_inputs(inputs))
    return keys, out


def _hidden(h) -> dict:
    h = h.numpy()
    return {
        "positions": list(POSITIONS),
        "stride": STRIDE,
        "shape": list(h.shape),
        "hidden": _round(h[:, list(POSITIONS), ::STRIDE]),
        "row_norms": _round(np.linalg.norm(h.astype(np.float64), axis=-1)),
    }


def distilbert(fx, fill_state_dict) -> dict:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel

    cfg = DistilBertConfig(attn_implementation="eager")
    inputs = _inputs(fx, cfg.vocab_size, token_types=False)
    keys, out = _run(DistilBertModel, cfg, fx, fill_state_dict, inputs)
    small = DistilBertConfig(attn_implementation="eager", num_labels=NUM_LABELS, **SMALL_DISTIL)
    ckeys, cout = _run(DistilBertForSequenceClassification, small, fx, fill_state_dict, inputs)
    return {
        "keys": keys,
        "input": inputs,
        "output": _hidden(out.last_hidden_state),
        "classifier": {"config": SMALL_DISTIL, "num_labels": NUM_LABELS, "keys": ckeys, "logits": _round(cout.logits)},
    }


def bert(fx, fill_state_dict) -> dict:
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    cfg = BertConfig(attn_implementation="eager")
    inputs = _inputs(fx, cfg.vocab_size, token_types=True)
    keys, out = _run(BertModel, cfg, fx, fill_state_dict, inputs)
    small = BertConfig(attn_implementation="eager", num_labels=NUM_LABELS, **SMALL)
    ckeys, cout = _run(BertForSequenceClassification, small, fx, fill_state_dict, inputs)
    output = _hidden(out.last_hidden_state)
    output["pooled"] = _round(out.pooler_output)
    return {
        "keys": keys,
        "input": inputs,
        "output": output,
        "classifier": {"config": SMALL, "num_labels": NUM_LABELS, "keys": ckeys, "logits": _round(cout.logits)},
    }


REFERENCES = {"distilbert": distilbert, "bert": bert}
