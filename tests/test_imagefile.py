"""alexnet_mxnet.base.imagefile on real photos: what is refused before decoding, and how folders are walked."""
import os
import shutil

import cv2
import numpy as np
import pytest

from alexnet_mxnet.base import imagefile
from alexnet_mxnet.base.imagefile import SkipImage, find_images, printable, probe, read_image_bytes


@pytest.fixture(scope='module')
def photo(datasets_dir):
    """A real JPEG with restart markers (768x512)."""
    return os.path.join(datasets_dir, 'hymenoptera', 'train', 'ants', '0013035.jpg')


def _reason(call, *args):
    with pytest.raises(SkipImage) as info:
        call(*args)
    return str(info.value)


def test_special_and_oversized_files_are_refused_without_reading(photo, tmp_path):
    os.mkfifo(str(tmp_path / 'x.jpg'))                      # open() would block forever
    os.symlink('/dev/zero', str(tmp_path / 'z.jpg'))        # read() would never end
    os.symlink(str(tmp_path / 'gone.jpg'), str(tmp_path / 'dangling.jpg'))
    with open(str(tmp_path / 'huge.jpg'), 'wb') as handle:  # sparse: no disk space used
        handle.truncate(imagefile.MAX_FILE_BYTES + 1)
    assert _reason(read_image_bytes, str(tmp_path / 'x.jpg')) == \
        'not a regular file but a FIFO (named pipe)'
    assert _reason(read_image_bytes, str(tmp_path / 'z.jpg')) == \
        'not a regular file but a character device'
    assert _reason(read_image_bytes, str(tmp_path)) == 'not a regular file but a folder'
    assert 'no such file' in _reason(read_image_bytes, str(tmp_path / 'dangling.jpg'))
    assert _reason(read_image_bytes, str(tmp_path / 'huge.jpg')) == \
        '256 MiB: over the 256 MiB file size limit'
    assert read_image_bytes(photo) == open(photo, 'rb').read()


def _encoded(img, ext):
    return cv2.imencode(ext, img)[1].tobytes()


def test_every_format_cut_short_is_truncated(photo):
    img = cv2.imread(photo)
    jpeg = open(photo, 'rb').read()
    for data in [jpeg] + [_encoded(img, ext) for ext in ('.png', '.bmp', '.webp', '.ppm')] \
            + [_encoded(img[..., 0], '.pgm')]:
        info = probe(data)
        assert (info.width, info.height) == (768, 512)
        for cut in (len(data) // 2, len(data) - 1):
            assert _reason(probe, data[:cut]).startswith('truncated ' + info.format), info.format


def test_jpeg_structure(photo):
    """Overwritten or removed middles are corrupt (OpenCV decodes both with a mere warning);
    data after the end marker is not."""
    data = open(photo, 'rb').read()
    n = len(data)
    zeros = data[:n // 3] + bytes(n // 3) + data[2 * n // 3:]
    spliced = data[:n // 3] + data[2 * n // 3:]
    for bad in (zeros, spliced):
        assert cv2.imdecode(np.frombuffer(bad, np.uint8), cv2.IMREAD_COLOR) is not None
        assert _reason(probe, bad).startswith('corrupt JPEG: restart marker out of sequence')
    garbage = data[:n // 3] + b'\xff\x37' + data[n // 3 + 2:]
    assert _reason(probe, garbage).startswith('corrupt JPEG: unexpected marker 0x37')
    assert probe(data + b'\x00\x00\x00\x18ftypmp42' + bytes(1000)).format == 'JPEG'


def test_size_limits_before_decoding():
    assert imagefile.decode_plan(imagefile.ImageInfo('JPEG', 16320, 12240), 256)[1:] == (2040, 1530)
    imagefile.check_resize(16320, 12240, 256)                 # a 200-megapixel phone photo
    assert 'over OpenCV\'s limit of 65500 pixels per side' in \
        _reason(imagefile.check_resize, 5000, 1, 256)
    assert _reason(imagefile.check_resize, 20000, 10000, 0) == \
        '20000x10000 pixels: over the 128-megapixel limit'
    bomb = imagefile.ImageInfo('PNG', 30000, 30000)
    assert _reason(imagefile.decode, b'', bomb) == \
        'PNG of 30000x30000 pixels: decoding needs more than the 128-megapixel limit'


def test_walk_reads_each_real_folder_and_file_once(photo, tmp_path):
    top = tmp_path / 'top'
    (top / 'b' / 'deep').mkdir(parents=True)
    for rel in ('a.jpg', 'b/b.JPG', 'b/deep/c.jpeg', 'b/notes.txt', '.hidden.jpg'):
        shutil.copyfile(photo, str(top / rel))
    os.symlink('..', str(top / 'b' / 'loop'))               # up to top: a loop
    os.symlink('b', str(top / 'a_link'))                    # sorts before the real b/
    os.symlink('a.jpg', str(top / 'same.jpg'))              # a second name for a.jpg
    files, problems = find_images(str(top), set(), {})
    assert files == [str(top / rel) for rel in ('a.jpg', 'b/b.JPG', 'b/deep/c.jpeg')]
    assert sorted((os.path.relpath(p, str(top)), r.split(' (')[0]) for p, r in problems) == [
        ('a_link', 'folder already read'), ('b/loop', 'folder already read'),
        ('same.jpg', 'same file as %s' % (top / 'a.jpg'))]


def test_printable_keeps_report_lines_one_line():
    name = os.fsdecode(b'tab\there\nnew\\line \xff.jpg')
    assert printable(name) == 'tab\\there\\nnew\\\\line \\xff.jpg'
    assert printable('été [1].JPG') == 'été [1].JPG'
