"""train_imagenet.py refuses bad arguments with one line on stderr and exit status 2,
before any training starts."""
import os
import shutil

import pytest

from tests.fit_helpers import QUICK, run_train, tiny_photo_records


@pytest.fixture(scope='module')
def records(datasets_dir, tmp_path_factory):
    return tiny_photo_records(datasets_dir, str(tmp_path_factory.mktemp('cli')))


def _mismatched_pair(records, tmp_path):
    """The training .rec beside the validation set's .idx: a pair that does not fit."""
    train, val = records
    rec = str(tmp_path / 'mixed.rec')
    shutil.copyfile(val, rec)
    shutil.copyfile(train[:-4] + '.idx', rec[:-4] + '.idx')
    return rec


CASES = {
    'unknown network': (lambda r, t: ['--network', 'vgg16'], 'vgg16'),
    'absent gpu': (lambda r, t: ['--gpus', '0'], 'GPU'),
    'missing rec': (lambda r, t: ['--data-train', str(t / 'nowhere.rec')], 'not found'),
    'missing idx': (lambda r, t: ['--data-train', _without_idx(r, t)], 'index file'),
    'mismatched idx': (lambda r, t: ['--data-train', _mismatched_pair(r, t)], 'mixed'),
    'image too small': (lambda r, t: ['--data-train', r[0], '--image-shape', '3,32,32'],
                        'too small'),
    'batch not divisible': (lambda r, t: ['--data-train', r[0], '--cpus', '2',
                                          '--batch-size', '7'], 'divisible'),
    'float16 on cpu': (lambda r, t: ['--data-train', r[0], '--dtype', 'float16'], 'float16'),
    'resume from nothing': (lambda r, t: ['--data-train', r[0], '--load-epoch', '1'],
                            'not found'),
    # Numbers are checked while the flags are parsed: nan/inf would train until the loss is NaN.
    'lr nan': (lambda r, t: ['--data-train', r[0], '--lr', 'nan'], 'argument --lr: must be'),
    'lr inf': (lambda r, t: ['--data-train', r[0], '--lr', 'inf'], 'argument --lr: must be'),
    'lr negative': (lambda r, t: ['--data-train', r[0], '--lr', '-0.1'], 'argument --lr'),
    'momentum 1': (lambda r, t: ['--data-train', r[0], '--mom', '1'], 'argument --mom'),
    'wd nan': (lambda r, t: ['--data-train', r[0], '--wd', 'nan'], 'argument --wd'),
    'warmup inf': (lambda r, t: ['--data-train', r[0], '--warmup-epochs', 'inf'],
                   'argument --warmup-epochs'),
    'pca noise negative': (lambda r, t: ['--data-train', r[0], '--pca-noise', '-1'],
                           'argument --pca-noise'),
    # ps-lite aborts without the launcher's environment (or waits for a scheduler forever).
    'dist without launcher': (lambda r, t: ['--data-train', r[0], '--kv-store', 'dist_sync'],
                              'launch.py'),
    # ImageRecordIter: 4 channels fail on colour JPEGs; colour noise on 1 channel corrupts memory.
    'four channels': (lambda r, t: ['--data-train', r[0], '--image-shape', '4,67,67'],
                      'not 4'),
    'grayscale with colour noise': (lambda r, t: ['--data-train', r[0], '--image-shape',
                                                  '1,67,67', '--pca-noise', '0.1'],
                                    '--pca-noise 0'),
    'resume and overwrite': (lambda r, t: ['--data-train', r[0], '--load-epoch', '1',
                                           '--overwrite'], 'not both'),
}


def _without_idx(records, tmp_path):
    rec = str(tmp_path / 'lonely.rec')
    shutil.copyfile(records[0], rec)
    return rec


@pytest.mark.slow
@pytest.mark.parametrize('case', sorted(CASES))
def test_bad_argument_is_one_line_error(case, records, tmp_path):
    make_flags, expected = CASES[case]
    # QUICK first so each case's own flag (e.g. --image-shape) wins.
    flags = QUICK + make_flags(records, tmp_path) + ['--model-prefix', tmp_path / 'run']
    proc = run_train(flags, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('train_imagenet.py: error: ') and expected in lines[0], lines
    assert not os.path.exists(str(tmp_path / 'run-symbol.json'))


@pytest.fixture(scope='module')
def trained(records, tmp_path_factory):
    """A finished 2-epoch run (SGD) to resume: its folder."""
    from alexnet_mxnet.train.fit import fit
    from tests.fit_helpers import parse
    folder = tmp_path_factory.mktemp('trained')
    train, val = records
    fit(parse(QUICK + ['--data-train', train, '--data-val', val, '--model-prefix',
                       str(folder / 'run'), '--num-epochs', '2']))
    return folder


def _truncate(path):
    with open(path, 'r+b') as handle:
        handle.truncate(os.path.getsize(path) // 2)


RESUME_CASES = {
    # The SGD momentum in .states does not fit Adam: today a traceback at the first update.
    'another optimizer': (['--optimizer', 'adam'], None, 'optimizer=sgd, but this run has adam'),
    'truncated params': ([], lambda p: _truncate(p + '-0002.params'), 'cannot be read'),
    'truncated states': ([], lambda p: _truncate(p + '-0002.states'), 'cannot be read'),
    'damaged metrics': ([], lambda p: open(p + '-metrics.csv', 'wb').write(b'\x00\xff' * 64),
                        'run-metrics.csv is damaged'),
}


@pytest.mark.slow
@pytest.mark.parametrize('case', sorted(RESUME_CASES))
def test_bad_resume_is_one_line_error_before_training(case, records, trained, tmp_path):
    flags, damage, expected = RESUME_CASES[case]
    for name in os.listdir(str(trained)):
        shutil.copyfile(str(trained / name), str(tmp_path / name))
    prefix = str(tmp_path / 'run')
    if damage:
        damage(prefix)
    train, val = records
    proc = run_train(QUICK + ['--data-train', train, '--data-val', val, '--model-prefix', prefix,
                              '--num-epochs', '3', '--load-epoch', '2', '--disp-batches', '1']
                     + flags, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith('train_imagenet.py: error: ') and expected in lines[0], lines
    assert not os.path.exists(prefix + '-0003.params')
