"""Network registry: ``--network NAME`` resolves here to an ``mx.symbol`` graph."""
import contextlib
import io

import mxnet as mx

from alexnet_mxnet.base.argtypes import parse_image_shape
from alexnet_mxnet.base.checkpoint import read_params, split_params
from alexnet_mxnet.base.errors import UsageError, mxnet_error_line
from symbols import alexnet

# name -> (builder, fixed keyword arguments, default image shape)
NETWORKS = {
    'alexnet': (alexnet.get_symbol, dict(layout='mxnet'), (3, 227, 227)),
    'alexnet-grouped': (alexnet.get_symbol, dict(layout='grouped'), (3, 227, 227)),
    'alexnet-gluon': (alexnet.get_symbol, dict(layout='gluon'), (3, 224, 224)),
    'alexnet-bn': (alexnet.get_symbol, dict(layout='mxnet', batch_norm=True), (3, 227, 227)),
}


def list_networks():
    return sorted(NETWORKS)


def _lookup(network):
    if network not in NETWORKS:
        raise UsageError('unknown network %r; choose one of %s' % (network, ', '.join(list_networks())))
    return NETWORKS[network]


def resolve_image_shape(network, image_shape=None):
    """``image_shape`` (``'C,H,W'`` or a sequence) as a tuple, or when it is None the input
    ``network`` was designed for: the one place an input shape is decided."""
    if image_shape is None:
        return _lookup(network)[2]
    return parse_image_shape(image_shape)


def get_symbol(network='alexnet', num_classes=1000, image_shape=None, **kwargs):
    """Build the registered network ``network``; see ``symbols.alexnet.get_symbol``."""
    builder, fixed, _ = _lookup(network)
    return builder(num_classes=num_classes, image_shape=resolve_image_shape(network, image_shape),
                   **dict(kwargs, **fixed))


def load_weights(path, network):
    """``(arg_params, aux_params)`` for ``network`` from a ``.params`` file: a checkpoint's
    (``P-NNNN.params``, ``P-best.params``) or a GluonCV AlexNet's, whose names are mapped onto
    the ``alexnet-gluon`` graph."""
    raw = read_params(path)
    params = split_params(raw)
    if params is not None:
        return params
    if network != 'alexnet-gluon':
        raise UsageError('%s looks like GluonCV AlexNet weights: use --network alexnet-gluon'
                         % path)
    return alexnet.gluon_params_to_symbol(raw), {}


def infer_shapes(sym, data_shape, name):
    """``sym.infer_shape(data=data_shape)`` with a one-line error when the graph cannot take
    that input (``name`` says whose graph)."""
    size = 'x'.join(map(str, data_shape[1:]))
    try:
        with contextlib.redirect_stdout(io.StringIO()):   # MXNet prints its arguments on failure
            return sym.infer_shape(data=tuple(data_shape))
    except mx.base.MXNetError as err:
        if 'dim_size >= -1' in str(err):     # a dimension overflowed MXNet's 32-bit shapes
            raise UsageError('%s input is too large for %s: a layer would hold more than 2**31 '
                             'values; use a smaller --image-shape' % (size, name)) from None
        raise UsageError('%s cannot take %s input: %s' % (name, size, mxnet_error_line(err))) from None
