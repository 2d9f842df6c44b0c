"""What a training run shows and records: metrics, progress bar, Speedometer log lines,
metrics CSV, curve plot, and the stop-signal and NaN guards."""
import csv
import io
import logging
import math
import signal
import sys
import time

import numpy as np
from tqdm import tqdm

from engine.checkpoint import atomic_write

CSV_FIELDS = ('epoch', 'train_top1', 'train_topk', 'train_loss', 'val_top1', 'val_topk',
              'val_loss', 'lr', 'images_per_sec', 'epoch_seconds', 'wall_seconds')


class Diverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and batch."""


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
        # A label ranks within the top k when fewer than k classes score strictly higher.
        higher = (probs > picked[:, None]).sum(axis=1)
        self.count += rows
        self.top1 += int((higher < 1).sum())
        self.topk += int((higher < self.top_k).sum()) if self.top_k else 0
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


def check_finite(loss, epoch, batch=None):
    """Raise ``Diverged`` for a NaN/inf loss of training batch ``batch`` (None: validation)."""
    if not math.isfinite(loss):
        where = 'batch %d' % batch if batch is not None else 'validation'
        raise Diverged('loss is %s at epoch %d, %s: training diverged; lower --lr '
                       '(or add --warmup-epochs) and resume from the last checkpoint'
                       % (loss, epoch, where))


class Speedometer(object):
    """One log line every ``frequent`` batches, as ``mx.callback.Speedometer`` prints."""

    def __init__(self, batch_size, frequent, log=logging.info):
        self.batch_size = batch_size
        self.frequent = frequent
        self.log = log
        self.tic = time.time()
        self.last = 0

    def start_epoch(self):
        self.tic = time.time()
        self.last = 0

    def __call__(self, epoch, nbatch, metrics):
        if not self.frequent or nbatch % self.frequent:
            return
        speed = (nbatch - self.last) * self.batch_size / max(time.time() - self.tic, 1e-9)
        self.log('Epoch[%d] Batch [%d-%d]\tSpeed: %.2f samples/sec\t%s'
                 % (epoch, self.last, nbatch, speed, metrics.describe()))
        self.tic = time.time()
        self.last = nbatch


class TqdmLoggingHandler(logging.Handler):
    """Log lines printed above the progress bar instead of through it."""

    def emit(self, record):
        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging(rank=0, num_workers=1):
    """Log lines above the progress bar; in a distributed run each starts with the worker's
    kvstore rank, so interleaved output from several workers stays readable."""
    fmt = '%(asctime)s %(message)s'
    if num_workers > 1:
        fmt = '%%(asctime)s [rank %d/%d] %%(message)s' % (rank, num_workers)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, TqdmLoggingHandler)), None)
    if handler is None:
        handler = TqdmLoggingHandler()
        root.addHandler(handler)
    handler.setFormatter(logging.Formatter(fmt))
    root.setLevel(logging.INFO)


def epoch_bar(epoch, num_epochs, num_images, enabled=True):
    """Per-epoch bar counting images, so tqdm's rate reads img/s and its ETA is the epoch's."""
    return tqdm(total=num_images, desc='epoch %d/%d' % (epoch + 1, num_epochs), unit='img',
                dynamic_ncols=True, leave=True, disable=not enabled)


class StopRequest(object):
    """First SIGINT/SIGTERM asks the loop to stop after the current batch (it then saves
    a checkpoint); a second one falls back to the default behaviour."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handle(self, signum, frame):
        self.signum = signum
        logging.warning('%s received: stopping after this batch and saving a checkpoint '
                        '(send it again to abort without saving)', signal.Signals(signum).name)
        for sig in self.SIGNALS:
            signal.signal(sig, self._previous[sig])

    def __enter__(self):
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def requested(self):
        return self.signum is not None


def read_metrics_csv(path, up_to_epoch):
    """Rows of an earlier run up to ``up_to_epoch`` (kept when resuming)."""
    try:
        with open(path, newline='') as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        return []
    return [row for row in rows if int(row['epoch']) <= up_to_epoch]


def write_metrics_csv(path, rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction='ignore')
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ('' if row.get(k) is None else row[k]) for k in CSV_FIELDS})

    def write(tmp):
        with open(tmp, 'w', newline='') as handle:
            handle.write(buf.getvalue())
    atomic_write(path, write)


def plot_curves(path, rows, top_k=5):
    """Accuracy and loss against epoch, as a PNG (matplotlib's Agg backend: no display)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    def series(key):
        pts = [(int(r['epoch']), float(r[key])) for r in rows if r.get(key) not in (None, '')]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (('train_top1', 'train top-1'), ('val_top1', 'val top-1'),
                       ('train_topk', 'train top-%d' % top_k), ('val_topk', 'val top-%d' % top_k)):
        xs, ys = series(key)
        if xs:
            acc_ax.plot(xs, ys, marker='o', label=label)
    for key, label in (('train_loss', 'train'), ('val_loss', 'val')):
        xs, ys = series(key)
        if xs:
            loss_ax.plot(xs, ys, marker='o', label=label)
    acc_ax.set(xlabel='epoch', ylabel='accuracy', title='accuracy', ylim=(0, 1))
    loss_ax.set(xlabel='epoch', ylabel='cross-entropy', title='loss')
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format='png', dpi=80))
    plt.close(fig)
