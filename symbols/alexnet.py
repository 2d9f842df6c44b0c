"""AlexNet as an ``mx.symbol`` graph, in the layouts users meet in practice.

* ``mxnet``   -- MXNet's ``example/image-classification`` layout: 96-256-384-384-256
  filters, ReLU, LRN after conv1 and conv2, overlapping 3/2 max-pooling.
* ``grouped`` -- the paper's two-tower layout (conv2, conv4 and conv5 see only the
  half of the previous layer that lived on the same GPU), as in the BVLC Caffe model.
* ``gluon``   -- GluonCV / torchvision: 64-192-384-256-256 filters, conv1 padded by
  2, no LRN; its parameters map one to one onto GluonCV's ``alexnet`` model.

LRN is computed by ``symbols.lrn`` (``lrn='fast'``: dense algebra at GEMM speed, the default;
``lrn='native'``: ``mx.sym.LRN``); both give the same function with the same parameters.

Layers are named ``conv1..conv5`` and ``fc1..fc3`` in every layout, so fine-tuning
code can replace ``fc3`` alone and checkpoints read the same across layouts.
"""
import re

import mxnet as mx

from alexnet_mxnet.base.argtypes import parse_image_shape
from alexnet_mxnet.base.errors import UsageError
from symbols.lrn import check_impl as check_lrn, lrn as local_response_norm
from symbols.precision import bf16_training_graph

LAYOUTS = ('mxnet', 'grouped', 'gluon')
DTYPES = ('float32', 'float16', 'bfloat16')
# The dtype of the weights (and of the graph a checkpoint saves) for each compute dtype: a
# bfloat16 graph keeps float32 weights and casts inside (symbols.precision).
WEIGHT_DTYPE = {'float32': 'float32', 'float16': 'float16', 'bfloat16': 'float32'}

# Per conv layer: (filters, kernel, stride, pad, groups).
_CONV_SPECS = {
    'mxnet': [(96, 11, 4, 0, 1), (256, 5, 1, 2, 1), (384, 3, 1, 1, 1),
              (384, 3, 1, 1, 1), (256, 3, 1, 1, 1)],
    'grouped': [(96, 11, 4, 0, 1), (256, 5, 1, 2, 2), (384, 3, 1, 1, 1),
                (384, 3, 1, 1, 2), (256, 3, 1, 1, 2)],
    'gluon': [(64, 11, 4, 2, 1), (192, 5, 1, 2, 1), (384, 3, 1, 1, 1),
              (256, 3, 1, 1, 1), (256, 3, 1, 1, 1)],
}
# Max-pooling (3x3, stride 2: the paper's overlapping pooling) follows these convs.
_POOL_AFTER = (1, 2, 5)
# The paper's response normalisation, with MXNet's name for k.
LRN_PARAMS = dict(alpha=1e-4, beta=0.75, knorm=2, nsize=5)
FC_HIDDEN = 4096


def _conv_out(size, kernel, stride, pad):
    return (size + 2 * pad - kernel) // stride + 1


def _final_map_size(layout, size):
    """Side of the last pooled feature map for an input side ``size``."""
    for index, (_, kernel, stride, pad, _) in enumerate(_CONV_SPECS[layout], 1):
        size = _conv_out(size, kernel, stride, pad)
        if index in _POOL_AFTER:
            size = _conv_out(size, 3, 2, 0)
    return size


def min_input_size(layout):
    """Smallest input side for which every layer still has a 1x1 output."""
    size = 1
    while _final_map_size(layout, size) < 1:
        size += 1
    return size


def _check_args(num_classes, layout, dtype, image_shape, lrn):
    if layout not in LAYOUTS:
        raise UsageError('unknown AlexNet layout %r; choose one of %s' % (layout, ', '.join(LAYOUTS)))
    if dtype not in DTYPES:
        raise UsageError('unsupported dtype %r; choose one of %s' % (dtype, ', '.join(DTYPES)))
    check_lrn(lrn)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UsageError('num_classes must be a positive integer, got %r' % (num_classes,))
    channels, height, width = image_shape
    smallest = min_input_size(layout)
    if channels < 1 or min(height, width) < smallest:
        raise UsageError('image shape %s is too small for the %s layout: it needs at least '
                         '%dx%d pixels' % (','.join(map(str, image_shape)), layout, smallest, smallest))


def _normalize(data, index, channels, lrn, dtype):
    name = 'lrn%d' % index
    if lrn == 'fast' and dtype != 'float32':
        # x^2 overflows float16 above x = 256: the fast form computes in float32.
        data = mx.sym.Cast(data, dtype='float32', name=name + '_in')
        body = local_response_norm(data, channels, name, lrn, **LRN_PARAMS)
        return mx.sym.Cast(body, dtype=dtype, name=name + '_out')
    return local_response_norm(data, channels, name, lrn, **LRN_PARAMS)


def _conv_block(data, index, spec, layout, batch_norm, lrn, dtype):
    filters, kernel, stride, pad, groups = spec
    name = 'conv%d' % index
    body = mx.sym.Convolution(data, name=name, num_filter=filters, kernel=(kernel, kernel),
                              stride=(stride, stride), pad=(pad, pad), num_group=groups,
                              no_bias=batch_norm)
    if batch_norm:
        body = mx.sym.BatchNorm(body, name='bn%d' % index, fix_gamma=False, eps=1e-5)
    body = mx.sym.Activation(body, name='relu%d' % index, act_type='relu')
    if index in (1, 2) and layout != 'gluon' and not batch_norm:
        body = _normalize(body, index, filters, lrn, dtype)
    if index in _POOL_AFTER:
        body = mx.sym.Pooling(body, name='pool%d' % index, kernel=(3, 3), stride=(2, 2),
                              pool_type='max')
    return body


def get_symbol(num_classes=1000, layout='mxnet', batch_norm=False, dtype='float32',
               image_shape=(3, 227, 227), dropout=0.5, label_smoothing=0.0, lrn='fast',
               **kwargs):
    """Build the AlexNet graph ending in ``SoftmaxOutput(name='softmax')``.

    ``batch_norm`` puts BatchNorm after every conv in place of LRN (for large-batch
    training). With ``dtype='float16'`` the data is cast in and the logits are cast
    back to float32 before the softmax, as MXNet's mixed-precision recipe does. With
    ``dtype='bfloat16'`` (CPU training) the convolutions compute in bfloat16 from float32
    weights, the rest in float32 (``symbols.precision``).
    ``dropout=0`` removes the dropout layers (deterministic runs in tests). ``lrn`` picks the
    LRN implementation (``symbols.lrn``): ``'fast'`` (dense algebra, 2-3x faster training on the
    CPU) or ``'native'`` (``mx.sym.LRN``); the same function and parameters either way.

    A drop-in for MXNet's ``example/image-classification/symbols/alexnet.py``: its scripts
    call ``get_symbol(**vars(args))``, with ``image_shape`` as the string ``'3,224,224'``
    and every other flag of theirs (``network``, ``num_layers``, ``batch_size``...), which
    are accepted and ignored.
    """
    image_shape = parse_image_shape(image_shape)
    _check_args(num_classes, layout, dtype, image_shape, lrn)
    if dtype == 'bfloat16':
        return bf16_training_graph(get_symbol(
            num_classes, layout, batch_norm, dtype='float32', image_shape=image_shape,
            dropout=dropout, label_smoothing=label_smoothing, lrn=lrn))
    body = mx.sym.Variable('data')
    if dtype != 'float32':
        body = mx.sym.Cast(body, dtype=dtype)
    for index, spec in enumerate(_CONV_SPECS[layout], 1):
        body = _conv_block(body, index, spec, layout, batch_norm, lrn, dtype)
    body = mx.sym.Flatten(body, name='flatten')
    for index in (1, 2):
        body = mx.sym.FullyConnected(body, name='fc%d' % index, num_hidden=FC_HIDDEN)
        body = mx.sym.Activation(body, name='relu%d' % (index + 5), act_type='relu')
        if dropout:
            body = mx.sym.Dropout(body, name='drop%d' % (index + 5), p=dropout)
    body = mx.sym.FullyConnected(body, name='fc3', num_hidden=num_classes)
    if dtype != 'float32':
        body = mx.sym.Cast(body, dtype='float32')
    return mx.sym.SoftmaxOutput(body, name='softmax', smooth_alpha=label_smoothing)


# GluonCV names its parameters either by prefix (``collect_params()``, e.g.
# ``alexnet0_conv0_weight``) or by structure (``save_parameters`` files, e.g.
# ``features.0.weight``); both map onto this graph's layer names.
_GLUON_STRUCTURAL = {'features.0': 'conv1', 'features.2': 'conv2', 'features.4': 'conv3',
                     'features.5': 'conv4', 'features.6': 'conv5', 'features.9': 'fc1',
                     'features.11': 'fc2', 'output': 'fc3'}
_GLUON_PREFIXED = re.compile(r'^(?:.*_)?(conv|dense)(\d)_(weight|bias)$')


def gluon_to_symbol_name(name):
    """Map one GluonCV AlexNet parameter name to this graph's name (or None)."""
    match = _GLUON_PREFIXED.match(name)
    if match:
        kind, index, what = match.group(1), int(match.group(2)), match.group(3)
        layer = 'conv%d' % (index + 1) if kind == 'conv' else 'fc%d' % (index + 1)
        return '%s_%s' % (layer, what)
    block, _, what = name.rpartition('.')
    if block in _GLUON_STRUCTURAL and what in ('weight', 'bias'):
        return '%s_%s' % (_GLUON_STRUCTURAL[block], what)
    return None


def gluon_params_to_symbol(params):
    """Rename a GluonCV AlexNet's parameters for the ``gluon`` layout graph.

    ``params`` is a dict of NDArrays or the path of a GluonCV ``.params`` file.
    Returns ``arg_params`` for ``Module.set_params``/``init_params``.
    """
    if isinstance(params, str):
        params = mx.nd.load(params)
    renamed = {}
    for name, value in params.items():
        # Files written by mx.model.save_checkpoint prefix names with arg:/aux:.
        target = gluon_to_symbol_name(name.split(':', 1)[-1])
        if target is None:
            raise UsageError('%r is not a GluonCV AlexNet parameter' % name)
        renamed[target] = value
    expected = {'%s_%s' % (layer, what) for layer in _GLUON_STRUCTURAL.values()
                for what in ('weight', 'bias')}
    missing = sorted(expected - set(renamed))
    if missing:
        raise UsageError('GluonCV AlexNet parameters are missing %s' % ', '.join(missing))
    return renamed
