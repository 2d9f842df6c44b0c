"""What a training run shows while it runs -- progress bar, Speedometer log lines, its log --
and the stop-signal and NaN guards."""
import logging
import math
import os
import signal
import sys
import threading
import time

from tqdm import tqdm

# The training side logs here; ``log_rank`` prefixes its lines with the worker's rank.
LOG = logging.getLogger('alexnet_mxnet.train')


class Diverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and batch."""


def check_finite(loss, epoch, batch=None):
    """Raise ``Diverged`` for a NaN/inf loss of training batch ``batch`` (None: validation)."""
    if not math.isfinite(loss):
        where = 'batch %d' % batch if batch is not None else 'validation'
        raise Diverged('loss is %s at epoch %d, %s: training diverged; lower --lr '
                       '(or add --warmup-epochs) and resume from the last checkpoint'
                       % (loss, epoch, where))


class Speedometer(object):
    """One log line every ``frequent`` batches, as ``mx.callback.Speedometer`` prints."""

    def __init__(self, batch_size, frequent, log=LOG.info):
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


def setup_logging():
    """The command's logging: INFO lines with a time stamp, printed above the progress bar."""
    root = logging.getLogger()
    if not any(isinstance(h, TqdmLoggingHandler) for h in root.handlers):
        handler = TqdmLoggingHandler()
        handler.setFormatter(logging.Formatter('%(asctime)s %(message)s'))
        root.addHandler(handler)
    root.setLevel(logging.INFO)


class _RankPrefix(logging.Filter):
    def __init__(self, rank, num_workers):
        super().__init__()
        self.prefix = '[rank %d/%d] ' % (rank, num_workers)

    def filter(self, record):
        record.msg = self.prefix + str(record.msg)
        return True


def log_rank(rank, num_workers):
    """In a distributed run each line of the training log starts with the worker's kvstore
    rank, so interleaved output from several workers stays readable."""
    for old in [f for f in LOG.filters if isinstance(f, _RankPrefix)]:
        LOG.removeFilter(old)
    if num_workers > 1:
        LOG.addFilter(_RankPrefix(rank, num_workers))


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
        LOG.warning('%s received: stopping after this batch and saving a checkpoint '
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


