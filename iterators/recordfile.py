"""Checks on a ``.rec``/``.idx`` pair and the record ranges of its shards.

MXNet's C++ reader trusts the file: a damaged record aborts the whole process, and a label
outside the class count trains silently wrong (or fails only when it is scored). So
``check_record_file`` reads, through the ``.idx``, the framing and image header of *every*
record -- a few dozen bytes each, not the images -- and refuses a bad file in one line that
names the record, before any work.
"""
import collections
import os
import struct

import cv2
import numpy as np

from alexnet_mxnet.base import imagefile
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.base.recordio import (FIRST, IMAGE_HEADER, LAST, LENGTH_MASK, MAGIC, MIDDLE, PART,
                                         WHOLE, unpack_image_record)

RecordIndex = collections.namedtuple('RecordIndex', 'keys offsets labels label_counts')
RecordIndex.__doc__ = """What the check read, in file order (the order of ``ImageRecordIter``
without shuffling, and of its shards): each record's ``.idx`` key and offset, its first label
and how many labels it has."""

# Files already checked in this process, by identity and modification time: the training loop
# makes a new iterator every epoch and must not read a large file's headers again each time.
_CHECKED = {}


def index_path(path_rec):
    """The ``.idx`` that belongs to ``path_rec`` (same name, other extension)."""
    return os.path.splitext(path_rec)[0] + '.idx'


def check_record_file(path_rec, num_classes=None):
    """Number of records in ``path_rec``, after checking every one of them.

    Raises a one-line ``UsageError`` when the ``.rec`` or ``.idx`` is missing or empty, when
    a record is not where the index says or does not end where the next one starts (a
    truncated or damaged ``.rec``, or an ``.idx`` of another file), and, given
    ``num_classes``, when a record's label is not a whole number in ``[0, num_classes)`` or
    it has several labels.
    """
    index = read_index(path_rec)
    if num_classes is not None:
        _check_labels(path_rec, index, num_classes)
    return len(index.offsets)


def read_index(path_rec):
    """The ``RecordIndex`` of a checked ``path_rec`` (see ``check_record_file``)."""
    path_idx = index_path(path_rec)
    for path, kind in ((path_rec, 'record file'), (path_idx, 'index file')):
        if not os.path.isfile(path):
            raise UsageError('%s %s not found (make the .rec/.idx pair with python im2rec.py)'
                             % (kind, path))
        if os.path.getsize(path) == 0:
            raise UsageError('%s %s is empty' % (kind, path))
    identity = tuple((s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns)
                     for s in (os.stat(path_rec), os.stat(path_idx)))
    key = os.path.abspath(path_rec)
    if key not in _CHECKED or _CHECKED[key][0] != identity:
        _CHECKED[key] = identity, _scan(path_rec, path_idx)
    return _CHECKED[key][1]


def _read_entries(path_idx):
    """``[(key, offset)]`` in file order."""
    entries = []
    with open(path_idx) as idx:
        for line_no, line in enumerate(idx, 1):
            if not line.strip():
                continue
            fields = line.split('\t')
            try:
                entries.append((fields[0].strip(), int(fields[1])))
            except (IndexError, ValueError):
                raise UsageError('index file %s line %d is not "key<TAB>offset": %r'
                                 % (path_idx, line_no, line.strip()[:60])) from None
    if not entries:
        raise UsageError('index file %s lists no records' % path_idx)
    entries.sort(key=lambda entry: entry[1])
    return entries


class _Damaged(Exception):
    """Why the bytes at an offset are not the image record the index promises."""


def _scan(path_rec, path_idx):
    entries = _read_entries(path_idx)
    rec_size = os.path.getsize(path_rec)
    # dmlc's indexed reader hands each record the bytes from its offset to the next one's
    # (the last: to the end of the file) and parses exactly those.
    ends = [offset for _, offset in entries[1:]] + [rec_size]
    labels = np.empty(len(entries), np.float64)
    counts = np.empty(len(entries), np.uint32)
    with open(path_rec, 'rb') as rec:
        # In file order, so the kernel's read-ahead serves the next records' headers: 3-4x
        # faster from a cold cache than reading only the pages holding them.
        fd = rec.fileno()
        for i, ((key, offset), end) in enumerate(zip(entries, ends)):
            try:
                labels[i], counts[i] = _read_record_head(fd, offset, end)
            except _Damaged as err:
                raise UsageError(
                    '%s does not match its index %s: %s (record %s at offset %d); the .rec is '
                    'truncated or damaged, or the .idx belongs to another file: make the pair '
                    'again with python im2rec.py' % (path_rec, path_idx, err, key, offset))
    return RecordIndex([key for key, _ in entries], [offset for _, offset in entries], labels,
                       counts)


def _read_record_head(fd, offset, end):
    """``(first label, label count)`` of the record at ``offset``, after checking that it is
    one whole image record ending exactly at ``end``."""
    head = os.pread(fd, PART.size + IMAGE_HEADER.size, offset) if offset >= 0 else b''
    if offset % 4 or len(head) < PART.size or PART.unpack_from(head)[0] != MAGIC:
        raise _Damaged('no record starts there')
    if offset == end:
        raise _Damaged('the index lists this offset twice')
    word = PART.unpack_from(head)[1]
    cflag, length = word >> 29, word & LENGTH_MASK
    if cflag not in (WHOLE, FIRST) or len(head) < PART.size + IMAGE_HEADER.size \
            or length < IMAGE_HEADER.size:
        raise _Damaged('not the start of an image record')
    position = _end_of_parts(fd, offset, cflag, length, end)
    if position != end:
        raise _Damaged('the record ends at byte %d, the next one starts at %d' % (position, end))
    flag, label = IMAGE_HEADER.unpack_from(head, PART.size)[:2]
    if flag == 0:
        return label, 1
    if length < IMAGE_HEADER.size + 4 * flag:   # the labels follow as ``flag`` float32s
        raise _Damaged('the record is shorter than its %d labels' % flag)
    return struct.unpack('<f', os.pread(fd, 4, offset + len(head)))[0], flag


def _end_of_parts(fd, offset, cflag, length, end):
    """The byte after the last part of the record that starts at ``offset``."""
    position = offset + PART.size + (-(-length // 4) * 4)
    while cflag in (FIRST, MIDDLE):
        head = os.pread(fd, PART.size, position) if position + PART.size <= end else b''
        if len(head) < PART.size or PART.unpack(head)[0] != MAGIC:
            raise _Damaged('a part of the record is missing')
        word = PART.unpack(head)[1]
        cflag, length = word >> 29, word & LENGTH_MASK
        if cflag not in (MIDDLE, LAST):
            raise _Damaged('a part of the record is missing')
        position += PART.size + (-(-length // 4) * 4)
    return position


def _check_labels(path_rec, index, num_classes):
    multi = np.flatnonzero(index.label_counts != 1)
    if len(multi):
        i = multi[0]
        raise UsageError('%s: record %s has %d labels; a classifier needs one class label per '
                         'image (make the .rec from a .lst with one label per line)'
                         % (path_rec, index.keys[i], index.label_counts[i]))
    labels = index.labels
    with np.errstate(invalid='ignore'):
        good = (labels >= 0) & (labels < num_classes) & (labels == np.floor(labels))
    bad = np.flatnonzero(~good)
    if len(bad):
        i = bad[0]
        raise UsageError('%s: record %s has label %g, but the model has %d classes (labels '
                         '0..%d; %d record(s) outside); check --num-classes and the labels the '
                         '.rec was made with' % (path_rec, index.keys[i], labels[i], num_classes,
                                                 num_classes - 1, len(bad)))


def decode_record(raw, path_rec, key, channels=3):
    """``(label, image)`` of one raw record (``MXRecordIO.read``'s bytes): a BGR uint8 image
    (grey for ``channels=1``), checked as ``alexnet_mxnet.base.imagefile`` checks a file (a
    truncated or corrupt JPEG decodes in OpenCV with a mere warning). Anything else is a
    one-line error naming the file and the record."""
    try:
        labels, encoded = unpack_image_record(raw)
    except ValueError as why:
        raise UsageError('%s: record %s is %s: the .rec is damaged; make it again with python '
                         'im2rec.py' % (path_rec, key, why)) from None
    try:
        image = imagefile.decode(encoded, imagefile.probe(encoded))
    except imagefile.SkipImage as why:
        raise UsageError('%s: record %s is not a decodable image (%s): convert the images again '
                         'with python im2rec.py, which skips bad files'
                         % (path_rec, key, why)) from None
    return labels[0], cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if channels == 1 else image


def classes_of_part(path_rec, num_parts, part_index):
    """``(classes in the part, classes in the file)``: the distinct labels of the records that
    shard ``part_index`` of ``num_parts`` reads, and of the whole checked ``path_rec``."""
    labels = read_index(path_rec).labels
    begin, end = part_range(len(labels), num_parts, part_index)
    return len(np.unique(labels[begin:end])), len(np.unique(labels))


def part_range(num_records, num_parts, part_index):
    """Records ``[begin, end)`` that shard ``part_index`` of ``num_parts`` reads.

    The same split as dmlc's indexed RecordIO splitter behind ``ImageRecordIter``: parts of
    ``ceil(n / num_parts)`` consecutive records, the last one shorter. A layout that would
    leave a part empty is refused (ImageRecordIter crashes on an empty part).
    """
    if num_parts < 1 or not 0 <= part_index < num_parts:
        raise UsageError('part_index must be in [0, num_parts), got part %d of %d'
                         % (part_index, num_parts))
    step = -(-num_records // num_parts)
    if (num_parts - 1) * step >= num_records:
        raise UsageError('%d records are too few to give each of %d workers a shard'
                         % (num_records, num_parts))
    begin = part_index * step
    return begin, min(begin + step, num_records)
