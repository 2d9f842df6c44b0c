"""One image in, one packed RecordIO record out (or the reason it was skipped), in worker
processes that cannot deadlock.

The workers are fresh interpreters (``python -c``, never a bare ``fork``): a forked child of a
process whose OpenCV or MXNet threads held a lock at fork time blocks forever on that lock,
and ``multiprocessing``'s ``spawn`` re-runs the caller's ``__main__`` module. They import only
this module, ``alexnet_mxnet.base.imagefile``, OpenCV and numpy -- no MXNet -- so they start in a fraction
of a second; the record header is packed with ``struct``, byte for byte as
``mxnet.recordio.pack`` packs it. Tasks and results travel over the workers' stdin and
stdout as length-prefixed pickles, one result per image, in order.

A worker dies with the converter however the converter dies: it exits at the end of its task
pipe, and the kernel kills it (``PR_SET_PDEATHSIG``) when its parent is gone.
"""
import ctypes
import fcntl
import os
import pickle
import selectors
import signal
import struct
import subprocess
import sys
from collections import deque, namedtuple

import cv2

from alexnet_mxnet.base.errors import UsageError
from alexnet_mxnet.base.imagefile import (SkipImage, check_resize, decode, load_image, probe,
                                          read_image_bytes)
from alexnet_mxnet.base.recordio import pack_image_record

EncodeSettings = namedtuple('EncodeSettings', 'resize center_crop quality pass_through')

# Formats a record may hold unchanged (stock MXNet readers cannot decode WebP or PPM/PGM; JPEG
# and PNG are what every reader of image records decodes).
PASS_THROUGH_FORMATS = ('JPEG', 'PNG')


def resize_shorter(img, size):
    """Scale so the shorter side is ``size`` (area filter down, bilinear up)."""
    h, w = img.shape[:2]
    if not size or min(h, w) == size:
        return img
    if h < w:
        new_w, new_h = max(1, w * size // h), size
    else:
        new_w, new_h = size, max(1, h * size // w)
    interp = cv2.INTER_AREA if new_h < h else cv2.INTER_LINEAR
    return cv2.resize(img, (new_w, new_h), interpolation=interp)


def crop_center_square(img):
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return img[top:top + side, left:left + side]


def transform(img, settings):
    img = resize_shorter(img, settings.resize)
    if settings.center_crop:
        img = crop_center_square(img)
    return img


def encode_jpeg(img, quality):
    ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SkipImage('JPEG encoding failed')
    return buf.tobytes()


def pass_through_payload(path):
    """The file's bytes, unchanged, once they proved to be a complete, decodable image that
    stock MXNet readers can decode."""
    data = read_image_bytes(path)
    info = probe(data)
    if info.format not in PASS_THROUGH_FORMATS:
        raise SkipImage('a %s file: pass-through keeps only %s files (stock MXNet readers '
                        'cannot decode some other formats); convert without pass-through to '
                        'store it as JPEG' % (info.format, ' and '.join(PASS_THROUGH_FORMATS)))
    decode(data, info, shorter=1)   # cheaply: a JPEG at 1/8 scale
    return data


def image_payload(path, pixels, settings):
    """The encoded image bytes for one record, from a file ``path`` or a BGR array ``pixels``."""
    if pixels is None and settings.pass_through:
        return pass_through_payload(path)
    if pixels is None:
        img = load_image(path, settings.resize)
    else:
        check_resize(pixels.shape[1], pixels.shape[0], settings.resize)
        img = pixels
    return encode_jpeg(transform(img, settings), settings.quality)


def make_record(index, label, path, pixels, settings):
    """``(index, packed record or None, skip reason or None)`` for one image."""
    try:
        payload = image_payload(path, pixels, settings)
    except SkipImage as why:
        return index, None, str(why)
    except (cv2.error, MemoryError) as err:     # what the checks before decoding cannot foresee
        reason = (str(err).strip() or 'out of memory').splitlines()[-1]
        return index, None, 'cannot convert: %s' % reason
    return index, pack_image_record(index, label, payload), None


# --- the pipe protocol -------------------------------------------------------------------

_LENGTH = struct.Struct('<Q')


def _frame(obj):
    body = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


def _read_frame(stream):
    """The next object from ``stream``, or None at its end."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    size = _LENGTH.unpack(head)[0]
    body = stream.read(size)
    return pickle.loads(body) if len(body) == size else None


def _die_with_parent(libc, parent_pid):
    """Have the kernel kill this process when its parent dies (Linux); if the parent is
    already gone, exit now."""
    try:
        libc.prctl(1, signal.SIGKILL)                                # PR_SET_PDEATHSIG
    except AttributeError:
        pass                                  # not Linux: the end of the task pipe still ends us
    if os.getppid() != parent_pid:
        os._exit(0)


def _keep_freed_memory(libc):
    """Every image allocates and frees buffers of a few hundred KB; glibc would hand them
    back to the kernel each time (a fresh process has low thresholds) and fault them in
    again: ten times the page faults and a fifth more CPU. Keep up to 64 MiB."""
    try:
        libc.mallopt(-1, 64 << 20)    # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 << 20)    # M_MMAP_THRESHOLD: larger blocks still go straight back
    except AttributeError:
        pass                          # not glibc


def serve(parent_pid):
    """A worker's life: settings, then batches of ``(position, make_record arguments)``;
    writes ``(position, make_record result)`` per image until its stdin ends."""
    libc = ctypes.CDLL(None)
    _die_with_parent(libc, parent_pid)
    _keep_freed_memory(libc)
    cv2.setNumThreads(1)                           # one process per core already
    tasks = os.fdopen(0, 'rb')
    results = os.fdopen(os.dup(1), 'wb')
    os.dup2(2, 1)              # anything a library prints goes to stderr, not into the results
    try:
        settings = _read_frame(tasks)
        while True:
            batch = _read_frame(tasks)
            if batch is None:
                return
            for position, (index, label, path, pixels) in batch:
                results.write(_frame((position, make_record(index, label, path, pixels,
                                                            settings))))
                results.flush()    # per image: if the next one crashes us, this one counts
    except BrokenPipeError:
        pass                   # the converter is gone


# Ctrl-C is the converter's to handle: ignored before anything else, even while cv2 imports.
_WORKER = ('import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); import sys; '
           'sys.path[0] = %r; from alexnet_mxnet.data.encoding import serve; serve(%d)')
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- the converter's side ----------------------------------------------------------------

class WorkerFailed(UsageError):
    """An encoding worker could not start or stopped with an error of its own (reported as
    one line, like a user's mistake, by the command-line tools)."""


class _Worker:
    def __init__(self, settings):
        self.proc = subprocess.Popen(
            [sys.executable, '-c', _WORKER % (_ROOT, os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.tasks, self.results = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(self.tasks, False)
        os.set_blocking(self.results, False)
        try:    # room for dozens of records, so a worker rarely waits for the converter
            fcntl.fcntl(self.results, getattr(fcntl, 'F_SETPIPE_SZ', 1031), 1 << 20)
        except (AttributeError, OSError):
            pass
        self.outgoing = bytearray(_frame(settings))
        self.incoming = bytearray()
        self.in_flight = deque()      # positions sent, in order; the first is being encoded

    def received(self):
        """``(position, result)`` pairs complete in ``incoming``."""
        while len(self.incoming) >= _LENGTH.size:
            size = _LENGTH.unpack_from(self.incoming)[0]
            if len(self.incoming) < _LENGTH.size + size:
                return
            yield pickle.loads(self.incoming[_LENGTH.size:_LENGTH.size + size])
            del self.incoming[:_LENGTH.size + size]

    def stop(self, kill):
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if kill:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class EncoderPool:
    """``with EncoderPool(settings, n) as pool: for result in pool.map(items): ...`` --
    ``make_record`` results in item order, encoded by ``n`` worker processes.

    An image that kills its worker (a crash inside a decoder, the out-of-memory killer) is
    reported as skipped and the worker replaced; a worker that fails otherwise raises
    ``WorkerFailed``. Leaving the ``with`` block early kills the workers at once.
    """
    # About 50 ms of work queued per worker: on a busy machine the converter may wait that
    # long for the CPU, and a worker with an empty queue would idle meanwhile.
    BATCH = 16           # images per task message
    AHEAD = 4            # task messages per worker not yet answered
    WINDOW = 256         # results per worker held back for the item order, at most
    MAX_DEATHS_IN_A_ROW = 5

    def __init__(self, settings, num_workers):
        self.settings, self.workers = settings, []
        self._selector = selectors.DefaultSelector()
        try:
            for _ in range(num_workers):
                self._start()
        except BaseException:
            self.close(kill=True)
            raise

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        self.close(kill=kind is not None)

    def _start(self):
        worker = _Worker(self.settings)
        self.workers.append(worker)
        self._selector.register(worker.results, selectors.EVENT_READ, worker)
        self._watch_tasks(worker)

    def close(self, kill=False):
        """End the workers: at the end of their task pipe, or at once with ``kill``. Closing
        a closed pool does nothing."""
        for worker in self.workers:
            for fd in (worker.results, worker.tasks):
                try:
                    self._selector.unregister(fd)
                except (KeyError, ValueError):
                    pass
            worker.stop(kill)
        self.workers = []
        self._selector.close()

    def map(self, items):
        """``make_record(item.index, item.label, item.path, item.pixels, settings)`` per item."""
        items = list(items)
        waiting, done, next_out, deaths_in_a_row = deque(range(len(items))), {}, 0, 0
        while next_out < len(items):
            if next_out in done:
                yield done.pop(next_out)
                next_out += 1
                continue
            self._hand_out(items, waiting, next_out)
            for key, _ in self._selector.select():
                worker = key.data
                if key.fd == worker.tasks:
                    self._send(worker)
                    continue
                chunk = os.read(worker.results, 1 << 20)
                worker.incoming += chunk
                for position, result in worker.received():
                    worker.in_flight.popleft()
                    done[position] = result
                    deaths_in_a_row = 0
                if not chunk:
                    deaths_in_a_row += 1
                    self._replace(worker, items, waiting, done, deaths_in_a_row)
                    break       # the other ready keys may belong to the dead worker

    def _hand_out(self, items, waiting, next_out):
        limit = next_out + self.WINDOW * len(self.workers)
        for worker in self.workers:
            while (len(worker.in_flight) < self.BATCH * self.AHEAD and waiting
                   and waiting[0] < limit):
                batch = []
                while waiting and waiting[0] < limit and len(batch) < self.BATCH:
                    position = waiting.popleft()
                    item = items[position]
                    batch.append((position, (item.index, item.label, item.path, item.pixels)))
                worker.in_flight.extend(position for position, _ in batch)
                worker.outgoing += _frame(batch)
            self._send(worker)

    def _send(self, worker):
        if worker.outgoing:
            try:
                del worker.outgoing[:os.write(worker.tasks, worker.outgoing)]
            except BlockingIOError:
                pass
            except BrokenPipeError:
                worker.outgoing.clear()   # it died: the end of its results says so next
        self._watch_tasks(worker)

    def _watch_tasks(self, worker):
        """Wait for room in a worker's task pipe only while there is something to send."""
        registered = worker.tasks in self._selector.get_map()
        if worker.outgoing and not registered:
            self._selector.register(worker.tasks, selectors.EVENT_WRITE, worker)
        elif not worker.outgoing and registered:
            self._selector.unregister(worker.tasks)

    def _replace(self, worker, items, waiting, done, deaths_in_a_row):
        """A worker's results ended: it died. The image it was encoding is skipped when a
        signal killed it (a crash in a decoder, the out-of-memory killer); the rest of its
        work goes to a new worker."""
        for fd in (worker.results, worker.tasks):
            if fd in self._selector.get_map():
                self._selector.unregister(fd)
        worker.stop(kill=True)
        self.workers.remove(worker)
        status = worker.proc.returncode
        if status >= 0:
            raise WorkerFailed('an encoding worker stopped with exit status %d (its error is '
                               'printed above)' % status)
        if deaths_in_a_row > self.MAX_DEATHS_IN_A_ROW:
            raise WorkerFailed('encoding workers keep dying (the last one: %s); out of memory?'
                               % _signal_name(-status))
        if worker.in_flight:
            culprit = worker.in_flight.popleft()
            done[culprit] = (items[culprit].index, None,
                             'the worker decoding it died (%s): a file that crashes the '
                             'decoder, or out of memory' % _signal_name(-status))
            waiting.extendleft(reversed(worker.in_flight))
        self._start()


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return 'signal %d' % number
