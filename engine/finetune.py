"""Starting weights for fine-tuning: a checkpoint's or a GluonCV AlexNet's, minus fc3.

Only the last layer (``fc3``) is replaced for the new class count; ``fc1``/``fc2`` keep
their trained weights (the transferable part of AlexNet's classifier).
"""
import os

import mxnet as mx

from engine.errors import UsageError

HEAD = 'fc3'
FEATURE_LAYERS = ('conv', 'bn')


def load_params_file(path, network):
    """``(arg_params, aux_params)`` from a stock ``P-NNNN.params`` file (``arg:``/``aux:``
    names) or a GluonCV AlexNet ``.params`` file (mapped onto the alexnet-gluon graph)."""
    from symbols.alexnet import gluon_params_to_symbol
    if not os.path.isfile(path):
        raise UsageError('pretrained weights %s not found' % path)
    try:
        raw = mx.nd.load(path)
    except mx.base.MXNetError:
        raise UsageError('%s is not an MXNet .params file' % path) from None
    if not isinstance(raw, dict) or not raw:
        raise UsageError('%s holds no named parameters' % path)
    if all(name.startswith(('arg:', 'aux:')) for name in raw):
        arg = {k[4:]: v for k, v in raw.items() if k.startswith('arg:')}
        aux = {k[4:]: v for k, v in raw.items() if k.startswith('aux:')}
        return arg, aux
    if network != 'alexnet-gluon':
        raise UsageError('%s looks like GluonCV AlexNet weights: train with --network alexnet-gluon'
                         % path)
    return gluon_params_to_symbol(raw), {}


def without_head(arg_params):
    """Every parameter but ``fc3``'s, which the new class count re-initialises."""
    return {k: v for k, v in arg_params.items() if not k.startswith(HEAD + '_')}


def feature_params(symbol):
    """The convolutional (and BatchNorm) parameters: what ``--freeze-features`` fixes."""
    return [n for n in symbol.list_arguments() if n.startswith(FEATURE_LAYERS)]


def set_lr_mult(symbol, names, mult):
    """Tag parameters with ``__lr_mult__``, which every ``mx.optimizer`` reads from the graph
    (also on dist kvstore servers, unlike a multiplier set on the optimizer afterwards)."""
    internals = symbol.get_internals()
    for name in names:
        internals[name]._set_attr(__lr_mult__=str(mult))


def check_compatible(symbol, data_shape, arg_params, aux_params, source):
    """One-line error when loaded parameters do not fit the graph being trained."""
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=data_shape)
    expected = dict(zip(symbol.list_arguments(), arg_shapes))
    expected.update(zip(symbol.list_auxiliary_states(), aux_shapes))
    for name, value in list(arg_params.items()) + list(aux_params.items()):
        if name not in expected:
            raise UsageError('%s has parameter %s, which this --network does not have'
                             % (source, name))
        if tuple(value.shape) != tuple(expected[name]):
            raise UsageError('%s has %s of shape %s but this network needs %s (check --network, '
                             '--num-classes and --image-shape)'
                             % (source, name, tuple(value.shape), tuple(expected[name])))
