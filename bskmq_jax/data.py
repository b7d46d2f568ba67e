"""Data sources behind one batch-iterator interface.

Every source gives `Batches`: an iterable of dicts of numpy arrays with a
length, so loops can show progress bars.

Embedded sources, always available offline:

- **digits**: scikit-learn's 1,797 real 8x8 handwritten digits (10 classes),
  split once with a fixed permutation (numpy seed 0) into train 1,000 /
  calibration 297 / test 500 images, so calibration and evaluation data are
  disjoint. For the CNNs the images are scaled to [0, 1], resized bilinearly
  to 32x32 (one channel, NHWC) and standardized with the training split's
  mean and standard deviation.
- **sentences**: 240 sentences in 12 topics written for this project
  (``bskmq_jax/assets/sentences.txt``), tokenized by the model's tokenizer.
  Calibration uses the even-indexed sentences and evaluation the odd-indexed
  ones (disjoint); fidelity metrics compare float and quantized embeddings.

Full-scale sources, when the user has prepared them with
tensorflow-datasets: ``imagenet2012``, ``cifar10`` and ``glue/sst2`` through
``tfds.data_source`` (docs/data.md gives the preparation steps). A missing
dataset is an error that names it and gives the steps; nothing here ever
downloads. `tfds_images` and `tfds_text` read a (capped) split into memory
for PTQ; training reads the same sources one batch at a time through
`bskmq_jax.streams`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from importlib import resources
from typing import Callable, Iterator

import numpy as np

__all__ = [
    "Batches",
    "digits",
    "sentences",
    "sentence_topics",
    "tokenize",
    "tfds_images",
    "tfds_text",
    "DIGITS_SPLIT",
    "IMAGE_DATASETS",
    "TEXT_DATASETS",
]

#: Sizes of the fixed digits split (train, calibration, test).
DIGITS_SPLIT = {"train": 1000, "calib": 297, "test": 500}
#: Full-scale image and text datasets (tensorflow-datasets names).
IMAGE_DATASETS = ("cifar10", "imagenet2012")
TEXT_DATASETS = ("glue/sst2",)
#: Per-channel mean and standard deviation full-scale images are normalized with (ImageNet's).
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
#: Tokens per full-scale text example (padded and truncated).
TEXT_MAX_LENGTH = 128


@dataclasses.dataclass
class Batches:
    """A re-iterable stream of batches (dicts of numpy arrays) with a length.

    Attributes:
      arrays: the full split, ``{name: [N, ...]}``.
      batch_size: examples per batch.
      shuffle: reshuffle on every pass (with ``seed`` and the pass number).
      seed: shuffling seed.
      drop_last: drop a final short batch (keeps shapes static for jit).
      transform: optional function applied to each batch.
    """

    arrays: dict
    batch_size: int
    shuffle: bool = False
    seed: int = 0
    drop_last: bool = False
    transform: Callable | None = None
    _epoch: int = dataclasses.field(default=0, repr=False)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size: {self.batch_size} must be >= 1")
        sizes = {len(v) for v in self.arrays.values()}
        if len(sizes) != 1:
            raise ValueError(f"arrays: fields have different lengths {sizes}")

    @property
    def num_examples(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __len__(self) -> int:
        n = self.num_examples / self.batch_size
        return int(n) if self.drop_last else math.ceil(n)

    def __iter__(self) -> Iterator[dict]:
        n = self.num_examples
        order = np.arange(n)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self._epoch]).permutation(n)
            self._epoch += 1
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            batch = {k: v[idx] for k, v in self.arrays.items()}
            yield self.transform(batch) if self.transform else batch

    def take(self, n: int) -> "Batches":
        """The first ``n`` examples (in stored order) as a new stream."""
        return dataclasses.replace(self, arrays={k: v[:n] for k, v in self.arrays.items()}, _epoch=0)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    out = jax.image.resize(jnp.asarray(images, jnp.float32), (images.shape[0], size, size), "bilinear")
    return np.asarray(out)


def digits(split: str, *, batch_size: int = 128, size: int = 32, shuffle: bool = False, seed: int = 0,
           drop_last: bool = False) -> Batches:
    """scikit-learn digits as ``{"image": [B, size, size, 1], "label": [B]}`` batches.

    Args:
      split: ``"train"``, ``"calib"`` or ``"test"`` (fixed, disjoint).
      batch_size, shuffle, seed, drop_last: see `Batches`.
      size: image side after bilinear resizing (8 keeps the originals).
    """
    if split not in DIGITS_SPLIT:
        raise ValueError(f"split: unknown digits split {split!r}; choose one of {list(DIGITS_SPLIT)}")
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    bounds = np.cumsum([0, *DIGITS_SPLIT.values()])
    parts = {name: order[a:b] for name, a, b in zip(DIGITS_SPLIT, bounds[:-1], bounds[1:])}
    images = (d.images / 16.0).astype(np.float32)
    if size != 8:
        images = _resize(images, size)
    train = images[parts["train"]]
    mean, std = float(train.mean()), float(train.std())
    x = ((images[parts[split]] - mean) / std)[..., None].astype(np.float32)
    y = d.target[parts[split]].astype(np.int32)
    return Batches({"image": x, "label": y}, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)


def _sentence_lines() -> list[tuple[str, str]]:
    text = resources.files("bskmq_jax").joinpath("assets/sentences.txt").read_text()
    out, topic = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# topic:"):
            topic = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#"):
            out.append((topic, line))
    return out


def sentences(split: str = "all") -> list[str]:
    """The embedded sentences: ``"all"`` (240), ``"calib"`` (even) or ``"eval"`` (odd)."""
    lines = [s for _, s in _sentence_lines()]
    if split == "all":
        return lines
    if split == "calib":
        return lines[0::2]
    if split == "eval":
        return lines[1::2]
    raise ValueError(f"split: unknown sentence split {split!r}; choose 'all', 'calib' or 'eval'")


def sentence_topics(split: str = "all") -> list[str]:
    """The topic of each sentence of `sentences` (same order and split)."""
    topics = [t for t, _ in _sentence_lines()]
    return {"all": topics, "calib": topics[0::2], "eval": topics[1::2]}[split]


def tokenize(texts: list[str], tokenizer, *, max_length: int = 32, batch_size: int = 32) -> Batches:
    """Tokenizes texts to fixed-length ``{"input_ids", "attention_mask"}`` batches (int32)."""
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
    arrays = {"input_ids": enc["input_ids"].astype(np.int32), "attention_mask": enc["attention_mask"].astype(np.int32)}
    if "token_type_ids" in enc:
        arrays["token_type_ids"] = enc["token_type_ids"].astype(np.int32)
    return Batches(arrays, batch_size)


TFDS_STEPS = {
    "imagenet2012": (
        "download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org into a manual_dir, then run "
        "`tfds build imagenet2012 --manual_dir=DIR --data_dir=DATA_DIR` (needs tensorflow), and pass --data-dir DATA_DIR"
    ),
    "cifar10": "run `tfds build cifar10 --data_dir=DATA_DIR` (needs tensorflow and network once), and pass --data-dir DATA_DIR",
    "glue/sst2": "run `tfds build glue/sst2 --data_dir=DATA_DIR` (needs tensorflow and network once), and pass --data-dir DATA_DIR",
}


def _tfds_source(name: str, split: str, data_dir: str | None):
    """``tfds.data_source`` of a prepared dataset, or a ValueError naming it and the preparation steps."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ValueError(f"dataset {name}: tensorflow-datasets is not installed; pip install 'bskmq-jax[full]', then {TFDS_STEPS[name]}") from None
    if not data_dir or not os.path.isdir(os.path.join(data_dir, name.split("/")[0])):
        raise ValueError(f"dataset {name}: not prepared in data_dir={data_dir!r}; {TFDS_STEPS[name]}")
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:
        raise ValueError(f"dataset {name}: cannot open split {split!r} in {data_dir} ({e}); {TFDS_STEPS[name]}") from None


def tfds_images(name: str, split: str, *, data_dir: str | None, batch_size: int, size: int,
                mean=IMAGE_MEAN, std=IMAGE_STD, limit: int | None = None) -> Batches:
    """A prepared tensorflow-datasets image split as ``{"image", "label"}`` batches.

    Images are resized to ``size`` x ``size`` (shorter side to ``size * 8/7``
    then a centre crop for ImageNet-sized inputs) and normalized.

    Raises:
      ValueError: if tensorflow-datasets is not installed or the dataset is
        not prepared in ``data_dir``, naming the dataset and the steps.
    """
    if name not in TFDS_STEPS:
        raise ValueError(f"dataset: unknown dataset {name!r}; full-scale sources are {list(TFDS_STEPS)}")
    source = _tfds_source(name, split, data_dir)
    n = len(source) if limit is None else min(limit, len(source))
    images, labels = [], []
    for i in range(n):
        ex = source[i]
        images.append(_center_resize(np.asarray(ex["image"]), size))
        labels.append(int(ex["label"]))
    x = (np.stack(images).astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return Batches({"image": x, "label": np.asarray(labels, np.int32)}, batch_size)


def _resized_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """Height and width before the ``size`` x ``size`` crop: shorter side to ``size * 8/7`` (or ``size`` if smaller)."""
    s = size * 8 / 7 / min(h, w) if min(h, w) > size else size / min(h, w)
    return max(size, round(h * s)), max(size, round(w * s))


def _center_resize(img: np.ndarray, size: int) -> np.ndarray:
    import jax

    if img.ndim == 2:
        img = img[..., None].repeat(3, -1)
    nh, nw = _resized_shape(*img.shape[:2], size)
    img = np.asarray(jax.image.resize(img.astype(np.float32), (nh, nw, img.shape[2]), "bilinear"))
    top, left = (nh - size) // 2, (nw - size) // 2
    return img[top : top + size, left : left + size]


def _sentences_of(rows: list[dict]) -> list[str]:
    return [r["sentence"].decode() if isinstance(r["sentence"], bytes) else str(r["sentence"]) for r in rows]


def tfds_text(name: str, split: str, tokenizer, *, data_dir: str | None, batch_size: int, max_length: int = TEXT_MAX_LENGTH,
              limit: int | None = None) -> Batches:
    """A prepared tensorflow-datasets sentence-classification split (``glue/sst2``) as tokenized batches.

    Batches hold ``input_ids``, ``attention_mask`` (and ``token_type_ids``)
    plus ``label``.

    Raises:
      ValueError: if tensorflow-datasets is missing or the dataset is not
        prepared in ``data_dir``, naming the dataset and the steps.
    """
    if name != "glue/sst2":
        raise ValueError(f"dataset: unknown text dataset {name!r}; the full-scale text source is 'glue/sst2'")
    source = _tfds_source(name, split, data_dir)
    n = len(source) if limit is None else min(limit, len(source))
    rows = [source[i] for i in range(n)]
    out = tokenize(_sentences_of(rows), tokenizer, max_length=max_length, batch_size=batch_size)
    out.arrays["label"] = np.asarray([int(r["label"]) for r in rows], np.int32)
    return out
