"""Training on soft labels (``--mixup``, ``--cutmix``): the graph, the data and the metrics.

MXNet 1.9.1's ``SoftmaxOutput`` takes class indices only, so a run that mixes trains a head
over the same logits that takes (N, classes) targets: ``MakeLoss`` of the cross-entropy
``-sum(target * log_softmax(logits))``, whose gradient ``softmax - target`` is the one
``SoftmaxOutput`` gives a one-hot (or smoothed) target. Checkpoints keep the standard graph:
the parameters are the same, only the head that takes the labels differs.
"""
import mxnet as mx
import numpy as np

import iterators
from alexnet_mxnet.base.metrics import TopKMetrics, label_ranks

LABEL = 'softmax_label'


def mixes(args):
    """Whether the run trains on soft labels."""
    return args.mixup > 0 or args.cutmix > 0


def mixes_in_epoch(args, epoch):
    """Mixup/cutmix run in every epoch but the last ``--mixup-off-epochs``."""
    return mixes(args) and epoch <= args.num_epochs - args.mixup_off_epochs


def soft_label_head(symbol):
    """The graph ``symbol`` (ending in ``SoftmaxOutput``) with a head that takes soft targets
    as ``softmax_label`` (N, classes). Output 0 stays the probabilities (no gradient), output
    1 is each row's loss."""
    logits = symbol.get_children()[0]
    targets = mx.sym.Variable(LABEL)
    probs = mx.sym.BlockGrad(mx.sym.softmax(logits, axis=-1), name='softmax')
    loss = -mx.sym.sum(targets * mx.sym.log_softmax(logits, axis=-1), axis=1)
    # normalization 'null': per-row gradients, scaled by 1/batch in the optimizer (rescale_grad)
    # exactly as SoftmaxOutput's are.
    return mx.sym.Group([probs, mx.sym.MakeLoss(loss, normalization='null', name='soft_ce')])


def train_batches(args, data, epoch, rank):
    """``data`` as the run trains on it in ``epoch``: with soft labels when the run mixes
    (mixed in that epoch, or only smoothed in the last ``--mixup-off-epochs``)."""
    if not mixes(args):
        return data
    on = mixes_in_epoch(args, epoch)
    return iterators.soft_label_iter(
        data, args.num_classes, smoothing=args.label_smoothing,
        mixup=args.mixup if on else 0.0, cutmix=args.cutmix if on else 0.0,
        seed=(args.seed, epoch, rank))


class SoftLabelMetrics(TopKMetrics):
    """``TopKMetrics`` for (N, classes) targets: top-1/top-k against each row's dominant class
    (the larger share of a mixed image; the true class when nothing is mixed), cross-entropy
    against the whole target (the loss being trained)."""

    def update(self, probs, targets, pad=0):
        rows = len(probs) - pad
        probs, targets = probs[:rows], targets[:rows]
        loss = float(-(targets * np.log(np.maximum(probs, 1e-12))).sum()) \
            if np.all(np.isfinite(probs)) else float('nan')
        ranks = label_ranks(probs, np.argmax(targets, axis=1))
        self.count += rows
        self.top1 += int((ranks < 1).sum())
        self.topk += int((ranks < self.top_k).sum()) if self.top_k else 0
        self.loss += loss
        return loss / max(rows, 1)


def train_metrics(args):
    """The metrics of the training batches."""
    return SoftLabelMetrics(args.top_k) if mixes(args) else TopKMetrics(args.top_k)


def what_train_metrics_measure(args):
    """One line for the log and the sidecar: what the train top-k and loss are against."""
    if mixes(args):
        return ('train top-k: against each image\'s dominant label; train cross-entropy: '
                'against its mixed%s target' % (', smoothed' if args.label_smoothing else ''))
    return ('train top-k and cross-entropy: against the true label%s'
            % (' (not the smoothed target trained on)' if args.label_smoothing else ''))
