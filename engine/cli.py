"""What every command-line entry point shares: one-line errors and the network flags."""
import argparse
import errno
import os
import signal
import sys

from engine.errors import UsageError

# Exit statuses: a user's mistake or a file-system problem (2, as argparse), a stop by Ctrl-C
# (128 + SIGINT, as a shell reports it).
USAGE_EXIT = 2
INTERRUPTED_EXIT = 128 + signal.SIGINT


class OneLineErrorParser(argparse.ArgumentParser):
    """Bad flags raise ``UsageError``, so ``run_cli`` prints them as one line (exit 2)
    instead of argparse's usage block."""

    def error(self, message):
        raise UsageError(message)


def describe_os_error(err):
    """One line for a file-system error: what failed, on which path, and why."""
    reason = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        reason += ' (the disk is full)'
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason += ' (no write or read permission there)'
    paths = [p for p in (err.filename, err.filename2) if p is not None]
    return '%s: %s' % (' -> '.join(map(str, paths)), reason) if paths else reason


def run_cli(main, argv=None):
    """Call ``main(argv)`` and return the process exit status: ``main``'s own when it
    returns an int, else 0.

    This is the one place where errors become messages: a ``UsageError`` (bad flag or
    file) and a file-system ``OSError`` (missing, unreadable, read-only, full) are one line
    on stderr with exit status 2; Ctrl-C that reaches here is one line with status 130.
    """
    prog = os.path.basename(sys.argv[0]) or 'alexnet'
    try:
        result = main(argv)
    except UsageError as err:
        _fail(prog, str(err), USAGE_EXIT)
    except OSError as err:
        _fail(prog, describe_os_error(err), USAGE_EXIT)
    except KeyboardInterrupt:
        _fail(prog, 'interrupted', INTERRUPTED_EXIT)
    return result if isinstance(result, int) else 0


def _fail(prog, message, status):
    # A second Ctrl-C while the message is printed must not turn into a traceback.
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:          # not the main thread: signals go elsewhere anyway
        previous = None
    try:
        print('%s: error: %s' % (prog, message), file=sys.stderr, flush=True)
    except OSError:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    sys.exit(status)


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
