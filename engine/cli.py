"""What every command-line entry point shares: one-line errors and the network flags."""
import argparse
import os
import sys

from engine.errors import UsageError


class OneLineErrorParser(argparse.ArgumentParser):
    """Bad flags raise ``UsageError``, so ``run_cli`` prints them as one line (exit 2)
    instead of argparse's usage block."""

    def error(self, message):
        raise UsageError(message)


def run_cli(main, argv=None):
    """Call ``main(argv)`` and return the process exit status: ``main``'s own when it
    returns an int, else 0. A ``UsageError`` becomes one line on stderr and exit status 2."""
    try:
        result = main(argv)
    except UsageError as err:
        prog = os.path.basename(sys.argv[0]) or 'alexnet'
        print('%s: error: %s' % (prog, err), file=sys.stderr)
        sys.exit(2)
    return result if isinstance(result, int) else 0


def add_network_args(parser):
    """``--network``, ``--num-classes``, ``--image-shape``, ``--dtype``: one definition for every CLI."""
    import symbols
    group = parser.add_argument_group('network')
    group.add_argument('--network', default='alexnet', choices=symbols.list_networks(),
                       help='registered network variant (default: %(default)s)')
    group.add_argument('--num-classes', type=int, default=1000,
                       help='number of output classes (default: %(default)s)')
    group.add_argument('--image-shape', default=None,
                       help='input C,H,W (default: the network\'s own, 3,227,227 or 3,224,224 '
                            'for alexnet-gluon)')
    group.add_argument('--dtype', default='float32', choices=('float32', 'float16'),
                       help='compute precision; float16 keeps float32 logits (default: %(default)s)')
    return group
