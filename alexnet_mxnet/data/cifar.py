"""CIFAR-10's python batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``).

Each batch is a pickled dict: ``data`` uint8 (N, 3072) holding the red, green and
blue 32x32 planes of each image in turn, ``labels`` a list of N ints; the meta
file's ``label_names`` names the 10 classes. Keys are bytes in the official
(Python 2) files and str in re-pickled copies: both are accepted.
"""
import glob
import os
import pickle

import numpy as np

from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.data.sources import Collection, Item, clean_name

META = 'batches.meta'
TRAIN_PATTERN = 'data_batch_*'
TEST_BATCH = 'test_batch'


def is_cifar_folder(path):
    return os.path.isfile(os.path.join(path, META))


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR-10 batches hold (dicts, lists, bytes, numpy arrays): a pickle
    can name any function to call, so a downloaded file could otherwise run code."""
    ALLOWED = {(module, name) for module in ('numpy.core.multiarray', 'numpy._core.multiarray')
               for name in ('_reconstruct', 'scalar')} | {
                   ('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode')}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError('it asks to call %s.%s, which a data batch never does'
                                         % (module, name))
        return super().find_class(module, name)


def _load(path):
    try:
        with open(path, 'rb') as handle:
            batch = _BatchUnpickler(handle, encoding='bytes').load()
    except Exception as err:
        raise UsageError('%s is not a CIFAR-10 python batch (%s)' % (path, err))
    if not isinstance(batch, dict):
        raise UsageError('%s is not a CIFAR-10 python batch (no dict inside)' % path)
    return {(key.decode() if isinstance(key, bytes) else key): value for key, value in batch.items()}


def _field(batch, key, path):
    if key not in batch:
        raise UsageError('%s has no %r entry: not a CIFAR-10 python batch' % (path, key))
    return batch[key]


def read_batch(path):
    """``(images BGR uint8 (N, 32, 32, 3), labels list of int)`` from one batch file."""
    batch = _load(path)
    data = np.asarray(_field(batch, 'data', path), dtype=np.uint8)
    labels = [int(label) for label in _field(batch, 'labels', path)]
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise UsageError('%s: data has shape %s for %d labels, expected (N, 3072)'
                         % (path, data.shape, len(labels)))
    rgb = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(rgb[..., ::-1]), labels


def read_cifar_folder(folder):
    """data_batch_* -> split 'train', test_batch -> split 'val'; class folders = label names."""
    meta_path = os.path.join(folder, META)
    names = [clean_name(name.decode('utf-8', 'replace') if isinstance(name, bytes) else str(name))
             or str(label)
             for label, name in enumerate(_field(_load(meta_path), 'label_names', meta_path))]
    batches = {'train': sorted(glob.glob(os.path.join(folder, TRAIN_PATTERN))),
               'val': sorted(glob.glob(os.path.join(folder, TEST_BATCH)))}
    if not batches['train'] and not batches['val']:
        raise UsageError('%s has %s but no data_batch_N or test_batch files' % (folder, META))
    splits, index = {}, 0
    for split, paths in batches.items():
        items = []
        for path in paths:
            images, labels = read_batch(path)
            bad = [label for label in labels if not 0 <= label < len(names)]
            if bad:
                raise UsageError('%s: label %d outside the %d label names' % (path, bad[0], len(names)))
            base = os.path.basename(path)
            for row, (image, label) in enumerate(zip(images, labels)):
                ref = '%s:%d' % (base, row)
                items.append(Item(index, label, os.path.join(folder, ref), ref, image))
                index += 1
        if items:
            splits[split] = items
    return Collection(splits, names)
