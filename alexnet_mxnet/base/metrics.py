"""Top-k accuracy and cross-entropy, one rule for training and scoring.

Classes are ranked by probability, a tie going to the lower class index (a stable sort): a
label is within the top k when its rank is below k. ``top_classes`` and ``label_ranks`` apply
that same rule, so the val accuracy a run logs and the accuracy ``score.py`` reports for the
same checkpoint and images agree.
"""
import numpy as np


def top_classes(probs, k):
    """``(N, k)`` class indices, most probable first, ties by class index."""
    return np.argsort(-probs, axis=1, kind='stable')[:, :k]


def label_ranks(probs, labels):
    """The rank of each row's label in that ordering (0: the top class)."""
    rows = np.arange(len(labels))
    picked = probs[rows, labels][:, None]
    before = np.arange(probs.shape[1])[None, :] < labels[:, None]
    return (probs > picked).sum(axis=1) + ((probs == picked) & before).sum(axis=1)


class TopKMetrics(object):
    """Running top-1, top-k accuracy and cross-entropy over the real (unpadded) rows."""

    def __init__(self, top_k=5):
        self.top_k = top_k
        self.reset()

    def reset(self):
        self.count = 0
        self.top1 = 0
        self.topk = 0
        self.loss = 0.0

    def update(self, probs, labels, pad=0):
        """Add one batch (``probs`` N x classes); returns the batch's mean loss."""
        rows = len(probs) - pad
        probs, labels = probs[:rows], labels[:rows].astype(np.int64)
        picked = probs[np.arange(rows), labels]
        loss = float(-np.log(np.maximum(picked, 1e-12)).sum()) if np.all(np.isfinite(probs)) \
            else float('nan')
        ranks = label_ranks(probs, labels)
        self.count += rows
        self.top1 += int((ranks < 1).sum())
        self.topk += int((ranks < self.top_k).sum()) if self.top_k else 0
        self.loss += loss
        return loss / max(rows, 1)

    def result(self):
        n = max(self.count, 1)
        return dict(top1=self.top1 / n, topk=self.topk / n if self.top_k else None,
                    loss=self.loss / n)

    def describe(self):
        res = self.result()
        text = 'top1=%.4f' % res['top1']
        if self.top_k:
            text += '\ttop%d=%.4f' % (self.top_k, res['topk'])
        return text + '\tcross-entropy=%.4f' % res['loss']
