"""An exclusive lock on an output prefix, held for a run's lifetime.

Two runs that write the same files destroy each other's results, so a training run (on its
``--model-prefix``) and a conversion (on its output prefix) each hold ``PREFIX.lock`` while
they work. The lock is a POSIX record lock (``fcntl.lockf``): the kernel drops it when the
holder dies, however it dies, so a lock file left by a killed run is simply taken over; and
unlike ``flock`` it is not inherited by forked children, so a worker process that outlives
its parent never keeps a prefix locked. The file holds the holder's PID for the message a
second run gets, and is removed when the lock is released.
"""
import fcntl
import os

from alexnet_mxnet.base.errors import UsageError

LOCK_SUFFIX = '.lock'
# POSIX locks belong to the process: a second lock on the same file from this process would
# silently succeed, so this process's own locks are tracked here.
_HELD = {}


def lock_path(prefix):
    return os.fspath(prefix) + LOCK_SUFFIX


class PrefixLock:
    """``with PrefixLock(prefix, 'training run'):`` -- refuses with a one-line ``UsageError``
    naming the holder's PID while another process (or this one) holds ``prefix``."""

    def __init__(self, prefix, what='run'):
        self.path = os.path.abspath(lock_path(prefix))
        self.what = what
        self._fd = None

    def acquire(self):
        if self.path in _HELD:
            raise UsageError('%s is already in use by this process (%s)' % (self.path, self.what))
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_pid(fd)
                os.close(fd)
                raise UsageError('%s is in use by another %s (PID %s); wait for it to finish, '
                                 'or choose another prefix'
                                 % (self.path[:-len(LOCK_SUFFIX)], self.what, holder or '?'))
            # The previous holder may have removed the file between our open and our lock:
            # then we hold a lock on a name nobody else sees, so start over.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, b'%d\n' % os.getpid())
        self._fd = fd
        _HELD[self.path] = self
        return self

    def release(self):
        if self._fd is None:
            return
        _HELD.pop(self.path, None)
        try:
            os.unlink(self.path)   # while still locked, so no one else holds this inode
        except FileNotFoundError:
            pass
        os.close(self._fd)         # closing drops the lock
        self._fd = None

    @property
    def held(self):
        return self._fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_pid(fd):
    try:
        text = os.pread(fd, 32, 0).decode('ascii', 'replace').strip()
    except OSError:
        return None
    return text if text.isdigit() else None
