"""Accuracy of a checkpoint on a ``.rec`` file: top-1/top-5 on the center crop or the
paper's 10 crops, per-class accuracy and the confusion matrix.

Every record is scored exactly once: the filler rows of the last batch (``batch.pad``)
are dropped, and the count is checked against the ``.idx``. A record that is not an image
is a one-line error naming it.
"""
import time
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from tqdm import tqdm

import iterators
from alexnet_mxnet.base.files import atomic_write, write_csv
from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.base.metrics import top_classes
from alexnet_mxnet.inference.predictor import Predictor
from iterators.tencrop import CROPS_PER_IMAGE

TOP_K = 5


@dataclass
class ScoreResult:
    checkpoint: str
    data: str
    ten_crop: bool
    precision: str
    class_names: list
    labels: np.ndarray        # (N,) true class per record, in file order
    top_classes: np.ndarray   # (N, k) predicted classes, most probable first
    top_probs: np.ndarray     # (N, k) their probabilities
    seconds: float            # wall clock of the whole pass: decoding + forward

    @property
    def num_images(self):
        return len(self.labels)

    @property
    def top_k(self):
        return self.top_classes.shape[1]

    def accuracy(self, k=1):
        return float(np.mean(np.any(self.top_classes[:, :k] == self.labels[:, None], axis=1)))

    @property
    def images_per_second(self):
        return self.num_images / self.seconds if self.seconds > 0 else float('nan')

    def confusion(self):
        """``(C, C)`` counts: row = true class, column = predicted class."""
        size = len(self.class_names)
        matrix = np.zeros((size, size), np.int64)
        np.add.at(matrix, (self.labels, self.top_classes[:, 0]), 1)
        return matrix

    def per_class(self):
        """One dict per class: images, correct (top-1) and accuracy (None without images)."""
        matrix = self.confusion()
        rows = []
        for index, name in enumerate(self.class_names):
            images, correct = int(matrix[index].sum()), int(matrix[index, index])
            rows.append(dict(index=index, name=name, images=images, correct=correct,
                             accuracy=correct / images if images else None))
        return rows

    def summary(self):
        return {'checkpoint': self.checkpoint, 'data': self.data, 'ten_crop': self.ten_crop,
                'precision': self.precision, 'images': self.num_images,
                'top1': self.accuracy(1), 'top%d' % self.top_k: self.accuracy(self.top_k),
                'images_per_second': self.images_per_second, 'seconds': self.seconds,
                'per_class': self.per_class()}


def score(model, path_rec, batch_size=32, contexts=None, *, ten_crop=False, precision='float32',
          calib_rec=None, num_calib_examples=320, calib_mode='naive', num_threads=None,
          progress=True):
    """Score ``model`` (an ``inference.model.LoadedModel``) on ``path_rec``."""
    contexts = contexts or [mx.cpu()]
    num_records = iterators.check_record_file(path_rec)
    # A larger batch would only score filler rows, in memory the machine may not have.
    batch_size = min(batch_size, -(-num_records // len(contexts)) * len(contexts))
    norm = dict(mean_rgb=model.mean_rgb, std_rgb=model.std_rgb)
    calib_iter = None
    if precision == 'int8' and calib_rec:
        calib_iter = iterators.get_val_iter(calib_rec, batch_size, model.image_shape,
                                            num_threads=num_threads, **norm)
    crops = CROPS_PER_IMAGE if ten_crop else 1
    predictor = Predictor.for_model(model, batch_size * crops, contexts, precision=precision,
                                    calib_iter=calib_iter, num_calib_examples=num_calib_examples,
                                    calib_mode=calib_mode)
    if ten_crop:
        data_iter = iterators.TenCropIter(path_rec, batch_size, model.image_shape,
                                          num_threads=num_threads, **norm)
    else:
        data_iter = iterators.get_val_iter(path_rec, batch_size, model.image_shape,
                                           num_threads=num_threads, **norm)
    labels, ranked, top_probs = [], [], []
    k = min(TOP_K, model.num_classes)
    start = time.time()
    try:
        with tqdm(total=num_records, unit='img', desc='score', disable=not progress) as bar:
            for batch in data_iter:
                probs = predictor.probabilities(batch.data[0])
                probs = probs.reshape(batch_size, crops, -1).mean(axis=1)
                label = batch.label[0].asnumpy()[::crops]
                real = batch_size - batch.pad
                probs, label = probs[:real], label[:real]
                labels.append(_class_indices(label, model.num_classes, path_rec))
                order = top_classes(probs, k)
                ranked.append(order)
                top_probs.append(np.take_along_axis(probs, order, axis=1))
                bar.update(real)
    finally:
        if ten_crop:
            data_iter.close()
    seconds = time.time() - start
    result = ScoreResult(model.name, path_rec, ten_crop, precision, model.class_names,
                         np.concatenate(labels), np.concatenate(ranked),
                         np.concatenate(top_probs), seconds)
    if result.num_images != num_records:
        raise RuntimeError('scored %d images but %s holds %d records'
                           % (result.num_images, path_rec, num_records))
    return result


def _class_indices(label, num_classes, path_rec):
    classes = label.astype(np.int64)
    bad = (classes != label) | (classes < 0) | (classes >= num_classes)
    if bad.any():
        raise UsageError('%s has label %g but the checkpoint has %d classes (0..%d): wrong '
                         'checkpoint or data?' % (path_rec, label[bad][0], num_classes,
                                                  num_classes - 1))
    return classes


def write_confusion_csv(path, matrix, class_names):
    """Rows: true class; columns: predicted class; first column and header: class names."""
    write_csv(path, ['true \\ predicted'] + list(class_names),
              [[name] + [int(v) for v in row] for name, row in zip(class_names, matrix)])


def write_per_class_csv(path, per_class):
    write_csv(path, ['index', 'class', 'images', 'correct', 'accuracy'],
              [[r['index'], r['name'], r['images'], r['correct'],
                '' if r['accuracy'] is None else '%.6f' % r['accuracy']] for r in per_class])


def plot_confusion(path, matrix, class_names, title):
    """Heat map of row-normalised rates, class names on both axes, counts in the cells
    when there are few classes."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    size = len(class_names)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = min(4 + 0.45 * size, 40)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(rates, cmap='Blues', vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label='fraction of the true class')
    if size <= 60:
        ax.set_xticks(range(size))
        ax.set_yticks(range(size))
        ax.set_xticklabels(class_names, rotation=90, fontsize=8)
        ax.set_yticklabels(class_names, fontsize=8)
    if size <= 20:
        for row in range(size):
            for col in range(size):
                ax.text(col, row, str(matrix[row, col]), ha='center', va='center', fontsize=7,
                        color='white' if rates[row, col] > 0.5 else 'black')
    ax.set_xlabel('predicted class')
    ax.set_ylabel('true class')
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format='png', dpi=100))
    plt.close(fig)


def format_report(result):
    """The text report: overall accuracy, speed, then one line per class."""
    lines = ['%s on %s (%s, %s): %d images' % (
                 result.checkpoint, result.data, '10 crops' if result.ten_crop else 'center crop',
                 result.precision, result.num_images),
             'top-1 accuracy: %.4f' % result.accuracy(1),
             'top-%d accuracy: %.4f' % (result.top_k, result.accuracy(result.top_k)),
             'speed: %.1f images/s (%.1f s, decoding included)' % (result.images_per_second,
                                                                  result.seconds),
             'per-class top-1 accuracy:']
    width = max(len(name) for name in result.class_names)
    for row in result.per_class():
        accuracy = '   n/a' if row['accuracy'] is None else '%.4f' % row['accuracy']
        lines.append('  %3d %-*s %s (%d/%d)' % (row['index'], width, row['name'], accuracy,
                                               row['correct'], row['images']))
    return '\n'.join(lines)
