"""Augmentation of whole batches after decoding (random erasing, mixup, cutmix), with random
draws that depend only on a seed, the pass over the data and the batch number.

The C++ iterators draw crops and mirrors in their decoding threads; these transforms run in
Python on the normalised batch. Their generator is made afresh for every batch from
``(seed..., pass, batch)``, so a run that reads the same epoch again (a resume) draws the same
erasures and mixes, whatever happened before.
"""
import mxnet as mx
import numpy as np


def seed_words(*values):
    """``values`` (any integers, e.g. a negative ``--seed``) as the non-negative words
    ``np.random.SeedSequence`` takes."""
    return [int(v) % 2 ** 32 for v in values]


class BatchTransformIter(mx.io.DataIter):
    """The batches of ``data`` passed through ``transform(data, label, rng) -> (data, label)``
    on numpy arrays (data as ``data`` yields it, e.g. normalised; label as given). ``pad`` and
    ``batches_per_epoch`` are kept; ``provide_label`` replaces ``data``'s when the transform
    changes the label's shape."""

    def __init__(self, data, transform, seed, provide_label=None):
        super().__init__(data.batch_size)
        self._data = data
        self._transform = transform
        self._seed = seed_words(*seed)
        self.provide_data = data.provide_data
        self.provide_label = provide_label or data.provide_label
        self.batches_per_epoch = data.batches_per_epoch
        self._pass = 0
        self._batch = 0

    def reset(self):
        self._data.reset()
        self._pass += 1
        self._batch = 0

    def next(self):
        batch = self._data.next()
        rng = np.random.default_rng(self._seed + [self._pass, self._batch])
        self._batch += 1
        data, label = self._transform(batch.data[0].asnumpy(), batch.label[0].asnumpy(), rng)
        return mx.io.DataBatch([mx.nd.array(data, dtype=self.provide_data[0].dtype)],
                               [mx.nd.array(label, dtype=label.dtype)], pad=batch.pad,
                               provide_data=self.provide_data, provide_label=self.provide_label)
