"""Checks on a ``.rec``/``.idx`` pair and the record ranges of its shards."""
import os
import struct

from engine.errors import UsageError

_MAGIC = 0xced7230a          # dmlc RecordIO: every record starts with this uint32
_LENGTH_MASK = (1 << 29) - 1  # the next uint32 holds the length in its low 29 bits


def index_path(path_rec):
    """The ``.idx`` that belongs to ``path_rec`` (same name, other extension)."""
    return os.path.splitext(path_rec)[0] + '.idx'


def check_record_file(path_rec):
    """Number of records in ``path_rec``, read from its ``.idx``.

    Raises a one-line ``UsageError`` when the ``.rec`` or ``.idx`` is missing or empty, or
    when the index does not fit the record file (an offset past its end, or a first/last
    record that is not a complete RecordIO record: a truncated or mismatched pair).
    """
    path_idx = index_path(path_rec)
    for path, kind in ((path_rec, 'record file'), (path_idx, 'index file')):
        if not os.path.isfile(path):
            raise UsageError('%s %s not found (make the .rec/.idx pair with python -m tools.im2rec)'
                             % (kind, path))
        if os.path.getsize(path) == 0:
            raise UsageError('%s %s is empty' % (kind, path))
    offsets = _read_offsets(path_idx)
    rec_size = os.path.getsize(path_rec)
    with open(path_rec, 'rb') as rec:
        for offset in (min(offsets), max(offsets)):
            if not _record_fits(rec, offset, rec_size):
                raise UsageError('%s does not match its index %s: no complete record at offset %d '
                                 '(truncated .rec, or an .idx from another file)'
                                 % (path_rec, path_idx, offset))
    return len(offsets)


def _read_offsets(path_idx):
    offsets = []
    with open(path_idx) as idx:
        for line_no, line in enumerate(idx, 1):
            if not line.strip():
                continue
            fields = line.split('\t')
            try:
                offsets.append(int(fields[1]))
            except (IndexError, ValueError):
                raise UsageError('index file %s line %d is not "key<TAB>offset": %r'
                                 % (path_idx, line_no, line.strip()[:60])) from None
    if not offsets:
        raise UsageError('index file %s lists no records' % path_idx)
    return offsets


def _record_fits(rec, offset, rec_size):
    if offset < 0 or offset + 8 > rec_size:
        return False
    rec.seek(offset)
    magic, lrecord = struct.unpack('<II', rec.read(8))
    return magic == _MAGIC and offset + 8 + (lrecord & _LENGTH_MASK) <= rec_size


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
