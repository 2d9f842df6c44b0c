"""A checkpoint bound for inference on a fixed batch shape: batches in, probabilities out."""
import mxnet as mx
import numpy as np

import symbols
from alexnet_mxnet.base.devices import check_batch_split
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.inference import fastpath
from alexnet_mxnet.inference.model import graph_dtype, inference_symbol

GB = 1024 ** 3


class Predictor:
    """Softmax probabilities of a graph (``symbol``, ending in SoftmaxOutput or softmax) for
    batches of ``batch_size`` rows of ``image_shape`` on ``contexts``.

    ``precision`` picks a CPU fast path (``inference.fastpath``); int8 needs ``calib_iter``.
    """

    def __init__(self, symbol, arg_params, aux_params, image_shape, batch_size, contexts,
                 precision='float32', calib_iter=None, num_calib_examples=320, calib_mode='naive'):
        check_batch_split(batch_size, contexts)
        fastpath.check_precision(precision, contexts)
        check_device_dtype(symbol, contexts)
        check_memory(symbol, batch_size, image_shape)
        sym, arg_params, aux_params = fastpath.convert(
            precision, inference_symbol(symbol), arg_params, aux_params, contexts, calib_iter,
            num_calib_examples, calib_mode)
        self.batch_size = batch_size
        self.data_shape = (batch_size,) + tuple(image_shape)
        self.module = mx.mod.Module(sym, data_names=('data',), label_names=None, context=contexts)
        self.module.bind(data_shapes=[('data', self.data_shape)], for_training=False)
        self.module.set_params(arg_params, aux_params, allow_missing=False, allow_extra=True)

    @classmethod
    def for_model(cls, model, batch_size, contexts, **kwargs):
        """For an ``inference.model.LoadedModel``."""
        return cls(model.symbol, model.arg_params, model.aux_params, model.image_shape,
                   batch_size, contexts, **kwargs)

    def probabilities(self, data):
        """``(batch_size, num_classes)`` float32 probabilities for one NCHW batch."""
        if not isinstance(data, mx.nd.NDArray):
            data = mx.nd.array(data)
        self.module.forward(mx.io.DataBatch([data]), is_train=False)
        return self.module.get_outputs()[0].asnumpy().astype(np.float32)


def check_device_dtype(symbol, contexts):
    """MXNet has no float16 matrix multiply on the CPU: say so before it fails mid-forward."""
    if graph_dtype(symbol) == 'float16' and any(c.device_type == 'cpu' for c in contexts):
        raise UsageError('the network computes in float16 (--dtype float16, or a checkpoint '
                         'trained so), which MXNet runs on GPUs only: give --gpus, or --dtype '
                         'float32 to run it in float32 on the CPU')


def check_memory(symbol, batch_size, image_shape):
    """One-line error when a batch certainly cannot fit: its float32 input, the parameters and
    the largest layer output (in any precision, at least a byte per value) are all in memory
    at once, and together they exceed the memory available now. Catches a mistyped
    ``--batch-size`` or ``--image-shape`` before MXNet's allocation failure or the kernel's
    OOM killer."""
    available = available_memory()
    if available is None:
        return
    internals = symbol.get_internals()
    arg_shapes, out_shapes, aux_shapes = symbols.infer_shapes(internals, (1,) + tuple(image_shape),
                                                      'the network')
    weights = sum(int(np.prod(shape)) for name, shape in zip(internals.list_arguments(), arg_shapes)
                  if name not in ('data', 'softmax_label'))
    weights += sum(int(np.prod(shape)) for shape in aux_shapes)
    largest = max(int(np.prod(shape)) for shape in out_shapes)
    needed = 4 * batch_size * int(np.prod(image_shape)) + weights + batch_size * largest
    if needed > available:
        raise UsageError('a batch of %d at %s needs at least %.1f GB of memory, %.1f GB are '
                         'available: use a smaller --batch-size (or --image-shape)' % (
                             batch_size, 'x'.join(map(str, image_shape)), needed / GB,
                             available / GB))


def available_memory():
    """Bytes of memory available to new allocations (``MemAvailable``), or None when the
    system does not say."""
    try:
        with open('/proc/meminfo') as handle:
            for line in handle:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
