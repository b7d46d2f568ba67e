"""Data sources: the fixed digits split, the embedded sentences, Batches, and full-scale errors."""

import numpy as np
import pytest

from bskmq_jax import data


def test_digits_split_is_fixed_disjoint_and_standardized():
    parts = {s: data.digits(s, batch_size=1000, size=8) for s in ("train", "calib", "test")}
    assert {s: b.num_examples for s, b in parts.items()} == data.DIGITS_SPLIT
    flat = {s: {x.tobytes() for x in b.arrays["image"]} for s, b in parts.items()}
    # disjoint (a handful of digits are pixel-identical in sklearn's set, so allow duplicates by content)
    assert len(flat["calib"] & flat["test"]) <= 2 and len(flat["train"] & flat["test"]) <= 5
    x = parts["train"].arrays["image"]
    assert x.shape == (1000, 8, 8, 1) and x.dtype == np.float32
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1.0) < 1e-4
    again = data.digits("test", batch_size=500, size=8)
    np.testing.assert_array_equal(again.arrays["label"], parts["test"].arrays["label"])
    assert data.digits("test", batch_size=10, size=16).arrays["image"].shape == (500, 16, 16, 1)


def test_batches_length_shapes_shuffle_and_take():
    b = data.Batches({"x": np.arange(10), "y": np.arange(10) * 2}, batch_size=4)
    assert len(b) == 3 and [len(v["x"]) for v in b] == [4, 4, 2]
    d = data.Batches({"x": np.arange(10)}, batch_size=4, drop_last=True, shuffle=True, seed=3)
    first, second = [np.concatenate([v["x"] for v in d]) for _ in range(2)]
    assert len(d) == 2 and len(first) == 8 and not np.array_equal(first, second)  # reshuffled per pass
    d2 = data.Batches({"x": np.arange(10)}, batch_size=4, drop_last=True, shuffle=True, seed=3)
    np.testing.assert_array_equal(np.concatenate([v["x"] for v in d2]), first)  # reproducible
    assert b.take(5).num_examples == 5 and np.array_equal(b.take(5).arrays["y"], np.arange(5) * 2)
    with pytest.raises(ValueError, match="batch_size"):
        data.Batches({"x": np.arange(3)}, batch_size=0)
    with pytest.raises(ValueError, match="different lengths"):
        data.Batches({"x": np.arange(3), "y": np.arange(4)}, batch_size=2)


def test_sentences_split_in_half_without_overlap():
    all_, calib, ev = data.sentences(), data.sentences("calib"), data.sentences("eval")
    assert len(all_) == 240 and len(calib) == len(ev) == 120
    assert not set(calib) & set(ev)
    assert len(set(data.sentence_topics())) == 12 and len(data.sentence_topics("eval")) == 120
    with pytest.raises(ValueError, match="unknown sentence split"):
        data.sentences("train")


def test_unknown_split_and_full_scale_errors_name_the_fix():
    with pytest.raises(ValueError, match="unknown digits split 'val'"):
        data.digits("val")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        data.tfds_images("mnist", "train", data_dir=None, batch_size=2, size=8)
    with pytest.raises(ValueError, match="unknown text dataset"):
        data.tfds_text("imdb", "train", None, data_dir=None, batch_size=2)
    # without tensorflow-datasets (or the prepared data) the error gives the preparation steps
    for call in (lambda: data.tfds_images("cifar10", "test", data_dir="/nonexistent", batch_size=2, size=8),
                 lambda: data.tfds_text("glue/sst2", "train", None, data_dir=None, batch_size=2)):
        with pytest.raises(ValueError, match=r"tfds build .* --data_dir=DATA_DIR"):
            call()
