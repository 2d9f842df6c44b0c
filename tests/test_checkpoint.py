"""engine.checkpoint: atomic files readable like any other, and pruning of old epochs."""
import os
import stat

import mxnet as mx

from engine import checkpoint as ckpt
from engine.fit import fit
from tests.fit_helpers import QUICK, parse, tiny_photo_records


def test_atomic_write_follows_the_umask(tmp_path):
    path = str(tmp_path / 'x.txt')
    old = os.umask(0o022)
    try:
        ckpt.atomic_write(path, lambda tmp: open(tmp, 'w').write('x'))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(str(tmp_path)) == ['x.txt']


def test_prune_keeps_the_last_epochs(tmp_path):
    prefix = str(tmp_path / 'p')
    for epoch in range(1, 6):
        for path in (ckpt.params_path(prefix, epoch), ckpt.states_path(prefix, epoch)):
            open(path, 'w').close()
    assert ckpt.prune_epochs(prefix, 5, 0) == []
    assert ckpt.prune_epochs(prefix, 5, 2) == [1, 2, 3]
    assert sorted(os.listdir(str(tmp_path))) == ['p-0004.params', 'p-0004.states',
                                                 'p-0005.params', 'p-0005.states']


def test_training_keeps_last_k_epochs_and_the_best(datasets_dir, tmp_path):
    train, val = tiny_photo_records(datasets_dir, str(tmp_path), per_class=4)
    prefix = str(tmp_path / 'run')
    fit(parse(QUICK + ['--data-train', train, '--data-val', val, '--model-prefix', prefix,
                       '--num-epochs', '3', '--keep-checkpoints', '1']))
    assert not os.path.exists(ckpt.params_path(prefix, 1))
    assert not os.path.exists(ckpt.states_path(prefix, 2))
    mx.model.load_checkpoint(prefix, 3)
    assert os.path.exists(ckpt.best_params_path(prefix))
    assert sorted(ckpt.read_sidecar(prefix)['checkpoints']) == ['3']


def test_recorded_epochs_follow_the_sidecar_not_the_files(tmp_path):
    prefix = str(tmp_path / 'p')
    for epoch in (1, 2, 3, 5):
        open(ckpt.params_path(prefix, epoch), 'w').close()
    assert ckpt.recorded_epochs(prefix) == [1, 2, 3, 5]          # no sidecar: stock checkpoint
    assert ckpt.latest_epoch(prefix) == 5
    # Resumed from 2, then epoch 3 saved again: 5 belongs to the abandoned continuation.
    ckpt.write_sidecar(prefix, {'epoch': 3, 'checkpoints': {'1': {}, '2': {}, '3': {}, '4': {}}})
    assert ckpt.recorded_epochs(prefix) == [1, 2, 3]               # 4: listed, file gone
    assert ckpt.latest_epoch(prefix) == 3
    assert ckpt.latest_epoch(str(tmp_path / 'none')) is None
