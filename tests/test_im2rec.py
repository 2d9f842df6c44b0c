"""alexnet_mxnet.data.im2rec on real photos: splits, read-back with stock MXNet readers, bad input."""
import os
import pickle
import shutil
import subprocess
import sys
from collections import Counter

import cv2
import mxnet as mx
import numpy as np
import pytest

from alexnet_mxnet.base.errors import UsageError
from tests import bad_images
from tests.conftest import REPO, without_root_file_access
from alexnet_mxnet.base.cli import run_cli
from alexnet_mxnet.commands import im2rec as im2rec_command
from alexnet_mxnet.base.recordio import frame_record, pack_image_record
from alexnet_mxnet.data.im2rec import convert
from iterators import classes_of_part

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


def _part_labels(rec, part, parts):
    """The labels the stock ImageRecordIter gives a distributed worker: part ``part`` of
    ``parts`` (as fit passes kv.rank and kv.num_workers)."""
    it = mx.io.ImageRecordIter(path_imgrec=rec, path_imgidx=rec[:-4] + '.idx',
                               data_shape=(3, 32, 32), batch_size=1, num_parts=parts,
                               part_index=part, shuffle=True, preprocess_threads=1)
    return [int(batch.label[0].asnumpy()[0]) for batch in it]


def test_every_distributed_worker_reads_every_class(photos, tmp_path):
    """Two workers read a .rec in two contiguous halves; records in class order gave one the
    ants and bees and the other the bees and tench (their batch-norm statistics, metrics and
    gradients each from some classes only)."""
    mixed = convert(str(photos), str(tmp_path / 'mixed'), val_ratio=0.2, resize=40,
                    num_workers=1, progress=False)
    ordered = convert(str(photos), str(tmp_path / 'ordered'), val_ratio=0.2, resize=40,
                      num_workers=1, progress=False, shuffle=False)
    for part in (0, 1):
        assert set(_part_labels(mixed.records['train'], part, 2)) == {0, 1, 2}
        assert classes_of_part(mixed.records['train'], 2, part) == (3, 3)
    assert set(_part_labels(ordered.records['train'], 0, 2)) == {0, 1}
    assert classes_of_part(ordered.records['train'], 2, 0) == (2, 3)   # what fit warns of
    train = [lst_entries(r.lists['train']) for r in (mixed, ordered)]
    assert train[0] == train[1]              # the same photos in each split, in another order
    labels = [label for label, _ in train[0].values()]     # in record order
    assert labels != sorted(labels)
    again = convert(str(photos), str(tmp_path / 'again'), val_ratio=0.2, resize=40,
                    num_workers=1, progress=False)
    with open(mixed.records['train'], 'rb') as a, open(again.records['train'], 'rb') as b:
        assert a.read() == b.read()          # the order is the seed's, not the run's


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


def test_bad_files_are_skipped_and_reported(photos, tmp_path, capsys):
    """Each bad file is skipped with its reason; none stops, hangs or blows up the run: a FIFO
    and a link to /dev/zero named like photos, a resize beyond OpenCV's limits, a PNG bomb,
    truncated and corrupt JPEGs. A photo with a video after its end marker is kept."""
    root = tmp_path / 'mixed'
    shutil.copytree(str(photos / 'ants'), str(root / 'ants'))
    shutil.copytree(str(photos / 'bees'), str(root / 'bees'))
    expected = bad_images.plant(str(root / 'bees'), (root / 'ants' / 'ant photos.jpg').read_bytes())
    prefix = str(tmp_path / 'mixed_out')
    result = im2rec_command.main([str(root), prefix, '--workers', '2', '--resize', '32', '--no-progress'])
    reasons = {os.path.basename(path): reason for path, reason in result.skipped}
    assert sorted(reasons) == sorted(expected)
    for name, reason in expected.items():
        assert reason in reasons[name], name
    with open(prefix + '_skipped.txt', encoding='utf-8') as handle:
        assert sorted(line.rstrip('\n') for line in handle) == \
            sorted('%s\t%s' % entry for entry in result.skipped)
    assert 'skipped %d bad file(s)' % len(expected) in capsys.readouterr().out
    good = sum(n for name, n in _files_per_class(str(photos)).items() if name != 'tench')
    records = read_indexed(result.records['all'])
    assert len(records) == result.num_records == good + len(bad_images.KEPT)
    kept = [key for key, (_, rel) in lst_entries(result.lists['all']).items()
            if os.path.basename(rel) in bad_images.KEPT]
    assert len(kept) == 1 and min(records[kept[0]][1].shape[:2]) == 32


def test_refuses_to_overwrite_unless_told(photos, tmp_path):
    prefix = str(tmp_path / 'once')
    result = convert(str(photos), prefix, resize=24, progress=False)
    before = open(result.records['all'], 'rb').read()
    with pytest.raises(UsageError, match='already exists'):
        convert(str(photos), prefix, resize=32, progress=False)
    assert open(result.records['all'], 'rb').read() == before
    convert(str(photos), prefix, resize=32, overwrite=True, progress=False)
    assert open(result.records['all'], 'rb').read() != before


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
    (lambda tmp: (tmp / 'src' / 'tab\there').mkdir(parents=True) or tmp / 'src',
     'src/tab\\there: the name holds a tab, line break or other control character'),
])
def test_bad_sources_are_one_line_errors(tmp_path, capsys, make_source, message):
    source = make_source(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(im2rec_command.main, [str(source), str(tmp_path / 'o' / 'p'), '--no-progress'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count('\n') == 1


def test_pass_through_stores_the_files_unchanged(photos, tmp_path):
    source = tmp_path / 'pt'
    shutil.copytree(str(photos / 'tench'), str(source / 'tench'))
    bmp = str(source / 'tench' / 'x.bmp')
    cv2.imwrite(bmp, cv2.imread(str(source / 'tench' / 'gray.png')))
    result = convert(str(source), str(tmp_path / 'raw'), pass_through=True, progress=False)
    assert result.skipped == [(bmp, 'a BMP file: pass-through keeps only JPEG and PNG files '
                                    '(stock MXNet readers cannot decode some other formats); '
                                    'convert without pass-through to store it as JPEG')]
    listed = lst_entries(result.lists['all'])
    reader = mx.recordio.MXIndexedRecordIO(result.indexes['all'], result.records['all'], 'r')
    for key in reader.keys:
        _, payload = mx.recordio.unpack(reader.read_idx(key))
        assert payload == (source / listed[key][1]).read_bytes()


def test_header_sizes_match_decoded_sizes(photos):
    """The size read from the header (before decoding) is the decoded size, in every format."""
    from alexnet_mxnet.base.imagefile import probe
    paths = [os.path.join(d, f) for d, _, files in os.walk(str(photos)) for f in files]
    img = cv2.imread(paths[0])
    encoded = [cv2.imencode(ext, img[:150, :97] if ext != '.pgm' else img[:150, :97, 0])[1]
               for ext in ('.png', '.bmp', '.webp', '.tif', '.ppm', '.pgm')]
    encoded.append(cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1])
    for data in [open(path, 'rb').read() for path in paths] + [e.tobytes() for e in encoded]:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        info = probe(data)
        assert (info.height, info.width) == decoded.shape[:2], info


def test_odd_names_links_and_duplicates(photos, tmp_path):
    """A name a .lst line cannot hold is skipped with the reason (escaped in the report), a
    link loop and second names of a file are read once and reported, and every file written
    reads back with the project's and stock MXNet's readers."""
    from alexnet_mxnet.base.labels import read_labels_file
    from alexnet_mxnet.data.sources import read_lst
    root = tmp_path / 'odd'
    shutil.copytree(str(photos / 'ants'), str(root / 'ants'))
    shutil.copytree(str(photos / 'bees'), str(root / 'bees'))
    ant = str(root / 'ants' / 'ant photos.jpg')
    for name in ('tab\tname.jpg', 'new\nline.jpg', 'carriage\rreturn.jpg',
                 os.fsdecode(b'latin1 caf\xe9.jpg')):
        shutil.copyfile(ant, str(root / 'bees' / name))
    os.symlink('..', str(root / 'ants' / 'loop'))
    os.symlink('../ants/ant photos.jpg', str(root / 'bees' / 'alias.jpg'))
    synsets = tmp_path / 'synsets.txt'
    synsets.write_text('ants formica\trufa\x0b(red\x1b wood ant)\nbees honey  bee\n', 'utf-8')
    result = convert(str(root), str(tmp_path / 'out' / 'odd'), val_ratio=0.3, resize=32,
                     synsets=str(synsets), num_workers=2, progress=False)
    reasons = {os.path.relpath(path, str(root)): reason for path, reason in result.skipped}
    assert sorted(reasons) == ['ants/loop', 'bees/alias.jpg', 'bees/carriage\rreturn.jpg',
                               os.fsdecode(b'bees/latin1 caf\xe9.jpg'), 'bees/new\nline.jpg',
                               'bees/tab\tname.jpg']
    assert reasons['ants/loop'].startswith('folder already read (a link loop')
    assert reasons['bees/alias.jpg'] == 'same file as %s' % ant
    assert 'tab, line break or other control character' in reasons['bees/tab\tname.jpg']
    with open(result.skipped_path, encoding='utf-8') as handle:
        report = dict(line.rstrip('\n').split('\t') for line in handle)
    assert report[str(root / 'bees' / 'tab\\tname.jpg')].startswith('its name holds a tab')
    assert report[str(root / 'bees' / 'latin1 caf\\xe9.jpg')].startswith('its name is not UTF-8')
    assert len(report) == len(reasons)

    assert result.class_names == ['formica rufa (red wood ant)', 'honey bee']
    assert read_labels_file(result.labels_path) == result.class_names
    per_class = _files_per_class(str(photos))
    assert sum(result.counts['train'].values()) + sum(result.counts['val'].values()) == \
        per_class['ants'] + per_class['bees']
    lists = {split: read_lst(path, str(root)).splits['all'] for split, path in result.lists.items()}
    real = {split: {os.path.realpath(i.path) for i in items} for split, items in lists.items()}
    assert not real['train'] & real['val']
    for split, items in lists.items():
        records = read_indexed(result.records[split])
        assert [item.index for item in items] == list(records)    # .lst and .idx agree
        stock = mx.image.ImageIter(2, (3, 32, 32), path_imglist=result.lists[split],
                                   path_root=str(root))
        assert sum(2 - batch.pad for batch in stock) == len(items)


def _lst(tmp, line):
    path = tmp / 'bad.lst'
    path.write_bytes(line if isinstance(line, bytes) else line.encode())
    return path


@pytest.mark.parametrize('line, message', [
    ('0\tnan\ta.jpg\n', 'label nan is not a class index'),
    ('0\tinf\ta.jpg\n', 'label inf is not a class index'),
    ('0\t1e30\ta.jpg\n', 'label 1e30 is not a class index (an integer 0 .. 16777215)'),
    ('-1\t0\ta.jpg\n', 'index -1 is outside 0..2^64-1'),
    ('18446744073709551616\t0\ta.jpg\n', 'index 18446744073709551616 is outside 0..2^64-1'),
    (b'0\t0\t\xe9t\xe9.jpg\n', 'line 1 is not UTF-8 text (byte 0xe9)'),
])
def test_bad_lst_lines_are_one_line_errors(tmp_path, capsys, line, message):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(im2rec_command.main, [str(_lst(tmp_path, line)), str(tmp_path / 'o' / 'p'),
                                     '--no-progress'])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count('\n') == 1


def test_records_are_byte_identical_to_mxnets_writer(tmp_path):
    """Records holding RecordIO's marker word (where dmlc splits them), of every length
    modulo 4, framed and indexed exactly as MXIndexedRecordIO writes them."""
    magic = b'\x0a\x23\xd7\xce'
    payloads = [b'', b'a', b'abcde', magic, magic * 3 + b'xy', b'12' + magic + b'34' + magic,
                bytes(range(256)) * 5 + magic + b'z']
    stock = mx.recordio.MXIndexedRecordIO(str(tmp_path / 's.idx'), str(tmp_path / 's.rec'), 'w')
    ours, index, offset = [], [], 0
    for key, payload in enumerate(payloads):
        record = mx.recordio.pack(mx.recordio.IRHeader(0, float(key % 3), key, 0), payload)
        assert pack_image_record(key, key % 3, payload) == record
        stock.write_idx(key, record)
        framed = frame_record(record)
        ours.append(framed)
        index.append('%d\t%d\n' % (key, offset))
        offset += len(framed)
    stock.close()
    assert b''.join(ours) == (tmp_path / 's.rec').read_bytes()
    assert ''.join(index) == (tmp_path / 's.idx').read_text()


def _cli(*args, preexec_fn=None):
    return subprocess.run([sys.executable, os.path.join(REPO, 'im2rec.py'), '--no-progress'] + list(args),
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          preexec_fn=preexec_fn)


def test_what_cannot_be_read_is_said(photos, tmp_path):
    """(Root reads everything, so these run without root's file access.) An unreadable photo
    and an unlistable sub-folder are skipped and reported; an unlistable class folder is a
    one-line error saying so."""
    root = tmp_path / 'locked'
    shutil.copytree(str(photos / 'ants'), str(root / 'ants'))
    shutil.copytree(str(photos / 'tench'), str(root / 'tench'))
    os.chmod(str(root / 'ants' / 'nested'), 0)
    os.chmod(str(root / 'tench' / 'gray.png'), 0)
    done = _cli(str(root), str(tmp_path / 'out' / 'p'), '--resize', '32',
                preexec_fn=without_root_file_access)
    assert done.returncode == 0, done.stderr
    with open(str(tmp_path / 'out' / 'p_skipped.txt'), encoding='utf-8') as handle:
        report = dict(line.rstrip('\n').split('\t') for line in handle)
    assert report == {str(root / 'ants' / 'nested'): 'cannot list this folder: Permission denied',
                      str(root / 'tench' / 'gray.png'): 'unreadable: Permission denied'}
    os.chmod(str(root / 'tench'), 0)
    failed = _cli(str(root), str(tmp_path / 'out2' / 'p'), preexec_fn=without_root_file_access)
    assert failed.returncode == 2 and failed.stderr.count('\n') == 1
    assert 'class folder %s: cannot list this folder: Permission denied' % (root / 'tench') \
        in failed.stderr


def _source(photos, tmp_path, classes=('tench',)):
    root = tmp_path / 'src'
    for name in classes:
        shutil.copytree(str(photos / name), str(root / name))
    return root


def test_output_folder_problems_are_one_line_and_leave_nothing(photos, tmp_path):
    source = _source(photos, tmp_path)
    read_only = tmp_path / 'ro'
    read_only.mkdir()
    os.chmod(str(read_only), 0o555)
    denied = _cli(str(source), str(read_only / 'p'), preexec_fn=without_root_file_access)
    assert denied.returncode == 2 and denied.stderr.count('\n') == 1, denied.stderr
    assert str(read_only) in denied.stderr and 'Permission denied' in denied.stderr
    assert os.listdir(str(read_only)) == []
    a_file = tmp_path / 'file'
    a_file.write_text('x')
    not_folder = _cli(str(source), str(a_file / 'p'))
    assert not_folder.returncode == 2 and not_folder.stderr.count('\n') == 1
    assert 'output folder %s is a file' % a_file in not_folder.stderr


def test_full_disk_is_one_line_naming_the_file_and_leaves_nothing(photos, tmp_path, small_disk):
    source = _source(photos, tmp_path, ('ants', 'bees', 'tench'))
    disk = small_disk(256)
    full = _cli(str(source), os.path.join(disk, 'p'), '--resize', '256')
    assert full.returncode == 2 and full.stderr.count('\n') == 1, full.stderr
    assert '%s: No space left on device (the disk is full)' % os.path.join(disk, 'p.rec') \
        in full.stderr
    assert os.listdir(disk) == []


class _RunsCode:
    def __reduce__(self):
        return (os.system, ('touch ran',))


def test_a_cifar_batch_that_would_run_code_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / 'cifar-10-batches-py'
    folder.mkdir()
    with open(str(folder / 'batches.meta'), 'wb') as handle:
        pickle.dump({b'label_names': [b'a', b'b'], b'evil': _RunsCode()}, handle)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match='it asks to call posix.system, which a data batch never'):
        convert(str(folder), str(tmp_path / 'out'), progress=False)
    assert not (tmp_path / 'ran').exists()
