"""Ctrl-C in the middle of an epoch: train_imagenet.py saves a loadable checkpoint of the state
reached, marks it partial, exits with 130, and the run resumes from it."""
import json
import signal

import mxnet as mx
import pytest

from tests.fit_helpers import QUICK, Training, run_train, tiny_photo_records


@pytest.mark.slow
def test_ctrl_c_mid_epoch_leaves_loadable_checkpoint(datasets_dir, tmp_path):
    train, val = tiny_photo_records(datasets_dir, str(tmp_path))
    prefix = str(tmp_path / 'stopped')
    flags = QUICK + ['--data-train', train, '--data-val', val, '--model-prefix', prefix,
                     '--batch-size', '2', '--num-epochs', '50', '--disp-batches', '1']
    run = Training(flags)
    run.wait_for('Epoch[2] Batch [1-2]')   # epoch 2 is under way
    run.proc.send_signal(signal.SIGINT)
    status, log = run.finish()             # (and no process of it is left)
    assert status == 130, log
    assert 'Traceback' not in log
    meta = json.load(open(prefix + '-meta.json'))
    epoch = meta['epoch']
    entry = meta['checkpoints'][str(epoch)]
    assert epoch >= 2 and entry['partial'] and 0 < entry['batches'] < 9
    assert 'stopped in epoch %d after %d of 9 batches' % (epoch, entry['batches']) in log
    _, arg, _ = mx.model.load_checkpoint(prefix, epoch)
    assert arg['fc3_weight'].shape == (2, 4096)
    assert entry['num_update'] == (epoch - 1) * 9 + entry['batches']

    resumed = run_train(flags[:-4] + ['--num-epochs', str(epoch + 1), '--load-epoch', str(epoch)],
                        timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    meta = json.load(open(prefix + '-meta.json'))
    assert meta['epoch'] == epoch + 1
    assert meta['checkpoints'][str(epoch + 1)]['num_update'] == entry['num_update'] + 9
