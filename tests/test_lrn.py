"""The fast LRN (symbols.lrn) is mx.sym.LRN: the same values and gradients, no parameter of its
own, checkpoints interchangeable with the stock operator's; so is the fused CPU kernel that
training runs it through (symbols.lrn_kernel), which checkpoints never see."""
import glob
import json
import os
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

import symbols
from symbols.alexnet import LRN_PARAMS
from symbols import lrn_kernel
from symbols.lrn import fused_lrn_graph, lrn, native_lrn_graph
from tests.conftest import REPO

RTOL = 1e-5


@pytest.fixture(scope='module')
def kernel():
    if not lrn_kernel.compiler():
        pytest.skip('no C++ compiler to build the fused LRN kernel (.ci/os-packages.sh '
                    'installs g++)')
    reason = lrn_kernel.load()
    assert reason is None, reason


def _forward_backward(impl, x, head_grad):
    """``impl``: fast, native or fused (the fast graph through the kernel)."""
    data = mx.sym.Variable('data')
    out = lrn(data, x.shape[1], 'lrn1', 'native' if impl == 'native' else 'fast', **LRN_PARAMS)
    if impl == 'fused':
        out = fused_lrn_graph(out)
        assert [n['op'] for n in json.loads(out.tojson())['nodes']][-1] == lrn_kernel.OP
    exe = out.simple_bind(mx.cpu(), data=x.shape)
    exe.arg_dict['data'][:] = x
    exe.forward(is_train=True)
    exe.backward(mx.nd.array(head_grad))
    return exe.outputs[0].asnumpy(), exe.grad_dict['data'].asnumpy()


def _assert_same_lrn(x, impl, seed=0):
    """``impl`` and native LRN agree within RTOL of the output's (gradient's) scale."""
    head_grad = np.random.RandomState(seed).randn(*x.shape).astype(np.float32)
    fast_y, fast_dx = _forward_backward(impl, x, head_grad)
    native_y, native_dx = _forward_backward('native', x, head_grad)
    for ours, stock in ((fast_y, native_y), (fast_dx, native_dx)):
        assert np.all(np.isfinite(ours))
        np.testing.assert_allclose(ours, stock, rtol=RTOL, atol=RTOL * np.abs(stock).max())


@pytest.mark.parametrize('impl', ['fast', 'fused'])
@pytest.mark.parametrize('channels, scale, plane', [
    (1, 50.0, (9, 7)), (3, 50.0, (9, 7)), (7, 300.0, (9, 7)), (96, 30.0, (9, 7)),
    (256, 100.0, (9, 7)), (5, 80.0, (27, 23))])
def test_random_inputs_match_native_lrn(channels, scale, plane, impl, kernel):
    """ReLU-like inputs (many exact zeros) large enough that the window sum matters (s up to
    ~2 + 10 at scale 300); few channels put every channel at an edge of its window; a plane of
    621 values is more than one of the kernel's stretches (512), the last one cut short."""
    rng = np.random.RandomState(channels)
    x = np.maximum(rng.randn(2, channels, *plane) * scale, 0).astype(np.float32)
    x[0, :, 0, 0] = scale * 4          # one pixel far into the normalising regime
    _assert_same_lrn(x, impl)


@pytest.mark.parametrize('impl', ['fast', 'fused'])
def test_real_photo_activations_match_native_lrn(datasets_dir, impl, kernel):
    """conv1+ReLU activations of real photos, scaled as a trained net's are (tens to hundreds)."""
    paths = sorted(glob.glob(os.path.join(datasets_dir, 'imagenette2-224', 'train', '*',
                                          '*.JPEG')))[::1000][:4]
    images = np.stack([cv2.resize(cv2.imread(p), (67, 67))[:, :, ::-1].transpose(2, 0, 1)
                       for p in paths]).astype(np.float32) - 117.0
    data = mx.sym.Variable('data')
    conv = mx.sym.Activation(mx.sym.Convolution(data, num_filter=96, kernel=(11, 11),
                                                stride=(4, 4), name='conv1'), act_type='relu')
    exe = conv.simple_bind(mx.cpu(), data=images.shape)
    mx.random.seed(0)
    exe.arg_dict['conv1_weight'][:] = mx.nd.random.normal(0, 0.05, exe.arg_dict['conv1_weight'].shape)
    exe.arg_dict['conv1_bias'][:] = 0
    exe.arg_dict['data'][:] = images
    activations = exe.forward()[0].asnumpy()
    assert activations.max() > 100       # the normalisation is not a no-op here
    _assert_same_lrn(activations, impl)


@pytest.mark.parametrize('network', ['alexnet', 'alexnet-grouped'])
def test_the_band_is_a_constant_not_a_parameter(network):
    fast = symbols.get_symbol(network, num_classes=1000)
    native = symbols.get_symbol(network, num_classes=1000, lrn='native')
    assert fast.list_arguments() == native.list_arguments()
    assert fast.list_auxiliary_states() == native.list_auxiliary_states() == []
    shapes = dict(zip(fast.list_arguments(), fast.infer_shape(data=(1, 3, 227, 227))[0]))
    count = sum(int(np.prod(s)) for n, s in shapes.items() if n not in ('data', 'softmax_label'))
    assert count == {'alexnet': 62378344, 'alexnet-grouped': 60965224}[network]
    # the inference paths' rewrite gives exactly the stock graph back
    assert native_lrn_graph(fast).tojson() == native.tojson()
    assert native_lrn_graph(native) is native


def test_bad_lrn_is_a_usage_error():
    with pytest.raises(ValueError, match="unknown LRN implementation 'cudnn'; choose one of fast"):
        symbols.get_symbol('alexnet', lrn='cudnn')


def _outputs(sym, arg_params, aux_params, data):
    module = mx.mod.Module(sym, context=mx.cpu())
    module.bind(data_shapes=[('data', data.shape)], label_shapes=[('softmax_label', (len(data),))],
                for_training=False)
    module.set_params(arg_params, aux_params)
    module.forward(mx.io.DataBatch([mx.nd.array(data)], [mx.nd.zeros(len(data))]), is_train=False)
    return module.get_outputs()[0].asnumpy()


@pytest.mark.parametrize('trained_with, loaded_into', [('fast', 'native'), ('native', 'fast')])
def test_checkpoints_load_across_implementations(tmp_path, trained_with, loaded_into):
    """A checkpoint of a few SGD steps with one LRN loads with stock MXNet readers and, into
    the other implementation's graph, gives the same outputs."""
    shape, prefix = (3, 67, 67), str(tmp_path / 'run')
    rng = np.random.RandomState(1)
    data = rng.uniform(-2, 2, (4,) + shape).astype(np.float32) * 60
    symbol = symbols.get_symbol('alexnet', 5, shape, dropout=0, lrn=trained_with)
    module = mx.mod.Module(symbol, context=mx.cpu())
    module.bind(data_shapes=[('data', data.shape)], label_shapes=[('softmax_label', (4,))])
    mx.random.seed(0)
    module.init_params(mx.init.Xavier())
    module.init_optimizer(optimizer='sgd', optimizer_params=dict(learning_rate=0.01, momentum=0.9))
    batch = mx.io.DataBatch([mx.nd.array(data)], [mx.nd.array([0, 1, 2, 3])])
    for _ in range(3):
        module.forward_backward(batch)
        module.update()
    module.save_checkpoint(prefix, 1)
    saved, arg_params, aux_params = mx.model.load_checkpoint(prefix, 1)
    assert sorted(mx.mod.Module.load(prefix, 1)._arg_params) == sorted(arg_params)
    assert saved.list_arguments() == symbol.list_arguments()
    other = symbols.get_symbol('alexnet', 5, shape, dropout=0, lrn=loaded_into)
    ours = _outputs(saved, arg_params, aux_params, data)
    np.testing.assert_allclose(_outputs(other, arg_params, aux_params, data), ours, rtol=1e-5,
                               atol=1e-7)
    assert not np.allclose(ours, ours[:1])     # distinct outputs: a real comparison


@pytest.mark.parametrize('flag, stock_operators', [([], 0), (['--lrn', 'native'], 2)])
def test_the_lrn_flag_reaches_the_training_graph(flag, stock_operators):
    """train_imagenet.py builds its graph with --lrn: the stock operator only when asked."""
    from alexnet_mxnet.train.fit import check_flags
    from tests.fit_helpers import parse
    plan = check_flags(parse(['--benchmark', '--network', 'alexnet', '--num-classes', 10]
                             + flag))
    ops = [node['op'] for node in json.loads(plan.symbol.tojson())['nodes']]
    assert ops.count('LRN') == stock_operators
    assert len(plan.symbol.list_arguments()) == 18    # the same parameters either way


@pytest.mark.parametrize('update_on_kvstore', ['1', '0'])
def test_two_cpu_contexts_train_without_a_hang(update_on_kvstore, tmp_path):
    """Both devices run the LRN at once, through the fused kernel (two engine threads, each
    with its own OpenMP team). The window sum as ``batch_dot`` (OpenBLAS) hung there for good,
    in the first step: OpenBLAS's threaded GEMM deadlocks when two engine threads call it
    together."""
    from tests.fit_helpers import Training
    run = Training(['--benchmark', '--cpus', '2', '--kv-store', 'local', '--image-shape', '3,67,67',
                    '--batch-size', '8', '--num-examples', '64', '--num-epochs', '1',
                    '--no-progress', '--disp-batches', '0', '--model-prefix', tmp_path / 'm'],
                   env=dict(os.environ, MXNET_UPDATE_ON_KVSTORE=update_on_kvstore))
    status, log = run.finish(timeout=90)
    assert status == 0, log
    assert 'on cpu(0),cpu(1)' in log
    assert ('LRN: the fused CPU kernel' if lrn_kernel.compiler() else
            'LRN: the fused CPU kernel is not used (no C++ compiler') in log


def test_training_through_the_kernel_matches_the_stock_operators(kernel):
    """An SGD step of alexnet on the fast LRN's stock-operator graph and on the same graph
    through the kernel, from the same weights: the same weights after (measured: within
    8e-7 of each weight's largest; later steps on these large inputs amplify rounding)."""
    shape = (3, 67, 67)
    data = np.random.RandomState(2).uniform(-2, 2, (4,) + shape).astype(np.float32) * 60
    batch = mx.io.DataBatch([mx.nd.array(data)], [mx.nd.array([0, 1, 2, 3])])
    symbol = symbols.get_symbol('alexnet', 5, shape, dropout=0)
    fused = fused_lrn_graph(symbol)
    assert [n['op'] for n in json.loads(fused.tojson())['nodes']].count(lrn_kernel.OP) == 2
    trained = []
    for graph in (symbol, fused):
        module = mx.mod.Module(graph, context=mx.cpu())
        module.bind(data_shapes=[('data', data.shape)], label_shapes=[('softmax_label', (4,))])
        mx.random.seed(0)
        module.init_params(mx.init.Xavier())
        module.init_optimizer(optimizer='sgd', optimizer_params=dict(learning_rate=0.01,
                                                                     momentum=0.9))
        module.forward_backward(batch)
        module.update()
        trained.append({k: v.asnumpy() for k, v in module.get_params()[0].items()})
    start = mx.mod.Module(symbol, context=mx.cpu())
    start.bind(data_shapes=[('data', data.shape)], label_shapes=[('softmax_label', (4,))])
    mx.random.seed(0)
    start.init_params(mx.init.Xavier())
    moved = 0
    for name, stock in trained[0].items():
        np.testing.assert_allclose(trained[1][name], stock, rtol=1e-5,
                                   atol=1e-5 * np.abs(stock).max(), err_msg=name)
        moved += not np.allclose(stock, start.get_params()[0][name].asnumpy())
    assert moved == len(trained[0])          # every weight took part


def _load_in_a_process(cache, **env):
    done = subprocess.run([sys.executable, '-c', 'from symbols import lrn_kernel; '
                           'print(lrn_kernel.load())'], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, XDG_CACHE_HOME=str(cache), **env), timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_kernel_is_built_once_per_cache_and_can_be_switched_off(tmp_path):
    assert _load_in_a_process(tmp_path) == 'None'
    built = glob.glob(str(tmp_path / 'alexnet-mxnet' / '*'))
    assert len(built) == 1 and built[0].endswith('.so')
    assert os.listdir(str(tmp_path / 'alexnet-mxnet')) == [os.path.basename(built[0])]
    when = os.stat(built[0]).st_mtime_ns
    assert _load_in_a_process(tmp_path) == 'None'          # loaded again, not rebuilt
    assert glob.glob(str(tmp_path / 'alexnet-mxnet' / '*')) == built
    assert os.stat(built[0]).st_mtime_ns == when
    assert _load_in_a_process(tmp_path, ALEXNET_LRN_KERNEL='off') == 'ALEXNET_LRN_KERNEL=off'


@pytest.mark.parametrize('compiler, reason', [('false', 'false failed: no output'),
                                              ('/no/such/c++', 'No such file or directory')])
def test_a_failed_build_is_one_line_and_leaves_nothing(tmp_path, compiler, reason):
    assert reason in _load_in_a_process(tmp_path, CXX=compiler)
    cache = tmp_path / 'alexnet-mxnet'
    assert not cache.exists() or os.listdir(str(cache)) == []    # no temporary left, hidden or not
