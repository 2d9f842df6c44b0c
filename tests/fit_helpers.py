"""Tiny real-photo RecordIO files, flag lists and child-process helpers shared by the training
tests."""
import csv
import glob
import os
import queue
import subprocess
import sys
import threading
import time
import uuid

import numpy as np

from tests.conftest import REPO

TRAIN = os.path.join(REPO, 'train_imagenet.py')
# Every child a test starts carries this variable, so the test can find any survivor.
TAG = 'E_TEST_JOB'

# Small, deterministic runs: 67x67 (AlexNet's smallest input), no dropout, no random
# lighting noise, one decoding thread (fixed augmentation order), no progress bar.
QUICK = ['--image-shape', '3,67,67', '--batch-size', '8', '--dropout', '0', '--pca-noise', '0',
         '--data-nthreads', '1', '--initializer', 'xavier', '--lr', '0.01', '--no-progress',
         '--disp-batches', '0', '--rgb-std', '58.393,57.12,57.375']


def tiny_photo_records(datasets_dir, out_dir, per_class=12):
    """``(train.rec, val.rec)``: ``per_class`` ants and bees photos each, 25% held out,
    converted at 72 pixels with the project's converter (labels file beside them)."""
    from alexnet_mxnet.data.im2rec import convert
    source = os.path.join(out_dir, 'photos')
    for cls in ('ants', 'bees'):
        src = os.path.join(datasets_dir, 'hymenoptera', 'train', cls)
        os.makedirs(os.path.join(source, cls))
        for name in sorted(os.listdir(src))[:per_class]:
            os.symlink(os.path.join(src, name), os.path.join(source, cls, name))
    result = convert(source, os.path.join(out_dir, 'tiny'), val_ratio=0.25, resize=72,
                     progress=False, num_workers=1)
    return result.records['train'], result.records['val']


def assert_same_params(a, b, atol=1e-6):
    """Two ``{name: numpy array}`` dicts hold the same names and values."""
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=atol, err_msg=name)


def metrics_rows(prefix):
    """The rows of a run's metrics CSV, as dicts."""
    with open(prefix + '-metrics.csv') as handle:
        return list(csv.DictReader(handle))


def parse(flags):
    from alexnet_mxnet.train.args import build_train_parser
    return build_train_parser().parse_args([str(f) for f in flags])


def run_train(flags, **kwargs):
    """``python train_imagenet.py FLAGS`` in the repository, output captured."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    return subprocess.run([sys.executable, TRAIN] + [str(f) for f in flags], cwd=REPO, env=env,
                          capture_output=True, text=True, **kwargs)


def process_state(pid):
    """The fields of ``/proc/PID/stat`` after the command name (state first, then parent PID),
    or ``None`` once the process is gone (its entry can vanish between open and read)."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()
    except OSError:
        return None


def process_alive(pid):
    """Whether ``pid`` runs: a zombie is dead, only not yet reaped by its parent."""
    state = process_state(pid)
    return state is not None and state[0] != 'Z'


def tagged_processes(tag):
    """PIDs of live processes whose environment carries ``E_TEST_JOB=tag``."""
    found = []
    for environ in glob.glob('/proc/[0-9]*/environ'):
        try:
            with open(environ, 'rb') as handle:
                if ('%s=%s' % (TAG, tag)).encode() in handle.read().split(b'\0'):
                    found.append(int(environ.split('/')[2]))
        except OSError:
            pass
    return found


class Training(object):
    """``train_imagenet.py FLAGS`` as a tagged child process whose log (stderr) a test reads
    line by line, with a deadline on every wait."""

    def __init__(self, flags, cwd=REPO, env=None, **kwargs):
        self.tag = uuid.uuid4().hex
        env = dict(env or os.environ, PYTHONUNBUFFERED='1', **{TAG: self.tag})
        self.proc = subprocess.Popen([sys.executable, TRAIN] + [str(f) for f in flags], cwd=cwd,
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, **kwargs)
        self.pid = self.proc.pid
        self.lines = []
        self._finished = False
        self._queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text, timeout=120):
        """Read the log until a line holds ``text``; return that line."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self._fail('no %r within %d s' % (text, timeout))
            if line is None:
                self._queue.put(None)
                self._fail('exited before %r' % text)
            self.lines.append(line)
            if text in line:
                return line

    def wait_for_file(self, folder, pattern, timeout=120):
        """Poll ``folder`` until a file matching ``pattern`` (a glob) exists; return its path."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = glob.glob(os.path.join(glob.escape(str(folder)), pattern))
            if found:
                return found[0]
            if self.proc.poll() is not None:
                self._fail('exited before %s appeared' % pattern)
            time.sleep(0.002)
        self._fail('no %s within %d s' % (pattern, timeout))

    def finish(self, timeout=120):
        """Wait for the exit; returns ``(status, whole log)``. Afterwards no process of this
        child is left."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._fail('still running after %d s' % timeout)
        while not self._finished:
            line = self._queue.get(timeout=10)
            if line is None:
                self._finished = True
            else:
                self.lines.append(line)
        assert not tagged_processes(self.tag), 'processes left behind'
        return self.proc.returncode, self.log

    def _fail(self, message):
        """End the child (a failed test leaves nothing running) and fail with its log."""
        self.proc.kill()
        self.proc.wait()
        raise AssertionError('%s:\n%s' % (message, self.log))

    @property
    def log(self):
        return ''.join(self.lines)
