"""Image files to network input, exactly as ``score``'s center crop sees a record: OpenCV
decode, RGB, shorter side resized (bilinear), center crop, ``(x - mean) / std``, CHW."""
import os

import cv2
import numpy as np

from iterators.tencrop import crop_offsets, resize_shorter_side

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
# tools.im2rec stores records with this shorter side by default.
DEFAULT_RESIZE = 256


def list_images(paths):
    """Files named directly, plus the image files (by extension, any case) under folders."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                found += [os.path.join(folder, f) for f in sorted(files)
                          if f.lower().endswith(IMAGE_EXTENSIONS)]
        else:
            found.append(path)
    return found


def load_center_crop(path, image_shape, mean_rgb, std_rgb=None, resize=DEFAULT_RESIZE):
    """``(C, H, W)`` float32 input for ``path``, or ``None`` when it is not a readable image."""
    encoded = np.fromfile(path, np.uint8) if os.path.isfile(path) else None
    image = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if encoded is not None and encoded.size else None
    if image is None:
        return None
    _, crop_h, crop_w = image_shape
    image = resize_shorter_side(image[:, :, ::-1], resize, (crop_h, crop_w))
    top, left = crop_offsets(image.shape[0], image.shape[1], crop_h, crop_w)[4]
    crop = image[top:top + crop_h, left:left + crop_w].astype(np.float32)
    crop = (crop - np.asarray(mean_rgb, np.float32)) / np.asarray(std_rgb or (1, 1, 1), np.float32)
    return crop.transpose(2, 0, 1)
