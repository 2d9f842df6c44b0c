"""CPU inference fast paths on oneDNN (MXNet's MKLDNN backend): float32 with the MKLDNN
subgraph fusion, bfloat16 via AMP, int8 via calibrated quantization.

All three take and return ``(symbol, arg_params, aux_params)`` of an inference graph (see
``inference.model.inference_symbol``); the graphs bind with ``for_training=False`` only. A
graph trained with the fast LRN comes back with ``mx.sym.LRN`` (``symbols.lrn``): the same
function, a faster forward pass, and the operator AMP and quantization know.
"""
import mxnet as mx
from mxnet.contrib import amp, quantization

from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.base.argtypes import POSITIVE_INT
from symbols.lrn import native_lrn_graph

PRECISIONS = ('float32', 'bfloat16', 'int8')
CALIB_MODES = ('naive', 'entropy')
# bfloat16 LRN is slower than float32 LRN in oneDNN 2.x: with LRN converted, bf16 AlexNet
# runs slower than float32; kept in float32, it runs faster (measured on AVX512-BF16).
BF16_FP32_OPS = ['LRN']


def add_precision_args(parser):
    """``--precision``, shared by score.py and benchmark.py."""
    group = parser.add_argument_group('CPU inference precision (oneDNN)')
    group.add_argument('--precision', default='float32', choices=PRECISIONS,
                       help='float32; bfloat16 (AMP, LRN kept in float32; fastest on CPUs with '
                            'AVX512-BF16/AMX); int8 (oneDNN quantization; score.py calibrates on '
                            '--data-train) '
                            '(default: %(default)s)')
    return group


def add_calibration_args(parser):
    """How ``--precision int8`` calibrates on real images."""
    group = parser.add_argument_group('int8 calibration')
    group.add_argument('--num-calib-examples', type=POSITIVE_INT, default=320, metavar='N',
                       help='int8 only: images used for calibration (default: %(default)s)')
    group.add_argument('--calib-mode', default='naive', choices=CALIB_MODES,
                       help='int8 only: naive = min/max of each layer\'s outputs, entropy = '
                            'KL-divergence thresholds (slower to calibrate) (default: %(default)s)')
    return group


def check_precision(precision, contexts, dtype='float32'):
    if precision == 'float32':
        return
    if any(ctx.device_type != 'cpu' for ctx in contexts):
        raise UsageError('--precision %s is a CPU (oneDNN) inference path; drop --gpus' % precision)
    if dtype not in (None, 'float32'):
        raise UsageError('--precision %s converts a float32 network; drop --dtype %s' % (precision, dtype))
    if not mx.runtime.Features().is_enabled('MKLDNN'):
        raise UsageError('--precision %s needs an mxnet build with MKLDNN (oneDNN)' % precision)


def fuse_mkldnn(sym, contexts):
    """Conv+ReLU (and similar) fusion of the MKLDNN subgraph backend, on CPU contexts."""
    if all(ctx.device_type == 'cpu' for ctx in contexts) and mx.runtime.Features().is_enabled('MKLDNN'):
        return sym.get_backend_symbol('MKLDNN')
    return sym


def to_bfloat16(sym, arg_params, aux_params):
    """bfloat16 graph and parameters; ``BF16_FP32_OPS`` and the softmax stay float32."""
    # Copies: with cast_optional_params, convert_model replaces entries of the dicts it is given.
    return amp.convert_model(sym, dict(arg_params), dict(aux_params), target_dtype='bfloat16',
                             fp32_ops=BF16_FP32_OPS, cast_optional_params=True)


def to_int8(sym, arg_params, aux_params, calib_iter, num_calib_examples, calib_mode='naive'):
    """int8 graph quantized by oneDNN, calibrated on ``num_calib_examples`` images of
    ``calib_iter`` (an iterator whose batches carry a ``data`` array; labels are ignored)."""
    # No logger: given one, MXNet also turns on MXNET_QUANTIZATION_VERBOSE, and its C++ side
    # then prints a line per layer on stderr.
    qsym, qarg, qaux = quantization.quantize_model_mkldnn(
        sym, arg_params, aux_params, data_names=('data',), label_names=(), ctx=mx.cpu(),
        calib_mode=calib_mode, calib_data=_DataOnly(calib_iter),
        num_calib_examples=num_calib_examples, quantized_dtype='auto',
        quantize_mode='smart', logger=None)
    return qsym.get_backend_symbol('MKLDNN_QUANTIZE'), qarg, qaux


class _DataOnly(mx.io.DataIter):
    """``calib_iter`` without its labels: the calibration module binds no label input."""

    def __init__(self, data_iter):
        super().__init__(data_iter.batch_size)
        self._iter = data_iter
        self.provide_data = data_iter.provide_data
        self.provide_label = []

    def reset(self):
        self._iter.reset()

    def next(self):
        batch = self._iter.next()
        return mx.io.DataBatch(batch.data, pad=batch.pad, provide_data=self.provide_data)


def convert(precision, sym, arg_params, aux_params, contexts, calib_iter=None,
            num_calib_examples=320, calib_mode='naive'):
    """``(sym, arg_params, aux_params)`` for ``precision`` on ``contexts``."""
    sym = native_lrn_graph(sym)
    if precision == 'bfloat16':
        sym, arg_params, aux_params = to_bfloat16(sym, arg_params, aux_params)
    elif precision == 'int8':
        if calib_iter is None:
            raise UsageError('--precision int8 needs --data-train REC to calibrate on (a few hundred training images)')
        return to_int8(sym, arg_params, aux_params, calib_iter, num_calib_examples, calib_mode)
    return fuse_mkldnn(sym, contexts), arg_params, aux_params
