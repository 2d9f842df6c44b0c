"""Shared fixtures. MXNet reads OMP_NUM_THREADS once, at import: set it first."""
import os

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import sys  # noqa: E402

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


# The session-wide trained checkpoint the inference tests share (a fixture).
from tests.inference_checkpoint import ckpt  # noqa: E402,F401
