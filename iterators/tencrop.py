"""The AlexNet paper's test protocol: score four corner crops, the center crop and the
horizontal mirrors of all five, then average the ten predictions per image."""
import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import mxnet as mx
import numpy as np

from alexnet_mxnet.base.argtypes import parse_image_shape
from alexnet_mxnet.base.errors import UsageError
from iterators.normalize import MEAN_RGB, check_mean_std
from iterators.recordfile import check_record_file, decode_record, index_path

CROPS_PER_IMAGE = 10


def crop_offsets(height, width, crop_h, crop_w):
    """(top, left) of the five crops: top-left, top-right, bottom-left, bottom-right, center
    (the center as ``ImageRecordIter`` places it: ``(size - crop) // 2``)."""
    bottom, right = height - crop_h, width - crop_w
    return [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]


def resize_shorter_side(image, resize, crop_hw):
    """Shorter side to ``resize`` (0/None: unchanged), never below the crop size."""
    height, width = image.shape[:2]
    crop_h, crop_w = crop_hw
    scale = resize / min(height, width) if resize else 1.0
    scale = max(scale, crop_h / height, crop_w / width)
    if scale == 1.0:
        return image
    size = (max(crop_w, round(width * scale)), max(crop_h, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


class TenCropIter(mx.io.DataIter):
    """Batches of ``batch_size`` images x 10 crops from a ``.rec``, in file order.

    ``data`` is ``(batch_size * 10, C, H, W)``: rows ``i*10 .. i*10+4`` are image i's five
    crops (order of ``crop_offsets``), rows ``i*10+5 .. i*10+9`` their mirrors; ``label`` is
    ``(batch_size * 10,)``. ``pad`` counts filler *images* (copies of real ones) in the last
    batch. Images whose shorter side differs from ``resize`` are resized to it first (with
    ``resize=None`` only images too small for the crop are enlarged). Decoding runs in a
    thread pool, one batch ahead of the consumer.
    """

    def __init__(self, path_rec, batch_size, image_shape=(3, 227, 227), *, mean_rgb=MEAN_RGB,
                 std_rgb=None, resize=None, num_threads=None, dtype='float32'):
        super().__init__(batch_size)
        self.image_shape = parse_image_shape(image_shape)
        if self.image_shape[0] != 3:
            raise UsageError('10-crop evaluation reads colour images: image shape must be 3,H,W')
        mean, std = check_mean_std(mean_rgb, std_rgb)
        self._mean = np.array(mean, np.float32)
        self._inv_std = 1.0 / np.array(std or (1.0, 1.0, 1.0), np.float32)
        self._resize = resize
        self._dtype = dtype
        self.num_images = check_record_file(path_rec)
        self._path = path_rec
        self._record = mx.recordio.MXIndexedRecordIO(index_path(path_rec), path_rec, 'r')
        self._keys = list(self._record.keys)
        self._pool = ThreadPoolExecutor(num_threads or os.cpu_count() or 1)
        rows = batch_size * CROPS_PER_IMAGE
        self.provide_data = [mx.io.DataDesc('data', (rows,) + self.image_shape, dtype)]
        self.provide_label = [mx.io.DataDesc('softmax_label', (rows,), 'float32')]
        self.reset()

    def reset(self):
        self._cursor = 0
        self._pending = self._submit()

    def next(self):
        if self._pending is None:
            raise StopIteration
        data, jobs = self._pending
        labels = [job.result() for job in jobs]
        self._pending = self._submit()
        real = len(labels)
        for i in range(real, self.batch_size):
            data[i * CROPS_PER_IMAGE:(i + 1) * CROPS_PER_IMAGE] = \
                data[(i % real) * CROPS_PER_IMAGE:(i % real + 1) * CROPS_PER_IMAGE]
            labels.append(labels[i % real])
        label = np.repeat(np.array(labels, np.float32), CROPS_PER_IMAGE)
        data = mx.nd.from_numpy(data, zero_copy=True)  # a fresh array per batch: safe to share
        if self._dtype != 'float32':
            data = data.astype(self._dtype)
        return mx.io.DataBatch([data], [mx.nd.array(label)],
                               pad=self.batch_size - real, provide_data=self.provide_data,
                               provide_label=self.provide_label)

    def close(self):
        self._pool.shutdown(wait=True)
        self._record.close()

    def _submit(self):
        """Read the next batch's raw records (cheap, one file handle) and queue their decoding
        into a fresh batch array; ``None`` at the end of the file."""
        keys = self._keys[self._cursor:self._cursor + self.batch_size]
        if not keys:
            return None
        self._cursor += len(keys)
        data = np.empty(self.provide_data[0].shape, np.float32)
        rows = [data[i * CROPS_PER_IMAGE:(i + 1) * CROPS_PER_IMAGE] for i in range(len(keys))]
        return data, [self._pool.submit(self._ten_crops, out, key, self._record.read_idx(key))
                      for out, key in zip(rows, keys)]

    def _ten_crops(self, out, key, raw):
        """Write one record's ten normalised crops into ``out``; return its label."""
        label, image = decode_record(raw, self._path, key)
        image = resize_shorter_side(image[:, :, ::-1], self._resize, self.image_shape[1:])
        chw = ((image.astype(np.float32) - self._mean) * self._inv_std).transpose(2, 0, 1)
        _, crop_h, crop_w = self.image_shape
        offsets = crop_offsets(image.shape[0], image.shape[1], crop_h, crop_w)
        for k, (top, left) in enumerate(offsets):
            out[k] = chw[:, top:top + crop_h, left:left + crop_w]
            out[k + len(offsets)] = out[k][:, :, ::-1]
        return label
