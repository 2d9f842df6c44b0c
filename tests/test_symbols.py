"""The AlexNet graphs against the paper, GluonCV, and bad arguments."""
import argparse
import importlib

import mxnet as mx
import numpy as np
import pytest

import symbols
from symbols import alexnet
from tests.conftest import gluoncv_model_zoo
from alexnet_mxnet.tools.summary import network_summary, summarize, totals

# Per conv/fc layer: weights at 227x227 in the paper's table (two-tower layout) and
# in MXNet's single-tower layout.
PAPER_WEIGHTS = {'conv1': 34848, 'conv2': 307200, 'conv3': 884736, 'conv4': 663552,
                 'conv5': 442368, 'fc1': 37748736, 'fc2': 16777216, 'fc3': 4096000}
MXNET_WEIGHTS = dict(PAPER_WEIGHTS, conv2=614400, conv4=1327104, conv5=884736)
PAPER_NEURONS = {'conv1': 290400, 'conv2': 186624, 'conv3': 64896, 'conv4': 64896,
                 'conv5': 43264, 'fc1': 4096, 'fc2': 4096, 'fc3': 1000}


def _layer(rows, name):
    return next(r for r in rows if r.name == name)


@pytest.mark.parametrize('network, weights, biases', [
    ('alexnet', 62367776, 10568),
    ('alexnet-grouped', 60954656, 10568),
    ('alexnet-gluon', 61090496, 10344),
])
def test_parameter_counts_match_the_paper(network, weights, biases):
    rows = network_summary(network)
    assert totals(rows)[:2] == (weights, biases)
    if network != 'alexnet-gluon':
        expected = PAPER_WEIGHTS if network == 'alexnet-grouped' else MXNET_WEIGHTS
        assert {n: _layer(rows, n).weights for n in expected} == expected
        assert {n: _layer(rows, n).neurons for n in PAPER_NEURONS} == PAPER_NEURONS
        assert totals(rows)[2] == 659272


@pytest.mark.parametrize('network', ['alexnet', 'alexnet-grouped', 'alexnet-bn'])
def test_feature_maps_at_227(network):
    rows = network_summary(network, image_shape='3,227,227')
    sides = [_layer(rows, n).output_shape[1] for n in ('conv1', 'pool1', 'pool2', 'conv3',
                                                       'conv4', 'conv5', 'pool5')]
    assert sides == [55, 27, 13, 13, 13, 13, 6]
    assert _layer(rows, 'lrn1' if network != 'alexnet-bn' else 'bn1')


def test_gluon_layout_matches_gluoncv_shapes():
    model_zoo = gluoncv_model_zoo()
    net = model_zoo.get_model('alexnet')
    net.initialize()
    net(mx.nd.zeros((1, 3, 224, 224)))
    gluon_shapes = {alexnet.gluon_to_symbol_name(k): v.shape for k, v in net.collect_params().items()}
    sym = symbols.get_symbol('alexnet-gluon')
    arg_shapes, _, _ = sym.infer_shape(data=(1, 3, 224, 224))
    ours = {k: v for k, v in zip(sym.list_arguments(), arg_shapes) if k not in ('data', 'softmax_label')}
    assert ours == gluon_shapes
    assert totals(network_summary('alexnet-gluon'))[0] + totals(network_summary('alexnet-gluon'))[1] == 61100840


@pytest.mark.parametrize('network', symbols.list_networks())
def test_forward_backward_on_small_batch(network):
    sym = symbols.get_symbol(network, num_classes=5, image_shape='3,67,67')
    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[('data', (2, 3, 67, 67))], label_shapes=[('softmax_label', (2,))])
    mod.init_params(mx.init.Xavier())
    batch = mx.io.DataBatch([mx.nd.random.uniform(shape=(2, 3, 67, 67))], [mx.nd.array([1, 3])])
    mod.forward(batch, is_train=True)
    probs = mod.get_outputs()[0].asnumpy()
    assert probs.shape == (2, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    mod.backward()
    grad = mod._exec_group.grad_arrays[mod._param_names.index('conv1_weight')][0].asnumpy()
    assert np.abs(grad).sum() > 0


def test_float16_keeps_float32_logits():
    sym = symbols.get_symbol('alexnet', num_classes=10, dtype='float16')
    internals = sym.get_internals()
    _, out_types, _ = internals.infer_type(data='float32')
    types = dict(zip(internals.list_outputs(), out_types))
    assert types['conv1_output'] == np.float16
    assert types['fc3_output'] == np.float16
    assert types['softmax_output'] == np.float32
    arg_types = dict(zip(sym.list_arguments(), sym.infer_type(data='float32')[0]))
    assert arg_types['fc3_weight'] == np.float16


def test_dropout_zero_removes_dropout_layers():
    rows = summarize(symbols.get_symbol('alexnet', dropout=0), (1, 3, 227, 227))
    assert not [r for r in rows if r.op == 'Dropout']


def test_gluoncv_weights_give_the_same_outputs():
    model_zoo = gluoncv_model_zoo()
    net = model_zoo.get_model('alexnet', classes=7)
    net.initialize(mx.init.Xavier())
    x = mx.nd.random.uniform(-1, 1, shape=(3, 3, 224, 224))
    expected = mx.nd.softmax(net(x)).asnumpy()
    arg_params = alexnet.gluon_params_to_symbol({k: v.data() for k, v in net.collect_params().items()})
    mod = mx.mod.Module(symbols.get_symbol('alexnet-gluon', num_classes=7), context=mx.cpu())
    mod.bind(data_shapes=[('data', x.shape)], for_training=False)
    mod.set_params(arg_params, {})
    mod.forward(mx.io.DataBatch([x]), is_train=False)
    np.testing.assert_allclose(mod.get_outputs()[0].asnumpy(), expected, rtol=1e-4, atol=1e-6)


def test_gluoncv_params_file_with_structural_names(tmp_path):
    model_zoo = gluoncv_model_zoo()
    net = model_zoo.get_model('alexnet')
    net.initialize()
    net(mx.nd.zeros((1, 3, 224, 224)))
    path = str(tmp_path / 'alexnet.params')
    net.save_parameters(path)
    params = alexnet.gluon_params_to_symbol(path)
    np.testing.assert_array_equal(params['conv1_weight'].asnumpy(),
                                  net.features[0].weight.data().asnumpy())
    np.testing.assert_array_equal(params['fc3_bias'].asnumpy(), net.output.bias.data().asnumpy())


@pytest.mark.parametrize('kwargs, message', [
    (dict(network='alexnet-tiny'), 'unknown network'),
    (dict(network='alexnet', image_shape='3,66,66'), 'at least 67x67'),
    (dict(network='alexnet', image_shape='3,abc'), 'three positive integers'),
    (dict(network='alexnet', num_classes=0), 'positive integer'),
    (dict(network='alexnet', dtype='int8'), 'unsupported dtype'),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        symbols.get_symbol(**kwargs)


def test_non_gluoncv_params_are_rejected():
    with pytest.raises(ValueError, match='not a GluonCV AlexNet parameter'):
        alexnet.gluon_params_to_symbol({'resnet_conv0_gamma': mx.nd.zeros(1)})


def test_smallest_input_builds():
    rows = network_summary('alexnet', num_classes=10, image_shape='3,67,67')
    assert _layer(rows, 'pool5').output_shape == (256, 1, 1)


def _stock_example_args(**changes):
    """The namespace MXNet's example/image-classification scripts build (train_imagenet.py's
    and fine-tune.py's flags, as their argparse groups name them) and pass to
    ``symbols.<network>.get_symbol(**vars(args))``."""
    args = dict(
        network='alexnet', num_layers=50, num_classes=1000, num_examples=1281167,
        image_shape='3,224,224', dtype='float32', gpus=None, kv_store='device', num_epochs=80,
        lr=0.1, lr_factor=0.1, lr_step_epochs='30,60', initializer='default', optimizer='sgd',
        mom=0.9, wd=0.0001, batch_size=128, disp_batches=20, model_prefix=None, save_period=1,
        monitor=0, load_epoch=None, top_k=0, loss='', test_io=0, gc_type='none',
        gc_threshold=0.5, macrobatch_size=0, warmup_epochs=5, warmup_strategy='linear',
        data_train=None, data_train_idx='', data_val=None, data_val_idx='',
        rgb_mean='123.68,116.779,103.939', rgb_std='58.393,57.12,57.375', pad_size=0,
        fill_value=127, data_nthreads=4, benchmark=0, random_crop=0, random_mirror=1,
        max_random_h=0, max_random_s=0, max_random_l=0, max_random_aspect_ratio=0.0,
        min_random_aspect_ratio=None, max_random_rotate_angle=0, max_random_shear_ratio=0.0,
        max_random_scale=1, min_random_scale=1, max_random_area=1, min_random_area=1,
        min_crop_size=-1, max_crop_size=-1, brightness=0, contrast=0, saturation=0,
        pca_noise=0, random_resized_crop=0, pretrained_model=None, layer_before_fullc='flatten0')
    args.update(changes)
    return argparse.Namespace(**args)


@pytest.mark.parametrize('call', ['train_imagenet', 'benchmark_score'])
def test_drop_in_for_mxnet_example_scripts(call):
    """MXNet's example scripts, with this package's symbols/ in place of their own, call
    ``import_module('symbols.' + args.network).get_symbol(...)``: exactly so here."""
    net = importlib.import_module('symbols.alexnet')
    if call == 'train_imagenet':            # also fine-tune.py
        sym = net.get_symbol(**vars(_stock_example_args()))
    else:                                   # benchmark_score.py
        sym = net.get_symbol(num_classes=1000, image_shape='3,224,224', num_layers=0,
                             dtype='float32')
    ours = symbols.get_symbol('alexnet', num_classes=1000, image_shape=(3, 224, 224))
    assert sym.list_arguments() == ours.list_arguments()
    module = mx.mod.Module(sym, context=mx.cpu())
    module.bind(data_shapes=[('data', (2, 3, 224, 224))], label_shapes=[('softmax_label', (2,))])
    module.init_params(mx.init.Xavier())
    module.forward(mx.io.DataBatch([mx.nd.ones((2, 3, 224, 224))], [mx.nd.zeros((2,))]))
    assert module.get_outputs()[0].shape == (2, 1000)


def test_drop_in_float16_graph_casts_as_the_example_does():
    sym = importlib.import_module('symbols.alexnet').get_symbol(
        **vars(_stock_example_args(dtype='float16', num_classes=10)))
    arg_types, out_types, _ = sym.infer_type(data='float32')
    assert out_types == [np.float32]
    assert dict(zip(sym.list_arguments(), arg_types))['conv1_weight'] == np.float16
