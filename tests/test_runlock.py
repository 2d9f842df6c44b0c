"""alexnet_mxnet.base.runlock: one holder per prefix across processes, taken over after a kill."""
import os
import signal
import subprocess
import sys

import pytest

from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.base.runlock import PrefixLock, lock_path
from tests.conftest import REPO

HOLD = ('import sys, time; from alexnet_mxnet.base.runlock import PrefixLock; '
        'lock = PrefixLock(sys.argv[1], "test run").acquire(); print("held", flush=True); '
        'time.sleep(60)')


def _holder(prefix):
    proc = subprocess.Popen([sys.executable, '-c', HOLD, prefix], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'held'
    return proc


def test_second_holder_is_refused_with_the_first_pid(tmp_path):
    prefix = str(tmp_path / 'run')
    proc = _holder(prefix)
    try:
        with pytest.raises(UsageError, match='PID %d' % proc.pid):
            PrefixLock(prefix, 'test run').acquire()
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    prefix = str(tmp_path / 'run')
    proc = _holder(prefix)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.path.exists(lock_path(prefix))        # the killed holder left its file
    with PrefixLock(prefix) as lock:
        assert lock.held
        assert open(lock_path(prefix)).read().strip() == str(os.getpid())
    assert not os.path.exists(lock_path(prefix))     # released: no litter


def test_same_process_cannot_take_it_twice(tmp_path):
    prefix = str(tmp_path / 'run')
    with PrefixLock(prefix):
        with pytest.raises(UsageError, match='already in use by this process'):
            PrefixLock(prefix).acquire()
    with PrefixLock(prefix):                          # free again after release
        pass


FORK_AND_HOLD = ('import os, sys, time; from alexnet_mxnet.base.runlock import PrefixLock; '
                 'PrefixLock(sys.argv[1]).acquire(); child = os.fork(); '
                 'time.sleep(60) if child == 0 else None; print(child, flush=True); time.sleep(60)')


def test_forked_child_does_not_keep_the_lock(tmp_path):
    """A worker forked by the holder outlives it (the holder is SIGKILLed): the prefix is free."""
    prefix = str(tmp_path / 'run')
    proc = subprocess.Popen([sys.executable, '-c', FORK_AND_HOLD, prefix], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    try:
        proc.kill()
        proc.wait()
        with PrefixLock(prefix) as lock:       # flock() would still be held by the child here
            assert lock.held
    finally:
        os.kill(child, signal.SIGKILL)
