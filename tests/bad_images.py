"""Bad image files made from a real photo, shared by the converter and predict tests.

``plant(folder, good)`` writes them into ``folder`` and returns ``{name: expected reason}``
for the ones that must be skipped; ``KEPT`` names the ones that are fine and must be kept.
"""
import os
import struct
import zlib

import cv2
import numpy as np

# A JPEG with a video appended after its end marker, as phones save "motion photos".
KEPT = ('motion.jpg',)


def png_chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def png_claiming(width, height, rows=2):
    """A small, structurally valid PNG whose header claims ``width`` x ``height`` grey pixels:
    a decompression bomb's shape (decoders allocate the claimed size first)."""
    raw = (b'\x00' + bytes(min(width, 4096))) * rows
    return (b'\x89PNG\r\n\x1a\n'
            + png_chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0))
            + png_chunk(b'IDAT', zlib.compress(raw, 9)) + png_chunk(b'IEND', b''))


def flat_png(width, height):
    return cv2.imencode('.png', np.zeros((height, width, 3), np.uint8))[1].tobytes()


def bad_files(good):
    """``{name: (bytes, expected reason)}`` made from the bytes ``good`` of a real JPEG."""
    n = len(good)
    noise = np.random.RandomState(0).bytes(n // 3)
    return {
        'empty.jpg': (b'', 'empty file'),
        'notes.jpg': (b'this is a text file, not a photo\n' * 20, 'not an image in a format'),
        'truncated.jpg': (good[:n // 2], 'truncated JPEG'),
        'corrupt_middle.jpg': (good[:n // 3] + noise + good[n // 3 + len(noise):], 'corrupt JPEG'),
        'wide5000.png': (flat_png(5000, 1), "over OpenCV's limit of 65500 pixels per side"),
        'wide60000.png': (flat_png(60000, 1), "over OpenCV's limit of 65500 pixels per side"),
        'bomb.png': (png_claiming(100000, 100000), 'more than the 128-megapixel limit'),
        'bomb30k.png': (png_claiming(30000, 30000), 'more than the 128-megapixel limit'),
    }


def plant(folder, good):
    """Write the bad files, a FIFO named like a photo, a link to /dev/zero named like one, and
    the kept motion photo into ``folder``; ``{name: expected reason}`` of those to skip."""
    os.makedirs(folder, exist_ok=True)
    expected = {}
    for name, (data, reason) in bad_files(good).items():
        with open(os.path.join(folder, name), 'wb') as handle:
            handle.write(data)
        expected[name] = reason
    os.mkfifo(os.path.join(folder, 'fifo.jpg'))
    expected['fifo.jpg'] = 'not a regular file but a FIFO'
    os.symlink('/dev/zero', os.path.join(folder, 'zero.jpg'))
    expected['zero.jpg'] = 'not a regular file but a character device'
    with open(os.path.join(folder, 'motion.jpg'), 'wb') as handle:
        handle.write(good + b'\x00\x00\x00\x18ftypmp42' + np.random.RandomState(1).bytes(4000))
    return expected
