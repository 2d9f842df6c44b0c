"""Inference reads the weights the run recorded, never guesses the preprocessing, and turns
every bad input into one line: checked on the real trained checkpoint of
tests/inference_checkpoint.py, real .rec files, real processes, real full disks."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import mxnet as mx
import numpy as np
import pytest

from alexnet_mxnet.commands import export, predict, score
from alexnet_mxnet.base import checkpoint
from alexnet_mxnet.base.cli import run_cli
from alexnet_mxnet.inference import model
from iterators import MEAN_RGB
from tests.conftest import REPO, without_root_file_access
from tests.fit_helpers import TAG, tagged_processes

pytestmark = pytest.mark.slow


def _cli(capfd, main, *args):
    """``main`` run as its command runs it (through ``run_cli``), in this process:
    ``(exit status, stdout, stderr)``; stderr is captured at the file descriptor, so MXNet's
    own C++ messages count too."""
    capfd.readouterr()
    try:
        status = run_cli(main, [str(a) for a in args])
    except SystemExit as stop:
        status = stop.code
    out, err = capfd.readouterr()
    return status, out, err


def _assert_one_line_error(status, err, *words):
    assert status == 2, err
    assert err.count('\n') == 1 and ': error: ' in err and 'Traceback' not in err, err
    for word in words:
        assert word in err, err


def _run(script, *args, timeout=120, **kwargs):
    return subprocess.run([sys.executable, script] + [str(a) for a in args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def _copy_checkpoint(ckpt, folder, sidecar=True):
    """The fixture's checkpoint files under ``folder`` (without its sidecar if asked)."""
    os.makedirs(folder, exist_ok=True)
    prefix = os.path.join(str(folder), 'alexnet')
    names = [checkpoint.symbol_path, lambda p: checkpoint.params_path(p, ckpt.epoch)]
    if sidecar:
        names.append(checkpoint.sidecar_path)
    for name in names:
        shutil.copyfile(name(ckpt.prefix), name(prefix))
    return prefix


def _score_args(ckpt, out_dir, *extra):
    return ['--data-val', ckpt.val_rec, '--out-dir', str(out_dir), '--no-progress'] + list(extra)


# --- 1. the epoch the run recorded, not the newest file --------------------------------------

@pytest.fixture(scope='module')
def resumed(ckpt, tmp_path_factory):
    """A run trained to epoch 3, then resumed from epoch 1 and saved at epoch 2: the sidecar
    records epochs 1 and 2 (2 is the latest), while epoch 3's files of the abandoned
    continuation are still on disk. Epoch 2 holds the trained weights; epochs 1 and 3 push
    every image to class 1 and class 0."""
    prefix = str(tmp_path_factory.mktemp('resumed') / 'alexnet')
    sym, arg_params, aux_params = checkpoint.load_checkpoint(ckpt.prefix, ckpt.epoch)
    for epoch, favoured in ((1, 1), (2, None), (3, 0)):
        params = dict(arg_params)
        if favoured is not None:
            bias = arg_params['fc3_bias'].asnumpy().copy()
            bias[favoured] += 100.0
            params['fc3_bias'] = mx.nd.array(bias)
        checkpoint.save_checkpoint(prefix, epoch, sym, params, aux_params)
    meta = checkpoint.read_sidecar(ckpt.prefix)
    meta.update(epoch=2, checkpoints={str(e): dict(num_update=10 * e, batches=10, partial=False,
                                                   state_copies=1) for e in (1, 2)})
    checkpoint.write_sidecar(prefix, meta)
    return prefix


def test_score_predict_export_read_the_latest_recorded_epoch(ckpt, resumed, tmp_path, capsys):
    trained = score.main(['--model-prefix', ckpt.prefix] + _score_args(ckpt, tmp_path))
    result = score.main(['--model-prefix', resumed] + _score_args(ckpt, tmp_path))
    assert result.checkpoint == resumed + '-0002'
    np.testing.assert_array_equal(result.top_classes, trained.top_classes)
    photo_dir = os.path.join(ckpt.val_folder, sorted(os.listdir(ckpt.val_folder))[0])
    capsys.readouterr()
    predict.main(['--model-prefix', resumed, photo_dir, '--json', '--no-progress'])
    assert json.loads(capsys.readouterr().out)['checkpoint'] == resumed + '-0002'
    path, _ = export.main(['--model-prefix', resumed])
    assert path == resumed + '-0002.onnx' and os.path.isfile(path)
    # A stock MXNet checkpoint (no sidecar): every P-NNNN.params counts.
    stock = str(tmp_path / 'stock' / 'alexnet')
    os.makedirs(os.path.dirname(stock))
    for epoch in (1, 3):
        shutil.copyfile(checkpoint.params_path(resumed, epoch), checkpoint.params_path(stock, epoch))
    assert model.resolve_checkpoint(stock) == (stock, stock + '-0003.params')


def test_an_epoch_on_disk_that_the_run_does_not_record_is_refused(ckpt, resumed, tmp_path,
                                                                   capfd):
    for flags in (['--model-prefix', resumed, '--epoch', '3'],
                  ['--params', resumed + '-0003.params']):
        status, _, err = _cli(capfd, score.main, *flags, *_score_args(ckpt, tmp_path))
        _assert_one_line_error(status, err, 'epoch 3', 'not part of the run',
                               'recorded epochs: 1, 2')
    status, _, err = _cli(capfd, export.main, '--model-prefix', resumed, '--epoch', '3')
    _assert_one_line_error(status, err, 'not part of the run')
    earlier = score.main(['--model-prefix', resumed, '--epoch', '1'] + _score_args(ckpt, tmp_path))
    assert earlier.checkpoint == resumed + '-0001' and set(earlier.top_classes[:, 0]) == {1}


# --- 2. score's output folder: checked before scoring, the accuracy kept when a write fails ---

def test_unwritable_out_dir_fails_before_scoring(ckpt, tmp_path):
    afile = tmp_path / 'afile'
    afile.write_text('not a folder')
    readonly = tmp_path / 'readonly'
    readonly.mkdir()
    readonly.chmod(0o555)
    beside = _copy_checkpoint(ckpt, tmp_path / 'readonly-ckpt')
    os.chmod(os.path.dirname(beside), 0o555)
    # The progress bar is on: scoring before failing would leave its lines on stderr.
    for flags, words in ((['--model-prefix', ckpt.prefix, '--out-dir', afile], ['is a file']),
                         (['--model-prefix', ckpt.prefix, '--out-dir', readonly],
                          ['cannot write', str(readonly), 'Permission denied']),
                         (['--model-prefix', beside], ['cannot write', '--out-dir'])):
        result = _run('score.py', '--data-val', ckpt.val_rec, *flags,
                      preexec_fn=without_root_file_access)
        _assert_one_line_error(result.returncode, result.stderr, *words)
        assert result.stdout == ''
    assert os.listdir(readonly) == []


def _fill(folder, leave):
    """Fill the file system of ``folder`` up, then free ``leave`` bytes."""
    path = os.path.join(folder, 'filler')
    with open(path, 'wb', buffering=0) as handle:
        try:
            while True:
                handle.write(b'\0' * 4096)
        except OSError:
            pass
    os.truncate(path, max(os.path.getsize(path) - leave, 0))


def test_full_disk_prints_the_accuracy_then_one_line(ckpt, small_disk):
    folder = small_disk(256)
    _fill(folder, leave=12 * 1024)    # room for the two CSV files, not for the PNG
    result = _run('score.py', '--model-prefix', ckpt.prefix,
                  *_score_args(ckpt, folder, '--batch-size', '16'))
    assert 'top-1 accuracy: ' in result.stdout and 'wrote' not in result.stdout, result.stdout
    _assert_one_line_error(result.returncode, result.stderr, 'the disk is full')
    assert not [name for name in os.listdir(folder) if name.endswith('.tmp')]


# --- 3. no sidecar: the normalisation is not guessed ---------------------------------------

def test_without_sidecar_the_whole_preprocessing_must_be_given(ckpt, tmp_path, capfd):
    stock = _copy_checkpoint(ckpt, tmp_path / 'stock', sidecar=False)
    mean = ','.join(map(str, MEAN_RGB))
    shape_and_mean = ['--image-shape', '3,67,67', '--rgb-mean', mean]
    # Each case: the flags given, then the flags the message must ask to add.
    for flags, missing in (([], '--image-shape C,H,W, --rgb-mean R,G,B and --rgb-std R,G,B'),
                           (['--image-shape', '3,67,67'], '--rgb-mean R,G,B and --rgb-std R,G,B'),
                           (['--network', 'alexnet'], '--image-shape C,H,W, --rgb-mean R,G,B'),
                           (['--rgb-mean', mean], '--image-shape C,H,W and --rgb-std R,G,B'),
                           # Scoring without a std when training may have used one would be
                           # a silent wrong answer.
                           (shape_and_mean, 'add --rgb-std R,G,B as in training')):
        status, out, err = _cli(capfd, score.main, '--model-prefix', stock,
                                *_score_args(ckpt, tmp_path), *flags)
        _assert_one_line_error(status, err, 'no sidecar', missing, '--rgb-std 1,1,1')
        assert out == ''
    for flags in (['--image-shape', '3,67,67'], shape_and_mean):
        status, _, err = _cli(capfd, export.main, '--model-prefix', stock, *flags)
        _assert_one_line_error(status, err, 'no sidecar', '--rgb-std R,G,B')
    # --rgb-std 1,1,1 means none: the fixture's run divided by no std.
    given = score.main(['--model-prefix', stock, *shape_and_mean, '--rgb-std', '1,1,1']
                       + _score_args(ckpt, tmp_path))
    recorded = score.main(['--model-prefix', ckpt.prefix] + _score_args(ckpt, tmp_path))
    np.testing.assert_allclose(given.top_probs, recorded.top_probs, atol=1e-6)
    divided = score.main(['--model-prefix', stock, *shape_and_mean, '--rgb-std', '58,57,57']
                         + _score_args(ckpt, tmp_path))
    assert np.abs(divided.top_probs - recorded.top_probs).max() > 1e-3


def test_without_sidecar_predict_needs_the_whole_preprocessing(ckpt, tmp_path, capfd):
    stock = _copy_checkpoint(ckpt, tmp_path / 'stock', sidecar=False)
    photo_dir = os.path.join(ckpt.val_folder, sorted(os.listdir(ckpt.val_folder))[0])
    shape_and_mean = ['--image-shape', '3,67,67', '--rgb-mean', ','.join(map(str, MEAN_RGB))]
    for flags, missing in (([], '--image-shape C,H,W, --rgb-mean R,G,B and --rgb-std R,G,B'),
                           (shape_and_mean, 'add --rgb-std R,G,B as in training')):
        status, out, err = _cli(capfd, predict.main, '--model-prefix', stock, photo_dir,
                                '--json', '--no-progress', *flags)
        _assert_one_line_error(status, err, 'no sidecar', missing, '--rgb-std 1,1,1')
        assert out == ''
    answers = []
    for flags in (['--model-prefix', stock, *shape_and_mean, '--rgb-std', '1,1,1'],
                  ['--model-prefix', ckpt.prefix]):
        status, out, err = _cli(capfd, predict.main, *flags, photo_dir, '--json', '--no-progress')
        assert status == 0, err
        answers.append([[(t['class'], t['probability']) for t in p['top']]
                        for p in json.loads(out)['predictions']])
    assert len(answers[0]) == 3          # the names differ: the sidecar holds them
    np.testing.assert_allclose(answers[0], answers[1], atol=1e-6)


# --- 4. broken records and checkpoint files ------------------------------------------------

@pytest.fixture(scope='module')
def bad_recs(ckpt, tmp_path_factory):
    """``{kind: .rec}``: a good photo, then at record 1 a broken one, then a good one."""
    folder = tmp_path_factory.mktemp('bad-records')
    photo_dir = os.path.join(ckpt.val_folder, sorted(os.listdir(ckpt.val_folder))[0])
    with open(os.path.join(photo_dir, sorted(os.listdir(photo_dir))[0]), 'rb') as handle:
        good = handle.read()
    corrupt = bytearray(good)
    corrupt[2:40] = bytes(38)
    pack = lambda key, payload: mx.recordio.pack(mx.recordio.IRHeader(0, 0, key, 0), payload)  # noqa: E731
    broken = {'text': pack(1, b'this is a note, not an image'), 'corrupt': pack(1, bytes(corrupt)),
              'truncated': pack(1, good[:len(good) // 2]), 'headerless': b'abc'}
    recs = {}
    for kind, record in broken.items():
        prefix = str(folder / kind)
        writer = mx.recordio.MXIndexedRecordIO(prefix + '.idx', prefix + '.rec', 'w')
        for key, raw in enumerate((pack(0, good), record, pack(2, good))):
            writer.write_idx(key, raw)
        writer.close()
        recs[kind] = prefix + '.rec'
    return recs


@pytest.mark.parametrize('kind', ['text', 'corrupt', 'truncated', 'headerless'])
def test_ten_crop_names_the_file_and_record_that_is_not_an_image(ckpt, bad_recs, tmp_path,
                                                                  capfd, kind):
    status, out, err = _cli(capfd, score.main, '--model-prefix', ckpt.prefix, '--data-val',
                            bad_recs[kind], '--out-dir', tmp_path, '--no-progress', '--ten-crop',
                            '--batch-size', '2')
    _assert_one_line_error(status, err, bad_recs[kind], 'record 1 ')
    assert out == ''


@pytest.mark.parametrize('kind', ['text', 'corrupt', 'headerless'])
def test_center_crop_names_the_file_and_record_that_is_not_an_image(ckpt, bad_recs, tmp_path,
                                                                     capfd, kind):
    status, _, err = _cli(capfd, score.main, '--model-prefix', ckpt.prefix, '--data-val',
                          bad_recs[kind], '--out-dir', tmp_path, '--no-progress',
                          '--batch-size', '2')
    _assert_one_line_error(status, err, bad_recs[kind], 'record 1 ')


def test_broken_checkpoint_files_are_one_line_errors(ckpt, tmp_path, capfd):
    def broken(name, corrupt):
        prefix = _copy_checkpoint(ckpt, tmp_path / name)
        corrupt(prefix)
        return prefix

    params = lambda p: checkpoint.params_path(p, ckpt.epoch)  # noqa: E731

    def truncate(path, size):
        with open(path, 'r+b') as handle:
            handle.truncate(size)

    def write(path, data):
        with open(path, 'wb') as handle:
            handle.write(data)

    cases = [
        (broken('truncated-params', lambda p: truncate(params(p), 100000)), ['not an MXNet .params']),
        (broken('text-params', lambda p: write(params(p), b'weights\n')), ['not an MXNet .params']),
        (broken('text-symbol', lambda p: write(checkpoint.symbol_path(p), b'garbage\n')),
         ['-symbol.json', 'not an MXNet graph']),
        (broken('truncated-symbol', lambda p: truncate(checkpoint.symbol_path(p), 500)),
         ['-symbol.json', 'not an MXNet graph']),
        (broken('empty-object-symbol', lambda p: write(checkpoint.symbol_path(p), b'{}')),
         ['-symbol.json', 'not an MXNet graph']),
        (broken('list-sidecar', lambda p: write(checkpoint.sidecar_path(p), b'[1, 2]\n')),
         ['-meta.json', 'not the JSON object']),
    ]
    for prefix, words in cases:
        status, _, err = _cli(capfd, score.main, '--model-prefix', prefix,
                              *_score_args(ckpt, tmp_path))
        _assert_one_line_error(status, err, *words)


def test_bad_class_names_files_are_one_line_errors(ckpt, tmp_path, capfd):
    latin1 = tmp_path / 'latin1.txt'
    latin1.write_bytes(''.join('classé %d\n' % i for i in range(10)).encode('latin-1'))
    numbered = tmp_path / 'numbered.txt'
    numbered.write_text('0\tn01\ttench\n5\tn02\thorn\n')
    binary = tmp_path / 'binary.txt'
    shutil.copyfile(checkpoint.params_path(ckpt.prefix, ckpt.epoch), binary)
    for path, words in ((latin1, ['latin1.txt', 'UTF-8']), (binary, ['binary.txt', 'UTF-8']),
                        (numbered, ['does not number its classes']),
                        (tmp_path, [str(tmp_path), 'is a folder'])):
        status, _, err = _cli(capfd, score.main, '--model-prefix', ckpt.prefix, '--class-names',
                              path, *_score_args(ckpt, tmp_path))
        _assert_one_line_error(status, err, *words)


# --- 5. every flag, as a new user would get it wrong ------------------------------------------

SCORE_CASES = [
    (['--batch-size', '0'], ['--batch-size', 'whole number >= 1']),
    (['--batch-size', '-3'], ['--batch-size', 'whole number >= 1']),
    (['--epoch', '-1'], ['--epoch', 'whole number >= 0']),
    (['--data-nthreads', '-2'], ['--data-nthreads', 'whole number >= 1']),
    (['--data-nthreads', '0'], ['--data-nthreads', 'whole number >= 1']),
    (['--cpus', '0'], ['--cpus', 'whole number >= 1']),
    (['--num-classes', '0'], ['--num-classes', 'whole number >= 1']),
    (['--num-calib-examples', '0', '--precision', 'int8'], ['--num-calib-examples']),
    (['--precision', 'int8'], ['needs --data-train']),
    (['--gpus', '0'], ['GPU 0', '0 GPU(s)']),
    (['--image-shape', '1,67,67'], ['(96, 3, 11, 11)', '(96, 1, 11, 11)']),
    (['--image-shape', '4,67,67', '--ten-crop'], ['(96, 3, 11, 11)', '(96, 4, 11, 11)']),
    (['--dtype', 'float16'], ['float16', '--gpus']),
]


def test_score_bad_flags_are_one_line_errors(ckpt, tmp_path, capfd):
    for flags, words in SCORE_CASES:
        status, out, err = _cli(capfd, score.main, '--model-prefix', ckpt.prefix,
                                *_score_args(ckpt, tmp_path), *flags)
        _assert_one_line_error(status, err, *words)
        assert out == '', flags
    status, _, err = _cli(capfd, score.main, '--model-prefix', ckpt.prefix, '--data-val',
                          ckpt.val_rec[:-4] + '.lst', '--out-dir', tmp_path)
    _assert_one_line_error(status, err, 'val.lst')


def test_batch_larger_than_the_record_count_scores_every_record_once(ckpt, tmp_path):
    # 30 records: a batch of 10**6 images (13 GB of input at 3x67x67) is not needed.
    result = score.main(['--model-prefix', ckpt.prefix, '--batch-size', '1000000']
                        + _score_args(ckpt, tmp_path))
    reference = score.main(['--model-prefix', ckpt.prefix] + _score_args(ckpt, tmp_path))
    assert result.num_images == 30
    np.testing.assert_array_equal(result.top_classes, reference.top_classes)


def test_int8_scoring_keeps_stderr_clean(ckpt, tmp_path, capfd):
    status, out, err = _cli(capfd, score.main, '--model-prefix', ckpt.prefix,
                            *_score_args(ckpt, tmp_path), '--precision', 'int8', '--data-train',
                            ckpt.train_rec, '--num-calib-examples', '32')
    assert status == 0 and 'top-1 accuracy' in out
    assert err == '', err


def test_export_bad_flags_and_outputs_are_one_line_errors(ckpt, tmp_path, capfd):
    afile = tmp_path / 'afile'
    afile.write_text('x')
    cases = [
        (['--num-verify', '0'], ['--num-verify', 'whole number >= 1']),
        (['--dtype', 'float16'], ['float16', 'float32']),
        (['--output', tmp_path], [str(tmp_path), 'is a folder']),
        (['--output', afile / 'm.onnx'], [str(afile), 'is a file']),
        (['--image-shape', '4,67,67'], ['(96, 4, 11, 11)']),
    ]
    for flags, words in cases:
        status, _, err = _cli(capfd, export.main, '--model-prefix', ckpt.prefix, *flags)
        _assert_one_line_error(status, err, *words)
    readonly = tmp_path / 'readonly'
    readonly.mkdir()
    readonly.chmod(0o555)
    result = _run('export.py', '--model-prefix', ckpt.prefix, '--output', readonly / 'm.onnx',
                  preexec_fn=without_root_file_access)
    _assert_one_line_error(result.returncode, result.stderr, 'cannot write', str(readonly))
    assert os.listdir(readonly) == []


def _interrupt_when_scoring(args):
    """Start score.py with its progress bar, send Ctrl-C once it has scored images:
    ``(exit status, stderr)``. Nothing of score.py may be left afterwards."""
    tag = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, 'score.py'] + [str(a) for a in args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, **{TAG: tag}),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.set_blocking(proc.stderr.fileno(), False)
    seen, deadline = b'', time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        seen += proc.stderr.read() or b''
        bars = [part for part in seen.split(b'\r') if b'score:' in part and b'img' in part]
        if bars and not bars[-1].split(b'score:')[1].lstrip().startswith(b'0%'):
            break
        time.sleep(0.05)
    assert proc.poll() is None, 'finished before it could be interrupted'
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
        assert tagged_processes(tag) == []     # checked before the kill below could hide one
    finally:
        proc.kill()
    os.set_blocking(proc.stderr.fileno(), True)
    seen += proc.stderr.read()
    proc.stderr.close()
    return proc.returncode, seen.decode()


def test_ctrl_c_during_scoring_is_one_line(ckpt, tmp_path):
    long_rec = str(tmp_path / 'long')
    reader = mx.recordio.MXIndexedRecordIO(ckpt.val_rec[:-4] + '.idx', ckpt.val_rec, 'r')
    writer = mx.recordio.MXIndexedRecordIO(long_rec + '.idx', long_rec + '.rec', 'w')
    for key in range(3000):
        writer.write_idx(key, reader.read_idx(reader.keys[key % len(reader.keys)]))
    writer.close()
    reader.close()
    for extra in ([], ['--ten-crop']):
        status, err = _interrupt_when_scoring(['--model-prefix', ckpt.prefix, '--data-val',
                                               long_rec + '.rec', '--out-dir', tmp_path,
                                               '--batch-size', '4'] + extra)
        assert status == 130, err
        assert err.rstrip('\n').split('\n')[-1].endswith('error: interrupted') and \
            'Traceback' not in err, err
