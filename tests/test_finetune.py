"""Fine-tuning keeps every pretrained layer but fc3, which gets the new class count; feature
layers can be frozen or slowed down."""
import mxnet as mx
import numpy as np
import pytest

import symbols
from alexnet_mxnet.base import checkpoint as ckpt
from alexnet_mxnet.base.errors import UsageError
from symbols import load_weights
from alexnet_mxnet.train.fit import fit
from tests.conftest import gluoncv_model_zoo
from tests.fit_helpers import QUICK, parse, tiny_photo_records

CONVS = ['conv%d_%s' % (i, w) for i in range(1, 6) for w in ('weight', 'bias')]
HIDDEN = ['fc%d_%s' % (i, w) for i in (1, 2) for w in ('weight', 'bias')]


@pytest.fixture(scope='module')
def records(datasets_dir, tmp_path_factory):
    return tiny_photo_records(datasets_dir, str(tmp_path_factory.mktemp('ft')))


@pytest.fixture(scope='module')
def gluon_file(tmp_path_factory):
    """A GluonCV AlexNet (1000 classes), initialised at a 67x67 input and saved as GluonCV
    saves it: the file a user downloads from the model zoo, without the download."""
    net = gluoncv_model_zoo().get_model('alexnet', pretrained=False)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 67, 67)))
    path = str(tmp_path_factory.mktemp('gluon') / 'alexnet.params')
    net.save_parameters(path)
    return path


def _tune(records, prefix, *flags):
    train, val = records
    fit(parse(QUICK + ['--data-train', train, '--data-val', val, '--model-prefix', prefix,
                       '--num-epochs', '1', '--lr', '0.0001'] + list(flags)))
    _, arg, _ = mx.model.load_checkpoint(prefix, 1)
    return {k: v.asnumpy() for k, v in arg.items()}


@pytest.mark.slow
def test_gluoncv_weights_frozen_features_new_head(records, gluon_file, tmp_path):
    pretrained = {k: v.asnumpy() for k, v in
                  symbols.alexnet.gluon_params_to_symbol(gluon_file).items()}
    assert pretrained['fc3_weight'].shape == (1000, 4096)
    tuned = _tune(records, str(tmp_path / 'ft'), '--network', 'alexnet-gluon',
                  '--pretrained', gluon_file, '--freeze-features')
    for name in CONVS:
        np.testing.assert_array_equal(tuned[name], pretrained[name], err_msg=name)
    for name in HIDDEN:   # trained a little, from the pretrained values
        np.testing.assert_allclose(tuned[name], pretrained[name], atol=1e-3, err_msg=name)
        assert not np.array_equal(tuned[name], pretrained[name])
    assert tuned['fc3_weight'].shape == (2, 4096) and tuned['fc3_bias'].shape == (2,)
    meta = ckpt.read_sidecar(str(tmp_path / 'ft'))
    assert meta['network'] == 'alexnet-gluon' and meta['pretrained'] == gluon_file


@pytest.mark.slow
def test_checkpoint_weights_with_zero_feature_lr(records, tmp_path):
    source = str(tmp_path / 'src')
    sym = symbols.get_symbol('alexnet', 5, (3, 67, 67))
    module = mx.mod.Module(sym, context=mx.cpu())
    module.bind(data_shapes=[('data', (1, 3, 67, 67))], label_shapes=[('softmax_label', (1,))])
    module.init_params(mx.init.Xavier())
    arg, aux = module.get_params()
    ckpt.save_checkpoint(source, 7, sym, arg, aux)
    tuned = _tune(records, str(tmp_path / 'ft'), '--pretrained', ckpt.params_path(source, 7),
                  '--features-lr-mult', '0')
    for name in CONVS:
        np.testing.assert_array_equal(tuned[name], arg[name].asnumpy(), err_msg=name)
    for name in HIDDEN:
        np.testing.assert_allclose(tuned[name], arg[name].asnumpy(), atol=1e-3, err_msg=name)
    assert tuned['fc3_weight'].shape == (2, 4096)


def test_gluoncv_weights_need_the_gluon_layout(gluon_file):
    with pytest.raises(UsageError, match='--network alexnet-gluon'):
        load_weights(gluon_file, 'alexnet')
    arg, aux = load_weights(gluon_file, 'alexnet-gluon')
    assert set(CONVS + HIDDEN) < set(arg) and aux == {}
