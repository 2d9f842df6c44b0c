"""``--network``, ``--num-classes``, ``--image-shape``, ``--dtype``, ``--lrn``: the network flags
of every command, defined once."""
from alexnet_mxnet.base.argtypes import POSITIVE_INT, image_shape
from symbols import list_networks
from symbols.lrn import IMPLEMENTATIONS as LRN_IMPLEMENTATIONS

# Where the value of a flag left out comes from, by command kind.
_DEFAULTS = {
    None: dict(network='alexnet', num_classes=1000, image_shape=None, dtype='float32'),
    # training: the class count from the converter's labels file beside --data-train
    'labels': dict(network='alexnet', num_classes=None, image_shape=None, dtype='float32'),
    # inference: everything as the checkpoint's sidecar says
    'checkpoint': dict(network=None, num_classes=None, image_shape=None, dtype=None),
}
_UNSET_HELP = {
    None: {'image_shape': "the network's own: 3,227,227, or 3,224,224 for alexnet-gluon"},
    'labels': {'num_classes': 'the classes in the labels file beside --data-train, else 1000; '
                              'digits demo: 10',
               'image_shape': "the network's own: 3,227,227, or 3,224,224 for alexnet-gluon"},
    'checkpoint': {key: "the checkpoint's sidecar" for key in _DEFAULTS[None]},
}


def add_network_args(parser, source=None):
    """The network flags; ``source`` says where a flag left out comes from: None -- its own
    default; ``'labels'`` -- training, the class count from the labels file; ``'checkpoint'``
    -- inference, every flag from the checkpoint's sidecar."""
    defaults, unset = _DEFAULTS[source], _UNSET_HELP[source]

    def default(key):
        return unset.get(key) or defaults[key]
    group = parser.add_argument_group('network')
    group.add_argument('--network', default=defaults['network'], choices=list_networks(),
                       help='registered network variant (default: %s)' % default('network'))
    group.add_argument('--num-classes', type=POSITIVE_INT, default=defaults['num_classes'],
                       help='number of output classes (default: %s)' % default('num_classes'))
    group.add_argument('--image-shape', type=image_shape, default=None, metavar='C,H,W',
                       help='input channels, height and width (default: %s)'
                            % default('image_shape'))
    # bfloat16 is a training precision; inference has --precision bfloat16 (AMP) instead.
    training = source == 'labels'
    group.add_argument('--dtype', default=defaults['dtype'],
                       choices=('float32', 'float16') + (('bfloat16',) if training else ()),
                       help='compute precision; float16 keeps float32 logits%s (default: %s)'
                            % ((' and updates float32 master weights (GPUs); bfloat16 (CPUs '
                                'with AVX512-BF16 or AMX) runs the convolutions in bfloat16 '
                                'from float32 weights, so its checkpoints are float32 ones')
                               if training else '', default('dtype')))
    if source == 'checkpoint':
        return group     # inference runs the stock LRN whatever trained (symbols.lrn)
    group.add_argument('--lrn', default='fast', choices=LRN_IMPLEMENTATIONS,
                       help='how alexnet/alexnet-grouped compute LRN: fast = dense algebra at '
                            'GEMM speed (2-3x faster training on the CPU), native = mx.sym.LRN; '
                            'the same function and parameters, so checkpoints of either load '
                            'into the other (default: %(default)s)')
    return group
