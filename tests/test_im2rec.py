"""tools.im2rec on real photos: splits, read-back with stock MXNet readers, bad input."""
import os
import pickle
import shutil
import subprocess
import sys
from collections import Counter
from concurrent.futures.process import BrokenProcessPool

import cv2
import mxnet as mx
import numpy as np
import pytest

from engine.errors import UsageError
from tools import im2rec
from tools.im2rec import convert

STOCK_IM2REC = os.path.join(os.path.dirname(mx.__file__), 'tools', 'im2rec.py')


@pytest.fixture(scope='module')
def photos(datasets_dir, tmp_path_factory):
    """31 real photos in 3 class folders: odd names, upper-case extensions, a nested folder,
    a grayscale PNG, sizes from 224x224 to over 2000 pixels wide."""
    root = tmp_path_factory.mktemp('photos') / 'photos'
    hym = os.path.join(datasets_dir, 'hymenoptera')
    ants = sorted(os.listdir(os.path.join(hym, 'train', 'ants')))[:8]
    for name in ants + ['ant photos.jpg']:
        _copy(os.path.join(hym, 'train', 'ants', name), root / 'ants' / name)
    _copy(os.path.join(hym, 'val', 'ants', 'F.pergan.28(f).jpg'), root / 'ants' / 'F.pergan.28(f).jpg')
    for name in sorted(os.listdir(os.path.join(hym, 'val', 'ants')))[:2]:
        _copy(os.path.join(hym, 'val', 'ants', name), root / 'ants' / 'nested' / name)
    bees = sorted(os.listdir(os.path.join(hym, 'train', 'bees')))[:10]
    for i, name in enumerate(bees):
        target = 'abeille été [%d].JPG' % i if i < 2 else name
        _copy(os.path.join(hym, 'train', 'bees', name), root / 'bees' / target)
    tench_dir = os.path.join(datasets_dir, 'imagenette2-224', 'train', 'n01440764')
    tench = sorted(os.listdir(tench_dir))[:8]
    for name in tench:
        _copy(os.path.join(tench_dir, name), root / 'tench' / name)
    gray = cv2.imread(os.path.join(tench_dir, tench[0]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(root / 'tench' / 'gray.png'), gray)
    return root


def _copy(src, dst):
    os.makedirs(os.path.dirname(str(dst)), exist_ok=True)
    shutil.copyfile(src, str(dst))


def _files_per_class(root):
    return {name: sum(len(files) for _, _, files in os.walk(os.path.join(root, name)))
            for name in sorted(os.listdir(root))}


def read_indexed(rec):
    """{record id: (label, decoded image as stored)} via mx.recordio.MXIndexedRecordIO."""
    reader = mx.recordio.MXIndexedRecordIO(rec[:-4] + '.idx', rec, 'r')
    out = {}
    for key in reader.keys:
        header, img = mx.recordio.unpack_img(reader.read_idx(key), iscolor=-1)
        assert header.id == key
        out[key] = (header.label, img)
    reader.close()
    return out


def labels_from_record_iter(rec, shape):
    """Every label delivered by a stock ImageRecordIter (pad-aware), and the data shape."""
    it = mx.io.ImageRecordIter(path_imgrec=rec, data_shape=shape, batch_size=4, round_batch=True,
                               preprocess_threads=1)
    labels = []
    for batch in it:
        assert batch.data[0].shape == (4,) + shape
        labels.extend(batch.label[0].asnumpy()[:4 - batch.pad].astype(int).tolist())
    return labels


def lst_entries(path):
    with open(path, encoding='utf-8') as handle:
        rows = [line.rstrip('\n').split('\t') for line in handle]
    return {int(index): (float(label), rel) for index, label, rel in rows}


def test_split_counts_and_stock_readers(photos, tmp_path):
    prefix = str(tmp_path / 'out' / 'set')
    result = convert(str(photos), prefix, val_ratio=0.25, seed=3, resize=64, center_crop=True,
                     num_workers=2, progress=False)
    assert result.class_folders == ['ants', 'bees', 'tench'] == result.class_names
    assert result.skipped == [] and result.skipped_path is None
    for split in ('train', 'val'):
        for ext, paths in (('rec', result.records), ('idx', result.indexes), ('lst', result.lists)):
            assert paths[split] == '%s_%s.%s' % (prefix, split, ext)
    with open(result.labels_path, encoding='utf-8') as handle:
        assert handle.read() == '0\tants\tants\n1\tbees\tbees\n2\ttench\ttench\n'

    per_class = _files_per_class(str(photos))
    for label, folder in enumerate(result.class_folders):
        n_train, n_val = result.counts['train'][label], result.counts['val'][label]
        assert n_train + n_val == per_class[folder]
        assert n_val == round(per_class[folder] * 0.25)

    seen = set()
    for split in ('train', 'val'):
        rec = result.records[split]
        listed = lst_entries(result.lists[split])
        records = read_indexed(rec)
        assert set(records) == set(listed)
        assert not seen & set(records)  # a photo lands in exactly one split
        seen |= set(records)
        for key, (label, img) in records.items():
            expected_label, rel = listed[key]
            assert label == expected_label == result.class_folders.index(rel.split('/')[0])
            assert img.shape == (64, 64, 3)
        assert Counter(labels_from_record_iter(rec, (3, 64, 64))) == \
            Counter({label: n for label, n in result.counts[split].items() if n})
    assert len(seen) == sum(per_class.values())


def test_shorter_side_resize_keeps_aspect_and_gray_becomes_three_channels(photos, tmp_path):
    result = convert(str(photos), str(tmp_path / 'all'), resize=48, num_workers=1, progress=False)
    listed = lst_entries(result.lists['all'])
    for key, (_, img) in read_indexed(result.records['all']).items():
        original = cv2.imread(os.path.join(str(photos), listed[key][1]), cv2.IMREAD_UNCHANGED)
        assert min(img.shape[:2]) == 48 and img.shape[2] == 3
        assert abs(img.shape[1] / img.shape[0] - original.shape[1] / original.shape[0]) < 0.05
    gray_key = next(k for k, (_, rel) in listed.items() if rel.endswith('gray.png'))
    gray = read_indexed(result.records['all'])[gray_key][1]
    assert np.abs(gray[..., 0].astype(int) - gray[..., 2]).max() <= 2  # stored as 3 equal channels


def test_worker_count_does_not_change_the_records(photos, tmp_path):
    one = convert(str(photos), str(tmp_path / 'one'), val_ratio=0.2, resize=40, num_workers=1,
                  progress=False)
    two = convert(str(photos), str(tmp_path / 'two'), val_ratio=0.2, resize=40, num_workers=2,
                  progress=False)
    for split in ('train', 'val'):
        with open(one.records[split], 'rb') as a, open(two.records[split], 'rb') as b:
            assert a.read() == b.read()


def test_stock_list_converts(photos, tmp_path):
    prefix = str(tmp_path / 'stock')
    subprocess.run([sys.executable, STOCK_IM2REC, '--list', '--recursive', prefix, str(photos)],
                   check=True, capture_output=True)
    stock = lst_entries(prefix + '.lst')
    assert len(stock) == sum(_files_per_class(str(photos)).values())
    result = convert(prefix + '.lst', str(tmp_path / 'from_lst'), root=str(photos), resize=32,
                     num_workers=2, progress=False)
    records = read_indexed(result.records['all'])
    assert set(records) == set(stock)
    for key, (label, img) in records.items():
        assert label == stock[key][0] and min(img.shape[:2]) == 32
    # the stock list numbers nested folders as classes of their own: 4 labels
    assert len(result.class_names) == 4


def _write_batch(path, images_rgb, labels):
    data = images_rgb.transpose(0, 3, 1, 2).reshape(len(labels), 3072)
    with open(path, 'wb') as handle:
        pickle.dump({b'batch_label': b'test', b'data': data, b'labels': labels,
                     b'filenames': [b'x.png'] * len(labels)}, handle)


def test_cifar10_python_batches(tmp_path):
    folder = tmp_path / 'cifar-10-batches-py'
    folder.mkdir()
    names = [b'airplane', b'automobile', b'bird', b'cat', b'deer', b'dog', b'frog', b'horse',
             b'ship', b'truck']
    with open(str(folder / 'batches.meta'), 'wb') as handle:
        pickle.dump({b'label_names': names, b'num_vis': 3072}, handle)
    rng = np.random.RandomState(0)
    expected = {}
    for name, n in (('data_batch_1', 20), ('data_batch_2', 10), ('test_batch', 10)):
        labels = rng.randint(0, 10, n).tolist()
        # each image a flat colour, red = 20*label, to check channel order and labels at once
        images = np.zeros((n, 32, 32, 3), np.uint8)
        images[..., 0] = np.array(labels, np.uint8)[:, None, None] * 20
        images[..., 1], images[..., 2] = 128, 250
        _write_batch(str(folder / name), images, labels)
        expected[name] = labels
    result = convert(str(folder), str(tmp_path / 'cifar'), resize=0, num_workers=2, progress=False)
    assert result.class_names == [n.decode() for n in names]
    train_labels = expected['data_batch_1'] + expected['data_batch_2']
    for split, labels in (('train', train_labels), ('val', expected['test_batch'])):
        assert result.counts[split] == {c: labels.count(c) for c in range(10)}
        records = read_indexed(result.records[split])
        assert len(records) == len(labels)
        for label, img in records.values():
            assert img.shape == (32, 32, 3)
            b, g, r = img.reshape(-1, 3).mean(axis=0)
            assert abs(r - 20 * label) < 4 and abs(g - 128) < 4 and abs(b - 250) < 4
        assert sorted(labels_from_record_iter(result.records[split], (3, 32, 32))) == sorted(labels)
    with pytest.raises(UsageError, match='own split'):
        convert(str(folder), str(tmp_path / 'again'), val_ratio=0.1, progress=False)


def _plant_bad_files(photos, root):
    shutil.copytree(str(photos / 'ants'), str(root / 'ants'))
    shutil.copytree(str(photos / 'bees'), str(root / 'bees'))
    good = (root / 'ants' / 'ant photos.jpg').read_bytes()
    bad = {'ants/empty.jpg': b'',
           'ants/notes.jpg': b'this is a text file, not a photo\n' * 20,
           'bees/truncated.jpg': good[:len(good) // 2],
           'bees/noise.PNG': np.random.RandomState(0).bytes(5000)}
    for rel, data in bad.items():
        (root / rel).write_bytes(data)
    return {str(root / rel) for rel in bad}


def test_bad_files_are_skipped_and_reported(photos, tmp_path, capsys):
    root = tmp_path / 'mixed'
    planted = _plant_bad_files(photos, root)
    prefix = str(tmp_path / 'mixed_out')
    result = im2rec.main([str(root), prefix, '--workers', '2', '--resize', '32', '--no-progress'])
    assert {path for path, _ in result.skipped} == planted
    reasons = dict(result.skipped)
    assert reasons[str(root / 'ants' / 'empty.jpg')] == 'empty file'
    assert 'truncated JPEG' in reasons[str(root / 'bees' / 'truncated.jpg')]
    assert 'decode' in reasons[str(root / 'ants' / 'notes.jpg')]
    with open(prefix + '_skipped.txt', encoding='utf-8') as handle:
        assert sorted(line.rstrip('\n') for line in handle) == \
            sorted('%s\t%s' % entry for entry in result.skipped)
    assert 'skipped 4 bad file(s)' in capsys.readouterr().out
    good = sum(n for name, n in _files_per_class(str(photos)).items() if name != 'tench')
    assert len(read_indexed(result.records['all'])) == result.num_records == good


def test_refuses_to_overwrite_unless_told(photos, tmp_path):
    prefix = str(tmp_path / 'once')
    result = convert(str(photos), prefix, resize=24, progress=False)
    before = open(result.records['all'], 'rb').read()
    with pytest.raises(UsageError, match='already exists'):
        convert(str(photos), prefix, resize=32, progress=False)
    assert open(result.records['all'], 'rb').read() == before
    convert(str(photos), prefix, resize=32, overwrite=True, progress=False)
    assert open(result.records['all'], 'rb').read() != before


def _ctrl_c():
    raise KeyboardInterrupt


def _worker_error():
    raise RuntimeError('worker failed')


def _worker_dies():
    os._exit(1)


@pytest.mark.parametrize('workers, failure, expected', [
    (1, _ctrl_c, KeyboardInterrupt), (2, _worker_error, RuntimeError),
    (2, _worker_dies, BrokenProcessPool)])
def test_interrupted_run_leaves_no_record_files(photos, tmp_path, monkeypatch, workers, failure,
                                                expected):
    real = im2rec.make_record

    def failing_fifth(index, label, path, pixels, settings):
        if index == 4:
            failure()
        return real(index, label, path, pixels, settings)

    monkeypatch.setattr(im2rec, 'make_record', failing_fifth)
    out = tmp_path / 'out'
    with pytest.raises(expected):
        convert(str(photos), str(out / 'cut'), resize=32, num_workers=workers, progress=False)
    assert os.listdir(str(out)) == []


def _text_file(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize('make_source, message', [
    (lambda tmp: tmp / 'missing', 'does not exist'),
    (lambda tmp: tmp, 'no class folders'),
    (lambda tmp: (tmp / 'cls' / 'empty').mkdir(parents=True) or tmp / 'cls', 'has no images'),
    (lambda tmp: _text_file(tmp / 'x.lst', ''), 'lists no images'),
    (lambda tmp: _text_file(tmp / 'y.lst', '0\tcat\ta.jpg\n'), 'must be numbers'),
    (lambda tmp: _text_file(tmp / 'photo.jpg', 'x'), 'neither a folder'),
])
def test_bad_sources_are_one_line_errors(tmp_path, capsys, make_source, message):
    source = make_source(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        im2rec.run_cli(im2rec.main, [str(source), str(tmp_path / 'o' / 'p'), '--no-progress'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count('\n') == 1


def test_pass_through_stores_the_files_unchanged(photos, tmp_path):
    source = tmp_path / 'pt'
    shutil.copytree(str(photos / 'tench'), str(source / 'tench'))
    result = convert(str(source), str(tmp_path / 'raw'), pass_through=True, progress=False)
    listed = lst_entries(result.lists['all'])
    reader = mx.recordio.MXIndexedRecordIO(result.indexes['all'], result.records['all'], 'r')
    for key in reader.keys:
        _, payload = mx.recordio.unpack(reader.read_idx(key))
        assert payload == (source / listed[key][1]).read_bytes()


def test_jpeg_header_size_matches_decoded_size(photos):
    from tools.image_encoding import jpeg_shorter_side
    jpegs = [os.path.join(d, f) for d, _, files in os.walk(str(photos)) for f in files
             if not f.endswith('.png')]
    for path in jpegs:
        with open(path, 'rb') as handle:
            data = handle.read()
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert jpeg_shorter_side(data) == min(decoded.shape[:2]), path
