"""score.py on a checkpoint trained briefly on real photos, checked against predictions the
test computes itself from the raw records with plain MXNet."""
import csv
import json
import os
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

import iterators
from alexnet_mxnet.commands import score
from alexnet_mxnet.inference.model import inference_symbol
from tests.conftest import REPO
from tests.inference_checkpoint import IMAGE_SHAPE

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def records(ckpt):
    """(labels, decoded RGB images) of the val records, in file order."""
    reader = mx.recordio.MXIndexedRecordIO(ckpt.val_rec[:-4] + '.idx', ckpt.val_rec, 'r')
    labels, images = [], []
    for key in reader.keys:
        header, encoded = mx.recordio.unpack(reader.read_idx(key))
        labels.append(int(header.label))
        images.append(cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1])
    reader.close()
    return np.array(labels), images


def _raw_probabilities(ckpt, crops):
    """Softmax of the checkpoint on NHWC RGB crops, through a plain Module."""
    sym, arg_params, aux_params = mx.model.load_checkpoint(ckpt.prefix, ckpt.epoch)
    data = (np.stack(crops).astype(np.float32) - np.array(iterators.MEAN_RGB, np.float32))
    data = data.transpose(0, 3, 1, 2)
    module = mx.mod.Module(inference_symbol(sym), label_names=None)
    module.bind(data_shapes=[('data', data.shape)], for_training=False)
    module.set_params(arg_params, aux_params)
    module.forward(mx.io.DataBatch([mx.nd.array(data)]), is_train=False)
    return module.get_outputs()[0].asnumpy()


def _crop(image, top, left):
    _, h, w = IMAGE_SHAPE
    return image[top:top + h, left:left + w]


def _center(image):
    _, h, w = IMAGE_SHAPE
    return _crop(image, (image.shape[0] - h) // 2, (image.shape[1] - w) // 2)


def _score(ckpt, tmp_path, *extra):
    return score.main(['--model-prefix', ckpt.prefix, '--epoch', str(ckpt.epoch), '--data-val',
                       ckpt.val_rec, '--out-dir', str(tmp_path), '--no-progress'] + list(extra))


@pytest.mark.parametrize('batch_size', [8, 30])
def test_center_crop_accuracy_matches_raw_predictions(ckpt, records, tmp_path, batch_size):
    labels, images = records
    assert len(labels) == 30 and iterators.check_record_file(ckpt.val_rec) == 30
    probs = _raw_probabilities(ckpt, [_center(image) for image in images])
    order = np.argsort(-probs, axis=1, kind='stable')
    result = _score(ckpt, tmp_path, '--batch-size', str(batch_size))
    assert result.num_images == 30       # 30 = 3 batches of 8 + 6: the filler rows are dropped
    np.testing.assert_array_equal(result.labels, labels)
    np.testing.assert_array_equal(result.top_classes[:, 0], order[:, 0])
    np.testing.assert_allclose(result.top_probs, np.take_along_axis(probs, order[:, :5], 1),
                               atol=1e-5)
    assert result.accuracy(1) == pytest.approx(np.mean(order[:, 0] == labels))
    assert result.accuracy(5) == pytest.approx(np.mean(np.any(order[:, :5] == labels[:, None], 1)))


def test_ten_crop_averages_five_crops_and_their_mirrors(ckpt, records, tmp_path):
    labels, images = records
    _, h, w = IMAGE_SHAPE
    crops, plain = [], []
    for image in images:
        bottom, right = image.shape[0] - h, image.shape[1] - w
        five = [_crop(image, t, l) for t, l in ((0, 0), (0, right), (bottom, 0), (bottom, right),
                                                (bottom // 2, right // 2))]
        crops += five + [c[:, ::-1] for c in five]
        plain += five + five
    expected = _raw_probabilities(ckpt, crops).reshape(30, 10, -1).mean(axis=1)
    unmirrored = _raw_probabilities(ckpt, plain).reshape(30, 10, -1).mean(axis=1)
    assert np.abs(expected - unmirrored).max() > 1e-3   # mirroring changes the answer here
    result = _score(ckpt, tmp_path, '--ten-crop', '--batch-size', '4')
    assert result.num_images == 30 and result.ten_crop
    order = np.argsort(-expected, axis=1, kind='stable')
    np.testing.assert_array_equal(result.top_classes[:, 0], order[:, 0])
    np.testing.assert_allclose(result.top_probs, np.take_along_axis(expected, order[:, :5], 1),
                               atol=1e-5)
    assert result.accuracy(1) == pytest.approx(np.mean(order[:, 0] == labels))


def test_json_confusion_matrix_and_per_class_files(ckpt, tmp_path, capsys):
    _score(ckpt, tmp_path, '--json', '--batch-size', '16')
    report = json.loads(capsys.readouterr().out)
    assert report['images'] == 30 and 0 <= report['top1'] <= report['top5'] <= 1
    with open(report['files']['confusion_csv'], newline='') as handle:
        rows = list(csv.reader(handle))
    assert rows[0][1:] == ckpt.class_names and [r[0] for r in rows[1:]] == ckpt.class_names
    matrix = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert matrix.sum() == 30 and list(matrix.sum(axis=1)) == [3] * 10
    assert np.trace(matrix) == round(report['top1'] * 30)
    per_class = [r['images'] for r in report['per_class']]
    assert per_class == [3] * 10
    png = cv2.imread(report['files']['confusion_png'])
    assert png is not None and png.shape[0] > 300
    with open(report['files']['per_class_csv'], newline='') as handle:
        assert sum(int(r['images']) for r in csv.DictReader(handle)) == 30


def test_bfloat16_and_int8_paths_keep_the_predictions(ckpt, tmp_path):
    reference = _score(ckpt, tmp_path, '--batch-size', '10')
    for flags in (['--precision', 'bfloat16'],
                  ['--precision', 'int8', '--data-train', ckpt.train_rec,
                   '--num-calib-examples', '160']):
        result = _score(ckpt, tmp_path, '--batch-size', '10', *flags)
        agree = np.mean(result.top_classes[:, 0] == reference.top_classes[:, 0])
        assert result.num_images == 30 and agree >= 0.8, (flags, agree)
        assert abs(result.accuracy(1) - reference.accuracy(1)) <= 0.1, flags
    assert os.path.isfile(tmp_path / 'alexnet-0006-int8-confusion.csv')


def _run(*args):
    return subprocess.run([sys.executable, 'score.py', '--no-progress'] + list(args), cwd=REPO,
                          capture_output=True, text=True)


def _bad_labels_rec(tmp_path, ckpt):
    """Two photos labelled 12 and 3: the checkpoint only knows classes 0..9."""
    prefix = str(tmp_path / 'bad_labels')
    writer = mx.recordio.MXIndexedRecordIO(prefix + '.idx', prefix + '.rec', 'w')
    photo = os.path.join(ckpt.val_folder, sorted(os.listdir(ckpt.val_folder))[0])
    photo = os.path.join(photo, sorted(os.listdir(photo))[0])
    with open(photo, 'rb') as handle:
        encoded = handle.read()
    for i, label in enumerate((12, 3)):
        writer.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, label, i, 0), encoded))
    writer.close()
    return prefix + '.rec'


def test_bad_inputs_are_one_line_errors(ckpt, tmp_path):
    base = ['--model-prefix', ckpt.prefix, '--out-dir', str(tmp_path)]
    cases = [
        (base + ['--data-val', str(tmp_path / 'missing.rec')], 'missing.rec not found'),
        (base + ['--epoch', '9', '--data-val', ckpt.val_rec], 'epoch 9 of'),
        (base + ['--data-val', ckpt.val_rec, '--image-shape', '3,99,99'], 'fc1_weight of shape (4096, 256) but this network needs (4096, 1024)'),
        (base + ['--data-val', ckpt.val_rec, '--num-classes', '5'], 'has 10 classes'),
        (base + ['--data-val', _bad_labels_rec(tmp_path, ckpt)], 'has label 12'),
    ]
    for args, message in cases:
        result = _run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count('\n') == 1 and 'error: ' in result.stderr, result.stderr
        assert message in result.stderr, result.stderr


def test_flags_override_the_sidecar(ckpt, tmp_path):
    names = tmp_path / 'names.txt'
    names.write_text(''.join('class-%d\n' % i for i in range(10)))
    default = _score(ckpt, tmp_path, '--batch-size', '16')
    overridden = _score(ckpt, tmp_path, '--batch-size', '16', '--class-names', str(names),
                        '--rgb-mean', '0,0,0', '--rgb-std', '64,64,64')
    assert overridden.class_names == ['class-%d' % i for i in range(10)]
    assert default.class_names == ckpt.class_names
    assert np.abs(overridden.top_probs - default.top_probs).max() > 1e-3
    with open(tmp_path / 'alexnet-0006-confusion.csv', newline='') as handle:
        assert next(csv.reader(handle))[1:] == overridden.class_names
