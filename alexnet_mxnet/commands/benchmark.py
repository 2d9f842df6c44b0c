"""Forward and forward+backward speed of a network on synthetic data, optionally beside the
same network in PyTorch; ``--sweep`` prints a table over batch sizes, devices and precisions.

    python benchmark.py --network alexnet --batch-size 128
    python benchmark.py --sweep --torch        # the README's table
"""
import argparse
import os

import symbols
from alexnet_mxnet.base.argtypes import NON_NEGATIVE_INT, POSITIVE_INT, int_list
from alexnet_mxnet.base.cli import OneLineErrorParser, add_progress_arg
from alexnet_mxnet.base.devices import add_device_args, get_contexts
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.inference import benchmark, fastpath
from alexnet_mxnet.inference.torch_alexnet import torch_available
from alexnet_mxnet.tools.summary import format_summary, summarize
from symbols.args import add_network_args

TORCH_MISSING = ('PyTorch comparison skipped: torch is not installed '
                 '(pip install torch==2.13.0 gives the CPU wheel)')


def _precision_list(text):
    values = [v.strip() for v in text.split(',') if v.strip()]
    bad = [v for v in values if v not in fastpath.PRECISIONS]
    if bad or not values:
        raise argparse.ArgumentTypeError('precisions must be among %s, got %r'
                                         % (', '.join(fastpath.PRECISIONS), text))
    return values


def build_parser():
    parser = OneLineErrorParser(
        description='Time forward and forward+backward passes of a network on synthetic data '
                    '(mean +- std over --num-batches after --burn-in) and print its per-layer '
                    'output shapes.')
    add_network_args(parser)
    add_device_args(parser)
    fastpath.add_precision_args(parser)
    group = parser.add_argument_group('benchmark')
    group.add_argument('--batch-size', type=POSITIVE_INT, default=32, help='(default: %(default)s)')
    group.add_argument('--num-batches', type=POSITIVE_INT, default=100,
                       help='timed batches (default: %(default)s)')
    group.add_argument('--burn-in', type=NON_NEGATIVE_INT, default=10,
                       help='untimed batches first (default: %(default)s)')
    group.add_argument('--forward-only', action='store_true', help='skip forward+backward')
    group.add_argument('--torch', action='store_true',
                       help='also time the same network in PyTorch (CPU, float32) if installed')
    group = parser.add_argument_group('sweep')
    group.add_argument('--sweep', action='store_true',
                       help='one table over --batch-sizes x --device-sets x --precisions')
    group.add_argument('--batch-sizes', type=int_list, default=[32, 128], metavar='32,128',
                       help='(default: 32,128)')
    group.add_argument('--precisions', type=_precision_list, default=list(fastpath.PRECISIONS),
                       metavar='float32,...', help='(default: %s)' % ','.join(fastpath.PRECISIONS))
    group.add_argument('--device-sets', default='cpu', metavar="'cpu;0;0,1'",
                       help='semicolon-separated devices to sweep: "cpu" (with --cpus) or a '
                            '--gpus list (default: %(default)s)')
    add_progress_arg(parser)
    return parser


def _device_sets(args):
    if not args.sweep:
        return [get_contexts(args.gpus, args.cpus)]
    sets = [item.strip() for item in args.device_sets.split(';') if item.strip()]
    if not sets:
        raise UsageError('--device-sets %r names no device set: give e.g. "cpu" or "cpu;0;0,1"'
                         % args.device_sets)
    return [get_contexts(None if item == 'cpu' else item, args.cpus if item == 'cpu' else None)
            for item in sets]


def main(argv=None):
    args = build_parser().parse_args(argv)
    shape = symbols.resolve_image_shape(args.network, args.image_shape)
    device_sets = _device_sets(args)
    batch_sizes = args.batch_sizes if args.sweep else [args.batch_size]
    precisions = args.precisions if args.sweep else [args.precision]
    for contexts in device_sets:
        for precision in precisions:
            fastpath.check_precision(precision, contexts, args.dtype)
    if not args.sweep:
        sym = symbols.get_symbol(args.network, num_classes=args.num_classes, image_shape=shape,
                                 dtype=args.dtype)
        print(format_summary(summarize(sym, (1,) + tuple(shape))))
    use_torch = args.torch and torch_available()
    configs = [(c, b, p) for c in device_sets for b in batch_sizes for p in precisions]
    common = dict(network=args.network, image_shape=shape, num_classes=args.num_classes,
                  num_batches=args.num_batches, burn_in=args.burn_in, backward=not args.forward_only)
    common['progress'] = args.progress
    results = [benchmark.time_mxnet(batch_size=batch_size, contexts=contexts, dtype=args.dtype,
                                    precision=precision, lrn=args.lrn, **common)
               for contexts, batch_size, precision in configs]
    if use_torch:
        results += [benchmark.time_pytorch(batch_size=batch_size, **common)
                    for batch_size in batch_sizes]
    print('%s, input %s, %s classes, %d timed batches after %d burn-in, OMP_NUM_THREADS=%s' % (
        args.network, 'x'.join(map(str, shape)), args.num_classes, args.num_batches, args.burn_in,
        os.environ.get('OMP_NUM_THREADS')))
    if args.sweep:
        print(benchmark.format_table(results))
    else:
        for result in results:
            print('%s %s batch %d %s:' % (result.framework, result.device, result.batch_size,
                                          result.precision))
            print('  forward:          %s' % result.forward)
            if result.forward_backward is not None:
                print('  forward+backward: %s' % result.forward_backward)
    for note in sorted({r.note for r in results if r.note}):
        print(note)
    if args.torch and not use_torch:
        print(TORCH_MISSING)
    return results

