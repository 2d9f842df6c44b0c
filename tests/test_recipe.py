"""The modern recipe flags on real photos: label smoothing, mixup/cutmix with a soft-label head,
an average of the weights (--model-ema) that is validated, checkpointed, scored and resumed
exactly, on one or two devices and under dist_sync; and the converter's held-out test split."""
import json
import os
import subprocess
import sys
import uuid

import mxnet as mx
import numpy as np
import pytest

import iterators
import symbols
from alexnet_mxnet.base import checkpoint as ckpt
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.data.im2rec import convert
from alexnet_mxnet.inference import model, scoring
from alexnet_mxnet.train import mixing
from alexnet_mxnet.train.ema import ModelEMA
from alexnet_mxnet.train.fit import check_flags, fit, prepare
from iterators.mixing import soft_targets
from tests.conftest import REPO
from tests.fit_helpers import (QUICK, TAG, assert_same_params, metrics_rows, parse,
                               tagged_processes, tiny_photo_records)

SHAPE = (3, 67, 67)
# Every recipe flag at once: what the exact-resume and dist_sync tests replay.
RECIPE = ['--label-smoothing', '0.1', '--mixup', '0.4', '--cutmix', '1.0',
          '--random-erasing', '0.5', '--model-ema', '0.9']


@pytest.fixture(scope='module')
def records(datasets_dir, tmp_path_factory):
    return tiny_photo_records(datasets_dir, str(tmp_path_factory.mktemp('recipe')))


def _args(records, prefix, *flags):
    train, val = records
    return parse(QUICK + ['--data-train', train, '--data-val', val, '--model-prefix', prefix]
                 + list(flags))


def _params(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(path).items()}


# ------------------------------------------------------------------ label smoothing

def _gradients(symbol, batch, labels, weights):
    """fc3_bias's gradient for one batch (SoftmaxOutput's is not divided by the batch)."""
    module = mx.mod.Module(symbol, context=mx.cpu())
    module.bind(data_shapes=[('data', batch.shape)], label_shapes=[('softmax_label',
                                                                    labels.shape)])
    module.init_params(arg_params=weights, aux_params={})
    module.forward_backward(mx.io.DataBatch([batch], [labels]))
    return module._exec_group.grad_arrays[module._exec_group.param_names.index('fc3_bias')][
        0].asnumpy()


def test_label_smoothing_changes_the_gradient_and_the_soft_head_agrees(records):
    """SoftmaxOutput(smooth_alpha=eps) moves each row's target from one-hot to 1-eps / eps/(C-1):
    the fc3 bias gradient, the sum over rows of (softmax - target), moves by exactly that.
    The soft-label head that mixup trains gives the same gradient for the same targets."""
    batch = next(iter(iterators.get_train_iter(records[0], 8, SHAPE, std_rgb=iterators.STD_RGB,
                                               pca_noise=0, num_threads=1)))
    data, labels = batch.data[0], batch.label[0]
    plain = symbols.get_symbol('alexnet', 2, SHAPE, dropout=0)
    mx.random.seed(0)
    probe = mx.mod.Module(plain, context=mx.cpu())
    probe.bind(data_shapes=[('data', data.shape)], label_shapes=[('softmax_label', (8,))])
    probe.init_params(mx.init.Xavier())
    weights = probe.get_params()[0]
    hard = _gradients(plain, data, labels, weights)
    smooth = _gradients(symbols.get_symbol('alexnet', 2, SHAPE, dropout=0, label_smoothing=0.2),
                        data, labels, weights)
    counts = np.bincount(labels.asnumpy().astype(int), minlength=2)
    assert counts.min() > 0
    np.testing.assert_allclose(smooth - hard, 0.2 * counts - 0.2 * counts[::-1], atol=1e-5)
    targets = mx.nd.array(soft_targets(labels.asnumpy(), 2, 0.2))
    head = mixing.soft_label_head(plain)
    np.testing.assert_allclose(_gradients(head, data, targets, weights), smooth, atol=1e-5)


# ------------------------------------------------------------------ mixup and cutmix

def test_fit_mixes_labels_then_stops_for_the_last_epochs(records, tmp_path):
    """The training data fit builds: soft labels mixed from two classes in epoch 1, plain
    (smoothed) one-hot targets in the last --mixup-off-epochs; then a run trains on them and
    checkpoints the standard SoftmaxOutput graph, its weights unlike the unmixed run's."""
    args = _args(records, str(tmp_path / 'mixed'), '--num-epochs', '2', '--mixup', '0.4',
                 '--mixup-off-epochs', '1', '--label-smoothing', '0.1')
    run = prepare(args, check_flags(args), None, args.model_prefix, writes=False)
    assert run.train_symbol.list_outputs() == ['softmax_output', 'soft_ce_output']
    assert run.train_symbol.list_arguments() == run.symbol.list_arguments()
    first, last = [np.concatenate([b.label[0].asnumpy()[:8 - b.pad] for b in
                                   run.make_train_iter(epoch)]) for epoch in (1, 2)]
    assert first.shape == last.shape == (18, 2)
    assert not np.isin(np.round(first, 5), [0.1, 0.9]).all()     # mixed shares
    assert np.isin(np.round(last, 5), [0.1, 0.9]).all()          # smoothed one-hot only
    np.testing.assert_allclose(first.sum(axis=1), 1, atol=1e-6)

    fit(_args(records, args.model_prefix, '--num-epochs', '1', '--mixup', '0.4',
              '--label-smoothing', '0.1'))
    sym, mixed, _ = mx.model.load_checkpoint(args.model_prefix, 1)
    assert sym.list_outputs() == ['softmax_output']
    assert json.loads(sym.tojson())['nodes'][-1]['attrs']['smooth_alpha'] == '0.1'
    fit(_args(records, str(tmp_path / 'plain'), '--num-epochs', '1',
              '--label-smoothing', '0.1'))
    _, plain, _ = mx.model.load_checkpoint(str(tmp_path / 'plain'), 1)
    assert sorted(plain) == sorted(mixed)
    # (the same run twice agrees to 1e-6: tests/test_fit.py)
    assert np.abs(plain['fc3_weight'].asnumpy() - mixed['fc3_weight'].asnumpy()).max() > 1e-5


def test_recipe_flags_that_do_not_fit_together(records, tmp_path):
    for flags, message in (
            (['--mixup-off-epochs', '1'], 'needs --mixup or --cutmix'),
            (['--cutmix', '1', '--mixup-off-epochs', '2'], 'leaves none of the 2 epochs'),
            (['--rrc-ratio', '1,2'], 'add --random-resized-crop')):
        with pytest.raises(UsageError, match=message):
            fit(_args(records, str(tmp_path / 'x'), '--num-epochs', '2', *flags))
    assert not os.listdir(str(tmp_path))


# ------------------------------------------------------------------ average of the weights

def test_ema_update_is_the_decayed_average(records):
    module = mx.mod.Module(symbols.get_symbol('alexnet', 2, SHAPE, dropout=0), context=mx.cpu())
    module.bind(data_shapes=[('data', (4,) + SHAPE)], label_shapes=[('softmax_label', (4,))])
    module.init_params(mx.init.Xavier())
    start = {k: v.asnumpy() for k, v in module.get_params()[0].items()}
    ema = ModelEMA(module, 0.9)
    moved = {k: mx.nd.array(v + 1.0) for k, v in start.items()}
    module.set_params(moved, {})
    ema.update(1)                       # decay min(0.9, 2/11)
    ema.update(100)                     # decay 0.9
    first = 2 / 11. * start['fc3_bias'] + 9 / 11. * (start['fc3_bias'] + 1)
    np.testing.assert_allclose(ema.arg_params['fc3_bias'].asnumpy(),
                               0.9 * first + 0.1 * (start['fc3_bias'] + 1), rtol=1e-6)


@pytest.fixture(scope='module')
def ema_run(records, tmp_path_factory):
    """Two uninterrupted epochs with every recipe flag (mixing off in the last), on two
    devices."""
    prefix = str(tmp_path_factory.mktemp('ema') / 'full')
    return fit(_args(records, prefix, '--num-epochs', '2', '--mixup-off-epochs', '1',
                     '--cpus', '2', *RECIPE))


@pytest.mark.slow
def test_ema_is_validated_checkpointed_and_scored(records, ema_run):
    prefix = ema_run.prefix
    raw, averaged = _params(ckpt.params_path(prefix, 2)), _params(prefix + '-0002-ema.params')
    assert sorted(raw) == sorted(averaged)
    assert max(np.abs(raw[k] - averaged[k]).max() for k in raw) > 1e-4
    held = dict({'arg:' + k: v.asnumpy() for k, v in ema_run.ema.arg_params.items()},
                **{'aux:' + k: v.asnumpy() for k, v in ema_run.ema.aux_params.items()})
    assert_same_params(averaged, held, atol=0)
    meta = ckpt.read_sidecar(prefix)
    assert meta['checkpoints']['2']['ema'] == 'full-0002-ema.params'
    assert meta['train_metrics'] == ("train top-k: against each image's dominant label; train "
                                     "cross-entropy: against its mixed, smoothed target")

    # The val loss the run logged for the average is the scorer's on the saved file.
    row = metrics_rows(prefix)[-1]
    loaded = model.load_model(*model.resolve_checkpoint(prefix, ema=True))
    assert loaded.params_file == prefix + '-0002-ema.params'
    scored = scoring.score(loaded, records[1], 8, progress=False)
    picked = np.where(scored.top_classes == scored.labels[:, None], scored.top_probs, 0).sum(1)
    assert float(row['val_ema_loss']) == pytest.approx(-np.log(picked).mean(), abs=1e-4)
    assert float(row['val_ema_top1']) == pytest.approx(scored.accuracy(1), abs=1e-4)
    with pytest.raises(UsageError, match='not both'):
        model.resolve_checkpoint(params=prefix + '-0002-ema.params', ema=True)

    # P-best.params holds whichever weights of the best epoch validated better.
    best = meta['best_epoch']
    source = ('%s-%04d-ema.params' if meta['best_weights'] == 'ema' else '%s-%04d.params') % (
        prefix, best)
    assert_same_params(_params(ckpt.best_params_path(prefix)), _params(source), atol=0)
    scores = [max(float(r['val_top1']), float(r['val_ema_top1'])) for r in metrics_rows(prefix)]
    assert meta['best_val_top1'] == pytest.approx(max(scores))


@pytest.mark.slow
def test_resume_continues_every_recipe_flag_exactly(records, ema_run, tmp_path):
    """One epoch, then a resume to two, give the uninterrupted run's weights and average:
    the mixing, erasing and EMA draws and state come back from the seed and the checkpoint.
    (The first epoch runs as the 2-epoch run's does: mixed.)"""
    part = str(tmp_path / 'part')
    fit(_args(records, part, '--num-epochs', '1', '--cpus', '2', *RECIPE))
    fit(_args(records, part, '--num-epochs', '2', '--load-epoch', '1', '--mixup-off-epochs',
              '1', '--cpus', '2', *RECIPE))
    full = ema_run.prefix
    assert_same_params(_params(ckpt.params_path(full, 2)), _params(ckpt.params_path(part, 2)))
    assert_same_params(_params(full + '-0002-ema.params'), _params(part + '-0002-ema.params'))
    assert [r['val_ema_loss'] for r in metrics_rows(full)] == [r['val_ema_loss'] for r in metrics_rows(part)]

    # A checkpoint without its average cannot continue one.
    os.remove(part + '-0001-ema.params')
    with pytest.raises(UsageError, match='epoch 1 of .* has no average of the weights'):
        fit(_args(records, part, '--num-epochs', '2', '--load-epoch', '1', *RECIPE))


@pytest.mark.slow
def test_recipe_flags_under_dist_sync(records, tmp_path):
    """Two workers and a server: rank 0 keeps, validates and saves the average; every
    worker trains on mixed labels of its own shard."""
    train, val = records
    prefix = str(tmp_path / 'dist')
    tag = uuid.uuid4().hex
    command = [sys.executable, os.path.join(REPO, 'launch.py'), '--env', '%s:%s' % (TAG, tag),
               '-n', '2', '-s', '1', '--timeout', '120', sys.executable,
               os.path.join(REPO, 'train_imagenet.py'), '--kv-store', 'dist_sync',
               '--data-train', train, '--data-val', val, '--model-prefix', prefix,
               '--num-epochs', '1'] + QUICK[:3] + ['4'] + QUICK[4:] + RECIPE
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=150,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not tagged_processes(tag)
    rows = metrics_rows(prefix)
    assert [r['epoch'] for r in rows] == ['1'] and rows[0]['val_ema_top1']
    averaged = _params(prefix + '-0001-ema.params')
    raw = _params(ckpt.params_path(prefix, 1))
    assert max(np.abs(raw[k] - averaged[k]).max() for k in raw) > 1e-5
    log = proc.stdout + proc.stderr
    assert log.count("train top-k: against each image's dominant label") == 2, log


# ------------------------------------------------------------------ held-out test split

def test_converter_holds_out_a_stratified_test_split(records, tmp_path):
    photos = os.path.join(os.path.dirname(records[0]), 'photos')
    both = convert(photos, str(tmp_path / 'three'), val_ratio=0.25, test_ratio=0.25,
                   resize=32, progress=False, num_workers=1)
    val_only = convert(photos, str(tmp_path / 'two'), val_ratio=0.25, resize=32,
                       progress=False, num_workers=1)
    listed = {}
    for split, path in both.lists.items():
        with open(path) as handle:
            listed[split] = {line.split('\t')[2].strip() for line in handle}
        iterators.check_record_file(both.records[split], 2)
    assert sorted(listed) == ['test', 'train', 'val']
    assert both.counts['val'] == both.counts['test'] == {0: 3, 1: 3}
    assert not listed['test'] & (listed['train'] | listed['val'])
    assert not listed['val'] & listed['train']
    assert sum(len(v) for v in listed.values()) == 24
    with open(val_only.lists['val']) as handle:
        assert {line.split('\t')[2].strip() for line in handle} == listed['val']
    with pytest.raises(UsageError, match='test ratio'):
        convert(photos, str(tmp_path / 'none'), val_ratio=0.5, test_ratio=0.5, progress=False)
