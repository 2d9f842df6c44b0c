"""alexnet_mxnet.data.demo: the digits demo set, read back with stock MXNet readers, and its cache."""
import os
from collections import Counter
from multiprocessing import get_context

import cv2
import mxnet as mx
import numpy as np
import pytest
from sklearn.datasets import load_digits

from tests.test_im2rec import labels_from_record_iter, lst_entries
from alexnet_mxnet.data import demo as demo_data
from alexnet_mxnet.data.demo import ensure_digits_dataset

SIZE = 40


@pytest.fixture(scope='module')
def digits_cache(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp('cache') / 'digits')
    return cache, ensure_digits_dataset(cache, size=SIZE, val_ratio=0.2, seed=1, progress=False)


def test_counts_labels_and_pixels(digits_cache):
    _, result = digits_cache
    digits = load_digits()
    assert result.class_names == [str(d) for d in range(10)]
    per_class = Counter(digits.target.tolist())
    for label in range(10):
        n_val = result.counts['val'][label]
        assert result.counts['train'][label] + n_val == per_class[label]
        assert n_val == round(per_class[label] * 0.2)
    for split in ('train', 'val'):
        reader = mx.recordio.MXIndexedRecordIO(result.indexes[split], result.records[split], 'r')
        paths = {key: rel for key, (_, rel) in lst_entries(result.lists[split]).items()}
        for key in reader.keys[::25]:
            header, img = mx.recordio.unpack_img(reader.read_idx(key), iscolor=-1)
            assert img.shape == (SIZE, SIZE, 3)
            n = int(os.path.splitext(os.path.basename(paths[key]))[0])
            assert header.label == digits.target[n] == int(paths[key].split('/')[0])
            small = cv2.resize(img[..., 1], (8, 8), interpolation=cv2.INTER_AREA).ravel()
            assert np.corrcoef(small, digits.images[n].ravel())[0, 1] > 0.9


def test_stock_record_iter_reads_every_record(digits_cache):
    _, result = digits_cache
    labels = labels_from_record_iter(result.records['val'], (3, SIZE, SIZE))
    assert Counter(labels) == Counter(result.counts['val'])


def test_complete_cache_is_reused_without_converting(digits_cache, monkeypatch):
    cache, result = digits_cache
    monkeypatch.setattr(demo_data, 'convert', _must_not_run)
    monkeypatch.setattr(demo_data, 'write_digit_images', _must_not_run)
    assert ensure_digits_dataset(cache, size=SIZE, val_ratio=0.2, seed=1) == result


def _must_not_run(*args, **kwargs):
    raise AssertionError('the cache was complete: nothing should be rebuilt')


def _build(cache):
    ensure_digits_dataset(cache, size=24, val_ratio=0.25, progress=False)


def test_concurrent_first_calls_and_incomplete_cache(tmp_path):
    cache = str(tmp_path / 'digits')
    racers = [get_context('fork').Process(target=_build, args=(cache,)) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert [racer.exitcode for racer in racers] == [0, 0]
    assert os.listdir(str(tmp_path)) == ['digits']  # no build folders left behind
    result = ensure_digits_dataset(cache, size=24, val_ratio=0.25, progress=False)
    assert sum(map(sum, (c.values() for c in result.counts.values()))) == 1797
    os.remove(result.indexes['train'])  # an incomplete cache is rebuilt, not trusted
    rebuilt = ensure_digits_dataset(cache, size=24, val_ratio=0.25, progress=False)
    assert os.path.isfile(rebuilt.indexes['train']) and rebuilt.counts == result.counts
