"""Per-layer table of a network: output shape, parameters and neurons.

Neurons are counted as in the AlexNet paper: the outputs of the convolutional
and fully-connected layers (659,272 at 227x227 for the MXNet layout).
"""
import collections
import json

import numpy as np

import symbols

LayerRow = collections.namedtuple('LayerRow', 'name op output_shape weights biases neurons')
_NEURON_OPS = ('Convolution', 'FullyConnected')
_NOT_PARAMS = ('data', 'softmax_label')


def summarize(symbol, data_shape):
    """One ``LayerRow`` per operator of ``symbol`` for an input of ``data_shape`` (N,C,H,W)."""
    internals = symbol.get_internals()
    arg_shapes, out_shapes, _ = symbols.infer_shapes(internals, data_shape, 'the network')
    arg_shape = dict(zip(internals.list_arguments(), arg_shapes))
    out_shape = dict(zip(internals.list_outputs(), out_shapes))
    nodes = json.loads(symbol.tojson())['nodes']
    rows = []
    for node in nodes:
        if node['op'] == 'null':
            continue
        inputs = [nodes[i[0]] for i in node['inputs']]
        params = [n['name'] for n in inputs
                  if n['op'] == 'null' and n['name'] in arg_shape and n['name'] not in _NOT_PARAMS]
        size = {name: int(np.prod(arg_shape[name])) for name in params}
        shape = out_shape[node['name'] + '_output']
        rows.append(LayerRow(
            name=node['name'], op=node['op'], output_shape=tuple(shape[1:]),
            weights=sum(v for k, v in size.items() if not k.endswith('_bias')),
            biases=sum(v for k, v in size.items() if k.endswith('_bias')),
            neurons=int(np.prod(shape[1:])) if node['op'] in _NEURON_OPS else 0))
    return rows


def totals(rows):
    """(weights, biases, neurons) summed over ``rows``."""
    return (sum(r.weights for r in rows), sum(r.biases for r in rows), sum(r.neurons for r in rows))


def format_summary(rows):
    header = ('layer', 'type', 'output shape', 'parameters', 'neurons')
    lines = [(r.name, r.op, 'x'.join(map(str, r.output_shape)),
              '{:,}'.format(r.weights + r.biases) if r.weights + r.biases else '',
              '{:,}'.format(r.neurons) if r.neurons else '') for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = '  '.join('{:<%d}' % w if i < 3 else '{:>%d}' % w for i, w in enumerate(widths))
    weights, biases, neurons = totals(rows)
    out = [fmt.format(*header), '  '.join('-' * w for w in widths)]
    out += [fmt.format(*line) for line in lines]
    out.append('total: {:,} parameters ({:,} weights + {:,} biases), {:,} neurons'.format(
        weights + biases, weights, biases, neurons))
    return '\n'.join(out)


def network_summary(network='alexnet', num_classes=1000, image_shape=None, dtype='float32'):
    """Rows for a registered network at ``image_shape`` (default: the network's own); LRN is
    one row, the stock operator, whichever implementation trains."""
    shape = symbols.resolve_image_shape(network, image_shape)
    sym = symbols.get_symbol(network, num_classes=num_classes, image_shape=shape, dtype=dtype,
                             lrn='native')
    return summarize(sym, (1,) + tuple(shape))
