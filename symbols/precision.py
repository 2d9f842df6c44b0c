"""bfloat16 training graphs: the convolutions compute in bfloat16, everything else in float32.

MXNet 1.9.1's AMP cannot convert a training graph ("InferType pass cannot decide dtypes": type
inference does not run backwards through its casts), so ``bf16_training_graph`` writes the casts
itself. The operators of ``ops`` (default: the convolutions with a learned weight) and the ReLUs
and poolings after them compute in bfloat16; the rest stays float32: the fully-connected layers
(oneDNN's bf16 inner-product weight gradient is ~6x slower than float32's on AVX512-BF16 cores:
40-50 ms against 6 ms at 8x4096x4096), Dropout (no bf16 kernel: "Unknown type enum 12"),
BatchNorm, the LRN (the fast LRN's constant-band convolution included) and the loss. An
``amp_cast`` sits on every edge where the two meet. The weights stay float32 arguments (the
master copy the optimizer updates) and are cast inside the graph, so a bf16-trained checkpoint
is an ordinary float32 one with the same names, and ``tojson()``/``save()`` leave the casts out
(MXNet's ``remove_amp_cast=True``): the graph a checkpoint saves is the float32 graph.
"""
import json

import mxnet as mx

BF16 = 'bfloat16'
# Operators with bfloat16 oneDNN kernels forward and backward in MXNet 1.9.1 (probed one by one
# against float32): those that may be chosen (``ops``), and those that then follow the dtype of
# their input, so a ReLU or pooling after a bf16 convolution stays bf16.
COMPUTE_OPS = ('Convolution', 'FullyConnected')
FOLLOW_OPS = frozenset(['Activation', 'Pooling', 'Flatten'])
_FLOAT32_ENUM = 0    # mshadow's type flag of float32, as mx.sym.Variable(dtype=) writes it


def bf16_rounded(array):
    """``array`` (an NDArray) rounded to bfloat16 and back to float32."""
    return mx.nd.amp_cast(mx.nd.amp_cast(array, dtype=BF16), dtype='float32')


def bf16_training_graph(sym, ops=('Convolution',)):
    """``sym`` with the operators ``ops`` that have a learned weight (and the ``FOLLOW_OPS``
    after them) computing in bfloat16; same arguments, outputs and parameter names."""
    graph = json.loads(sym.tojson())
    old = graph['nodes']
    nodes, moved, dtype, casts = [], {}, {}, {}

    def entry(source, want):
        nid, index, version = source
        if dtype[nid] == want:
            return [moved[nid], index, version]
        if (nid, index, want) not in casts:
            suffix = '' if index == 0 else '_out%d' % index
            nodes.append(dict(op='amp_cast', attrs={'dtype': want},
                              inputs=[[moved[nid], index, version]],
                              name='%s%s_%s' % (old[nid]['name'], suffix,
                                                'bf16' if want == BF16 else 'fp32')))
            casts[nid, index, want] = len(nodes) - 1
        return [casts[nid, index, want], 0, 0]

    for nid, node in enumerate(old):
        if node['op'] in FOLLOW_OPS:
            want = dtype[node['inputs'][0][0]]
        else:
            # A learned weight (a variable), not the fast LRN's constant-band convolution.
            learned = len(node['inputs']) > 1 and old[node['inputs'][1][0]]['op'] == 'null'
            want = BF16 if node['op'] in ops and learned else 'float32'
        if node['op'] == 'null':
            # Type inference does not run backwards through amp_cast: without a declared dtype
            # the weights stay undecided.
            node = dict(node, attrs=dict(node.get('attrs', {}), __dtype__=str(_FLOAT32_ENUM)))
        nodes.append(dict(node, inputs=[entry(source, want) for source in node['inputs']]))
        moved[nid], dtype[nid] = len(nodes) - 1, want
    graph.update(nodes=nodes, heads=[entry(head, 'float32') for head in graph['heads']],
                 arg_nodes=[i for i, node in enumerate(nodes) if node['op'] == 'null'])
    graph.pop('node_row_ptr', None)
    return mx.sym.load_json(json.dumps(graph))
