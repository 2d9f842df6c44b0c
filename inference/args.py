"""Checks the inference commands make on their arguments before any work: numeric ranges
(as argparse ``type=`` functions, so a bad number is a one-line usage error) and the folders
they will write to (so a read-only or mistyped output fails in a second, not after an hour
of scoring)."""
import argparse
import errno
import os
import tempfile

from engine.errors import UsageError

# A folder that refuses files for one of these reasons is the user's to fix.
_REFUSED = (errno.EACCES, errno.EPERM, errno.EROFS, errno.EEXIST, errno.ENOTDIR)


def _integer(text, minimum, what):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError('must be %s, got %r' % (what, text))
    return value


def positive_int(text):
    """argparse type: an integer >= 1."""
    return _integer(text, 1, 'a positive integer')


def non_negative_int(text):
    """argparse type: an integer >= 0."""
    return _integer(text, 0, 'an integer >= 0')


def check_output_folder(folder, advice):
    """Make ``folder`` if needed and prove it takes a file (a probe, created and removed):
    a one-line error ending in ``advice`` (e.g. "give --out-dir a folder you can write to")
    otherwise. Other errors (e.g. a full disk) reach ``run_cli`` as they are."""
    folder = folder or '.'
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError('%s is a file, not a folder: %s' % (folder, advice))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix='.write-probe-', dir=folder)
    except OSError as err:
        if err.errno not in _REFUSED:
            raise
        raise UsageError('cannot write in %s (%s): %s' % (folder, err.strerror, advice)) from None
    os.close(fd)
    os.remove(probe)
