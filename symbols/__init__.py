"""Network registry: ``--network NAME`` resolves here to an ``mx.symbol`` graph."""
from engine.errors import UsageError
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


def default_image_shape(network):
    """The input shape the network was designed for, as (channels, height, width)."""
    return _lookup(network)[2]


def parse_image_shape(text):
    """``'3,227,227'`` -> ``(3, 227, 227)``, with a one-line error for anything else."""
    if not isinstance(text, str):
        return tuple(int(v) for v in text)
    try:
        shape = tuple(int(v) for v in text.split(','))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UsageError('image shape must be three positive integers C,H,W, got %r' % text)
    return shape


def get_symbol(network='alexnet', num_classes=1000, image_shape=None, **kwargs):
    """Build the registered network ``network``; see ``symbols.alexnet.get_symbol``."""
    builder, fixed, default_shape = _lookup(network)
    shape = parse_image_shape(image_shape) if image_shape is not None else default_shape
    return builder(num_classes=num_classes, image_shape=shape, **dict(kwargs, **fixed))
