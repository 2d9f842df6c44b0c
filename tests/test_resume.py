"""train_imagenet.py --load-epoch auto: the command a restarted job runs again. It starts a
run, resumes it exactly as --load-epoch N would, finishes at once when nothing is left to
train, and repeats a last epoch that was stopped partway."""
import json
import os
import re
import shutil
import signal

import mxnet as mx
import numpy as np
import pytest

from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.train.resume import resolve_load_epoch
from tests.fit_helpers import QUICK, Training, parse, run_train, tiny_photo_records

TIMING = ('images_per_sec', 'epoch_seconds', 'wall_seconds')


@pytest.fixture(scope='module')
def records(datasets_dir, tmp_path_factory):
    return tiny_photo_records(datasets_dir, str(tmp_path_factory.mktemp('photos')))


def flags(records, prefix, *extra):
    return QUICK + ['--data-train', records[0], '--data-val', records[1], '--model-prefix',
                    prefix, '--lr-step-epochs', '1'] + list(extra)


def csv_rows(prefix):
    with open(prefix + '-metrics.csv') as handle:
        lines = handle.read().splitlines()
    header = lines[0].split(',')
    return [{k: v for k, v in zip(header, line.split(',')) if k not in TIMING}
            for line in lines[1:]]


@pytest.fixture(scope='module')
def one_epoch(records, tmp_path_factory):
    """A run of one epoch, started by --load-epoch auto: its folder (copy it to change it)."""
    folder = tmp_path_factory.mktemp('one-epoch')
    prefix = str(folder / 'alexnet')
    started = run_train(flags(records, prefix, '--num-epochs', '1', '--load-epoch', 'auto'),
                        timeout=300)
    assert started.returncode == 0, started.stderr
    assert '--load-epoch auto: %s holds no complete checkpoint; starting a new run' % prefix \
        in started.stderr
    return folder


@pytest.mark.slow
def test_auto_resumes_like_a_manual_resume_and_then_has_nothing_to_do(records, one_epoch,
                                                                       tmp_path):
    first, second = str(tmp_path / 'a' / 'alexnet'), str(tmp_path / 'b' / 'alexnet')
    shutil.copytree(str(one_epoch), str(tmp_path / 'a'))
    shutil.copytree(str(one_epoch), str(tmp_path / 'b'))

    manual = run_train(flags(records, first, '--num-epochs', '2', '--load-epoch', '1'),
                       timeout=300)
    auto = run_train(flags(records, second, '--num-epochs', '2', '--load-epoch', 'auto'),
                     timeout=300)
    assert manual.returncode == auto.returncode == 0, auto.stderr
    assert '--load-epoch auto: resuming %s from epoch 1' % second in auto.stderr
    # the same epoch 2: weights, metrics (lr stepped after epoch 1), update count
    _, by_hand, _ = mx.model.load_checkpoint(first, 2)
    _, by_auto, _ = mx.model.load_checkpoint(second, 2)
    for name, value in by_hand.items():
        np.testing.assert_array_equal(value.asnumpy(), by_auto[name].asnumpy())
    assert csv_rows(first) == csv_rows(second)
    assert [float(row['lr']) for row in csv_rows(second)] == pytest.approx([0.01, 0.001])
    metas = [json.load(open(p + '-meta.json')) for p in (first, second)]
    assert metas[0]['checkpoints'] == metas[1]['checkpoints']

    # run again: everything is trained, so nothing is touched
    files = {name: os.path.getmtime(str(tmp_path / 'b' / name))
             for name in os.listdir(str(tmp_path / 'b'))}
    again = run_train(flags(records, second, '--load-epoch', 'auto'), timeout=300)
    assert again.returncode == 0, again.stderr
    assert ('--load-epoch auto: %s is complete: epoch 2 of --num-epochs 2 is saved; nothing '
            'to train (raise --num-epochs to continue it)' % second) in again.stderr
    assert 'Epoch[' not in again.stderr
    assert files == {name: os.path.getmtime(str(tmp_path / 'b' / name))
                     for name in os.listdir(str(tmp_path / 'b'))}


@pytest.mark.slow
def test_auto_repeats_a_last_epoch_that_was_stopped_partway(records, tmp_path):
    prefix = str(tmp_path / 'alexnet')
    stopped = Training(flags(records, prefix, '--batch-size', '2', '--num-epochs', '50',
                             '--disp-batches', '1'))
    stopped.wait_for('Epoch[2] Batch [1-2]')
    stopped.proc.send_signal(signal.SIGTERM)
    status, log = stopped.finish()
    assert status == 143, log
    meta = json.load(open(prefix + '-meta.json'))
    last = meta['epoch']
    assert last >= 2 and meta['checkpoints'][str(last)]['partial']

    # --num-epochs ends with the partial epoch: it is trained again, in full
    done = run_train(flags(records, prefix, '--batch-size', '2', '--num-epochs', str(last),
                           '--load-epoch', 'auto'), timeout=300)
    assert done.returncode == 0, done.stderr
    assert ('--load-epoch auto: epoch %d of %s was stopped partway; repeating it from epoch %d'
            % (last, prefix, last - 1)) in done.stderr
    meta = json.load(open(prefix + '-meta.json'))
    entry = meta['checkpoints'][str(last)]
    assert meta['epoch'] == last and not entry['partial'] and entry['batches'] == 9
    assert entry['num_update'] == 9 * last


@pytest.mark.slow
def test_auto_replaces_what_a_run_killed_before_its_first_checkpoint_left(records, one_epoch,
                                                                          tmp_path):
    """A kill between a first save's files leaves P-symbol.json alone: no checkpoint to
    resume, and no reason to refuse the prefix (without auto it is refused, as a run)."""
    prefix = str(tmp_path / 'alexnet')
    shutil.copy(str(one_epoch / 'alexnet-symbol.json'), prefix + '-symbol.json')
    restarted = run_train(flags(records, prefix, '--num-epochs', '1', '--load-epoch', 'auto'),
                          timeout=300)
    assert restarted.returncode == 0, restarted.stderr
    assert ('--load-epoch auto: %s holds no complete checkpoint; starting afresh (replacing 1 '
            'files of a run that saved none)' % prefix) in restarted.stderr
    assert json.load(open(prefix + '-meta.json'))['epoch'] == 1


@pytest.mark.parametrize('extra,message', [
    ([], '--load-epoch auto needs --model-prefix'),
    (['--model-prefix', 'p', '--overwrite'], 'give --load-epoch auto (resume the run) or '
                                             '--overwrite (replace it), not both'),
    (['--model-prefix', 'p', '--pretrained', 'w.params'], 'cannot take --pretrained'),
])
def test_auto_refuses_what_a_restart_would_get_wrong(extra, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        resolve_load_epoch(parse(['--load-epoch', 'auto'] + extra))


def test_load_epoch_is_a_number_or_auto():
    assert parse(['--load-epoch', 'auto']).load_epoch == 'auto'
    assert parse(['--load-epoch', '7']).load_epoch == 7
    done = run_train(['--load-epoch', 'latest'], timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        "argument --load-epoch: must be an epoch number >= 1 or auto, got 'latest'")
