"""Shared fixtures. MXNet reads OMP_NUM_THREADS once, at import: set it first."""
import os

os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASETS = os.path.join(os.path.dirname(REPO), 'shared', 'datasets')


@pytest.fixture(scope='session')
def datasets_dir():
    """``../shared/datasets`` (real photos); tests needing it skip when it is absent."""
    if not os.path.isdir(DATASETS):
        pytest.skip('real-photo datasets not found at %s (see shared/datasets/README.md)' % DATASETS)
    return DATASETS
