"""Image files to network input, exactly as ``score``'s center crop sees a record: OpenCV
decode, RGB, shorter side resized (bilinear), center crop, ``(x - mean) / std``, CHW.

Files are found and read through ``alexnet_mxnet.base.imagefile``, as the converter reads them: the same
extensions, and every bad file is a reason to skip it, never a hang or an abort."""
import os

import numpy as np

from alexnet_mxnet.base.imagefile import find_images, identity, load_image
from iterators.tencrop import crop_offsets, resize_shorter_side

# alexnet_mxnet.data.im2rec stores records with this shorter side by default.
DEFAULT_RESIZE = 256


def list_images(paths):
    """``(files, problems)``: files named directly, plus the image files below folders (links
    followed, each real folder and file once), and ``[(path, reason)]`` for what was left out."""
    files, problems, visited, seen = [], [], set(), {}
    for path in paths:
        key = identity(path)     # None when it cannot be stat'ed: the reader says why
        if os.path.isdir(path) and key in visited:
            problems.append((path, 'folder already read (named twice, or inside a folder named '
                                   'before): not read again'))
        elif os.path.isdir(path):
            found, left_out = find_images(path, visited, seen)
            files += found
            problems += left_out
        elif key is not None and key in seen:
            problems.append((path, 'same file as %s' % seen[key]))
        else:
            if key is not None:
                seen[key] = path
            files.append(path)
    return files, problems


def load_center_crop(path, image_shape, mean_rgb, std_rgb=None, resize=DEFAULT_RESIZE):
    """``(C, H, W)`` float32 input for ``path``; ``alexnet_mxnet.base.imagefile.SkipImage`` says why not."""
    _, crop_h, crop_w = image_shape
    # The resize below scales the shorter side to at most this (resize 0 only enlarges an
    # image smaller than the crop), which bounds its output before anything is decoded. A
    # large JPEG is decoded at a reduced scale that still covers it, as the converter does.
    image = load_image(path, max(resize, crop_h, crop_w), reduce=bool(resize))
    image = resize_shorter_side(image[:, :, ::-1], resize, (crop_h, crop_w))
    top, left = crop_offsets(image.shape[0], image.shape[1], crop_h, crop_w)[4]
    crop = image[top:top + crop_h, left:left + crop_w].astype(np.float32)
    crop = (crop - np.asarray(mean_rgb, np.float32)) / np.asarray(std_rgb or (1, 1, 1), np.float32)
    return crop.transpose(2, 0, 1)
