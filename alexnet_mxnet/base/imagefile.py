"""Reading image files safely: a bad file is a reason to skip it, never a hang, a crash or an
unbounded allocation. The converter's worker processes and ``predict`` both read through here.

Every check happens before decoding:

- only regular files are opened, without blocking (a FIFO named ``x.jpg`` would block ``open``
  forever, a link to ``/dev/zero`` never ends), and at most ``MAX_FILE_BYTES`` are read;
- the format comes from the file's signature, not its name, and only formats whose header is
  read here are accepted (``IMAGE_FORMATS``); their size comes from that header;
- JPEG and PNG files are walked structurally (segment lengths, entropy-coded data, restart
  markers, chunk checksums, the end marker), because OpenCV decodes a truncated or corrupt
  JPEG with a mere warning; data after the end marker (a phone's "motion photo") is fine;
- the pixels to decode must stay within ``MAX_PIXELS`` (a decompression bomb is a small file
  declaring a huge size), and a requested resize within OpenCV's limits.

Worker processes import this module, so it imports no MXNet: only the standard library,
numpy and OpenCV.
"""
import os
import re
import stat
import struct
import zlib
from collections import namedtuple

import cv2
import numpy as np

# One list for the converter and predict: the formats whose header and size are checked here.
IMAGE_FORMATS = ('JPEG', 'PNG', 'BMP', 'WebP', 'TIFF', 'PPM/PGM')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.ppm', '.pgm')

MAX_FILE_BYTES = 256 * 2 ** 20
# Decoded pixels per image (384 MB as 8-bit BGR). A JPEG decoded at a reduced scale counts
# at that scale, so a 200-megapixel phone photo still converts at --resize 256.
MAX_PIXELS = 128 * 10 ** 6
# libjpeg's JPEG_MAX_DIMENSION: OpenCV can neither encode nor sensibly resize to a longer side.
MAX_SIDE = 65500

ImageInfo = namedtuple('ImageInfo', 'format width height')


class SkipImage(Exception):
    """The file is not a usable image; the message is the reason reported for skipping it."""


def is_image_name(name):
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


# --- reading -----------------------------------------------------------------------------

_KINDS = ((stat.S_ISDIR, 'a folder'), (stat.S_ISFIFO, 'a FIFO (named pipe)'),
          (stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device'),
          (stat.S_ISSOCK, 'a socket'))


def _not_regular(mode):
    kind = next((name for test, name in _KINDS if test(mode)), 'a special file')
    return SkipImage('not a regular file but %s' % kind)


def _unreadable(err):
    if isinstance(err, FileNotFoundError):
        return SkipImage('no such file (or a link to nothing)')
    return SkipImage('unreadable: %s' % (err.strerror or err))


def read_image_bytes(path):
    """The bytes of the regular file ``path`` (at most ``MAX_FILE_BYTES``); ``SkipImage`` says
    why not. Special files are refused before ``open``, and ``open`` cannot block."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISREG(mode):
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as err:
        raise _unreadable(err)
    if not stat.S_ISREG(mode):
        raise _not_regular(mode)
    with open(fd, 'rb') as handle:
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):   # replaced between stat and open
                raise _not_regular(info.st_mode)
            if info.st_size > MAX_FILE_BYTES:
                raise SkipImage('%d MiB: over the %d MiB file size limit'
                                % (info.st_size >> 20, MAX_FILE_BYTES >> 20))
            data = handle.read(info.st_size + 1)
        except OSError as err:
            raise _unreadable(err)
    if len(data) > info.st_size:
        raise SkipImage('the file grew while it was read (is it still being written?)')
    if not data:
        raise SkipImage('empty file')
    return data


# --- format, size and structure ----------------------------------------------------------

def _truncated(fmt):
    return SkipImage('truncated %s (the file ends before the image does)' % fmt)


def _corrupt(fmt, what):
    return SkipImage('corrupt %s: %s' % (fmt, what))


# Segments or chunks walked per file, at most: real files have hundreds (a PNG of 256 MiB in
# 8 KiB chunks: 32,768); a file of millions of empty ones would make the walk slow.
_MAX_PARTS = 10 ** 6


def _too_many_parts(fmt):
    return _corrupt(fmt, 'over %d segments' % _MAX_PARTS)


# JPEG markers: frame headers (SOFn), table and metadata segments allowed between scans.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_SEGMENTS = frozenset([0xC4, 0xCC, 0xDB, 0xDC, 0xDD, 0xFE] + list(range(0xE0, 0xF0)))
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
# Inside entropy-coded data 0xFF is followed by 0x00 (stuffing) or a restart marker; any other
# byte after 0xFF (or after a run of 0xFF fill bytes) is the marker that ends the scan. (This
# pattern, without a repeat, is searched about 20 times faster than one with it.)
_SCAN_END = re.compile(rb'\xff[^\x00\xd0-\xd7]')
_RESTART = re.compile(rb'\xff[\xd0-\xd7]')
_FILL = re.compile(rb'\xff+')


def _jpeg_scan_end(data, start):
    """Where the marker ending the scan that starts at ``start`` begins; restart markers
    inside must count 0..7 in turn (a spliced or overwritten middle breaks the count)."""
    pos = start
    while True:
        found = _SCAN_END.search(data, pos)
        if found is None:
            raise _truncated('JPEG')
        after = _FILL.match(data, found.start()).end()
        if after < len(data) and (data[after] == 0 or 0xD0 <= data[after] <= 0xD7):
            pos = after               # fill bytes before stuffing or a restart: still data
            continue
        end = found.start()
        break
    for count, restart in enumerate(_RESTART.finditer(data, start, end)):
        if data[restart.start() + 1] != 0xD0 + count % 8:
            raise _corrupt('JPEG', 'restart marker out of sequence at byte %d' % restart.start())
    return end


def _jpeg(data):
    size, scans, pos, n = None, 0, 2, len(data)
    for _ in range(_MAX_PARTS):
        if pos >= n:
            raise _truncated('JPEG')
        if data[pos] != 0xFF:
            raise _corrupt('JPEG', 'stray data where a marker belongs, at byte %d' % pos)
        pos = _FILL.match(data, pos).end()      # a marker may be preceded by fill bytes
        if pos >= n:
            raise _truncated('JPEG')
        marker = data[pos]
        if marker == _JPEG_EOI:
            if not scans:
                raise _corrupt('JPEG', 'no image data before the end marker')
            return size
        if marker not in _JPEG_SOF and marker not in _JPEG_SEGMENTS and marker != _JPEG_SOS:
            raise _corrupt('JPEG', 'unexpected marker 0x%02X at byte %d' % (marker, pos))
        if pos + 3 > n:
            raise _truncated('JPEG')
        length = int.from_bytes(data[pos + 1:pos + 3], 'big')
        end = pos + 1 + length
        if length < 2 or end > n:
            raise _truncated('JPEG') if end > n else _corrupt('JPEG', 'bad segment length')
        if marker in _JPEG_SOF:
            if size is not None or length < 8:
                raise _corrupt('JPEG', 'a second or short frame header at byte %d' % pos)
            height, width = struct.unpack_from('>HH', data, pos + 4)
            if not height or not width:
                raise SkipImage('JPEG without its size in the frame header: not supported')
            size = ImageInfo('JPEG', width, height)
        elif marker == _JPEG_SOS:
            if size is None:
                raise _corrupt('JPEG', 'image data before the frame header')
            scans += 1
            end = _jpeg_scan_end(data, end)
        pos = end
    raise _too_many_parts('JPEG')


def _png(data):
    view, pos, n, size, has_data = memoryview(data), 8, len(data), None, False
    for _ in range(_MAX_PARTS):
        if pos + 12 > n:
            raise _truncated('PNG')
        length, kind = struct.unpack_from('>I4s', data, pos)
        end = pos + 12 + length
        if end > n:
            raise _truncated('PNG')
        name = kind.decode('latin-1') if kind.isalpha() else '?'
        if zlib.crc32(view[pos + 4:end - 4]) != struct.unpack_from('>I', data, end - 4)[0]:
            raise _corrupt('PNG', 'checksum mismatch in its %s chunk at byte %d' % (name, pos))
        if size is None:
            if kind != b'IHDR' or length != 13:
                raise _corrupt('PNG', 'it does not start with a header chunk')
            width, height = struct.unpack_from('>II', data, pos + 8)
            if not width or not height:
                raise _corrupt('PNG', 'zero width or height')
            size = ImageInfo('PNG', width, height)
        elif kind == b'IDAT':
            has_data = True
        elif kind == b'IEND':
            if not has_data:
                raise _corrupt('PNG', 'no image data')
            return size
        pos = end
    raise _too_many_parts('PNG')


def _bmp(data):
    if len(data) < 34:
        raise _truncated('BMP')
    offset, header_size = struct.unpack_from('<II', data, 10)
    if header_size == 12:                                  # OS/2 header
        width, height, _, bits = struct.unpack_from('<HHHH', data, 18)
        compression = 0
    elif 40 <= header_size <= 124:
        width, height, _, bits, compression = struct.unpack_from('<iiHHI', data, 18)
    else:
        raise _corrupt('BMP', 'unknown header size %d' % header_size)
    height = abs(height)
    if width <= 0 or not height or bits not in (1, 4, 8, 16, 24, 32):
        raise _corrupt('BMP', 'impossible size or bit depth')
    if compression in (0, 3, 6):                           # uncompressed rows: all must be there
        if offset + (width * bits + 31) // 32 * 4 * height > len(data):
            raise _truncated('BMP')
    return ImageInfo('BMP', width, height)


def _webp(data):
    if data[8:12] != b'WEBP':
        raise _unknown_format()
    if len(data) < 30:
        raise _truncated('WebP')
    if 8 + struct.unpack_from('<I', data, 4)[0] > len(data):
        raise _truncated('WebP')
    kind = data[12:16]
    if kind == b'VP8 ' and data[23:26] == b'\x9d\x01\x2a':
        width, height = (side & 0x3FFF for side in struct.unpack_from('<HH', data, 26))
    elif kind == b'VP8L' and data[20] == 0x2F:
        bits = struct.unpack_from('<I', data, 21)[0]
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif kind == b'VP8X':
        width = int.from_bytes(data[24:27], 'little') + 1
        height = int.from_bytes(data[27:30], 'little') + 1
    else:
        raise _corrupt('WebP', 'unknown bitstream header')
    if not width or not height:
        raise _corrupt('WebP', 'zero width or height')
    return ImageInfo('WebP', width, height)


def _tiff(data):
    order = '<' if data[:2] == b'II' else '>'
    if len(data) < 8:
        raise _truncated('TIFF')
    ifd = struct.unpack_from(order + 'I', data, 4)[0]
    if ifd + 2 > len(data):
        raise _truncated('TIFF')
    count = struct.unpack_from(order + 'H', data, ifd)[0]
    if ifd + 2 + 12 * count > len(data):
        raise _truncated('TIFF')
    sides = {}
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, number = struct.unpack_from(order + 'HHI', data, entry)
        if tag in (256, 257) and number == 1 and kind in (3, 4):   # width, height: SHORT/LONG
            sides[tag] = struct.unpack_from(order + ('H' if kind == 3 else 'I'), data, entry + 8)[0]
    if not sides.get(256) or not sides.get(257):
        raise _corrupt('TIFF', 'no width or height in its first directory')
    return ImageInfo('TIFF', sides[256], sides[257])


_PNM_NUMBER = re.compile(rb'(?:\s|#[^\r\n]*)*(\d{1,9})')


def _netpbm(data):
    fmt, pos, numbers = ('PGM' if data[1:2] in b'25' else 'PPM'), 2, []
    for _ in range(3):                                   # width, height, maximum value
        number = _PNM_NUMBER.match(data, pos)
        if number is None:
            raise _corrupt(fmt, 'unreadable header')
        numbers.append(int(number.group(1)))
        pos = number.end()
    width, height, top = numbers
    if not width or not height or not 0 < top < 65536:
        raise _corrupt(fmt, 'impossible size or maximum value')
    if data[1:2] in b'56':                               # binary raster after one whitespace
        channels = 1 if fmt == 'PGM' else 3
        if pos + 1 + width * height * channels * (2 if top > 255 else 1) > len(data):
            raise _truncated(fmt)
    return ImageInfo(fmt, width, height)


_SIGNATURES = ((b'\xff\xd8', _jpeg), (b'\x89PNG\r\n\x1a\n', _png), (b'BM', _bmp),
               (b'RIFF', _webp), (b'II*\x00', _tiff), (b'MM\x00*', _tiff),
               (b'P2', _netpbm), (b'P3', _netpbm), (b'P5', _netpbm), (b'P6', _netpbm))


def _unknown_format():
    return SkipImage('not an image in a format read here (%s)' % ', '.join(IMAGE_FORMATS))


def probe(data):
    """``ImageInfo(format, width, height)`` of encoded image bytes, from the header and after
    the structure check; ``SkipImage`` for anything else."""
    for signature, reader in _SIGNATURES:
        if data.startswith(signature):
            return reader(data)
    raise _unknown_format()


# --- limits and decoding -----------------------------------------------------------------

_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2))


def decode_plan(info, shorter=0):
    """``(OpenCV flag, width, height)`` of the cheapest decode that keeps the shorter side at
    least ``shorter``: JPEGs are decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling)
    when that is enough, which is what makes large photos fast and small in memory."""
    if info.format == 'JPEG' and shorter:
        for factor, flag in _REDUCED:
            if min(info.width, info.height) // factor >= shorter:
                return flag, -(-info.width // factor), -(-info.height // factor)
    return cv2.IMREAD_COLOR, info.width, info.height


def check_resize(width, height, shorter=0):
    """``SkipImage`` unless a ``width`` x ``height`` image with its shorter side scaled to
    ``shorter`` (0: kept) stays within ``MAX_SIDE`` per side and ``MAX_PIXELS``."""
    small, large = sorted((width, height))
    if shorter:
        small, large = shorter, -(-large * shorter // small)
    if large > MAX_SIDE or small * large > MAX_PIXELS:
        limit = ("OpenCV's limit of %d pixels per side" % MAX_SIDE if large > MAX_SIDE
                 else 'the %d-megapixel limit' % (MAX_PIXELS // 10 ** 6))
        raise SkipImage('%dx%d pixels%s: over %s' % (
            width, height, ' resized to a shorter side of %d' % shorter if shorter else '', limit))


def decode(data, info, shorter=0):
    """BGR uint8 image (grey and alpha become 3 channels), decoded as ``decode_plan`` says,
    after checking the decoded size against ``MAX_PIXELS``."""
    flag, width, height = decode_plan(info, shorter)
    if width * height > MAX_PIXELS:
        raise SkipImage('%s of %dx%d pixels: decoding needs more than the %d-megapixel limit'
                        % (info.format, info.width, info.height, MAX_PIXELS // 10 ** 6))
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    except cv2.error as err:
        raise SkipImage('cannot decode: %s' % str(err).strip().splitlines()[-1])
    if image is None or not image.size:
        raise SkipImage('cannot decode this %s' % info.format)
    return image


def load_image(path, shorter=0, reduce=True):
    """``path`` read, checked and decoded for a resize of its shorter side to ``shorter``
    (0: none): a BGR uint8 image, or ``SkipImage`` with the reason. ``reduce=False`` decodes
    at full size (``shorter`` then only bounds an enlargement)."""
    data = read_image_bytes(path)
    info = probe(data)
    check_resize(info.width, info.height, shorter)
    return decode(data, info, shorter if reduce else 0)


# --- finding image files -----------------------------------------------------------------

def identity(path):
    """``(device, inode)`` of what ``path`` points to, or None when it cannot be stat'ed."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def find_images(top, visited, seen):
    """``(files, problems)``: the image files (by extension) below the folder ``top``, sorted,
    and ``[(path, reason)]`` for what was left out. Hidden names are ignored.

    Links are followed, but every real folder is read once (``visited``: identities of
    folders already read or not to enter, e.g. the other class folders; ``top`` joins it)
    and every real file taken once (``seen``:
    identity -> path already taken): a link loop or a second link to a folder or file is
    reported, not read again. Folders reached through a link are read after all real ones,
    so the real path is the one kept. Both are shared by the caller across calls.
    """
    found, problems, folders, linked = [], [], [top], []
    visited.add(identity(top))
    while folders or linked:
        folder = folders.pop() if folders else linked.pop()
        if folder is not top:
            key = identity(folder)
            if key is not None and key in visited:
                problems.append((folder, 'folder already read (a link loop, or a second link '
                                         'to it): not read again'))
                continue
            visited.add(key)
        try:
            with os.scandir(folder) as listing:
                entries = sorted((e for e in listing if not e.name.startswith('.')),
                                 key=lambda e: e.name, reverse=True)
        except OSError as err:
            problems.append((folder, 'cannot list this folder: %s' % (err.strerror or err)))
            continue
        for entry in entries:
            if _is_dir(entry):
                (linked if entry.is_symlink() else folders).append(entry.path)
            elif is_image_name(entry.name):
                found.append(entry.path)
    files = []
    for path in sorted(found):
        key = identity(path)
        if key is not None and key in seen:
            problems.append((path, 'same file as %s' % seen[key]))
            continue
        if key is not None:
            seen[key] = path
        files.append(path)
    return files, problems


def _is_dir(entry):
    try:
        return entry.is_dir()
    except OSError:
        return False


# --- reporting ---------------------------------------------------------------------------

_UNPRINTABLE = re.compile('[\x00-\x1f\x7f-\x9f\u2028\u2029\\\\\ud800-\udfff]')


def printable(text):
    """``text`` on one line: control characters and line separators as escapes (``\\t``,
    ``\\n``, ``\\x1b``, ``\\u2028``), a file name's undecodable bytes as ``\\xNN``, and a
    backslash doubled, so a report line stays one line and says which file it means."""
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match):
    char = match.group()
    if char == '\\':
        return '\\\\'
    if '\udc80' <= char <= '\udcff':              # a byte os.fsdecode could not decode
        return '\\x%02x' % (ord(char) - 0xDC00)
    return char.encode('unicode_escape', 'backslashreplace').decode('ascii')
