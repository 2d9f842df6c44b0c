"""A checkpoint bound for inference on a fixed batch shape: batches in, probabilities out."""
import numpy as np
import mxnet as mx

from engine.devices import check_batch_split
from inference import fastpath
from inference.model import inference_symbol


class Predictor:
    """Softmax probabilities of a graph (``symbol``, ending in SoftmaxOutput or softmax) for
    batches of ``batch_size`` rows of ``image_shape`` on ``contexts``.

    ``precision`` picks a CPU fast path (``inference.fastpath``); int8 needs ``calib_iter``.
    """

    def __init__(self, symbol, arg_params, aux_params, image_shape, batch_size, contexts,
                 precision='float32', calib_iter=None, num_calib_examples=320, calib_mode='naive'):
        check_batch_split(batch_size, contexts)
        fastpath.check_precision(precision, contexts)
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
