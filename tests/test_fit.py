"""alexnet_mxnet.train.fit on tiny real-photo RecordIO files: device split, exact resume, the files a run
leaves (read back with stock MXNet), the NaN guard."""
import json
import os
import shutil

import mxnet as mx
import numpy as np
import pytest

from alexnet_mxnet.train.callbacks import Diverged
from alexnet_mxnet.train.fit import fit
from tests.fit_helpers import (QUICK, assert_same_params, metrics_rows, parse, run_train,
                               tiny_photo_records)
from symbols import lrn_kernel

STEP = ['--lr-step-epochs', '2', '--lr-factor', '0.1']


@pytest.fixture(scope='module')
def records(datasets_dir, tmp_path_factory):
    return tiny_photo_records(datasets_dir, str(tmp_path_factory.mktemp('fit')))


def _train(records, prefix, *flags):
    train, val = records
    return fit(parse(QUICK + ['--data-train', train, '--data-val', val,
                              '--model-prefix', prefix] + list(flags)))


def _params(prefix, epoch):
    _, arg, aux = mx.model.load_checkpoint(prefix, epoch)
    return {k: v.asnumpy() for k, v in dict(arg, **aux).items()}


@pytest.fixture(scope='module')
def full_run(records, tmp_path_factory):
    """Three uninterrupted epochs, lr divided by 10 after epoch 2."""
    prefix = str(tmp_path_factory.mktemp('full') / 'full')
    _train(records, prefix, '--num-epochs', '3', *STEP)
    return prefix


@pytest.mark.slow
def test_two_cpu_contexts_match_one(records, tmp_path, monkeypatch):
    one = str(tmp_path / 'one')
    _train(records, one, '--num-epochs', '1', '--cpus', '1')
    # The kvstore runs the optimizer, or (as 'local' does for AlexNet's big layers at 227x227)
    # every device runs its own copy on the summed gradients.
    for on_kvstore, copies in (('1', 1), ('0', 2)):
        monkeypatch.setenv('MXNET_UPDATE_ON_KVSTORE', on_kvstore)
        two = str(tmp_path / ('kv' + on_kvstore))
        _train(records, two, '--num-epochs', '1', '--cpus', '2', '--kv-store', 'local')
        assert_same_params(_params(one, 1), _params(two, 1), atol=1e-6)
        saved = json.load(open(two + '-meta.json'))['checkpoints']['1']
        assert saved['num_update'] == 3 and saved['state_copies'] == copies


@pytest.mark.slow
def test_resume_reproduces_uninterrupted_run(records, full_run, tmp_path):
    part = str(tmp_path / 'part')
    _train(records, part, '--num-epochs', '2', *STEP)
    # A copy without the optimizer state shows the comparison can fail.
    blind = str(tmp_path / 'blind')
    for name in os.listdir(str(tmp_path)):
        if name.startswith('part-') and not name.endswith('.states'):
            shutil.copyfile(str(tmp_path / name), str(tmp_path / name.replace('part', 'blind')))
    _train(records, part, '--num-epochs', '3', '--load-epoch', '2', *STEP)
    assert_same_params(_params(full_run, 3), _params(part, 3), atol=1e-6)
    full_rows, part_rows = metrics_rows(full_run), metrics_rows(part)
    assert [r['epoch'] for r in part_rows] == ['1', '2', '3']
    assert float(full_rows[2]['lr']) == float(part_rows[2]['lr']) == pytest.approx(0.001)
    assert float(part_rows[1]['lr']) == pytest.approx(0.01)
    assert full_rows[2]['train_loss'] == part_rows[2]['train_loss']

    _train(records, blind, '--num-epochs', '3', '--load-epoch', '2', *STEP)
    full, without_states = _params(full_run, 3), _params(blind, 3)
    assert max(np.abs(full[k] - without_states[k]).max() for k in full) > 1e-4


@pytest.mark.slow
def test_checkpoint_files_load_with_stock_mxnet(full_run):
    sym, arg, aux = mx.model.load_checkpoint(full_run, 3)
    assert sym.list_outputs() == ['softmax_output'] and 'fc3_weight' in arg
    # trained through the fused LRN kernel (where it builds), saved as stock operators
    ops = [node['op'] for node in json.loads(sym.tojson())['nodes']]
    assert lrn_kernel.OP not in ops and 'LRN' not in ops and ops.count('square') == 2
    module = mx.mod.Module.load(full_run, 3, load_optimizer_states=True, context=mx.cpu())
    module.bind(data_shapes=[('data', (8, 3, 67, 67))], label_shapes=[('softmax_label', (8,))])
    module.init_optimizer(optimizer='sgd', optimizer_params={'momentum': 0.9})
    momentum = [v for v in module._updater.states.values() if v is not None]
    assert momentum and all(np.abs(m.asnumpy()).max() > 0 for m in momentum)

    meta = json.load(open(full_run + '-meta.json'))
    assert meta['network'] == 'alexnet' and meta['num_classes'] == 2
    assert meta['image_shape'] == [3, 67, 67] and meta['class_names'] == ['ants', 'bees']
    assert meta['epoch'] == 3 and len(meta['mean_rgb']) == 3 and len(meta['std_rgb']) == 3
    rows = metrics_rows(full_run)
    best = max(rows, key=lambda r: (float(r['val_top1']), -int(r['epoch'])))
    assert meta['best_epoch'] == int(best['epoch'])
    assert meta['best_val_top1'] == pytest.approx(float(best['val_top1']))
    best_params = mx.nd.load(full_run + '-best.params')
    stock = mx.nd.load('%s-%04d.params' % (full_run, meta['best_epoch']))
    assert all(np.array_equal(best_params[k].asnumpy(), stock[k].asnumpy()) for k in stock)
    for row in rows:
        assert 0 <= float(row['val_top1']) <= float(row['val_topk']) <= 1
        assert float(row['images_per_sec']) > 0 and float(row['train_loss']) > 0
    with open(full_run + '-curves.png', 'rb') as handle:
        assert handle.read(8) == b'\x89PNG\r\n\x1a\n'
    leftovers = [n for n in os.listdir(os.path.dirname(full_run)) if n.endswith('.tmp')]
    assert not leftovers


@pytest.mark.slow
def test_planted_nan_stops_with_message(records, full_run, tmp_path):
    prefix = str(tmp_path / 'nan')
    for suffix in ('-symbol.json', '-0003.states', '-meta.json'):
        shutil.copyfile(full_run + suffix, prefix + suffix)
    saved = mx.nd.load(full_run + '-0003.params')
    saved['arg:fc3_weight'][0, 0] = float('nan')
    mx.nd.save(prefix + '-0003.params', saved)
    with pytest.raises(Diverged, match='epoch 4, batch 1'):
        _train(records, prefix, '--num-epochs', '5', '--load-epoch', '3', *STEP)
    assert not os.path.exists(prefix + '-0004.params')

    train, val = records
    proc = run_train(QUICK + ['--data-train', train, '--model-prefix', prefix, '--num-epochs', '5',
                              '--load-epoch', '3'], timeout=300)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if 'error' in line]
    assert errors == ['train_imagenet.py: error: loss is nan at epoch 4, batch 1: training '
                      'diverged; lower --lr (or add --warmup-epochs) and resume from the last '
                      'checkpoint']


def test_grayscale_training_without_colour_noise(records, tmp_path):
    """--image-shape 1,H,W reads the photos as grayscale (MXNet's colour noise on one channel
    corrupts memory, so it is refused: tests/test_train_cli.py)."""
    prefix = str(tmp_path / 'gray')
    result = _train(records, prefix, '--num-epochs', '1', '--image-shape', '1,67,67')
    _, arg, _ = mx.model.load_checkpoint(prefix, 1)
    assert arg['conv1_weight'].shape[1] == 1
    assert np.isfinite(float(result.rows[0]['train_loss']))
    assert json.load(open(prefix + '-meta.json'))['image_shape'] == [1, 67, 67]


def test_sidecar_records_the_whole_run_and_a_resume_names_changed_flags(records, full_run,
                                                                        tmp_path, caplog):
    meta = json.load(open(full_run + '-meta.json'))
    config = meta['config']
    assert (config['lr'], config['lr_step_epochs'], config['wd'], config['seed'],
            config['optimizer'], config['num_epochs']) == (0.01, '2', 0.0005, 0, 'sgd', 3)
    assert config['image_shape'] == [3, 67, 67] and config['rgb_std'] == [58.393, 57.12, 57.375]
    assert meta['versions']['mxnet'] == mx.__version__ and meta['versions']['alexnet_mxnet']
    prefix = str(tmp_path / 'resumed')
    for suffix in ('-symbol.json', '-0002.params', '-0002.states', '-meta.json', '-metrics.csv'):
        shutil.copyfile(full_run + suffix, prefix + suffix)
    with caplog.at_level('WARNING', logger='alexnet_mxnet.train'):
        _train(records, prefix, '--num-epochs', '3', '--load-epoch', '2', '--wd', '0.001', *STEP)
    changed = [r.getMessage() for r in caplog.records if 'differ' in r.getMessage()]
    assert changed == ["resuming with flags that differ from the run's: --wd 0.001 (was 0.0005)"]


def test_a_distributed_worker_whose_part_lacks_classes_is_warned(records, tmp_path, caplog):
    from alexnet_mxnet.data.im2rec import convert
    from alexnet_mxnet.train.fit import _warn_if_part_lacks_classes
    train, _ = records                   # shuffled, as im2rec writes by default
    ordered = convert(os.path.join(os.path.dirname(train), 'photos'), str(tmp_path / 'ordered'),
                      resize=72, progress=False, num_workers=1, shuffle=False).records['all']
    for rank in (0, 1):
        _warn_if_part_lacks_classes(train, rank, 2)
    assert not caplog.records
    _warn_if_part_lacks_classes(ordered, 1, 2)
    assert len(caplog.records) == 1
    assert 'part 2 of 2 of %s, which holds only 1 of its 2 classes' % ordered in caplog.text
