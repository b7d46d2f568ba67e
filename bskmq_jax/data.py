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
for PTQ; `tfds_image_stream` and `tfds_text_stream` give `SourceBatches`,
which read one batch at a time for training: a shuffled order per pass, and
batch ``i`` a pure function of ``(seed, i)``, so a plain batch count is the
position that resumes it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
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
    "tfds_image_stream",
    "tfds_text_stream",
    "SourceBatches",
    "SourceCursor",
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


# ---------------------------------------------------------------------------
# Training input from random-access sources, one batch at a time


@dataclasses.dataclass
class SourceBatches:
    """Batches read from a random-access source, only the records of each batch.

    Batch ``i``, counted over passes (pass ``i // len(self)``, position
    ``i % len(self)`` in it), is a pure function of ``(seed, i)``: pass ``e``
    visits the records in ``permutation(default_rng([seed, 0, e]))`` order
    (stored order without ``shuffle``), and ``preprocess`` gets
    ``default_rng([seed, 1, i])`` for augmentation. So the number of batches
    consumed is a complete position: `cursor` resumes at any batch without
    reading the batches before it, which a checkpoint of an ImageNet epoch
    needs.

    Attributes:
      source: ``len(source)`` records, ``source[j]`` a dict of numpy values
        (a ``tfds.data_source``).
      batch_size: records per batch.
      preprocess: ``preprocess(records, rng) -> {name: [B, ...]}``.
      shuffle: a new order every pass (``__iter__`` also advances the pass
        counter, as `Batches` does).
      seed: order and augmentation seed.
      drop_last: drop a final short batch (one compiled shape for training).
      limit: read only the first ``limit`` records (None: all).
      prefetch: prepare the next batch in a background thread while the
        current one is used.
    """

    source: object
    batch_size: int
    preprocess: Callable
    shuffle: bool = False
    seed: int = 0
    drop_last: bool = False
    limit: int | None = None
    prefetch: bool = True
    _epoch: int = dataclasses.field(default=0, repr=False)
    _order_cache: tuple | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size: {self.batch_size!r} must be an int >= 1")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1):
            raise ValueError(f"limit: {self.limit!r} must be an int >= 1 or None")
        if len(self) == 0:
            raise ValueError(f"batch_size: {self.batch_size} is more than the source's {self.num_examples} records, "
                             "so dropping the short batch leaves none; use a smaller batch size")

    @property
    def num_examples(self) -> int:
        n = len(self.source)
        return n if self.limit is None else min(n, self.limit)

    def __len__(self) -> int:
        n = self.num_examples / self.batch_size
        return int(n) if self.drop_last else math.ceil(n)

    def order(self, epoch: int) -> np.ndarray:
        """Record indices of pass ``epoch`` in the order it visits them."""
        cached = self._order_cache
        if cached is not None and cached[0] == epoch:
            return cached[1]
        n = self.num_examples
        order = np.random.default_rng([self.seed, 0, epoch]).permutation(n) if self.shuffle else np.arange(n)
        self._order_cache = (epoch, order)  # one pass's order (ImageNet: 1.28M indices), replaced as a whole
        return order

    def indices(self, i: int) -> np.ndarray:
        """Record indices of batch ``i`` (counted over passes)."""
        if i < 0:
            raise ValueError(f"batch: {i} must be >= 0")
        epoch, k = divmod(int(i), len(self))
        return self.order(epoch)[k * self.batch_size : (k + 1) * self.batch_size]

    def batch(self, i: int) -> dict:
        """Batch ``i``: reads its records and preprocesses them."""
        records = [self.source[int(j)] for j in self.indices(i)]
        return self.preprocess(records, np.random.default_rng([self.seed, 1, int(i)]))

    def cursor(self, batch: int = 0) -> "SourceCursor":
        """An endless stream of batches ``batch, batch + 1, ...`` (`bskmq_jax.train.train` resumes with it)."""
        return SourceCursor(self, batch)

    def __iter__(self) -> Iterator[dict]:
        epoch = self._epoch
        if self.shuffle:
            self._epoch += 1
        start = epoch * len(self)
        cursor = SourceCursor(self, start, stop=start + len(self))
        try:
            for _ in range(len(self)):
                yield next(cursor)
        finally:
            cursor.close()


class SourceCursor:
    """Batches ``batch, batch + 1, ...`` of a `SourceBatches`, the next one read ahead in a thread.

    Its `position` is ``{"batch": n}``, the batches consumed so far, and
    ``SourceCursor(batches, **position)`` continues exactly there.

    Args:
      batches: the stream.
      batch: index of the first batch.
      stop: no batch at or after this index is read ahead (None: endless).
    """

    def __init__(self, batches: SourceBatches, batch: int = 0, *, stop: int | None = None):
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
            raise ValueError(f"batch: {batch!r} must be an int >= 0 (the batches consumed)")
        self.batches, self.index, self.stop = batches, batch, stop
        self._pool = None
        self._ahead = None  # (index, future) of the batch read ahead

    def position(self) -> dict:
        return {"batch": self.index}

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        i = self.index
        if self._ahead is not None and self._ahead[0] == i:
            out = self._ahead[1].result()
        else:
            out = self.batches.batch(i)
        self._ahead = None
        if self.batches.prefetch and (self.stop is None or i + 1 < self.stop):
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="bskmq-data")
            self._ahead = (i + 1, self._pool.submit(self.batches.batch, i + 1))
        self.index = i + 1
        return out

    def close(self) -> None:
        """Stops reading ahead (waits for a batch being read)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._ahead = None


def _resize_bilinear(img: np.ndarray, nh: int, nw: int) -> np.ndarray:
    """``jax.image.resize(img, (nh, nw, C), "bilinear")`` of an ``[H, W, C]`` float32 image, with Pillow.

    Pillow's float ("F") bilinear resize uses the same antialiased triangle
    kernel and pixel centres as jax's and agrees with it to float32 rounding
    (tests/test_data.py); it is used for training input because jax compiles
    one program per image shape (ImageNet images come in thousands of
    shapes) and its dense weight matrices cost about ten times more on CPU.
    """
    from PIL import Image

    if (nh, nw) == img.shape[:2]:
        return img
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c])).resize((nw, nh), Image.BILINEAR))
                     for c in range(img.shape[2])], -1)


def _image_example(img: np.ndarray, size: int, rng: np.random.Generator | None) -> np.ndarray:
    """One image as ``[size, size, 3]`` float32 pixel values (0..255).

    Without ``rng``: PTQ's preprocessing (`tfds_images`): shorter side to
    ``size * 8/7``, centre crop. With ``rng`` (training augmentation): the
    same resize, then a random ``size`` crop (after zero padding by
    ``size // 8`` on each side when the resized image has no margin, as
    CIFAR training does) and a horizontal flip with probability 1/2.
    """
    if img.ndim == 2:
        img = img[..., None].repeat(3, -1)
    nh, nw = _resized_shape(*img.shape[:2], size)
    x = _resize_bilinear(np.asarray(img, np.float32), nh, nw)
    if rng is None:
        top, left = (nh - size) // 2, (nw - size) // 2
    else:
        pad = size // 8 if min(nh, nw) == size else 0
        if pad:
            x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
        top, left = int(rng.integers(0, x.shape[0] - size + 1)), int(rng.integers(0, x.shape[1] - size + 1))
    x = x[top : top + size, left : left + size]
    if rng is not None and rng.random() < 0.5:
        x = x[:, ::-1]
    return x


def _image_batch(records: list[dict], rng, *, size: int, augment: bool, mean, std) -> dict:
    x = np.stack([_image_example(np.asarray(r["image"]), size, rng if augment else None) for r in records])
    x = (x / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return {"image": x.astype(np.float32), "label": np.asarray([int(r["label"]) for r in records], np.int32)}


def _text_batch(records: list[dict], rng, *, tokenizer, max_length: int, lock) -> dict:
    with lock:  # a Hugging Face fast tokenizer refuses concurrent calls ("Already borrowed")
        out = tokenize(_sentences_of(records), tokenizer, max_length=max_length, batch_size=len(records)).arrays
    return {**out, "label": np.asarray([int(r["label"]) for r in records], np.int32)}


def tfds_image_stream(name: str, split: str, *, data_dir: str | None, batch_size: int, size: int, train: bool = False,
                      augment: bool = False, seed: int = 0, limit: int | None = None, prefetch: bool = True,
                      mean=IMAGE_MEAN, std=IMAGE_STD) -> SourceBatches:
    """A prepared tensorflow-datasets image split as `SourceBatches` of ``{"image", "label"}``.

    The preprocessing is `tfds_images`' (resize, centre crop, normalization;
    the resize runs in NumPy, equal to its ``jax.image.resize`` to float32
    rounding), unless ``augment``.

    Args:
      name: ``"cifar10"`` or ``"imagenet2012"``.
      split: a tfds split, e.g. ``"train"``.
      data_dir: the tensorflow-datasets data_dir the dataset was built in.
      batch_size: images per batch.
      size: image side after the crop.
      train: shuffle every pass and drop the short last batch.
      augment: random crops and horizontal flips (`_image_example`).
      seed: order and augmentation seed.
      limit: only the first ``limit`` images (None: the whole split).
      prefetch: read the next batch in a background thread.
      mean, std: per-channel normalization of pixel values in [0, 1].

    Raises:
      ValueError: an unknown dataset, or one that tensorflow-datasets cannot
        open (not installed, not prepared in ``data_dir``), naming the
        dataset and the preparation steps.
    """
    if name not in IMAGE_DATASETS:
        raise ValueError(f"dataset: unknown image dataset {name!r}; full-scale image sources are {list(IMAGE_DATASETS)}")
    source = _tfds_source(name, split, data_dir)
    pre = functools.partial(_image_batch, size=size, augment=augment, mean=mean, std=std)
    return SourceBatches(source, batch_size, pre, shuffle=train, seed=seed, drop_last=train, limit=limit, prefetch=prefetch)


def tfds_text_stream(name: str, split: str, tokenizer, *, data_dir: str | None, batch_size: int,
                     max_length: int = TEXT_MAX_LENGTH, train: bool = False, seed: int = 0, limit: int | None = None,
                     prefetch: bool = True) -> SourceBatches:
    """A prepared tensorflow-datasets sentence-classification split as `SourceBatches`.

    Batches are `tfds_text`'s: ``input_ids``, ``attention_mask`` (and
    ``token_type_ids`` when the tokenizer makes them), padded and truncated
    to ``max_length``, plus ``label``. Arguments as in `tfds_image_stream`.

    Raises:
      ValueError: an unknown dataset, or one that tensorflow-datasets cannot
        open, naming the dataset and the preparation steps.
    """
    if name not in TEXT_DATASETS:
        raise ValueError(f"dataset: unknown text dataset {name!r}; the full-scale text source is {list(TEXT_DATASETS)}")
    source = _tfds_source(name, split, data_dir)
    pre = functools.partial(_text_batch, tokenizer=tokenizer, max_length=max_length, lock=threading.Lock())
    return SourceBatches(source, batch_size, pre, shuffle=train, seed=seed, drop_last=train, limit=limit, prefetch=prefetch)
