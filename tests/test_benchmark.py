"""benchmark.py: every precision path times, the PyTorch twin is the same network."""
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import symbols
from alexnet_mxnet.inference import benchmark
from alexnet_mxnet.inference.model import inference_symbol
from alexnet_mxnet.inference.torch_alexnet import torch_available
from tests.conftest import REPO

SMALL = (3, 67, 67)


@pytest.mark.parametrize('precision', ['float32', 'bfloat16', 'int8'])
def test_time_mxnet_times_every_precision(precision):
    result = benchmark.time_mxnet(batch_size=4, image_shape=SMALL, num_classes=10,
                                  precision=precision, num_batches=3, burn_in=1)
    assert len(result.forward.seconds) == 3 and result.forward.mean > 0
    assert result.forward.images_per_second == pytest.approx(4 / result.forward.mean)
    if precision == 'float32':
        assert len(result.forward_backward.seconds) == 3
    else:
        assert result.forward_backward is None and 'inference path' in result.note


@pytest.mark.parametrize('network', symbols.list_networks())
def test_pytorch_twin_computes_the_same_function(network):
    torch = pytest.importorskip('torch', reason='PyTorch comparison needs pip install torch==2.13.0')
    from alexnet_mxnet.inference.torch_alexnet import copy_weights, torch_model
    shape = (3, 80, 80)
    sym = symbols.get_symbol(network, num_classes=10, image_shape=shape)
    arg_params, aux_params = benchmark.random_params(sym, (2,) + shape)
    aux_params = {k: mx.nd.random.uniform(0.5, 1.5, v.shape) for k, v in aux_params.items()}
    data = np.random.RandomState(0).uniform(-50, 50, (2,) + shape).astype(np.float32)
    module = mx.mod.Module(inference_symbol(sym), label_names=None)
    module.bind(data_shapes=[('data', data.shape)], for_training=False)
    module.set_params(arg_params, aux_params)
    module.forward(mx.io.DataBatch([mx.nd.array(data)]), is_train=False)
    twin = copy_weights(torch_model(sym, shape), sym, arg_params, aux_params).eval()
    with torch.no_grad():
        theirs = torch.softmax(twin(torch.from_numpy(data)), dim=1).numpy()
    np.testing.assert_allclose(theirs, module.get_outputs()[0].asnumpy(), atol=1e-5)


def _run(*args, **kwargs):
    return subprocess.run([sys.executable, 'benchmark.py'] + list(args), cwd=REPO,
                          capture_output=True, text=True, **kwargs)


@pytest.mark.slow
def test_sweep_prints_one_table_row_per_configuration():
    result = _run('--sweep', '--batch-sizes', '2,4', '--precisions', 'float32,int8',
                  '--image-shape', '3,67,67', '--num-classes', '10', '--num-batches', '2',
                  '--burn-in', '1', '--torch')
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith('| ')]
    torch_rows = 2 if torch_available() else 0
    assert rows[0].startswith('| framework') and len(rows) == 1 + 4 + torch_rows
    assert sum('| int8' in row and row.rstrip(' |').endswith('n/a') for row in rows) == 2
    assert sum(row.startswith('| pytorch') for row in rows) == torch_rows
    assert ('torch is not installed' in result.stdout) == (not torch_rows)


def test_single_run_prints_layer_shapes_and_says_when_torch_is_missing(tmp_path):
    (tmp_path / 'torch.py').write_text('raise ImportError("hidden by the test")\n')
    result = _run('--image-shape', '3,67,67', '--num-classes', '10', '--num-batches', '2',
                  '--burn-in', '0', '--batch-size', '2', '--forward-only', '--torch',
                  env={'PYTHONPATH': str(tmp_path), 'OMP_NUM_THREADS': '2', 'PATH': '/usr/bin:/bin'})
    assert result.returncode == 0, result.stderr
    assert 'conv1' in result.stdout and '96x15x15' in result.stdout
    assert 'forward:' in result.stdout and 'forward+backward' not in result.stdout
    assert 'torch is not installed' in result.stdout


def test_precision_on_float16_network_is_one_line_error():
    result = _run('--precision', 'int8', '--dtype', 'float16')
    assert result.returncode == 2 and result.stderr.count('\n') == 1
    assert 'drop --dtype float16' in result.stderr


def _one_line_error(result, *words):
    assert result.returncode == 2, result.stderr
    assert result.stderr.count('\n') == 1 and 'Traceback' not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


QUICK = ['--image-shape', '3,67,67', '--num-classes', '10', '--num-batches', '1', '--burn-in', '0',
         '--forward-only', '--no-progress']


@pytest.mark.parametrize('flags, words', [
    (['--batch-size', '0'], ['--batch-size', 'whole number >= 1']),
    (['--num-batches', '-1'], ['--num-batches', 'whole number >= 1']),
    (['--burn-in', '-1'], ['--burn-in', 'whole number >= 0']),
    (['--sweep', '--device-sets', ';'], ['--device-sets', 'no device']),
    # 10**8 images of 3x67x67: 5 TB of input, more memory than any machine has
    (['--batch-size', '100000000'], ['memory', '--batch-size']),
    (['--image-shape', '3,100000,100000'], ['3x100000x100000', 'too large']),
])
def test_bad_numbers_are_one_line_errors(flags, words):
    _one_line_error(_run(*(QUICK + flags), timeout=60), *words)
