"""Export a checkpoint to ONNX with ``mx.onnx`` and check it against MXNet in onnxruntime.

MXNet 1.9.1's exporter needs two helps: it fails on ``SoftmaxOutput``'s label input (the
graph is exported with a plain softmax, see ``inference_symbol``), and it imports
``onnx.mapping``, which onnx 1.16 removed (a stand-in built from ``onnx.helper`` is
installed when it is missing). Its op translations go up to opset 13, so the model is
stamped opset 13 rather than the installed onnx's newest, and the weights are kept out of
the graph inputs so onnxruntime may constant-fold them. A graph trained with the fast LRN is
exported with ``mx.sym.LRN`` (ONNX's ``LRN``, the same function; ``symbols.lrn``).
"""
import os
import sys
import types

import mxnet as mx
import numpy as np

from alexnet_mxnet.base.files import atomic_write
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.inference.model import inference_symbol
from symbols.lrn import native_lrn_graph

OPSET = 13


def _require(module):
    try:
        return __import__(module)
    except ImportError:
        raise UsageError('%s is not installed: pip install -e ".[export]"' % module) from None


def _ensure_onnx_mapping(onnx):
    if hasattr(onnx, 'mapping'):
        return
    from onnx import helper
    dtypes = [np.dtype(t) for t in ('float16', 'float32', 'float64', 'int8', 'uint8', 'int32',
                                    'int64', 'bool')]
    to_tensor = {d: helper.np_dtype_to_tensor_dtype(d) for d in dtypes}
    onnx.mapping = types.SimpleNamespace(NP_TYPE_TO_TENSOR_TYPE=to_tensor,
                                         TENSOR_TYPE_TO_NP_TYPE={v: k for k, v in to_tensor.items()})
    sys.modules['onnx.mapping'] = onnx.mapping


def export_onnx(model, path):
    """Write ``model`` (an ``inference.model.LoadedModel``) to ``path`` as ONNX with a
    dynamic batch dimension: input ``data`` (N, C, H, W), output ``softmax`` probabilities."""
    onnx = _require('onnx')
    _ensure_onnx_mapping(onnx)
    params = dict(model.arg_params)
    params.update(model.aux_params)
    shape = tuple(model.image_shape)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    scratch = path + '.mx2onnx.tmp'
    try:
        mx.onnx.export_model(native_lrn_graph(inference_symbol(model.symbol)), params, in_shapes=[(1,) + shape],
                             in_types=np.float32, onnx_file_path=scratch, dynamic=True,
                             dynamic_input_shapes=[(None,) + shape])
        proto = onnx.load(scratch)
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)
    weights = {init.name for init in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in weights]
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)
    for opset in proto.opset_import:
        if opset.domain in ('', 'ai.onnx'):
            opset.version = OPSET
    onnx.checker.check_model(proto)
    atomic_write(path, lambda tmp: onnx.save(proto, tmp))
    return path


def onnx_probabilities(path, data):
    """Run the exported model in onnxruntime on an NCHW float32 batch."""
    ort = _require('onnxruntime')
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    return session.run(None, {session.get_inputs()[0].name: np.asarray(data, np.float32)})[0]


def compare(mxnet_probs, onnx_probs):
    """``(max abs probability difference, fraction of equal top-1)`` of two runs."""
    diff = float(np.abs(mxnet_probs - onnx_probs).max())
    agree = float(np.mean(mxnet_probs.argmax(axis=1) == onnx_probs.argmax(axis=1)))
    return diff, agree
