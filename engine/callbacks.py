"""What a training run shows and records: metrics, progress bar, Speedometer log lines,
metrics CSV, curve plot, and the stop-signal and NaN guards."""
import csv
import io
import logging
import math
import os
import signal
import sys
import threading
import time

import numpy as np
from tqdm import tqdm

from engine.checkpoint import atomic_write
from engine.errors import UsageError

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
    """What SIGINT/SIGTERM do to a run. Once training runs (``can_save``), the first signal
    asks the loop to stop after the current batch, which then saves a checkpoint; before
    that, and on a second signal, the run aborts without saving: ``check()``, called between
    steps, raises ``KeyboardInterrupt``. The handler never raises itself: it can run inside
    an MXNet callback or an object's ``__del__``, where Python prints the exception's
    traceback and swallows it.

    Python runs handlers only between bytecodes of the main thread, so a main thread stuck
    in C code (a kvstore waiting for a dead peer) would never abort: a watcher thread sees
    every signal (``signal.set_wakeup_fd``) and, when an aborted run has not ended
    ``ABORT_GRACE`` seconds later, ends the process with the usual one-line message."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    ABORT_GRACE = 5.0

    def __init__(self):
        self.signum = None
        self.aborted = False
        self.can_save = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is not None or not self.can_save:
            self.aborted = True
            return
        self.signum = signum
        logging.warning('%s received: stopping after this batch and saving a checkpoint '
                        '(send it again to abort without saving)', signal.Signals(signum).name)

    def _watch(self, read_end):
        received = 0
        with os.fdopen(read_end, 'rb', buffering=0) as pipe:
            while True:
                data = pipe.read(64)
                if not data:            # __exit__: the run ended by itself
                    return
                ours = [signum for signum in data if signum in self.SIGNALS]
                received += len(ours)
                if ours and received > (1 if self.can_save else 0) and \
                        not self._ended.wait(self.ABORT_GRACE):
                    sys.stderr.write('%s: error: interrupted (stuck for %g s after the signal, '
                                     'so ended at once)\n'
                                     % (os.path.basename(sys.argv[0]), self.ABORT_GRACE))
                    sys.stderr.flush()
                    os._exit(128 + ours[-1])

    def __enter__(self):
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        read_end, self._write_end = os.pipe()
        os.set_blocking(self._write_end, False)
        self._previous_wakeup = signal.set_wakeup_fd(self._write_end, warn_on_full_buffer=False)
        self._ended = threading.Event()
        threading.Thread(target=self._watch, args=(read_end,), daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._ended.set()
        signal.set_wakeup_fd(self._previous_wakeup)
        os.close(self._write_end)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def requested(self):
        return self.signum is not None

    def check(self):
        """Raise ``KeyboardInterrupt`` once a signal asked to abort."""
        if self.aborted:
            raise KeyboardInterrupt


def read_metrics_csv(path, up_to_epoch):
    """Rows 1..``up_to_epoch`` of an earlier run (kept when resuming); none without the file.
    A damaged file is refused in one line: its rows decide the best epoch."""
    try:
        with open(path, newline='') as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        return []
    except (csv.Error, UnicodeDecodeError) as err:
        raise _damaged_csv(path, err) from None
    kept = []
    for line, row in enumerate(rows, 2):
        try:
            epoch = int(row['epoch'])
            for key in CSV_FIELDS[1:]:
                if row.get(key):
                    float(row[key])
        except (KeyError, TypeError, ValueError):
            raise _damaged_csv(path, 'line %d is not a row of numbers' % line) from None
        if epoch <= up_to_epoch:
            kept.append(row)
    epochs = [int(row['epoch']) for row in kept]
    if epochs != list(range(1, up_to_epoch + 1)):
        missing = sorted(set(range(1, up_to_epoch + 1)) - set(epochs))
        raise _damaged_csv(path, 'no row for epoch %s' % missing[0] if missing
                           else 'epochs out of order or repeated')
    return kept


def _damaged_csv(path, why):
    return UsageError('%s is damaged (%s); restore it, or delete it to resume without the '
                      'history of earlier epochs' % (path, why))


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
