""".rec files are checked, not trusted: every record's framing and label is read through the
.idx before any work, and a record that does not decode is named in one line instead of
aborting the process inside MXNet's C++ reader."""
import os
import shutil
import struct
import time

import mxnet as mx
import pytest

import iterators
from alexnet_mxnet.base.errors import UsageError
from tests.fit_helpers import QUICK, run_train, tiny_photo_records

MAGIC = struct.pack('<I', 0xced7230a)


@pytest.fixture(scope='module')
def records(datasets_dir, tmp_path_factory):
    return tiny_photo_records(datasets_dir, str(tmp_path_factory.mktemp('recs')))


def _entries(rec):
    """``[(key, offset)]`` of the .idx, in file order (the converter writes it so)."""
    with open(rec[:-4] + '.idx') as handle:
        return [(line.split('\t')[0], int(line.split('\t')[1])) for line in handle if line.strip()]


def _offsets(rec):
    return [offset for _, offset in _entries(rec)]


def _key(rec, position):
    return _entries(rec)[position][0]


def _copy(rec, dest):
    """A copy of ``rec``/``.idx`` as ``dest``.rec/.idx, plus the labels file, so a run on it
    finds the class names."""
    shutil.copyfile(rec, dest + '.rec')
    shutil.copyfile(rec[:-4] + '.idx', dest + '.idx')
    labels = os.path.join(os.path.dirname(rec), 'tiny_labels.txt')
    shutil.copyfile(labels, dest + '_labels.txt')
    return dest + '.rec'


def _damaged(rec, dest, record, change):
    """``rec`` copied with the bytes of record number ``record`` (in file order) edited in place
    by ``change(bytearray, offset)``."""
    path = _copy(rec, dest)
    data = bytearray(open(path, 'rb').read())
    change(data, _offsets(path)[record])
    with open(path, 'wb') as handle:
        handle.write(data)
    return path


def _rewritten(rec, dest, edit):
    """``rec`` written again record by record through ``edit(index, header, payload)`` ->
    ``(header, payload)``: real photos, headers (labels) or payloads changed on purpose."""
    path = _copy(rec, dest)
    reader = mx.recordio.MXIndexedRecordIO(rec[:-4] + '.idx', rec, 'r')
    writer = mx.recordio.MXIndexedRecordIO(dest + '.idx', path, 'w')
    for index, key in enumerate(reader.keys):
        header, payload = mx.recordio.unpack(reader.read_idx(key))
        header, payload = edit(index, header, payload)
        writer.write_idx(key, mx.recordio.pack(header, payload))
    reader.close()
    writer.close()
    return path


def _one_line_error(proc):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith('train_imagenet.py: error: '), proc.stderr
    assert 'Traceback' not in proc.stderr
    return lines[0]


def test_a_damaged_record_in_the_middle_is_named(records, tmp_path):
    train = records[0]
    middle = len(_offsets(train)) // 2
    key = _key(train, middle)
    broken_magic = _damaged(train, str(tmp_path / 'magic'), middle,
                            lambda data, at: data.__setitem__(slice(at, at + 4), bytes(4)))

    def longer(data, at):
        length = struct.unpack_from('<I', data, at + 4)[0]
        struct.pack_into('<I', data, at + 4, length + 64)
    broken_length = _damaged(train, str(tmp_path / 'length'), middle, longer)
    for path in (broken_magic, broken_length):
        with pytest.raises(UsageError, match=r'does not match its index.*record %s\b' % key):
            iterators.check_record_file(path)


def test_damaged_record_is_one_line_not_an_abort(records, tmp_path):
    """MXNet's reader aborts the process (C++ terminate) on this file."""
    train = records[0]
    middle = len(_offsets(train)) // 2
    broken = _damaged(train, str(tmp_path / 'magic'), middle,
                      lambda data, at: data.__setitem__(slice(at, at + 4), bytes(4)))
    proc = run_train(QUICK + ['--data-train', broken, '--model-prefix', tmp_path / 'run',
                              '--num-epochs', '1'], timeout=120)
    assert 'record %s ' % _key(train, middle) in _one_line_error(proc)
    assert not os.path.exists(str(tmp_path / 'run-symbol.json'))


def test_a_record_split_around_the_magic_number_is_whole(records, tmp_path):
    """dmlc RecordIO stores a payload holding its magic number as several parts: still one
    record, and its label is read from the first part."""
    def with_magic(index, header, payload):
        if index == 3:     # JPEG decoders ignore bytes after the image's end marker
            payload += b'\0' * (-(len(payload) + 24) % 4) + MAGIC + b'tail'
        return header, payload
    path = _rewritten(records[0], str(tmp_path / 'split'), with_magic)
    reader = mx.recordio.MXIndexedRecordIO(path[:-4] + '.idx', path, 'r')
    assert MAGIC in mx.recordio.unpack(reader.read_idx(reader.keys[3]))[1]   # the 4th record
    reader.close()
    assert iterators.check_record_file(path, num_classes=2) == len(_offsets(records[0]))


def test_labels_outside_the_classes_are_refused(records, tmp_path):
    val = records[1]
    out_of_range = _rewritten(val, str(tmp_path / 'label2'), lambda i, h, p: (
        h._replace(label=2.0) if i == 4 else h, p))
    with pytest.raises(UsageError, match=r'record %s has label 2\b.*2 classes' % _key(val, 4)):
        iterators.check_record_file(out_of_range, num_classes=2)
    assert iterators.check_record_file(out_of_range) == len(_offsets(val))   # no class count
    fractional = _rewritten(val, str(tmp_path / 'half'), lambda i, h, p: (
        h._replace(label=0.5) if i == 1 else h, p))
    with pytest.raises(UsageError, match='record %s has label 0.5' % _key(val, 1)):
        iterators.check_record_file(fractional, num_classes=2)
    two_labels = _rewritten(val, str(tmp_path / 'multi'), lambda i, h, p: (
        h._replace(label=[1.0, 0.0]) if i == 2 else h, p))
    with pytest.raises(UsageError, match='record %s has 2 labels' % _key(val, 2)):
        iterators.check_record_file(two_labels, num_classes=2)
    one_label_array = _rewritten(val, str(tmp_path / 'array'), lambda i, h, p: (
        h._replace(label=[1.0]), p))
    assert iterators.check_record_file(one_label_array, num_classes=2) == len(_offsets(val))


def test_bad_validation_label_stops_before_the_first_batch(records, tmp_path):
    """Today this fails after the whole training epoch, before its checkpoint."""
    train, val = records
    bad_val = _rewritten(val, str(tmp_path / 'val'), lambda i, h, p: (
        h._replace(label=7.0) if i == 3 else h, p))
    proc = run_train(QUICK + ['--data-train', train, '--data-val', bad_val, '--model-prefix',
                              tmp_path / 'run', '--num-epochs', '1', '--disp-batches', '1'],
                     timeout=120)
    line = _one_line_error(proc)
    assert bad_val in line and 'record %s has label 7' % _key(val, 3) in line
    assert '2 classes' in line
    assert 'Epoch[1]' not in proc.stderr


def test_a_record_that_is_not_an_image_is_named(records, tmp_path):
    def not_an_image(index, header, payload):
        return header, (b'this is not an image' * 8 if index == 5 else payload)
    path = _rewritten(records[1], str(tmp_path / 'text'), not_an_image)
    assert iterators.check_record_file(path, num_classes=2) == len(_offsets(records[1]))
    key = _key(path, 5)
    with pytest.raises(UsageError, match=r'text\.rec: record %s is not a decodable image' % key):
        for _ in iterators.get_val_iter(path, 2, (3, 67, 67), num_threads=1):  # (it prefetches)
            pass
    proc = run_train(QUICK + ['--data-train', path, '--model-prefix', tmp_path / 'run',
                              '--num-epochs', '1'], timeout=120)
    assert 'record %s is not a decodable image' % key in _one_line_error(proc)


def test_check_reads_every_record_quickly(records):
    """The whole-file check costs a few small reads per record (measured on imagenette in the
    report); here: cached, so the iterators made every epoch do not read the file again."""
    train = records[0]
    iterators.check_record_file(train, num_classes=2)
    start = time.perf_counter()
    for _ in range(100):
        iterators.check_record_file(train, num_classes=2)
    assert time.perf_counter() - start < 0.5
    os.utime(train)   # a changed file is read again
    iterators.check_record_file(train, num_classes=2)



def test_image_records_unpack_as_mxnet_packs_them():
    """One format module for the converter (writer) and the record checks (reader)."""
    from alexnet_mxnet.base.recordio import unpack_image_record
    one = mx.recordio.pack(mx.recordio.IRHeader(0, 3.0, 7, 0), b'jpeg bytes')
    several = mx.recordio.pack(mx.recordio.IRHeader(0, [1.0, 2.5], 8, 0), b'png bytes')
    assert unpack_image_record(one) == ((3.0,), b'jpeg bytes')
    assert unpack_image_record(several) == ((1.0, 2.5), b'png bytes')
    with pytest.raises(ValueError, match='too short'):
        unpack_image_record(b'abc')
