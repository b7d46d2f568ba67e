"""Training input from random-access sources, one batch at a time.

`SourceBatches` reads only the records of each batch from a random-access
source (a ``tfds.data_source``: ``len()`` and ``source[j]``), in a shuffled
order per pass, with batch ``i`` a pure function of ``(seed, i)``: a plain
batch count is the position that resumes it, so a checkpoint of an ImageNet
epoch stores one integer. `tfds_image_stream` and `tfds_text_stream` give
such streams over the prepared full-scale datasets of `bskmq_jax.data`,
with PTQ's preprocessing (plus optional crop/flip augmentation).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np

from bskmq_jax import data
from bskmq_jax.data import IMAGE_DATASETS, IMAGE_MEAN, IMAGE_STD, TEXT_DATASETS, TEXT_MAX_LENGTH

__all__ = ["SourceBatches", "SourceCursor", "tfds_image_stream", "tfds_text_stream"]


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
    nh, nw = data._resized_shape(*img.shape[:2], size)
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
        out = data.tokenize(data._sentences_of(records), tokenizer, max_length=max_length, batch_size=len(records)).arrays
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
    source = data._tfds_source(name, split, data_dir)
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
    source = data._tfds_source(name, split, data_dir)
    pre = functools.partial(_text_batch, tokenizer=tokenizer, max_length=max_length, lock=threading.Lock())
    return SourceBatches(source, batch_size, pre, shuffle=train, seed=seed, drop_last=train, limit=limit, prefetch=prefetch)
