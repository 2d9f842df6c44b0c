"""--dtype bfloat16: the convolutions compute in bfloat16 from float32 weights, one training step
agrees with float32 within bfloat16's rounding, and the checkpoints are float32 ones that every
tool loads."""
import glob
import json
import logging
import os
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

import symbols
from alexnet_mxnet.base.devices import cpu_has_bf16_instructions
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.train import fit
from symbols import lrn_kernel
from symbols.lrn import training_graph
from symbols.precision import bf16_rounded
from tests.conftest import REPO
from tests.fit_helpers import QUICK, run_train, tiny_photo_records

SHAPE = (3, 67, 67)


def _graphs(network, **kwargs):
    return [symbols.get_symbol(network, num_classes=10, image_shape=SHAPE, dtype=dtype, **kwargs)
            for dtype in ('float32', 'bfloat16')]


def _learned_convolutions(sym):
    nodes = json.loads(sym.tojson())['nodes']
    return [node['name'] for node in nodes if node['op'] == 'Convolution'
            and nodes[node['inputs'][1][0]]['op'] == 'null']


def _output_types(sym):
    internals = sym.get_internals()
    _, types, _ = internals.infer_type(data='float32')
    return {name[:-len('_output')]: np.dtype(t) for name, t in zip(internals.list_outputs(), types)}


@pytest.mark.parametrize('network', symbols.list_networks())
def test_convolutions_compute_in_bf16_from_float32_weights(network):
    fp32, bf16 = _graphs(network)
    assert bf16.list_arguments() == fp32.list_arguments()
    assert bf16.list_auxiliary_states() == fp32.list_auxiliary_states()
    arg_types, _, aux_types = bf16.infer_type(data='float32')
    assert {np.dtype(t) for t in arg_types + aux_types} == {np.dtype('float32')}
    types = _output_types(bf16)
    convolutions = _learned_convolutions(fp32)
    assert ['conv%d' % i for i in range(1, 6)] == convolutions
    assert all(types[name].names == ('bfloat16',) for name in convolutions), types
    for name in ('fc1', 'fc2', 'fc3', 'softmax'):
        assert types[name] == np.float32, name


def test_the_fast_lrn_band_convolution_stays_float32():
    _, bf16 = _graphs('alexnet')
    types = _output_types(bf16)
    assert types['lrn1_window'] == np.float32 and types['lrn1'] == np.float32


def test_the_fused_lrn_kernel_keeps_the_convolutions_in_bf16():
    """The kernel replaces the LRN by rewriting the graph's JSON: it must keep the casts that a
    plain ``tojson()`` drops (it once did: bf16 runs then trained in float32, as fast)."""
    if not lrn_kernel.compiler():
        pytest.skip('no C++ compiler to build the fused LRN kernel')
    _, bf16 = _graphs('alexnet')
    graph, why_not = training_graph(bf16, [mx.cpu()])
    assert why_not is None and graph is not bf16
    ops = [node['op'] for node in json.loads(graph.tojson(remove_amp_cast=False))['nodes']]
    assert ops.count(lrn_kernel.OP) == 2
    types = _output_types(graph)
    assert all(types['conv%d' % i].names == ('bfloat16',) for i in range(1, 6)), types
    assert types['lrn1'] == types['lrn2'] == types['fc1'] == np.float32


def test_the_saved_graph_is_the_float32_graph(tmp_path):
    fp32, bf16 = _graphs('alexnet')
    bf16.save(str(tmp_path / 'bf16-symbol.json'))
    loaded = mx.sym.load(str(tmp_path / 'bf16-symbol.json'))
    ops = [node['op'] for node in json.loads(loaded.tojson())['nodes']]
    assert 'amp_cast' not in ops
    assert ops == [node['op'] for node in json.loads(fp32.tojson())['nodes']]
    assert set(_output_types(loaded).values()) == {np.dtype('float32')}


def _photos(datasets_dir, count=8):
    paths = sorted(glob.glob(os.path.join(datasets_dir, 'imagenette2-224', 'train', '*',
                                          '*.JPEG')))[::500][:count]
    images = np.stack([cv2.resize(cv2.imread(p), SHAPE[1:])[:, :, ::-1].transpose(2, 0, 1)
                       for p in paths]).astype(np.float32)
    return (images - 117.0) / 58.0, np.arange(count) % 10


def _step(sym, params, data, labels):
    """Loss and gradients of one forward/backward from ``params``."""
    exe = sym.simple_bind(mx.cpu(), data=data.shape, softmax_label=labels.shape)
    for name, value in params.items():
        exe.arg_dict[name][:] = value
    exe.arg_dict['data'][:] = data
    exe.arg_dict['softmax_label'][:] = labels
    probs = exe.forward(is_train=True)[0].asnumpy()
    exe.backward()
    loss = -np.mean(np.log(probs[np.arange(len(labels)), labels]))
    return loss, {name: exe.grad_dict[name].asnumpy() for name in params}


def _bf16_rounded(array):
    return bf16_rounded(mx.nd.array(array)).asnumpy()


def test_one_step_agrees_with_float32_within_bf16_rounding(datasets_dir):
    """Same weights, same real photos: the bf16 graph's loss is float32's, and each gradient is
    as close to float32's as that of the float32 graph fed bf16-rounded weights and photos (the
    yardstick: ReLU masks and max-pool choices flip on rounding alone), within a factor that
    allows for the rounding of every convolution's output too (measured 1.0-1.9x)."""
    fp32, bf16 = _graphs('alexnet', dropout=0)
    data, labels = _photos(datasets_dir)
    arg_shapes, _, _ = fp32.infer_shape(data=data.shape)
    rng = np.random.RandomState(0)
    params = {name: (rng.randn(*shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32)
              for name, shape in zip(fp32.list_arguments(), arg_shapes)
              if name not in ('data', 'softmax_label')}
    loss32, grads32 = _step(fp32, params, data, labels)
    loss16, grads16 = _step(bf16, params, data, labels)
    _, grads_rounded = _step(fp32, {name: _bf16_rounded(value) for name, value in params.items()},
                             _bf16_rounded(data), labels)
    assert abs(loss16 - loss32) < 0.005 * loss32, (loss16, loss32)

    def error(grads, name):
        return np.linalg.norm(grads[name] - grads32[name]) / np.linalg.norm(grads32[name])
    for name in params:
        assert error(grads16, name) < 2.5 * error(grads_rounded, name) + 1e-3, name


def test_cpu_bf16_instructions_are_read_from_the_flags(tmp_path):
    def cpuinfo(text):
        path = tmp_path / 'cpuinfo'
        path.write_text(text)
        return str(path)
    assert cpu_has_bf16_instructions(cpuinfo('flags\t: fpu avx512f avx512_bf16\n')) is True
    assert cpu_has_bf16_instructions(cpuinfo('flags\t: fpu amx_bf16 amx_tile\n')) is True
    assert cpu_has_bf16_instructions(cpuinfo('flags\t: fpu avx512f avx512_vnni\n')) is False
    assert cpu_has_bf16_instructions(cpuinfo('processor\t: 0\n')) is None
    assert cpu_has_bf16_instructions(str(tmp_path / 'absent')) is None


def test_bf16_is_refused_on_gpus_and_warned_about_without_instructions(monkeypatch, caplog):
    with pytest.raises(UsageError, match='bfloat16 trains on CPUs'):
        fit._check_dtype('bfloat16', 'gpu')
    monkeypatch.setattr(fit, 'cpu_has_bf16_instructions', lambda: False)
    with caplog.at_level(logging.WARNING, logger=fit.LOG.name):
        fit._check_dtype('bfloat16', 'cpu')
    assert 'runs emulated' in caplog.text
    caplog.clear()
    monkeypatch.setattr(fit, 'cpu_has_bf16_instructions', lambda: True)
    with caplog.at_level(logging.WARNING, logger=fit.LOG.name):
        fit._check_dtype('bfloat16', 'cpu')
    assert caplog.text == ''


@pytest.mark.slow
def test_a_bf16_run_writes_float32_checkpoints_that_score_and_resume(datasets_dir, tmp_path):
    """Two CPU contexts train in bf16; score.py reads the checkpoint; the run resumes in bf16
    and refuses to resume in float32 (one line)."""
    train, val = tiny_photo_records(datasets_dir, str(tmp_path))
    prefix = str(tmp_path / 'run')
    flags = QUICK + ['--data-train', train, '--data-val', val, '--model-prefix', prefix,
                     '--dtype', 'bfloat16']
    first = run_train(flags + ['--num-epochs', '1', '--cpus', '2'], timeout=300)
    assert first.returncode == 0, first.stderr
    with open(prefix + '-meta.json') as handle:
        assert json.load(handle)['dtype'] == 'bfloat16'
    with open(prefix + '-symbol.json') as handle:
        assert 'amp_cast' not in handle.read()
    saved = mx.nd.load(prefix + '-0001.params')
    assert {value.dtype for value in saved.values()} == {np.float32}

    score = subprocess.run([sys.executable, os.path.join(REPO, 'score.py'), '--params',
                            prefix + '-0001.params', '--data-val', val, '--no-progress'],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert score.returncode == 0 and 'top' in score.stdout, score.stderr

    resumed = run_train(flags + ['--num-epochs', '2', '--load-epoch', '1'], timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert os.path.exists(prefix + '-0002.params')
    refused = run_train(flags[:-2] + ['--num-epochs', '3', '--load-epoch', '2'], timeout=300)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert 'dtype=bfloat16' in lines[0]
