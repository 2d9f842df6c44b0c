"""Which prefix a run writes to: claimed under a lock for the run's lifetime, never another
run's."""
import contextlib
import itertools
import os

from alexnet_mxnet.base import checkpoint as ckpt
from alexnet_mxnet.base.cli import describe_os_error
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.base.runlock import PrefixLock

DEFAULT_FOLDER = 'checkpoints'


@contextlib.contextmanager
def claimed_prefix(args, name, writes):
    """``with claimed_prefix(args, name, writes) as prefix``: the prefix the run writes to,
    locked (``PrefixLock``) until the run ends.

    ``--model-prefix``, else the first ``checkpoints/NAME``, ``NAME-2``, ``-3``... that holds
    no run's files and no other run has locked. Under the lock the temporary files of writes
    killed earlier are removed, a prefix that holds a run is refused unless ``--load-epoch``
    resumes it or ``--overwrite`` replaces it, and a probe file is written: a read-only
    folder, a file in the path or a full disk fail now, in one line. A process that writes
    nothing (rank > 0, ``--test-io``, ``--benchmark`` without a prefix) claims nothing."""
    if not writes:
        yield args.model_prefix or os.path.join(DEFAULT_FOLDER, name)
        return
    prefix, lock = _lock_prefix(args, name)
    try:
        yield prefix
    finally:
        lock.release()


def _lock_prefix(args, name):
    prefix = args.model_prefix
    try:
        if prefix:
            lock = PrefixLock(prefix, 'training run').acquire()
        else:
            prefix, lock = _free_default_prefix(name)
    except OSError as err:
        raise _unwritable(prefix or os.path.join(DEFAULT_FOLDER, name), err) from None
    try:
        ckpt.remove_files(ckpt.temporary_files(prefix))
        _refuse_to_replace(args, prefix)
        ckpt.check_writable(prefix)
    except OSError as err:
        lock.release()
        raise _unwritable(prefix, err) from None
    except BaseException:
        lock.release()
        raise
    return prefix, lock


def _unwritable(prefix, err):
    return UsageError('cannot write checkpoints to %s: %s; choose a --model-prefix in a '
                      'writable folder' % (prefix, describe_os_error(err)))


def _free_default_prefix(name):
    base = os.path.join(DEFAULT_FOLDER, name)
    for number in itertools.count(1):
        prefix = base if number == 1 else '%s-%d' % (base, number)
        if ckpt.run_files(prefix):
            continue
        try:
            lock = PrefixLock(prefix, 'training run').acquire()
        except UsageError:      # another run is starting there
            continue
        if not ckpt.run_files(prefix):
            return prefix, lock
        lock.release()          # a run finished there between the look and the lock


def _refuse_to_replace(args, prefix):
    files = ckpt.run_files(prefix)
    if not files or args.load_epoch is not None or args.overwrite:
        return
    latest = ckpt.latest_epoch(prefix)
    raise UsageError('%s already holds a training run (%s%s); %spass --overwrite to replace it, '
                     'or choose another --model-prefix'
                     % (prefix, os.path.basename(files[0]),
                        ' and %d more files' % (len(files) - 1) if len(files) > 1 else '',
                        'resume it with --load-epoch %d, ' % latest if latest else ''))
