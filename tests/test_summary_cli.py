"""The summary command prints the paper's totals and one-line errors."""
import os
import subprocess
import sys

from tests.conftest import REPO


def _run(*args):
    # the console script, as installed by pip install -e . beside this interpreter
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), 'alexnet-summary')]
                          + list(args), cwd=REPO,
                          capture_output=True, text=True)


def test_summary_prints_totals():
    result = _run('--network', 'alexnet', '--image-shape', '3,227,227')
    assert result.returncode == 0
    assert 'total: 62,378,344 parameters (62,367,776 weights + 10,568 biases), 659,272 neurons' in result.stdout
    assert 'conv1    Convolution     96x55x55' in result.stdout


def test_summary_too_small_is_one_line_error():
    result = _run('--image-shape', '3,40,40')
    assert result.returncode == 2
    assert result.stderr.strip().count('\n') == 0
    assert 'at least 67x67' in result.stderr


def test_summary_too_large_is_one_line_error():
    # a layer of more than 2**31 values: MXNet's shape inference overflows
    result = _run('--image-shape', '3,100000,100000')
    assert result.returncode == 2
    assert result.stderr.count('\n') == 1 and 'Traceback' not in result.stderr, result.stderr
    assert '3x100000x100000' in result.stderr and 'too large' in result.stderr
