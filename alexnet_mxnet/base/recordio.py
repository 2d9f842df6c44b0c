"""The RecordIO formats in one place: dmlc's record framing (what ``MXRecordIO`` writes and
``ImageRecordIter`` reads) and MXNet's image-record header (``mxnet.recordio.IRHeader``).

Pure ``struct``: the converter's worker processes use it and must not load MXNet.
"""
import struct

MAGIC = 0xCED7230A            # every record part starts with this uint32
MAGIC_BYTES = struct.pack('<I', MAGIC)
PART = struct.Struct('<II')   # magic, then cflag (top 3 bits) | length (low 29 bits)
LENGTH_MASK = (1 << 29) - 1
# A record whose payload holds the magic number at a 4-byte boundary is stored as parts: cflag 1
# starts it, 2 continues it, 3 ends it; 0 is a record in one part.
WHOLE, FIRST, MIDDLE, LAST = range(4)
# MXNet's IRHeader: flag uint32, label float32, id uint64, id2 uint64, little-endian as
# mxnet.recordio.pack writes it on every platform MXNet runs on; ``flag`` float32 labels follow
# when flag > 0.
IMAGE_HEADER = struct.Struct('<IfQQ')


def pack_image_record(index, label, payload):
    """``mxnet.recordio.pack(IRHeader(0, label, index, 0), payload)``, without MXNet."""
    return IMAGE_HEADER.pack(0, float(label), index, 0) + payload


def unpack_image_record(raw):
    """``(labels, payload)`` of an image record: its label(s) as a tuple of floats and the
    encoded image; ``ValueError`` when ``raw`` is too short for its header."""
    if len(raw) < IMAGE_HEADER.size:
        raise ValueError('%d bytes, too short for a record header' % len(raw))
    flag, label = IMAGE_HEADER.unpack_from(raw)[:2]
    if not flag:
        return (label,), raw[IMAGE_HEADER.size:]
    end = IMAGE_HEADER.size + 4 * flag
    if len(raw) < end:
        raise ValueError('%d bytes, too short for its %d labels' % (len(raw), flag))
    return struct.unpack_from('<%df' % flag, raw, IMAGE_HEADER.size), raw[end:]


def frame_record(record):
    """``record`` as dmlc's RecordIOWriter (behind ``MXIndexedRecordIO.write``) stores it: a
    marker and a length word, with the record split (continuation flags 1, 2, 3) wherever it
    holds the marker at a 4-byte boundary, so readers can resynchronise; padded to 4 bytes.
    Records here stay far below its 2**29-byte limit."""
    parts, start, found = [], 0, record.find(MAGIC_BYTES)
    while found != -1:
        if found % 4 == 0:
            parts += [PART.pack(MAGIC, (FIRST if start == 0 else MIDDLE) << 29 | found - start),
                      record[start:found]]
            start = found + 4
            found = record.find(MAGIC_BYTES, start)
        else:
            found = record.find(MAGIC_BYTES, found + 1)
    parts += [PART.pack(MAGIC, (LAST if start else WHOLE) << 29 | len(record) - start),
              record[start:], b'\0' * (-len(record) % 4)]
    return b''.join(parts)
