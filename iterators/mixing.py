"""Soft training labels: label smoothing, mixup (Zhang et al., 2018) and cutmix (Yun et al.,
2019) on whole batches, as timm's ``Mixup`` does them ("batch" mode).

Each image ``i`` of a batch is mixed with image ``N-1-i`` (the batch is already shuffled) by a
share ``lam`` drawn from Beta(alpha, alpha): mixup blends the pixels, cutmix pastes a box of
the partner covering ``1 - lam`` of the image. The label becomes the same mix of the two
(smoothed) one-hot targets, shape (N, num_classes), which ``SoftmaxOutput`` cannot take: the
trainer uses a soft-label head over the same logits for it.
"""
import math

import mxnet as mx
import numpy as np

from iterators.batchwise import BatchTransformIter

# With both --mixup and --cutmix, each batch uses one of them, cutmix with this probability.
CUTMIX_SHARE = 0.5
LABEL = 'softmax_label'


def soft_targets(labels, num_classes, smoothing=0.0):
    """(N,) class indices -> (N, num_classes) targets as ``SoftmaxOutput(smooth_alpha=...)``
    smooths them: ``1 - smoothing`` on the class, ``smoothing / (num_classes - 1)`` on each
    other class."""
    other = smoothing / (num_classes - 1) if num_classes > 1 else 0.0
    targets = np.full((len(labels), num_classes), other, np.float32)
    targets[np.arange(len(labels)), labels.astype(np.int64)] = 1.0 - smoothing
    return targets


def mix(data, targets, rng, mixup=0.0, cutmix=0.0):
    """``(data, targets, lam)``: the batch mixed with its reverse, by mixup or cutmix (the one
    whose alpha is positive; with both, cutmix for ``CUTMIX_SHARE`` of the batches). ``lam`` is
    the share of each image's own content (for cutmix, of its pixels after clipping the box)."""
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < CUTMIX_SHARE)
    lam = float(rng.beta(*(2 * [cutmix if use_cutmix else mixup])))
    partner = data[::-1]
    if use_cutmix:
        height, width = data.shape[2:]
        cut = math.sqrt(1.0 - lam)
        rows, cols = int(height * cut), int(width * cut)
        center_y, center_x = rng.integers(height), rng.integers(width)
        top, bottom = np.clip([center_y - rows // 2, center_y + rows // 2], 0, height)
        left, right = np.clip([center_x - cols // 2, center_x + cols // 2], 0, width)
        data = data.copy()
        data[:, :, top:bottom, left:right] = partner[:, :, top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / float(height * width)
    else:
        data = lam * data + (1.0 - lam) * partner
    return data, lam * targets + (1.0 - lam) * targets[::-1], lam


def soft_label_iter(data, num_classes, *, smoothing=0.0, mixup=0.0, cutmix=0.0, seed=(0,)):
    """``data`` with (N, num_classes) float32 labels named ``softmax_label``: smoothed one-hot
    targets, mixed by mixup/cutmix when an alpha is positive (both 0: smoothing only, e.g.
    the last epochs of a run whose mixing is switched off)."""
    def transform(pixels, labels, rng):
        targets = soft_targets(labels, num_classes, smoothing)
        if mixup > 0 or cutmix > 0:
            pixels, targets, _ = mix(pixels, targets, rng, mixup, cutmix)
        return pixels, targets
    label = mx.io.DataDesc(LABEL, (data.batch_size, num_classes), np.float32)
    return BatchTransformIter(data, transform, seed, provide_label=[label])
