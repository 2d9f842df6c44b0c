"""alexnet_mxnet.base.checkpoint: atomic files readable like any other, and pruning of old epochs that keeps
every kept epoch resumable."""
import os
import stat

import mxnet as mx
import numpy as np

from alexnet_mxnet.base import checkpoint as ckpt
from alexnet_mxnet.base.files import atomic_write
from alexnet_mxnet.train.fit import fit
from tests.fit_helpers import QUICK, parse, tiny_photo_records


def test_atomic_write_follows_the_umask(tmp_path):
    path = str(tmp_path / 'x.txt')
    old = os.umask(0o022)
    try:
        atomic_write(path, lambda tmp: open(tmp, 'w').write('x'))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(str(tmp_path)) == ['x.txt']


def test_prune_keeps_the_last_epochs(tmp_path):
    prefix = str(tmp_path / 'p')
    for epoch in range(1, 6):
        for path in (ckpt.params_path(prefix, epoch), ckpt.states_path(prefix, epoch)):
            open(path, 'w').close()
    assert ckpt.epochs_to_prune(prefix, 5, 0) == []
    assert ckpt.epochs_to_prune(prefix, 5, 2, spare=2) == [1, 3]
    ckpt.remove_epochs(prefix, ckpt.epochs_to_prune(prefix, 5, 2))
    assert sorted(os.listdir(str(tmp_path))) == ['p-0004.params', 'p-0004.states',
                                                 'p-0005.params', 'p-0005.states']
    assert ckpt.epochs_to_prune(prefix, 5, 2) == []


def test_training_keeps_last_k_epochs_and_the_best(datasets_dir, tmp_path):
    train, val = tiny_photo_records(datasets_dir, str(tmp_path), per_class=4)
    prefix = str(tmp_path / 'run')
    result = fit(parse(QUICK + ['--data-train', train, '--data-val', val, '--model-prefix',
                                prefix, '--num-epochs', '3', '--keep-checkpoints', '1']))
    # Epoch 3 stays, and the best of epochs 1-3, which P-best.params returns to on a resume
    # from epoch 3 (here the best is also the run's best, so P-best.params holds it).
    best = result.meta['best_epoch']
    kept = sorted({3, best})
    for epoch in (1, 2, 3):
        for path in (ckpt.params_path(prefix, epoch), ckpt.states_path(prefix, epoch)):
            assert os.path.exists(path) == (epoch in kept), path
    mx.model.load_checkpoint(prefix, 3)
    assert os.path.exists(ckpt.best_params_path(prefix))
    assert sorted(ckpt.read_sidecar(prefix)['checkpoints']) == [str(e) for e in kept]
    assert ckpt.recorded_epochs(prefix) == kept


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


def _one_photo(val, path, label):
    """The first photo of ``val`` alone, labelled ``label``: a validation set on which a model
    scores 0 or 1."""
    reader = mx.recordio.MXIndexedRecordIO(val[:-4] + '.idx', val, 'r')
    header, payload = mx.recordio.unpack(reader.read_idx(reader.keys[0]))
    reader.close()
    writer = mx.recordio.MXIndexedRecordIO(path + '.idx', path + '.rec', 'w')
    writer.write_idx(0, mx.recordio.pack(header._replace(label=float(label)), payload))
    writer.close()
    return path + '.rec'


def test_every_kept_epoch_resumes_after_pruning(datasets_dir, tmp_path):
    """--keep-checkpoints 2: epoch 1 is the best up to epoch 2, epoch 3 the best of all. A
    resume from epoch 2 brings P-best.params back to epoch 1, whose files pruning therefore
    keeps (it used to delete them: the resume failed with FileNotFoundError)."""
    train, val = tiny_photo_records(datasets_dir, str(tmp_path), per_class=4)
    # With a tiny lr the model's answer for the photo does not change from epoch to epoch:
    # scored against one label it is always right, against the other always wrong.
    labelled = [_one_photo(val, str(tmp_path / ('photo%d' % c)), c) for c in (0, 1)]
    prefix = str(tmp_path / 'run')

    def run(prefix, val, *flags):
        return fit(parse(QUICK + ['--data-train', train, '--data-val', val, '--model-prefix',
                                  prefix, '--lr', '1e-7', '--keep-checkpoints', '2'] + list(flags)))
    if run(str(tmp_path / 'probe'), labelled[0], '--num-epochs', '1').meta['best_val_top1']:
        labelled.reverse()    # the model calls the photo class 0; the same seed, the same model
    wrong, right = labelled
    result = run(prefix, wrong, '--num-epochs', '2')
    assert [float(r['val_top1']) for r in result.rows] == [0.0, 0.0]
    result = run(prefix, right, '--num-epochs', '3', '--load-epoch', '2')
    assert [float(r['val_top1']) for r in result.rows] == [0.0, 0.0, 1.0]
    assert result.meta['best_epoch'] == 3

    result = run(prefix, wrong, '--num-epochs', '3', '--load-epoch', '2')
    assert result.meta['best_epoch'] == 1 and ckpt.recorded_epochs(prefix) == [1, 2, 3]
    best, first = mx.nd.load(ckpt.best_params_path(prefix)), mx.nd.load(ckpt.params_path(prefix, 1))
    assert all(np.array_equal(best[k].asnumpy(), first[k].asnumpy()) for k in first)
