"""Training streams over random-access sources: order, resume, preprocessing, missing datasets."""

import numpy as np
import pytest

from bskmq_jax import data, streams


class FakeSource:
    """An in-memory random-access source shaped like a ``tfds.data_source`` split (records as dicts)."""

    def __init__(self, records):
        self.records, self.reads = records, 0

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        self.reads += 1
        return self.records[i]


def fake_images(n, shape=(40, 50, 3), seed=0):
    rng = np.random.default_rng(seed)
    return FakeSource([{"image": rng.integers(0, 256, size=shape, dtype=np.uint8), "label": i % 10} for i in range(n)])


def _ids(records, rng):
    # the record identities of a batch, and a draw from its augmentation generator
    return {"label": np.array([r["label"] for r in records]), "draw": np.array([rng.random()])}


def test_source_batches_are_a_function_of_seed_and_index_and_resume_at_any_batch():
    src = FakeSource([{"label": i} for i in range(23)])
    b = streams.SourceBatches(src, 4, _ids, shuffle=True, seed=5, drop_last=True)
    assert len(b) == 5  # 23 // 4: the short batch is dropped, every batch has the same shape
    run = [next(c) for c in [b.cursor()] for _ in range(12)]
    assert all(x["label"].shape == (4,) for x in run)
    resumed = streams.SourceBatches(src, 4, _ids, shuffle=True, seed=5, drop_last=True, prefetch=False).cursor(batch=7)
    for i in range(7, 12):  # a fresh stream started at batch 7 continues exactly
        x = next(resumed)
        np.testing.assert_array_equal(x["label"], run[i]["label"])
        np.testing.assert_array_equal(x["draw"], run[i]["draw"])
    assert resumed.position() == {"batch": 12}
    passes = [np.concatenate([x["label"] for x in run[e * 5 : e * 5 + 5]]) for e in range(2)]
    assert all(len(set(p.tolist())) == 20 for p in passes) and not np.array_equal(passes[0], passes[1])
    other = next(streams.SourceBatches(src, 4, _ids, shuffle=True, seed=6, drop_last=True).cursor())
    assert not np.array_equal(other["label"], run[0]["label"])
    # iterating passes gives the same batches as the cursor; without drop_last a pass reads every record once
    np.testing.assert_array_equal(np.concatenate([x["label"] for x in b]), passes[0])
    full = streams.SourceBatches(src, 4, _ids, shuffle=True, seed=5)
    for _ in range(2):
        assert sorted(np.concatenate([x["label"] for x in full]).tolist()) == list(range(23))
    with pytest.raises(ValueError, match="batch_size: 30 is more than"):
        streams.SourceBatches(src, 30, _ids, drop_last=True)
    with pytest.raises(ValueError, match="batch: -1"):
        b.cursor(batch=-1)


def test_image_stream_reads_one_batch_and_matches_ptq_preprocessing(monkeypatch):
    sources = {"train": fake_images(13, seed=1), "test": fake_images(6, seed=2)}
    monkeypatch.setattr(data, "_tfds_source", lambda name, split, data_dir: sources[split])
    ptq = data.tfds_images("imagenet2012", "test", data_dir="d", batch_size=4, size=16)  # jax.image.resize
    ev = streams.tfds_image_stream("imagenet2012", "test", data_dir="d", batch_size=4, size=16)
    got = list(ev)
    assert [x["image"].shape for x in got] == [(4, 16, 16, 3), (2, 16, 16, 3)]
    np.testing.assert_allclose(np.concatenate([x["image"] for x in got]), ptq.arrays["image"], atol=1e-4)
    np.testing.assert_array_equal(np.concatenate([x["label"] for x in got]), ptq.arrays["label"])

    def stream():
        return streams.tfds_image_stream("imagenet2012", "train", data_dir="d", batch_size=4, size=16, train=True,
                                      augment=True, seed=3, prefetch=False)

    before = sources["train"].reads
    cur = stream().cursor(batch=4)
    x = next(cur)
    assert sources["train"].reads - before == 4  # only the records of the batch
    assert x["image"].shape == (4, 16, 16, 3) and x["image"].dtype == np.float32 and x["label"].dtype == np.int32
    np.testing.assert_array_equal(x["image"], next(stream().cursor(batch=4))["image"])  # augmentation from (seed, i)
    plain = streams.tfds_image_stream("imagenet2012", "train", data_dir="d", batch_size=4, size=16, train=True, seed=3)
    assert not np.allclose(x["image"], plain.batch(4)["image"])  # crops and flips moved pixels


def test_text_stream_tokenizes_like_ptq(monkeypatch):
    from bskmq_jax.models.minilm import minilm_tokenizer

    rows = [{"sentence": s.encode(), "label": i % 2} for i, s in enumerate(data.sentences("eval")[:10])]
    monkeypatch.setattr(data, "_tfds_source", lambda name, split, data_dir: FakeSource(rows))
    tok = minilm_tokenizer()
    ptq = data.tfds_text("glue/sst2", "validation", tok, data_dir="d", batch_size=4, max_length=16)
    s = streams.tfds_text_stream("glue/sst2", "train", tok, data_dir="d", batch_size=4, max_length=16, train=True)
    assert len(s) == 2
    x = s.batch(0)
    assert x["input_ids"].shape == (4, 16) and x["input_ids"].dtype == np.int32
    idx = s.indices(0)
    for k in ("input_ids", "attention_mask", "label"):
        np.testing.assert_array_equal(x[k], ptq.arrays[k][idx])


def test_streams_name_a_missing_dataset_and_its_preparation():
    with pytest.raises(ValueError, match="unknown image dataset 'glue/sst2'"):
        streams.tfds_image_stream("glue/sst2", "train", data_dir=None, batch_size=2, size=8)
    with pytest.raises(ValueError, match="unknown text dataset"):
        streams.tfds_text_stream("cifar10", "train", None, data_dir=None, batch_size=2)
    with pytest.raises(ValueError, match=r"dataset cifar10: .*tfds build cifar10 --data_dir=DATA_DIR"):
        streams.tfds_image_stream("cifar10", "train", data_dir="/nonexistent", batch_size=2, size=8, train=True)
