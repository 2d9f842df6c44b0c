"""What every command shares: one-line errors, signals, the command runner, the progress flag."""
import argparse
import errno
import importlib
import os
import signal
import sys
import threading

from alexnet_mxnet.base.errors import UsageError

USAGE_EXIT = 2   # a user's mistake or a file-system problem, as argparse exits


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the same clean-up (``finally`` blocks, temporary files)
    runs."""


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
    on stderr with exit status 2. Ctrl-C and SIGTERM raise ``KeyboardInterrupt`` and
    ``Terminated`` so that clean-up runs, then end as one line ("interrupted", exit 130;
    "terminated", exit 143); a second signal during that clean-up ends the process at once
    with the same line.
    """
    prog = os.path.basename(sys.argv[0]) or 'alexnet'
    with _StopSignals(prog) as stop:
        try:
            result = main(argv)
        except UsageError as err:
            stop.fail(str(err), USAGE_EXIT)
        except OSError as err:
            stop.fail(describe_os_error(err), USAGE_EXIT)
        except KeyboardInterrupt as err:
            signum = signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT
            stop.fail(_STOP_WORDS[signum], 128 + signum)
    return result if isinstance(result, int) else 0


def run_command(module_name, argv=None):
    """Run the command ``module_name`` (a module with ``main(argv)``) as a program.

    The module is imported here, inside ``run_cli``: MXNet takes seconds to load, and a Ctrl-C
    then is one line too. Before that, the environment MXNet reads once at import: OpenMP on
    every core (MXNet alone would use half of them, assuming hyper-threads).
    """
    os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))
    return run_cli(lambda args: importlib.import_module(module_name).main(args), argv)


_STOP_WORDS = {signal.SIGINT: 'interrupted', signal.SIGTERM: 'terminated'}


class _StopSignals:
    """SIGINT and SIGTERM while a command runs: the first raises, a second ends at once.

    Only the main thread can set signal handlers; elsewhere Python's defaults stay."""

    def __init__(self, prog):
        self.prog = prog
        self.first = None
        self.said = False
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in _STOP_WORDS:
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        if self.first is not None:
            # The process is ending on a stop: a signal during interpreter shutdown must not
            # meet Python's own handler (a KeyboardInterrupt there is a traceback or a death
            # by SIGINT instead of the exit status); ours ends the process at once.
            return
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        if self.first is None:
            self.first = signum
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        if not self.said:
            self._say(_STOP_WORDS[self.first])
        os._exit(128 + self.first)

    def _say(self, message):
        self.said = True
        try:
            print('%s: error: %s' % (self.prog, message), file=sys.stderr, flush=True)
        except OSError:
            pass

    def fail(self, message, status):
        """One line on stderr, then exit with ``status``."""
        self._say(message)
        sys.exit(status)


def add_progress_arg(parser):
    """``--no-progress``: log lines only, no progress bar."""
    parser.add_argument('--no-progress', dest='progress', action='store_false',
                        help='no progress bar')
