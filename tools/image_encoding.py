"""One image in, one packed RecordIO record out (or the reason it was skipped).

Runs inside the converter's worker processes, so it imports no MXNet engine
state: ``mx.recordio.pack`` is plain Python. Decoding a JPEG at 1/2, 1/4 or 1/8
scale (libjpeg's DCT scaling) when the photo is much larger than the target is
what makes conversion of full-size photos fast.
"""
from collections import namedtuple

import cv2
import numpy as np
from mxnet.recordio import IRHeader, pack

EncodeSettings = namedtuple('EncodeSettings', 'resize center_crop quality pass_through')

# Reduced decoding flags by scale factor, largest first.
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2))
_JPEG_START, _JPEG_END = b'\xff\xd8', b'\xff\xd9'
_PNG_START, _PNG_END = b'\x89PNG\r\n\x1a\n', b'IEND'
# A complete file has its end marker in its last bytes (a little trailing padding is tolerated).
_TAIL = 1024


class SkipImage(Exception):
    """The input is not a usable image; the message is the reason for the skipped report."""


def truncation_problem(data):
    """Why ``data`` (a JPEG or PNG file's bytes) looks cut short, or None.

    OpenCV decodes a truncated JPEG without complaint and fills the missing rows
    with grey, so the end-of-image marker is checked explicitly.
    """
    if data.startswith(_JPEG_START) and _JPEG_END not in data[-_TAIL:]:
        return 'truncated JPEG (no end-of-image marker)'
    if data.startswith(_PNG_START) and _PNG_END not in data[-_TAIL:]:
        return 'truncated PNG (no IEND chunk)'
    return None


def jpeg_shorter_side(data):
    """The shorter side from a JPEG's frame header (no decoding), or None if not found."""
    i, end = 2, len(data) - 9
    while i < end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            i += 2
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            return min(int.from_bytes(data[i + 5:i + 7], 'big'),
                       int.from_bytes(data[i + 7:i + 9], 'big'))
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], 'big')
    return None


def _reduced_flag(data, target):
    """The cheapest decode flag that still leaves the shorter side >= ``target``."""
    shorter = target and data.startswith(_JPEG_START) and jpeg_shorter_side(data)
    for factor, flag in _REDUCED:
        if shorter and shorter // factor >= target:
            return flag
    return cv2.IMREAD_COLOR


def decode(data, target=0):
    """BGR uint8 image (grey and alpha images become 3 channels) from encoded bytes."""
    if not data:
        raise SkipImage('empty file')
    problem = truncation_problem(data)
    if problem:
        raise SkipImage(problem)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), _reduced_flag(data, target))
    except cv2.error as err:
        raise SkipImage('cannot decode: %s' % str(err).strip().splitlines()[-1])
    if img is None or img.size == 0:
        raise SkipImage('not an image OpenCV can decode')
    return img


def resize_shorter(img, size):
    """Scale so the shorter side is ``size`` (area filter down, bilinear up)."""
    h, w = img.shape[:2]
    if not size or min(h, w) == size:
        return img
    if h < w:
        new_w, new_h = max(1, w * size // h), size
    else:
        new_w, new_h = size, max(1, h * size // w)
    interp = cv2.INTER_AREA if new_h < h else cv2.INTER_LINEAR
    return cv2.resize(img, (new_w, new_h), interpolation=interp)


def crop_center_square(img):
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return img[top:top + side, left:left + side]


def transform(img, settings):
    img = resize_shorter(img, settings.resize)
    if settings.center_crop:
        img = crop_center_square(img)
    return img


def encode_jpeg(img, quality):
    ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SkipImage('JPEG encoding failed')
    return buf.tobytes()


def read_file(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except OSError as err:
        raise SkipImage('unreadable: %s' % (err.strerror or err))


def image_payload(path, pixels, settings):
    """The encoded image bytes for one record, from a file ``path`` or a BGR array ``pixels``."""
    if pixels is None:
        data = read_file(path)
        if settings.pass_through:
            decode(data, target=8)  # validate cheaply; the bytes are stored unchanged
            return data
        img = decode(data, settings.resize)
    else:
        img = pixels
    return encode_jpeg(transform(img, settings), settings.quality)


def make_record(index, label, path, pixels, settings):
    """``(index, packed record or None, skip reason or None)`` for one image."""
    try:
        payload = image_payload(path, pixels, settings)
    except SkipImage as why:
        return index, None, str(why)
    return index, pack(IRHeader(0, float(label), index, 0), payload), None
