"""Cross-channel local response normalisation (LRN), two implementations of the same math.

    y = x * (knorm + alpha / nsize * sum of x^2 over the nsize channels around c) ** -beta

``native`` is ``mx.sym.LRN``. Its oneDNN forward is fast, but its backward runs oneDNN's
reference kernel: about 40% of an AlexNet training step on the CPU. ``fast`` writes the window
sum as a 1x1 convolution of x^2 whose C x C kernel is a constant band (oneDNN's convolution,
forward and backward; not ``batch_dot``, whose OpenBLAS GEMM deadlocks when two CPU contexts
call it at once) and the power as ``exp(-beta * log(s))``: MXNet's CPU wheel computes ``pow``
and its gradient in scalar code, ``exp``'s gradient is its output. The band is built inside
the graph (``eye`` sums, behind ``BlockGrad``), so it is neither a learned nor a saved
parameter: both graphs have the same arguments, and a checkpoint of either loads into the
other with the same outputs.

``fast`` marks its last node with ``__lrn__`` (the LRN's parameters): ``native_lrn_graph``
turns every such node back into ``mx.sym.LRN``, for inference paths whose tools (bfloat16 and
int8 conversion, the ONNX exporter, the PyTorch twin) know LRN and whose forward-only pass is
faster with the stock operator; ``training_graph`` turns them into the fused CPU kernel
(``lrn_kernel``) for training, where the elementwise rest of ``fast`` still costs some twenty
passes over the activations a step.
"""
import json

import mxnet as mx

from alexnet_mxnet.base.errors import UsageError
from symbols import lrn_kernel

IMPLEMENTATIONS = ('fast', 'native')
_MARK = '__lrn__'
_PARAMS = ('alpha', 'beta', 'knorm', 'nsize')


def check_impl(impl):
    if impl not in IMPLEMENTATIONS:
        raise UsageError('unknown LRN implementation %r; choose one of %s'
                         % (impl, ', '.join(IMPLEMENTATIONS)))


def lrn(data, channels, name, impl='fast', alpha=1e-4, beta=0.75, knorm=2.0, nsize=5):
    """LRN of ``data`` (N, ``channels``, H, W) by ``impl``; the output node is named ``name``."""
    check_impl(impl)
    if impl == 'native':
        return mx.sym.LRN(data, name=name, alpha=alpha, beta=beta, knorm=knorm, nsize=nsize)
    if knorm <= 0:
        raise UsageError('the fast LRN needs knorm > 0 (it takes the log of the window sum)')
    half = nsize // 2
    band = mx.sym.eye(channels, name=name + '_band0')
    for offset in range(1, half + 1):
        band = band + mx.sym.eye(channels, k=offset) + mx.sym.eye(channels, k=-offset)
    # The band as a (C, C, 1, 1) kernel: the window sum is a 1x1 convolution of x^2 (oneDNN).
    band = mx.sym.BlockGrad(mx.sym.reshape(band * (alpha / nsize), shape=(channels, channels, 1, 1)),
                            name=name + '_band')
    squares = mx.sym.square(data, name=name + '_square')
    window = mx.sym.Convolution(squares, weight=band, num_filter=channels, kernel=(1, 1),
                                no_bias=True, name=name + '_window')
    scale = window + knorm
    factor = mx.sym.exp(mx.sym.log(scale, name=name + '_log') * -beta, name=name + '_factor')
    params = dict(alpha=alpha, beta=beta, knorm=knorm, nsize=nsize)
    return mx.sym.elemwise_mul(data, factor, name=name,
                               attr={_MARK: json.dumps(params, sort_keys=True)})


def native_lrn_graph(sym):
    """``sym`` with every fast LRN replaced by ``mx.sym.LRN`` of the same parameters (the same
    function; no argument changes). A graph without one is returned as it is."""
    return _replace_marked(sym, 'LRN')


def has_fast_lrn(sym):
    return any(_MARK in node.get('attrs', {}) for node in json.loads(sym.tojson())['nodes'])


def fused_lrn_graph(sym):
    """``sym`` with every fast LRN replaced by the fused kernel (``lrn_kernel``, CPU only; its
    ``load()`` must have succeeded). For training only: checkpoints keep ``sym``."""
    return _replace_marked(sym, lrn_kernel.OP)


def training_graph(sym, contexts):
    """``(graph, why_not)``: ``sym`` with its fast LRNs run by the fused kernel when every
    device is a CPU and the kernel loads (``why_not`` None); else ``sym`` and one line saying
    why, or None when there is nothing the kernel could run."""
    if not has_fast_lrn(sym) or any(ctx.device_type != 'cpu' for ctx in contexts):
        return sym, None
    reason = lrn_kernel.load()
    return (sym, reason) if reason else (fused_lrn_graph(sym), None)


def _replace_marked(sym, op):
    graph = json.loads(sym.tojson(remove_amp_cast=False))     # a bf16 graph keeps its casts
    changed = False
    for node in graph['nodes']:
        mark = node.get('attrs', {}).get(_MARK)
        if mark is None:
            continue
        params = json.loads(mark)
        node['op'] = op
        node['attrs'] = {key: str(params[key]) for key in _PARAMS}
        node['inputs'] = node['inputs'][:1]      # the normalised data
        changed = True
    return mx.sym.load_json(json.dumps(graph)) if changed else sym
