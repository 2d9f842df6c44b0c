"""The built-in demo data set: scikit-learn's 1,797 handwritten digits as RecordIO.

The 8x8 digits are scaled to 0..255, enlarged smoothly (bicubic) to ``size``
pixels, written as PNG files in one folder per class ('0'..'9') and converted
with ``alexnet_mxnet.data.im2rec.convert``. The result is cached; a complete cache (its
manifest written last, for the same settings) is reused without touching the
images. The build happens in a private temporary folder renamed into place,
so concurrent first calls cannot see each other's half-written files.
"""
import json
import os
import shutil
import uuid

import cv2
import numpy as np

from alexnet_mxnet.data.im2rec import ConvertResult, convert

MANIFEST = 'manifest.json'
PREFIX = 'digits'


def default_cache_dir(size):
    return os.path.join(os.path.expanduser('~'), '.cache', 'alexnet-mxnet', 'digits-%d' % size)


def write_digit_images(folder, size):
    """The digits as ``folder/<class>/<n>.png``, ``size`` x ``size`` grey images."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    for n, (image, label) in enumerate(zip(digits.images, digits.target)):
        pixels = np.clip(image * (255.0 / 16.0), 0, 255).astype(np.uint8)
        big = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_CUBIC)
        class_dir = os.path.join(folder, str(label))
        os.makedirs(class_dir, exist_ok=True)
        cv2.imwrite(os.path.join(class_dir, '%04d.png' % n), big)


def _relocated(result, to_path):
    """The result's fields as a dict, every file path passed through ``to_path``."""
    fields = dict(vars(result))
    for key in ('records', 'indexes', 'lists'):
        fields[key] = {split: to_path(path) for split, path in fields[key].items()}
    for key in ('labels_path', 'skipped_path'):
        fields[key] = to_path(fields[key]) if fields[key] else None
    return fields


def _to_manifest(result, settings, directory):
    return {'settings': settings,
            'result': _relocated(result, lambda path: os.path.relpath(path, directory))}


def _from_manifest(manifest, directory):
    fields = _relocated(ConvertResult(**manifest['result']),
                        lambda path: os.path.join(directory, path))
    fields['counts'] = {split: {int(label): n for label, n in per_class.items()}
                        for split, per_class in fields['counts'].items()}
    fields['skipped'] = [tuple(entry) for entry in fields['skipped']]
    return ConvertResult(**fields)


def _cached(directory, settings):
    """The cached result when ``directory`` is complete for ``settings``, else None."""
    try:
        with open(os.path.join(directory, MANIFEST), encoding='utf-8') as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return None
    if manifest.get('settings') != settings:
        return None
    result = _from_manifest(manifest, directory)
    needed = list(result.records.values()) + list(result.indexes.values()) + [result.labels_path]
    return result if all(os.path.isfile(path) for path in needed) else None


def ensure_digits_dataset(cache_dir=None, size=72, val_ratio=0.2, seed=0, progress=True):
    """``ConvertResult`` of the digits at ``size`` x ``size``: splits 'train' and 'val', or
    'all' when ``val_ratio`` is 0."""
    directory = os.path.abspath(cache_dir or default_cache_dir(size))
    settings = {'size': size, 'val_ratio': val_ratio, 'seed': seed}
    result = _cached(directory, settings)
    if result is not None:
        return result
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    build = os.path.join(parent, '.%s.%d.%s.tmp' % (os.path.basename(directory), os.getpid(),
                                                     uuid.uuid4().hex[:8]))
    os.mkdir(build)  # private to this call, permissions from the umask
    try:
        write_digit_images(os.path.join(build, 'images'), size)
        built = convert(os.path.join(build, 'images'), os.path.join(build, PREFIX),
                        val_ratio=val_ratio, seed=seed, resize=size, progress=progress)
        with open(os.path.join(build, MANIFEST), 'w', encoding='utf-8') as handle:
            json.dump(_to_manifest(built, settings, build), handle)
        if os.path.isdir(directory) and _cached(directory, settings) is None:
            shutil.rmtree(directory)  # incomplete, or built for other settings
        try:
            os.rename(build, directory)
        except OSError:
            if _cached(directory, settings) is None:
                raise
            # else another process renamed its complete build into place first
    finally:
        if os.path.isdir(build):
            shutil.rmtree(build)
    return _cached(directory, settings)
