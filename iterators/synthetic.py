"""Random input of the right shape, generated once: measures compute without any data cost."""
import mxnet as mx
import numpy as np


class SyntheticIter(mx.io.DataIter):
    """``num_batches`` identical batches per epoch of uniform random images and labels, on the CPU."""

    def __init__(self, batch_size, image_shape, num_classes, num_batches, dtype='float32', seed=0):
        super().__init__(batch_size)
        rng = np.random.RandomState(seed)
        shape = (batch_size,) + tuple(image_shape)
        self.num_batches = num_batches
        self.provide_data = [mx.io.DataDesc('data', shape, dtype)]
        self.provide_label = [mx.io.DataDesc('softmax_label', (batch_size,), 'float32')]
        self._batch = mx.io.DataBatch(
            data=[mx.nd.array(rng.uniform(-1, 1, shape), ctx=mx.cpu(), dtype=dtype)],
            label=[mx.nd.array(rng.randint(0, num_classes, batch_size), ctx=mx.cpu())],
            pad=0, provide_data=self.provide_data, provide_label=self.provide_label)
        self._served = 0

    def reset(self):
        self._served = 0

    def next(self):
        if self._served == self.num_batches:
            raise StopIteration
        self._served += 1
        return self._batch
