"""predict.py gives each photo the class score.py gives its record, and skips bad files."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from alexnet_mxnet.commands import predict
from alexnet_mxnet.inference import model, scoring
from tests import bad_images
from tests.conftest import REPO, without_root_file_access

pytestmark = pytest.mark.slow


def test_predict_top1_equals_score_top1_per_image(ckpt, capsys):
    loaded = model.load_model(ckpt.prefix, '%s-%04d.params' % (ckpt.prefix, ckpt.epoch))
    scored = scoring.score(loaded, ckpt.val_rec, batch_size=8, progress=False)
    # The .lst beside the .rec says which photo each record holds.
    with open(ckpt.val_rec[:-4] + '.lst') as handle:
        files = [os.path.normpath(os.path.join(ckpt.val_folder, line.rstrip('\n').split('\t')[-1]))
                 for line in handle]
    assert len(files) == scored.num_images == 30
    # Photos are stored 80x80, as in the records: --resize 80 leaves them as score sees them.
    predict.main(['--model-prefix', ckpt.prefix, ckpt.val_folder, '--resize', '80',
                  '--batch-size', '7', '--json', '--no-progress'])
    output = json.loads(capsys.readouterr().out)
    by_path = {os.path.normpath(p['path']): p['top'] for p in output['predictions']}
    assert sorted(by_path) == sorted(files) and output['skipped'] == []
    for index, path in enumerate(files):
        top = by_path[path]
        assert len(top) == 5
        assert [t['class'] for t in top] == list(scored.top_classes[index])
        assert top[0]['name'] == ckpt.class_names[top[0]['class']]
        np.testing.assert_allclose([t['probability'] for t in top], scored.top_probs[index],
                                   atol=1e-5)


def _run(*args, preexec_fn=None):
    return subprocess.run([sys.executable, 'predict.py', '--no-progress'] + list(args), cwd=REPO,
                          capture_output=True, text=True, timeout=120, preexec_fn=preexec_fn)


def test_unreadable_files_are_reported_and_skipped(ckpt, tmp_path):
    folder = tmp_path / 'mixed'
    folder.mkdir()
    photo_dir = os.path.join(ckpt.val_folder, sorted(os.listdir(ckpt.val_folder))[0])
    for name in sorted(os.listdir(photo_dir))[:2]:
        shutil.copy(os.path.join(photo_dir, name), folder / name)
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff not really a jpeg')
    (folder / 'notes.PNG').write_text('hello')
    (folder / 'readme.txt').write_text('not an image extension: not listed')
    result = _run('--model-prefix', ckpt.prefix, str(folder), '--batch-size', '2')
    assert result.returncode == 0, result.stderr
    skipped = [line for line in result.stderr.splitlines() if line.startswith('skipped')]
    assert sorted(os.path.basename(line.split(':')[0]) for line in skipped) == ['broken.jpg',
                                                                               'notes.PNG']
    assert result.stdout.count('%') == 2 * 5          # two photos, five classes each
    assert 'readme.txt' not in result.stdout + result.stderr

    only_bad = _run('--model-prefix', ckpt.prefix, str(folder / 'broken.jpg'))
    assert only_bad.returncode == 2
    assert only_bad.stderr.splitlines()[-1].startswith('predict.py: error: none of the 1 files')
    missing = _run('--model-prefix', ckpt.prefix, str(tmp_path / 'nope.jpg'))
    assert missing.returncode == 2 and missing.stderr.count('\n') == 1
    assert 'nope.jpg not found' in missing.stderr


def test_no_bad_file_stops_the_others(ckpt, tmp_path):
    """(Without root's file access, so that permissions hold.) A FIFO, a link to /dev/zero,
    PNG bombs, resizes beyond OpenCV's limits, truncated and corrupt JPEGs, an unreadable
    file, an unlistable folder and a link loop are each one line on stderr and an entry in
    --json; the photos, and a photo with a video after its end, are still classified."""
    folder = tmp_path / 'mixed'
    photo_dir = os.path.join(ckpt.val_folder, sorted(os.listdir(ckpt.val_folder))[0])
    photos = sorted(os.listdir(photo_dir))[:2]
    good = open(os.path.join(photo_dir, photos[0]), 'rb').read()
    expected = bad_images.plant(str(folder), good)
    for name in photos:
        shutil.copy(os.path.join(photo_dir, name), str(folder / name))
    shutil.copy(os.path.join(photo_dir, photos[0]), str(folder / 'locked.jpg'))
    os.chmod(str(folder / 'locked.jpg'), 0)
    expected['locked.jpg'] = 'unreadable: Permission denied'
    (folder / 'closed').mkdir()
    os.chmod(str(folder / 'closed'), 0)
    expected['closed'] = 'cannot list this folder: Permission denied'
    os.symlink('.', str(folder / 'loop'))
    expected['loop'] = 'folder already read (a link loop'
    result = _run('--model-prefix', ckpt.prefix, str(folder), '--json', '--resize', '80',
                  preexec_fn=without_root_file_access)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    reasons = {os.path.basename(entry['path']): entry['reason'] for entry in output['skipped']}
    assert sorted(reasons) == sorted(expected)
    for name, reason in expected.items():
        assert reason in reasons[name], name
    lines = result.stderr.splitlines()
    assert sorted(lines) == sorted('skipped %s: %s' % (entry['path'], entry['reason'])
                                   for entry in output['skipped'])
    assert sorted(os.path.basename(p['path']) for p in output['predictions']) == \
        sorted(photos + list(bad_images.KEPT))


def test_a_folder_that_cannot_be_listed_is_one_line(ckpt, tmp_path):
    folder = tmp_path / 'closed'
    folder.mkdir()
    os.chmod(str(folder), 0)
    result = _run('--model-prefix', ckpt.prefix, str(folder), preexec_fn=without_root_file_access)
    assert result.returncode == 2 and result.stderr.count('\n') == 1
    assert 'no image files in %s (%s: cannot list this folder: Permission denied)' % (
        folder, folder) in result.stderr
