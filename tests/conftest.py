"""Shared fixtures. MXNet reads OMP_NUM_THREADS once, at import: set it first."""
import os

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import ctypes  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASETS = os.path.join(os.path.dirname(REPO), 'shared', 'datasets')


@pytest.fixture(scope='session')
def datasets_dir():
    """``../shared/datasets`` (real photos); tests needing it skip when it is absent."""
    if not os.path.isdir(DATASETS):
        pytest.skip('real-photo datasets not found at %s (see shared/datasets/README.md)' % DATASETS)
    return DATASETS


def gluoncv_model_zoo():
    """``gluoncv.model_zoo``. gluoncv 0.10 refuses to import when torch>=2 is installed (as
    it is for the PyTorch benchmark), though its MXNet models do not use torch: hide torch
    while gluoncv imports."""
    missing = object()
    saved = sys.modules.get('torch', missing)
    sys.modules['torch'] = None
    try:
        from gluoncv import model_zoo
    finally:
        if saved is missing:
            del sys.modules['torch']
        else:
            sys.modules['torch'] = saved
    return model_zoo


@pytest.fixture
def small_disk():
    """``make(kib)`` -> a folder on a fresh tmpfs of that size: a real full disk (ENOSPC).
    Needs root (mount); skips otherwise. Unmounted after the test."""
    mounts = []

    def make(kib):
        folder = tempfile.mkdtemp(prefix='small-disk-')
        proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%dk' % kib, 'tmpfs', folder],
                              capture_output=True, text=True)
        if proc.returncode:
            os.rmdir(folder)
            pytest.skip('cannot mount a tmpfs here (%s)' % proc.stderr.strip())
        mounts.append(folder)
        return folder
    yield make
    for folder in mounts:
        subprocess.run(['umount', '-l', folder], capture_output=True)
        os.rmdir(folder)


def without_root_file_access():
    """``preexec_fn`` for a subprocess in which file permissions hold even for root: it drops
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the capability bounding set before exec, so
    a mode-000 file is unreadable (root otherwise reads it as if nothing were wrong)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):                        # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0):      # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), 'cannot drop capability %d' % cap)


# The session-wide trained checkpoint the inference tests share (a fixture).
from tests.inference_checkpoint import ckpt  # noqa: E402,F401
