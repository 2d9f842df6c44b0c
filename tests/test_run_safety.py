"""A training run never loses another run's work or its own: real train_imagenet.py processes,
real signals, real locks, real read-only folders and full disks.

Every test here runs the trainer as a child process and, after every signal or kill, checks
that no process of it is left."""
import csv
import glob
import json
import os
import signal
import socket
import stat
import time

import mxnet as mx
import numpy as np
import pytest

import symbols
from alexnet_mxnet.base import checkpoint as ckpt
from tests.conftest import without_root_file_access
from tests.fit_helpers import QUICK, Training, run_train, tiny_photo_records

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def records(datasets_dir, tmp_path_factory):
    return tiny_photo_records(datasets_dir, str(tmp_path_factory.mktemp('safety')))


def _flags(records, *extra, val=True):
    train, valid = records
    return QUICK + ['--data-train', train] + (['--data-val', valid] if val else []) + list(extra)


def _one_line_error(status, log):
    lines = log.strip().splitlines()
    assert status == 2, log
    assert len(lines) == 1 and lines[0].startswith('train_imagenet.py: error: '), log
    return lines[0]


def _epochs_in_csv(prefix):
    with open(ckpt.metrics_path(prefix), newline='') as handle:
        return [row['epoch'] for row in csv.DictReader(handle)]


def _litter(folder):
    return glob.glob(os.path.join(str(folder), '.*.tmp'))


def test_two_runs_started_in_one_folder_get_separate_default_prefixes(records, tmp_path):
    """The second run starts while the first is still in epoch 1 (held there by SIGSTOP), when
    no checkpoint of the first exists yet."""
    flags = _flags(records, '--num-epochs', '1')
    first = Training(flags, cwd=str(tmp_path))
    first.wait_for('training alexnet')
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = Training(flags, cwd=str(tmp_path))
        second.wait_for('training alexnet')
    finally:
        os.kill(first.pid, signal.SIGCONT)
    (status1, log1), (status2, log2) = first.finish(), second.finish()
    assert status1 == status2 == 0, log1 + log2
    assert 'checkpoints: checkpoints/alexnet-*' in log1
    assert 'checkpoints: checkpoints/alexnet-2-*' in log2
    for name in ('alexnet', 'alexnet-2'):
        prefix = str(tmp_path / 'checkpoints' / name)
        assert ckpt.recorded_epochs(prefix) == [1] and _epochs_in_csv(prefix) == ['1']
    assert sorted(os.listdir(str(tmp_path / 'checkpoints'))) == sorted(
        'alexnet%s-%s' % (run, name) for run in ('', '-2') for name in (
            'symbol.json', '0001.params', '0001.states', 'meta.json', 'metrics.csv',
            'curves.png', 'best.params'))


def test_a_prefix_holding_a_run_is_refused_and_overwrite_leaves_nothing_stale(records, tmp_path):
    prefix = str(tmp_path / 'run')
    old = run_train(_flags(records, '--model-prefix', prefix, '--num-epochs', '3',
                           '--keep-checkpoints', '0'), timeout=300)
    assert old.returncode == 0, old.stderr
    before = {name: open(str(tmp_path / name), 'rb').read() for name in os.listdir(str(tmp_path))}

    again = run_train(_flags(records, '--model-prefix', prefix, '--num-epochs', '1'), timeout=120)
    line = _one_line_error(again.returncode, again.stderr)
    assert 'already holds a training run' in line and '--load-epoch 3' in line
    assert '--overwrite' in line
    assert {name: open(str(tmp_path / name), 'rb').read()
            for name in os.listdir(str(tmp_path))} == before

    new = run_train(_flags(records, '--model-prefix', prefix, '--num-epochs', '1',
                           '--overwrite'), timeout=120)
    assert new.returncode == 0, new.stderr
    assert sorted(os.listdir(str(tmp_path))) == sorted('run-' + name for name in (
        'symbol.json', '0001.params', '0001.states', 'meta.json', 'metrics.csv', 'curves.png',
        'best.params'))
    meta = ckpt.read_sidecar(prefix)
    assert sorted(meta['checkpoints']) == ['1'] and meta['epoch'] == 1
    assert _epochs_in_csv(prefix) == ['1']
    best = mx.nd.load(ckpt.best_params_path(prefix))
    first = mx.nd.load(ckpt.params_path(prefix, 1))
    assert all(np.array_equal(best[k].asnumpy(), first[k].asnumpy()) for k in first)


def test_a_second_run_on_a_busy_prefix_is_refused_with_the_first_ones_pid(records, tmp_path):
    prefix = str(tmp_path / 'run')
    flags = _flags(records, '--model-prefix', prefix, '--num-epochs', '1')
    first = Training(flags)
    first.wait_for('training alexnet')
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = run_train(flags + ['--overwrite'], timeout=120)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    line = _one_line_error(second.returncode, second.stderr)
    assert 'in use by another training run (PID %d)' % first.pid in line
    status, log = first.finish()
    assert status == 0, log
    assert ckpt.recorded_epochs(prefix) == [1] and _epochs_in_csv(prefix) == ['1']
    assert not os.path.exists(prefix + '.lock')


def test_a_run_killed_while_saving_leaves_nothing_that_blocks_or_litters_the_next(records,
                                                                                   tmp_path):
    prefix = str(tmp_path / 'run')
    flags = _flags(records, '--model-prefix', prefix, '--num-epochs', '3', val=False)
    killed = Training(flags)
    killed.wait_for_file(tmp_path, '.run-0001.params.*.tmp')
    killed.proc.kill()
    status, _ = killed.finish()
    assert status == -signal.SIGKILL
    assert _litter(tmp_path) and os.path.exists(prefix + '.lock')   # its lock, never released

    # The next run on the prefix takes the dead run's lock over and removes its temporary
    # files, even when it is refused: the killed run left a run's first file.
    refused = run_train(flags, timeout=120)
    line = _one_line_error(refused.returncode, refused.stderr)
    assert 'already holds a training run' in line and '--load-epoch' not in line
    assert not _litter(tmp_path) and not os.path.exists(prefix + '.lock')
    fresh = run_train(flags + ['--overwrite', '--num-epochs', '1'], timeout=120)
    assert fresh.returncode == 0, fresh.stderr
    assert ckpt.recorded_epochs(prefix) == [1] and not _litter(tmp_path)


@pytest.mark.parametrize('case', ['read-only folder', 'a file in the path', 'full disk'])
def test_a_prefix_that_cannot_be_written_is_refused_before_training(case, records, tmp_path,
                                                                    small_disk):
    """Today: found when epoch 1 is saved (its work lost), as a traceback or an error line."""
    preexec, expected = None, 'cannot write checkpoints to'
    if case == 'read-only folder':
        folder = tmp_path / 'readonly'
        folder.mkdir()
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
        prefix, preexec = folder / 'run', without_root_file_access
    elif case == 'a file in the path':
        (tmp_path / 'notes.txt').write_text('not a folder')
        prefix = tmp_path / 'notes.txt' / 'run'
    else:
        prefix, expected = os.path.join(small_disk(256), 'run'), 'MB free'
    proc = run_train(_flags(records, '--model-prefix', prefix, '--num-epochs', '1',
                            '--disp-batches', '1'), timeout=120, preexec_fn=preexec)
    line = _one_line_error(proc.returncode, proc.stderr)
    assert expected in line and str(prefix) in line and 'Epoch[1]' not in proc.stderr


def _checkpoint_bytes(image_shape):
    """Bytes of one P-NNNN.params of AlexNet with 2 classes (float32)."""
    sym = symbols.get_symbol('alexnet', 2, image_shape)
    shapes, _, aux = sym.infer_shape(data=(1,) + image_shape)
    return 4 * sum(int(np.prod(s)) for n, s in zip(sym.list_arguments(), shapes)
                   if n not in ('data', 'softmax_label'))


def test_a_disk_that_fills_up_mid_run_keeps_the_previous_checkpoint(records, tmp_path,
                                                                     small_disk):
    """Room for epoch 1's weights, optimizer state and best copy, and 8 MB more: the save of
    epoch 2 runs out of space."""
    folder = small_disk(3 * _checkpoint_bytes((3, 67, 67)) // 1024 + 8 * 1024)
    prefix = os.path.join(folder, 'run')
    proc = run_train(_flags(records, '--model-prefix', prefix, '--num-epochs', '3'), timeout=300)
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
    assert line == ('train_imagenet.py: error: could not save checkpoint 2: %s: No space left on '
                    'device (the disk is full); checkpoint 1 is complete: resume with '
                    '--model-prefix %s --load-epoch 1' % (ckpt.params_path(prefix, 2), prefix))
    assert ckpt.recorded_epochs(prefix) == [1] and _epochs_in_csv(prefix) == ['1']
    mx.model.load_checkpoint(prefix, 1)
    assert not _litter(folder) and not os.path.exists(prefix + '.lock')


def test_a_second_ctrl_c_while_saving_leaves_no_half_checkpoint(records, tmp_path):
    prefix = str(tmp_path / 'run')
    flags = _flags(records, '--model-prefix', prefix, '--batch-size', '2')
    run = Training(flags + ['--num-epochs', '50', '--disp-batches', '1'])
    run.wait_for('Epoch[2] Batch [1-2]')
    run.proc.send_signal(signal.SIGINT)           # stop: save the partial epoch 2
    run.wait_for_file(tmp_path, '.run-0002.params.*.tmp')
    run.proc.send_signal(signal.SIGINT)           # abort, in the middle of that save
    status, log = run.finish()
    assert status == 130 and 'Traceback' not in log, log
    assert log.strip().splitlines()[-1] == 'train_imagenet.py: error: interrupted'
    assert ('aborted in epoch 2 without saving it; checkpoint 1 is complete: resume with '
            '--model-prefix %s --load-epoch 1' % prefix) in log
    assert ckpt.recorded_epochs(prefix) == [1] and _epochs_in_csv(prefix) == ['1']
    assert not _litter(tmp_path)

    # What the aborted save left of epoch 2 is no checkpoint: resuming it is refused.
    refused = run_train(flags + ['--num-epochs', '3', '--load-epoch', '2'], timeout=120)
    line = _one_line_error(refused.returncode, refused.stderr)
    assert 'epoch 2 of %s is not a complete checkpoint' % prefix in line
    assert line.endswith('complete epochs: 1')
    resumed = run_train(flags + ['--num-epochs', '2', '--load-epoch', '1'], timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert _epochs_in_csv(prefix) == ['1', '2']
    assert json.load(open(ckpt.sidecar_path(prefix)))['checkpoints']['2']['num_update'] == 18


def test_ctrl_c_ends_a_run_stuck_waiting_for_a_parameter_server(records, tmp_path):
    """A dist worker whose scheduler never answers waits inside ps-lite's C++ code, where
    Python runs no signal handler: today neither Ctrl-C nor a second one ends it."""
    with socket.socket() as probe:       # a port nobody listens on
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, DMLC_ROLE='worker', DMLC_PS_ROOT_URI='127.0.0.1',
               DMLC_PS_ROOT_PORT=str(port), DMLC_NUM_WORKER='1', DMLC_NUM_SERVER='1')
    run = Training(_flags(records, '--model-prefix', tmp_path / 'run', '--kv-store',
                          'dist_sync'), env=env)
    time.sleep(6)                         # imported, checked, now waiting for the scheduler
    assert run.proc.poll() is None, run.finish()[1]
    run.proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    status, log = run.finish(timeout=30)
    assert status == 130 and time.monotonic() - started < 15, log
    assert log.strip().splitlines()[-1].startswith('train_imagenet.py: error: interrupted')
    assert 'Traceback' not in log


def test_ctrl_c_while_mxnet_loads_is_one_line(records, tmp_path):
    """The first seconds of a run import MXNet; a Ctrl-C then was a KeyboardInterrupt
    traceback (the imports ran outside run_cli)."""
    run = Training(_flags(records, '--model-prefix', tmp_path / 'run'))
    time.sleep(0.5)
    run.proc.send_signal(signal.SIGINT)
    status, log = run.finish(timeout=60)
    assert status == 130 and log.strip().splitlines() == ['train_imagenet.py: error: interrupted']


def test_a_resume_from_an_earlier_epoch_forgets_the_later_ones_at_once(records, tmp_path):
    """Resumed from 1 of 3 and killed in epoch 2, before any new save: the run's record says
    epoch 1 (inference must not read the abandoned epochs 2 and 3 as the run's latest)."""
    prefix = str(tmp_path / 'run')
    flags = _flags(records, '--model-prefix', prefix, '--num-epochs', '3')
    assert run_train(flags, timeout=300).returncode == 0
    resumed = Training(flags + ['--load-epoch', '1', '--batch-size', '2', '--disp-batches', '1'])
    resumed.wait_for('Epoch[2] Batch [1-2]')
    os.kill(resumed.pid, signal.SIGKILL)
    resumed.finish()
    assert ckpt.recorded_epochs(prefix) == [1] and ckpt.latest_epoch(prefix) == 1
    assert _epochs_in_csv(prefix) == ['1']
