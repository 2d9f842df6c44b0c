"""The same network in PyTorch, built from the MXNet graph itself, for speed comparisons.

Walking the symbol's nodes keeps the two in step for every registered variant: conv
(grouped too), ReLU, LRN (MXNet's ``knorm`` is PyTorch's ``k``; both divide alpha by the
window size), floor-mode max-pooling, BatchNorm, dropout and fully-connected layers. The
fast LRN (``symbols.lrn``) is read as the ``mx.sym.LRN`` it computes.
"""
import json

from symbols.lrn import native_lrn_graph


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _attr(node, key, default=None):
    return node.get('attrs', {}).get(key, default)


def _pair(text):
    return tuple(int(v) for v in text.strip('()').split(',') if v.strip())


def torch_model(symbol, image_shape):
    """``torch.nn.Sequential`` with the layers of ``symbol`` (a chain, as every AlexNet is),
    in the same order as ``symbol``'s parameters: ``copy_weights`` can load them."""
    import torch.nn as nn
    symbol = native_lrn_graph(symbol)
    nodes = json.loads(symbol.tojson())['nodes']
    internals = symbol.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=(1,) + tuple(image_shape))
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    layers = []
    for node in nodes:
        op = node['op']
        source = nodes[node['inputs'][0][0]] if node['inputs'] else None
        in_shape = shapes.get(source['name'] + ('' if source['op'] == 'null' else '_output'),
                              None) if source else None
        if op == 'Convolution':
            layers.append(nn.Conv2d(in_shape[1], int(_attr(node, 'num_filter')),
                                    _pair(_attr(node, 'kernel')),
                                    stride=_pair(_attr(node, 'stride', '(1,1)')),
                                    padding=_pair(_attr(node, 'pad', '(0,0)')),
                                    groups=int(_attr(node, 'num_group', 1)),
                                    bias=_attr(node, 'no_bias', 'False') != 'True'))
        elif op == 'BatchNorm':
            layers.append(nn.BatchNorm2d(in_shape[1], eps=float(_attr(node, 'eps', 1e-3))))
        elif op == 'Activation':
            if _attr(node, 'act_type') != 'relu':
                raise ValueError('no PyTorch twin for activation %s' % _attr(node, 'act_type'))
            layers.append(nn.ReLU(inplace=True))
        elif op == 'LRN':
            layers.append(nn.LocalResponseNorm(int(_attr(node, 'nsize')),
                                               alpha=float(_attr(node, 'alpha', 1e-4)),
                                               beta=float(_attr(node, 'beta', 0.75)),
                                               k=float(_attr(node, 'knorm', 2))))
        elif op == 'Pooling':
            if _attr(node, 'pool_type', 'max') != 'max':
                raise ValueError('no PyTorch twin for %s pooling' % _attr(node, 'pool_type'))
            layers.append(nn.MaxPool2d(_pair(_attr(node, 'kernel')),
                                       stride=_pair(_attr(node, 'stride', '(1,1)'))))
        elif op == 'Flatten':
            layers.append(nn.Flatten())
        elif op == 'Dropout':
            layers.append(nn.Dropout(float(_attr(node, 'p', 0.5))))
        elif op == 'FullyConnected':
            features = 1
            for side in in_shape[1:]:
                features *= side
            layers.append(nn.Linear(features, int(_attr(node, 'num_hidden'))))
        elif op not in ('null', 'SoftmaxOutput', 'softmax', 'Cast'):
            raise ValueError('no PyTorch twin for MXNet operator %s' % op)
    return nn.Sequential(*layers)


def copy_weights(model, symbol, arg_params, aux_params):
    """Load MXNet parameters (same layouts: OIHW convolutions, out x in dense) into ``model``."""
    import torch
    params = dict(arg_params, **aux_params)
    names = [k.rsplit('_', 1)[0] for k in symbol.list_arguments() if k.endswith(('_weight', '_gamma'))]
    targets = [m for m in model if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear,
                                                  torch.nn.BatchNorm2d))]
    if len(names) != len(targets):
        raise ValueError('%d MXNet layers with weights but %d PyTorch layers' % (len(names), len(targets)))
    with torch.no_grad():
        for name, layer in zip(names, targets):
            if isinstance(layer, torch.nn.BatchNorm2d):
                pairs = [('weight', 'gamma'), ('bias', 'beta'), ('running_mean', 'moving_mean'),
                         ('running_var', 'moving_var')]
            else:
                pairs = [('weight', 'weight'), ('bias', 'bias')]
            for attr, suffix in pairs:
                key = '%s_%s' % (name, suffix)
                if key in params:
                    getattr(layer, attr).copy_(torch.from_numpy(params[key].asnumpy()))
    return model
