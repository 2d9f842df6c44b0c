"""``ImageRecordIter`` pipelines for AlexNet: augmented training, center-crop validation.

Both run MXNet's C++ decoder/augmenter with ``round_batch=False`` inside ``ShardIter``. That
wrapper knows each shard's record count from the ``.idx`` and therefore (a) reports the exact
``pad`` of the last batch and fills its rows with copies of real rows (``ImageRecordIter``
itself reports pad=0 and leaves stale rows with garbage labels there; its ``round_batch=True``
mode loses its place across ``reset()``), and (b) gives every shard the same number of batches
per epoch, ``ceil(largest shard / batch_size)``, so ``dist_sync`` workers never wait on each
other at an epoch end: a shorter training shard starts a fresh (reshuffled) pass to fill its
epoch, a shorter validation shard ends with all-filler batches (``pad == batch_size``).
"""
import logging
import os
import time

import mxnet as mx
import numpy as np

from alexnet_mxnet.base.argtypes import parse_image_shape
from alexnet_mxnet.base.errors import UsageError, mxnet_error_line
from iterators.batchwise import BatchTransformIter
from iterators.erasing import erase
from iterators.normalize import MEAN_RGB, STD_RGB, check_mean_std
from iterators.recordfile import (check_record_file, decode_record, index_path, part_range,
                                  read_index)

# Random-resized-crop ranges of the Inception/ResNet recipe (torchvision and GluonCV defaults).
RANDOM_AREA = (0.08, 1.0)
ASPECT_RATIO = (3.0 / 4.0, 4.0 / 3.0)
# ImageRecordIter decodes 3 channels as colour and 1 as grayscale; mean/std are per RGB channel.
CHANNELS = (1, 3)
# How long a failed read may spend decoding records to name the one that does not decode.
SEARCH_SECONDS = 30


class ShardIter(mx.io.DataIter):
    """Exactly ``batches_per_epoch`` batches per epoch from one shard, with exact ``pad``."""

    def __init__(self, record_iter, part_size, batches_per_epoch, refill, dtype='float32', *,
                 path_rec, begin=0, channels=3):
        super().__init__(record_iter.batch_size)
        self._iter = record_iter
        self.path_rec = path_rec
        self._begin = begin
        self._channels = channels
        self._refill = refill
        self._dtype = dtype
        self.part_size = part_size
        self.batches_per_epoch = batches_per_epoch
        self.provide_data = [mx.io.DataDesc(d.name, d.shape, dtype, d.layout)
                             for d in record_iter.provide_data]
        self.provide_label = record_iter.provide_label
        self._served = 0
        self._left = part_size
        self._last = None

    def reset(self):
        self._read(self._iter.reset)
        self._served = 0
        self._left = self.part_size

    def next(self):
        if self._served == self.batches_per_epoch:
            raise StopIteration
        self._served += 1
        if self._left == 0:
            if not self._refill:
                return self._batch(self._last.data, self._last.label, self.batch_size)
            self._read(self._iter.reset)
            self._left = self.part_size
        batch = self._read(self._iter.next)
        real = min(self._left, self.batch_size)
        self._left -= real
        data, label = batch.data, batch.label
        if real < self.batch_size:
            rows = mx.nd.array([i % real for i in range(self.batch_size)], dtype='int32')
            data = [mx.nd.take(d, rows) for d in data]
            label = [mx.nd.take(lab, rows) for lab in label]
        if self._dtype != 'float32':
            data = [d.astype(self._dtype) for d in data]
        self._last = self._batch(data, label, self.batch_size - real)
        return self._last

    def _read(self, step):
        """``step()`` of the C++ iterator, whose failures (an image that does not decode, or
        has other channels than asked for) become one line naming the file and the record."""
        try:
            return step()
        except mx.base.MXNetError as err:
            # The failing batch's records when reading in file order; shuffled, any of the shard.
            start = ((self._served - 1) * self.batch_size) % self.part_size
            order = list(range(start, self.part_size)) + list(range(start))
            raise read_error(self.path_rec, err, [self._begin + i for i in order],
                             self._channels) from None

    def _batch(self, data, label, pad):
        return mx.io.DataBatch(data, label, pad=pad, provide_data=self.provide_data,
                               provide_label=self.provide_label)


def get_train_iter(path_rec, batch_size, image_shape=(3, 227, 227), *, mean_rgb=MEAN_RGB,
                   std_rgb=None, pca_noise=0.1, color_jitter=0.0, random_resized_crop=False,
                   random_area=RANDOM_AREA, aspect_ratio=ASPECT_RATIO, mirror=True, shuffle=True,
                   random_erasing=0.0, seed=0, num_parts=1, part_index=0, num_threads=None,
                   dtype='float32', resize=None, prefetch_buffer=4):
    """Training iterator: random ``image_shape`` crop (of the 256-pixel records), random
    mirror, AlexNet's PCA lighting noise, optional colour jitter (brightness, contrast and
    saturation each in ``[-color_jitter, color_jitter]``) and random-resized crop
    (``random_area`` of the image, ``aspect_ratio`` w/h range), mean/std normalisation, then
    random erasing of each image with probability ``random_erasing`` (``iterators.erasing``),
    reshuffled every epoch. ``seed`` fixes the shuffle order and the erasures; the C++
    augmentation draws differ per epoch (MXNet's per-thread generators)."""
    if _channels(image_shape) == 1 and (pca_noise or color_jitter):
        raise UsageError('PCA lighting noise and colour jitter change colours: with 1-channel '
                         '(grayscale) images pass --pca-noise 0 --color-jitter 0')
    if not 0 <= random_erasing <= 1:
        raise UsageError('random erasing is a probability in [0, 1], got %s' % random_erasing)
    if random_resized_crop:
        _check_range('random-resized-crop area', random_area, high=1.0)
        _check_range('random-resized-crop aspect ratio', aspect_ratio)
        if tuple(random_area) == (1, 1) and tuple(aspect_ratio) == (1, 1):
            # Measured: ImageRecordIter then crops the center without resizing, silently.
            raise UsageError('a random-resized crop of area 1,1 at aspect ratio 1,1 is skipped '
                             'by MXNet\'s ImageRecordIter (it takes a plain center crop): '
                             'widen the area or ratio range (e.g. 0.999,1)')
    # seed_aug is left out on purpose: in MXNet 1.9.1 it re-seeds the augmenters at every
    # reset(), so each epoch would repeat the same crops and mirrors.
    aug = dict(rand_crop=True, rand_mirror=bool(mirror), shuffle=bool(shuffle), seed=int(seed),
               pca_noise=float(pca_noise),
               brightness=float(color_jitter), contrast=float(color_jitter),
               saturation=float(color_jitter))
    if random_resized_crop:
        aug.update(random_resized_crop=True, rand_crop=False, min_random_area=float(random_area[0]),
                   max_random_area=float(random_area[1]), min_aspect_ratio=float(aspect_ratio[0]),
                   max_aspect_ratio=float(aspect_ratio[1]))
    data = _shard_iter(path_rec, batch_size, image_shape, mean_rgb, std_rgb, num_parts,
                       part_index, num_threads, dtype, resize, prefetch_buffer, aug, refill=True)
    if not random_erasing:
        return data
    # Noise with the spread of real pixels (ImageNet's std) in the batch's scale.
    channels, std = _channels(image_shape), check_mean_std(mean_rgb, std_rgb)[1]
    noise_std = np.array(STD_RGB[:channels]) / np.array((std or (1.0, 1.0, 1.0))[:channels])
    return BatchTransformIter(
        data, lambda pixels, labels, rng: (erase(pixels, rng, random_erasing, noise_std), labels),
        seed=(seed, part_index))


def get_val_iter(path_rec, batch_size, image_shape=(3, 227, 227), *, mean_rgb=MEAN_RGB,
                 std_rgb=None, num_parts=1, part_index=0, num_threads=None, dtype='float32',
                 resize=None, prefetch_buffer=4):
    """Validation iterator: center crop, no augmentation, records in file order; the last
    batch's ``pad`` counts its filler rows (copies of real rows)."""
    return _shard_iter(path_rec, batch_size, image_shape, mean_rgb, std_rgb, num_parts,
                       part_index, num_threads, dtype, resize, prefetch_buffer, {}, refill=False)


def read_error(path_rec, err, positions, channels):
    """The ``UsageError`` for an ``MXNetError`` of ``ImageRecordIter`` on ``path_rec``: it names
    the first record (of those at ``positions`` in file order, the likeliest first) that does
    not decode, else repeats MXNet's reason."""
    keys = read_index(path_rec).keys
    bad = first_bad_record(path_rec, [keys[i] for i in positions], channels)
    if bad is not None:
        return bad
    return UsageError('reading %s failed: %s; the file may be damaged: convert the images again '
                      'with python im2rec.py' % (path_rec, mxnet_error_line(err)))


def first_bad_record(path_rec, keys, channels=3, seconds=SEARCH_SECONDS):
    """The ``UsageError`` of the first of ``keys`` whose record does not decode
    (``recordfile.decode_record``), looking for at most ``seconds``; None when those decode."""
    reader = mx.recordio.MXIndexedRecordIO(index_path(path_rec), path_rec, 'r')
    start = time.monotonic()
    told = False
    try:
        for key in keys:
            try:
                decode_record(reader.read_idx(int(key)), path_rec, key, channels)
            except UsageError as err:
                return err
            waited = time.monotonic() - start
            if waited > seconds:
                return None
            if waited > 2 and not told:
                logging.warning('reading %s failed: looking for the record that does not '
                                'decode (at most %d s)...', path_rec, seconds)
                told = True
    finally:
        reader.close()
    return None


def get_rec_iters(data_train, data_val, batch_size, image_shape=(3, 227, 227), **kwargs):
    """``(train, val)`` iterators; ``val`` is ``None`` without ``data_val``. ``kwargs`` go to
    ``get_train_iter``; the ones that also apply to validation go to ``get_val_iter``."""
    train = get_train_iter(data_train, batch_size, image_shape, **kwargs)
    if not data_val:
        return train, None
    shared = ('mean_rgb', 'std_rgb', 'num_parts', 'part_index', 'num_threads', 'dtype', 'resize',
              'prefetch_buffer')
    val = get_val_iter(data_val, batch_size, image_shape,
                       **{k: v for k, v in kwargs.items() if k in shared})
    return train, val


def _shard_iter(path_rec, batch_size, image_shape, mean_rgb, std_rgb, num_parts, part_index,
                num_threads, dtype, resize, prefetch_buffer, aug, refill):
    image_shape = _parse_shape(image_shape)
    mean, std = check_mean_std(mean_rgb, std_rgb)
    std = std or (1.0, 1.0, 1.0)
    if batch_size < 1:
        raise UsageError('batch size must be positive, got %d' % batch_size)
    num_records = check_record_file(path_rec)
    begin, end = part_range(num_records, num_parts, part_index)
    largest = part_range(num_records, num_parts, 0)[1]
    try:   # it reads its first batch already
        record_iter = mx.io.ImageRecordIter(
            path_imgrec=path_rec, path_imgidx=index_path(path_rec), data_shape=image_shape,
            batch_size=batch_size, num_parts=num_parts, part_index=part_index, round_batch=False,
            preprocess_threads=num_threads or os.cpu_count() or 1, prefetch_buffer=prefetch_buffer,
            resize=resize or -1, mean_r=mean[0], mean_g=mean[1], mean_b=mean[2], std_r=std[0],
            std_g=std[1], std_b=std[2], data_name='data', label_name='softmax_label',
            verbose=False, **aug)
    except mx.base.MXNetError as err:
        raise read_error(path_rec, err, range(begin, end), image_shape[0]) from None
    # ImageRecordIter in 1.9.1 makes no float16 ('unknown dtype'): ShardIter casts instead
    return ShardIter(record_iter, end - begin, -(-largest // batch_size), refill, dtype,
                     path_rec=path_rec, begin=begin, channels=image_shape[0])


def _check_range(what, values, high=None):
    """``values`` must be ``(low, high)`` with ``0 < low <= high`` (``<= high`` if given)."""
    low_value, high_value = values
    if not 0 < low_value <= high_value or (high is not None and high_value > high):
        raise UsageError('%s must be LO,HI with 0 < LO <= HI%s, got %s,%s'
                         % (what, ' <= %s' % high if high is not None else '', low_value,
                            high_value))


def _parse_shape(image_shape):
    shape = parse_image_shape(image_shape)
    if shape[0] not in CHANNELS:
        raise UsageError('image shape %s: the record iterators read 3 channels (colour) or 1 '
                         '(grayscale), not %d' % (','.join(map(str, shape)), shape[0]))
    return shape


def _channels(image_shape):
    return _parse_shape(image_shape)[0]
