"""Forward and forward+backward speed of a network on synthetic data, optionally beside the
same network in PyTorch; ``--sweep`` prints a table over batch sizes, devices and precisions.

    python benchmark.py --network alexnet --batch-size 128
    python benchmark.py --sweep --torch        # the README's table
"""
import os
import sys

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import argparse  # noqa: E402

import symbols  # noqa: E402
from engine.args import add_device_args  # noqa: E402
from engine.cli import OneLineErrorParser, add_network_args, run_cli  # noqa: E402
from engine.devices import get_contexts  # noqa: E402
from engine.errors import UsageError  # noqa: E402
from inference import benchmark, fastpath  # noqa: E402
from inference.args import non_negative_int, positive_int  # noqa: E402
from inference.torch_alexnet import torch_available  # noqa: E402
from tools.summary import format_summary, summarize  # noqa: E402

TORCH_MISSING = ('PyTorch comparison skipped: torch is not installed '
                 '(pip install torch==2.13.0 gives the CPU wheel)')


def _int_list(text):
    try:
        values = [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError('expected comma-separated integers, got %r' % text) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError('expected positive integers, got %r' % text)
    return values


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
    group.add_argument('--batch-size', type=positive_int, default=32, help='(default: %(default)s)')
    group.add_argument('--num-batches', type=positive_int, default=100,
                       help='timed batches (default: %(default)s)')
    group.add_argument('--burn-in', type=non_negative_int, default=10,
                       help='untimed batches first (default: %(default)s)')
    group.add_argument('--forward-only', action='store_true', help='skip forward+backward')
    group.add_argument('--torch', action='store_true',
                       help='also time the same network in PyTorch (CPU, float32) if installed')
    group.add_argument('--no-progress', dest='progress', action='store_false',
                       help='no progress bars')
    group = parser.add_argument_group('sweep')
    group.add_argument('--sweep', action='store_true',
                       help='one table over --batch-sizes x --device-sets x --precisions')
    group.add_argument('--batch-sizes', type=_int_list, default=[32, 128], metavar='32,128',
                       help='(default: 32,128)')
    group.add_argument('--precisions', type=_precision_list, default=list(fastpath.PRECISIONS),
                       metavar='float32,...', help='(default: %s)' % ','.join(fastpath.PRECISIONS))
    group.add_argument('--device-sets', default='cpu', metavar="'cpu;0;0,1'",
                       help='semicolon-separated devices to sweep: "cpu" (with --cpus) or a '
                            '--gpus list (default: %(default)s)')
    for action in parser._actions:
        if action.dest == 'kv_store':
            action.help = argparse.SUPPRESS
        elif action.dest == 'gpus':
            action.help = 'GPUs to run on (the batch is split across them)'
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
    shape = symbols.parse_image_shape(args.image_shape) if args.image_shape \
        else symbols.default_image_shape(args.network)
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
                                    precision=precision, **common)
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


def cli():
    """Console-script entry point (setup.py)."""
    return run_cli(main)


if __name__ == '__main__':
    sys.exit(cli())
